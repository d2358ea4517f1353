"""Synthetic systems with known answers, shared by the tests and the docs.

Nothing here is used by the simulators; it exists so that analysis code can be
checked against analytic cases (Brownian motion with a known D, ideal gases).
"""

from __future__ import annotations

import numpy as np

from explorer.trajectory import Trajectory


def brownian_trajectory(
    D_A2_ps: float,
    n_atoms: int = 64,
    n_frames: int = 1000,
    dt_ps: float = 0.1,
    cell: np.ndarray | float = 12.0,
    frame_atoms: int = 0,
    seed: int = 0,
) -> Trajectory:
    """Li atoms on independent 3-D random walks with diffusivity ``D_A2_ps`` (Å²/ps).

    Each Cartesian step is normal with variance 2 D dt, so MSD(t) = 6 D t
    exactly in expectation. ``frame_atoms`` sulfur atoms stay put (a rigid
    frame, like the host lattice of a Li conductor). Positions are unwrapped.
    """
    rng = np.random.default_rng(seed)
    cell = np.eye(3) * cell if np.ndim(cell) == 0 else np.asarray(cell, dtype=float)
    start = rng.uniform(size=(n_atoms + frame_atoms, 3)) @ cell
    steps = rng.normal(scale=np.sqrt(2 * D_A2_ps * dt_ps), size=(n_frames - 1, n_atoms, 3))
    moves = np.concatenate([np.zeros((1, n_atoms, 3)), np.cumsum(steps, axis=0)])
    moves = np.concatenate([moves, np.zeros((n_frames, frame_atoms, 3))], axis=1)
    return Trajectory(
        positions=start[None] + moves,
        cell=cell,
        numbers=np.array([3] * n_atoms + [16] * frame_atoms),
        times_ps=dt_ps * np.arange(n_frames),
        metadata={"producer": "brownian_trajectory", "D_A2_ps": D_A2_ps, "seed": seed},
    )


class BrownianSimulator:
    """A toy :class:`~explorer.session.Simulator`: independent random walks.

    Every atom of an element listed in ``D_A2_ps`` takes Gaussian steps of
    variance 2 D Δt per Cartesian direction each step; the rest stay put. It
    has the known answer MSD = 6 D t, which makes it the reference for testing
    rollouts and UIs without a trained model. ``delay_s`` slows each step down
    (to test cancelling), and ``fail_at_step`` raises SimulationDiverged there.
    """

    def __init__(self, delay_s: float = 0.0, fail_at_step: int | None = None) -> None:
        self.delay_s = delay_s
        self.fail_at_step = fail_at_step

    def prepare(
        self,
        atoms,
        D_A2_ps: dict[str, float] | None = None,
        step_ps: float = 1.0,
        seed: int = 0,
    ) -> dict:
        symbols = np.asarray(atoms.get_chemical_symbols())
        rates = D_A2_ps if D_A2_ps is not None else {"Li": 0.1}
        D = np.array([rates.get(s, 0.0) for s in symbols])
        return {
            "positions": atoms.get_positions(),
            "time_ps": 0.0,
            "step": 0,
            "sigma": np.sqrt(2.0 * D * step_ps)[:, None],
            "step_ps": step_ps,
            "rng": np.random.default_rng(seed),
        }

    def step(self, state: dict) -> dict:
        import time

        from explorer.errors import SimulationDiverged

        if self.delay_s:
            time.sleep(self.delay_s)
        step = state["step"] + 1
        if self.fail_at_step is not None and step == self.fail_at_step:
            raise SimulationDiverged(f"toy divergence at step {step}", step=step)
        noise = state["rng"].normal(size=state["positions"].shape) * state["sigma"]
        return {
            **state,
            "positions": state["positions"] + noise,
            "time_ps": state["time_ps"] + state["step_ps"],
            "step": step,
        }

    def frame(self, state: dict):
        from explorer.session import Frame

        return Frame(
            positions=state["positions"].copy(),
            time_ps=state["time_ps"],
            observables={"step": float(state["step"])},
        )
