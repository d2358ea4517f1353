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
