"""Reference MD runner: minimise, thermalise, equilibrate, produce, resumably.

What it reproduces (LiFlow §IV.2, Geodite methods): minimise the supercell,
draw Maxwell–Boltzmann velocities at the target temperature, run NVT with a
Nosé–Hoover chain (10 links, damping 100 × dt) and record unwrapped positions
every ``every`` steps (LiFlow: every 10 steps). NVE velocity Verlet (FlashMD,
with momenta recorded) and Langevin are the other ensembles.

Output: one H5MD file (:mod:`explorer.h5md`) that grows frame by frame. Frame 0
is the state at the end of equilibration, at t = 0 ps; frame k is at
t = k · every · dt. Observables per frame: potential, kinetic and total energy
(eV), temperature (K) and, for NVT, the Nosé–Hoover conserved energy (eV).

Resuming: the file's restart group holds the exact state (float64 positions
and momenta, thermostat chain, Langevin RNG, step) at the last checkpoint.
Running the same call again continues from it and yields frames bitwise equal
to an uninterrupted run. For that the calculator is reset at every checkpoint
(both in the original and in the resumed run): calculators with neighbour lists
and skins (EMT, LJ, many MLIPs) otherwise carry history that changes forces at
the 1e-15 level, which chaotic dynamics amplifies. The cost is one extra force
evaluation per checkpoint, hence checkpoints every ``checkpoint_every`` frames
(default 10: +1 % force evaluations at ``every = 10``; a crash loses at most 9
frames, which the resumed run recomputes identically).
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator
from tqdm import tqdm  # not tqdm.auto: this package imports no notebook UI

from explorer.errors import MDConfigError, SimulationDiverged
from explorer.h5md import H5MDWriter
from explorer.reference.config import MDConfig
from explorer.reference.divergence import frame_reason, nonfinite_reason
from explorer.reference.dynamics import (
    build_integrator,
    capture_state,
    restore_atoms,
    restore_integrator,
    set_initial_momenta,
    to_per_ps,
)
from explorer.reference.minimize import minimize
from explorer.reference.provenance import (
    PRODUCER,
    ExistingRun,
    check_resumable,
    inspect_existing,
    run_metadata,
    utc_now,
)

Callback = Callable[[int, Atoms], None]
RESTART_FORMAT = 1


@dataclass(frozen=True)
class MDResult:
    """What a call of :func:`run_md` did.

    ``status`` is ``"complete"`` (a divergence raises instead); ``n_frames`` counts
    the frames in the file, ``steps_done`` all integration steps including
    equilibration, ``simulated_ps`` the production time covered by the frames,
    ``wall_time_s`` this call only.
    """

    path: Path
    status: str
    n_frames: int
    steps_done: int
    simulated_ps: float
    wall_time_s: float
    resumed: bool


def run_md(
    atoms: Atoms,
    calculator: Calculator,
    config: MDConfig,
    out_path: str | Path,
    calculator_info: dict[str, Any] | None = None,
    *,
    resume: bool = True,
    progress: bool = True,
    callback: Callback | None = None,
) -> MDResult:
    """Run (or continue) reference MD of ``atoms`` and write it to ``out_path`` (H5MD).

    Args:
        atoms: the starting structure (not modified); ``info['material']`` and
            ``info['supercell']`` go into the metadata when present.
        calculator: any ASE calculator; it is reset at every checkpoint.
        config: the protocol, see :class:`MDConfig`.
        out_path: the H5MD file; created, or continued when it holds a run of
            the same protocol and ``resume`` is true.
        calculator_info: name, version, model... of the calculator, stored as
            metadata and checked on resume (the name must match).
        resume: continue an existing file from its last checkpoint. False
            starts over and overwrites it (only if it is an H5MD file).
        progress: show a tqdm bar with ETA on stderr.
        callback: ``callback(frame_index, atoms)`` after each frame is saved.

    Raises:
        SimulationDiverged: NaN, atoms closer than ``min_distance_A``, energy or
            temperature runaway; earlier frames stay in the file.
        ResumeError: the file holds another run (different protocol, atoms or
            calculator) or frames without a restart state.
        MDConfigError: bad arguments.
    """
    if not isinstance(config, MDConfig):
        raise MDConfigError(f"config must be an MDConfig, not {type(config).__name__}")
    if not isinstance(atoms, Atoms) or len(atoms) == 0:
        raise MDConfigError("atoms must be a non-empty ase.Atoms")
    if atoms.constraints:
        raise MDConfigError("atoms carry constraints; the reference runner supports none")
    info = dict(calculator_info or {"name": type(calculator).__name__})
    out_path = Path(out_path)
    existing = inspect_existing(out_path)
    work = atoms.copy()
    work.calc = calculator
    run = _Run(work, config, out_path, info, callback)
    if resume and existing is not None and existing.restart is not None:
        done = run.resume(existing)
        if done is not None:
            return done
    else:
        if resume and existing is not None:
            check_resumable(existing, config, info)  # raises if frames would be lost
        run.start_fresh()
    return run.execute(progress)


class _Run:
    """One call's worth of MD: the atoms, integrator, writer and counters."""

    def __init__(
        self,
        atoms: Atoms,
        config: MDConfig,
        path: Path,
        calculator_info: dict[str, Any],
        callback: Callback | None,
    ) -> None:
        self.atoms = atoms
        self.config = config
        self.path = path
        self.calculator_info = calculator_info
        self.callback = callback
        self.n_eq = config.n_equilibration_steps
        self.n_total = config.n_total_steps
        self.step = 0
        self.resumed = False
        self.previous_wall_s = 0.0
        self.clock = time.perf_counter()
        self.writer: H5MDWriter | None = None
        self.dyn: Any = None
        self.reference_energy = 0.0  # eV/atom at the start of MD
        self.start_positions = np.zeros((len(atoms), 3))

    # -- setting up -------------------------------------------------------
    def start_fresh(self) -> None:
        """Minimise, draw velocities, open a new file and checkpoint step 0."""
        _reset(self.atoms.calc)
        report = None
        if self.config.minimize:
            report = minimize(
                self.atoms,
                self.config.minimize_fmax,
                self.config.minimize_steps,
                self.config.relax_cell,
            )
        cfg = self.config
        set_initial_momenta(self.atoms, cfg.temperature_K, cfg.seed, cfg.exact_initial_temperature)
        self.reference_energy = self.atoms.get_potential_energy() / len(self.atoms)
        self.start_positions = self.atoms.get_positions()
        self.dyn = build_integrator(cfg.ensemble_at(0), self.atoms, cfg)
        metadata = run_metadata(self.atoms, cfg, self.calculator_info, report)
        self.writer = self._open_writer("w", metadata)

    def _first_save(self) -> None:
        """Check the starting state, then save it (and frame 0 if there is no equilibration)."""
        self._check_frame()
        with _interrupts_deferred():
            if self.n_eq == 0:
                self._append_frame()
            self._checkpoint()
        if self.n_eq == 0 and self.callback is not None:
            self.callback(0, self.atoms)

    def resume(self, existing: ExistingRun) -> MDResult | None:
        """Restore the saved state; return a result at once if nothing is left to do."""
        cfg = self.config
        check_resumable(existing, cfg, self.calculator_info)
        state = existing.restart or {}
        self.resumed = True
        self.step = int(state["step"])
        self.previous_wall_s = float(existing.metadata.get("wall_time_s", 0.0))
        restore_atoms(self.atoms, state)
        if self.step >= self.n_total and existing.n_frames >= int(state["n_frames"]):
            if existing.metadata.get("status") != "complete":  # stopped after its last save
                self._open_writer("a", {"status": "complete"}).close()
            return self._result("complete", existing.n_frames)
        self.reference_energy = float(state["reference_energy_per_atom"])
        self.start_positions = np.asarray(state["start_positions"], dtype=np.float64)
        n_saved = int(state["n_frames"])
        self.dyn = build_integrator(cfg.ensemble_at(self.step), self.atoms, cfg)
        restore_integrator(self.dyn, state)
        _reset(self.atoms.calc)
        updates = {
            "status": "running",
            "resumed_at": utc_now(),
            "md_config": cfg.to_dict(),
            "n_production_steps": cfg.n_production_steps,
            "planned_frames": cfg.n_frames,
        }
        if n_saved == 0:
            # Nothing but metadata and the restart state to keep: H5MDWriter(mode="a")
            # recreates a file without frames, so rewrite both at once.
            with _interrupts_deferred():
                self.writer = self._open_writer("w", {**existing.metadata, **updates})
                self.writer.write_restart({k: v for k, v in state.items() if k != "n_frames"})
        else:
            self.writer = self._open_writer("a", updates)
            if self.writer.n_frames > n_saved:  # frames after the checkpoint: redo them
                self.writer.truncate(n_saved)
        return None

    def _open_writer(self, mode: str, metadata: dict[str, Any]) -> H5MDWriter:
        return H5MDWriter(
            self.path,
            self.atoms.numbers,
            self.atoms.cell[:],
            self.atoms.pbc,
            metadata=metadata,
            mode=mode,
            masses=self.atoms.get_masses(),
            expected_frames=self.config.n_frames,
        )

    # -- running ----------------------------------------------------------
    def execute(self, progress: bool) -> MDResult:
        """Integrate to the end, keeping the file valid whatever happens."""
        assert self.writer is not None
        bar = tqdm(
            total=self.n_total,
            initial=self.step,
            desc=f"MD {self.atoms.get_chemical_formula()}",
            unit="step",
            disable=not progress,
            file=sys.stderr,
            dynamic_ncols=True,
        )
        try:
            if not self.resumed:
                self._first_save()
            while self.step < self.n_total:
                self._advance_block()
                bar.set_postfix_str(self._postfix(), refresh=False)
                bar.update(self.config.every)
            self.writer.update_metadata(
                status="complete", finished_at=utc_now(), wall_time_s=self._wall_total()
            )
            return self._result("complete", self.writer.n_frames)
        except SimulationDiverged:
            raise
        except BaseException:
            with contextlib.suppress(Exception):
                self.writer.update_metadata(status="interrupted", wall_time_s=self._wall_total())
            raise
        finally:
            bar.close()
            self.writer.close()

    def _advance_block(self) -> None:
        """``every`` steps, checks, then the frame and/or checkpoint they call for."""
        cfg = self.config
        for _ in range(cfg.every):
            self.dyn.step()
            self.step += 1
            reason = nonfinite_reason(self.atoms)
            if reason:
                self._diverge(reason)
        self._check_frame()
        if self.step == self.n_eq and cfg.ensemble_at(self.step) != cfg.ensemble_at(0):
            self.dyn = build_integrator(cfg.ensemble_at(self.step), self.atoms, cfg)
        is_frame = self.step >= self.n_eq
        with _interrupts_deferred():
            if is_frame:
                self._append_frame()
            if self._checkpoint_due():
                self._checkpoint()
        if is_frame and self.callback is not None:
            assert self.writer is not None
            self.callback(self.writer.n_frames - 1, self.atoms)

    def _checkpoint_due(self) -> bool:
        block = self.step // self.config.every
        return block % self.config.checkpoint_every == 0 or self.step in (self.n_eq, self.n_total)

    def _check_frame(self) -> None:
        cfg = self.config
        reason = frame_reason(
            self.atoms,
            min_distance_A=cfg.min_distance_A,
            reference_energy_per_atom=self.reference_energy,
            max_energy_change_eV_per_atom=cfg.max_energy_change_eV_per_atom,
            target_temperature_K=cfg.temperature_K,
            max_temperature_factor=cfg.max_temperature_factor,
        )
        if reason:
            self._diverge(reason)

    def _append_frame(self) -> None:
        """Append the current state as a frame (unwrapped Å; ps since production start)."""
        assert self.writer is not None
        atoms, cfg = self.atoms, self.config
        production_step = self.step - self.n_eq
        epot = float(atoms.get_potential_energy())
        ekin = float(atoms.get_kinetic_energy())
        energies = {
            "potential_energy": epot,
            "kinetic_energy": ekin,
            "total_energy": epot + ekin,
            "temperature": float(atoms.get_temperature()),
        }
        if cfg.ensemble == "nvt":
            energies["conserved_energy"] = (
                epot + ekin + self.dyn._thermostat.get_thermostat_energy()
            )
        self.writer.append(
            # ASE integrators never wrap positions; these are the unwrapped ones.
            atoms.get_positions(wrap=False),
            production_step * cfg.timestep_fs / 1000.0,
            step=production_step,
            velocities=to_per_ps(atoms.get_velocities()) if cfg.record_velocities else None,
            momenta=to_per_ps(atoms.get_momenta()) if cfg.record_momenta else None,
            energies=energies,
        )

    def _checkpoint(self) -> None:
        """Save the exact state, then reset the calculator (see the module docstring)."""
        assert self.writer is not None
        state = capture_state(self.dyn, self.atoms)
        state.update(
            format=RESTART_FORMAT,
            step=self.step,
            phase="production" if self.step >= self.n_eq else "equilibration",
            ensemble=self.config.ensemble_at(self.step),
            reference_energy_per_atom=float(self.reference_energy),
            start_positions=self.start_positions,
        )
        self.writer.write_restart(state)
        _reset(self.atoms.calc)

    def _diverge(self, reason: str) -> None:
        assert self.writer is not None
        cfg = self.config
        if self.step >= self.n_eq:
            t = (self.step - self.n_eq) * cfg.timestep_fs / 1000.0
            where = f"production step {self.step - self.n_eq} (t = {t:.4g} ps)"
        else:
            t = self.step * cfg.timestep_fs / 1000.0
            where = f"equilibration step {self.step} ({t:.4g} ps into equilibration)"
            t = t - self.n_eq * cfg.timestep_fs / 1000.0
        message = (
            f"MD diverged at {where}: {reason}. The {self.writer.n_frames} frames before it "
            f"are kept in {self.path}. Try a smaller timestep_fs (now {cfg.timestep_fs} fs), "
            "check the structure and the calculator, then start over with resume=False."
        )
        self.writer.update_metadata(
            status=f"diverged: {reason}",
            diverged_message=message,
            diverged_step=self.step,
            wall_time_s=self._wall_total(),
        )
        raise SimulationDiverged(
            message,
            reason=reason,
            step=self.step,
            time_ps=t,
            frames_written=self.writer.n_frames,
            path=str(self.path),
        )

    # -- reporting --------------------------------------------------------
    def _postfix(self) -> str:
        dt_ps = self.config.timestep_fs / 1000.0
        if self.step >= self.n_eq:
            where = f"production t={(self.step - self.n_eq) * dt_ps:.2f} ps"
        else:
            where = f"equilibration {self.step * dt_ps:.2f}/{self.n_eq * dt_ps:.2f} ps"
        return f"{where} T={self.atoms.get_temperature():.0f} K"

    def _wall_total(self) -> float:
        return self.previous_wall_s + time.perf_counter() - self.clock

    def _result(self, status: str, n_frames: int) -> MDResult:
        production = max(0, min(self.step, self.n_total) - self.n_eq) if n_frames else 0
        return MDResult(
            path=self.path,
            status=status,
            n_frames=n_frames,
            steps_done=self.step,
            simulated_ps=production * self.config.timestep_fs / 1000.0,
            wall_time_s=time.perf_counter() - self.clock,
            resumed=self.resumed,
        )


def _reset(calc: Calculator | None) -> None:
    if calc is not None and hasattr(calc, "reset"):
        calc.reset()


@contextlib.contextmanager
def _interrupts_deferred() -> Iterator[None]:
    """Hold Ctrl-C while a frame and its checkpoint are written, then deliver it.

    A KeyboardInterrupt between deleting and rewriting the restart group would
    leave a file that cannot be resumed. Only the main thread can set handlers;
    elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received and previous is not signal.SIG_IGN:
            if callable(previous):
                previous(signal.SIGINT, None)  # Python's default handler raises KeyboardInterrupt
            else:
                raise KeyboardInterrupt


__all__ = ["PRODUCER", "MDConfig", "MDResult", "run_md"]
