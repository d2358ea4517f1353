"""The MD protocol as one validated, immutable value (units in every field name)."""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, fields
from typing import Any

from explorer.errors import MDConfigError

ENSEMBLES = ("nvt", "nve", "langevin")
MAX_TEMPERATURE_K = 5000.0
MAX_TIMESTEP_FS = 10.0
# Bounds that only decide when a run is declared diverged; changing them does not
# change the trajectory, so a run may be resumed with other values.
CHECK_FIELDS = frozenset(
    {"min_distance_A", "max_energy_change_eV_per_atom", "max_temperature_factor"}
)
# production_ps may grow on resume (continue a finished run for longer).
RESUMABLE_FIELDS = CHECK_FIELDS | {"production_ps"}


@dataclass(frozen=True)
class MDConfig:
    """Reference-MD protocol. Defaults follow LiFlow §IV.2 and Geodite.

    Attributes:
        temperature_K: target (NVT, Langevin) or initial (NVE) temperature, K.
        ensemble: production dynamics: ``"nvt"`` (Nosé–Hoover chain; LiFlow asks for
            a velocity-scaling thermostat), ``"nve"`` (velocity Verlet; FlashMD) or
            ``"langevin"`` (velocity randomising; lowers diffusivities, LiFlow [51]).
        timestep_fs: integration time step, fs (LiFlow 1 fs, AIMD of LPS 2 fs).
        production_ps: recorded time after equilibration, ps (LiFlow: 25 ps). The
            number of frame intervals is floor(steps / every). May grow on resume:
            a finished run then continues; bitwise as if run at once only when its
            old end was a regular checkpoint (e.g. ``checkpoint_every = 1``).
        equilibration_ps: unrecorded time before production, ps; rounded up to a
            whole number of frame intervals.
        every: steps between frames (LiFlow records every 10 steps).
        seed: seeds the Maxwell–Boltzmann velocities (``default_rng(seed)``) and
            the Langevin noise (``default_rng([seed, 1])``).
        equilibration_ensemble: dynamics during equilibration; None = ``ensemble``.
            For NVE production at a temperature, equilibrate with ``"nvt"``.
        nhc_chain: Nosé–Hoover chain length (Geodite: 10).
        nhc_tdamp_steps: thermostat damping time in time steps (Geodite and ASE
            recommend 100 × dt).
        nhc_tloop: Suzuki–Yoshida sub-steps of the chain integration.
        langevin_friction_per_ps: Langevin friction γ, 1/ps (weak: 1/ps).
        minimize: relax positions with FIRE before MD (LiFlow minimises).
        minimize_fmax: convergence threshold, eV/Å.
        minimize_steps: maximum optimiser steps.
        relax_cell: relax the cell too (FrechetCellFilter).
        exact_initial_temperature: rescale the drawn velocities to exactly T.
        record_momenta: store momenta (amu·Å/ps); None = only for ``"nve"``.
        record_velocities: store velocities (Å/ps).
        checkpoint_every: frames between restart checkpoints. Each costs one extra
            force evaluation (the calculator is reset so that a resume is exact)
            and ~4 ms of HDF5 writing; at ``every = 10`` a checkpoint per frame
            would add 10 % to an MLIP run, one per 10 frames adds 1 % and a crash
            then redoes at most 9 frames.
        min_distance_A: closest allowed interatomic distance, Å.
        max_energy_change_eV_per_atom: allowed |ΔE_pot| per atom since MD start.
        max_temperature_factor: allowed instantaneous T / target.
    """

    temperature_K: float
    ensemble: str = "nvt"
    timestep_fs: float = 2.0
    production_ps: float = 25.0
    equilibration_ps: float = 2.0
    every: int = 10
    seed: int = 0
    equilibration_ensemble: str | None = None
    nhc_chain: int = 10
    nhc_tdamp_steps: float = 100.0
    nhc_tloop: int = 1
    langevin_friction_per_ps: float = 1.0
    minimize: bool = True
    minimize_fmax: float = 0.05
    minimize_steps: int = 500
    relax_cell: bool = False
    exact_initial_temperature: bool = True
    record_momenta: bool | None = None
    record_velocities: bool = False
    checkpoint_every: int = 10
    min_distance_A: float = 0.5
    max_energy_change_eV_per_atom: float = 2.0
    max_temperature_factor: float = 5.0

    def __post_init__(self) -> None:
        _validate(self)
        if self.record_momenta is None:
            object.__setattr__(self, "record_momenta", self.ensemble == "nve")

    # -- derived quantities ------------------------------------------------
    @property
    def frame_interval_fs(self) -> float:
        return self.every * self.timestep_fs

    @property
    def n_equilibration_steps(self) -> int:
        """Equilibration steps, a multiple of ``every`` (rounded up)."""
        steps = _steps(self.equilibration_ps, self.timestep_fs)
        return self.every * math.ceil(steps / self.every)

    @property
    def n_frames(self) -> int:
        """Planned frames, including frame 0 at t = 0."""
        return _steps(self.production_ps, self.timestep_fs) // self.every + 1

    @property
    def n_production_steps(self) -> int:
        return (self.n_frames - 1) * self.every

    @property
    def n_total_steps(self) -> int:
        return self.n_equilibration_steps + self.n_production_steps

    def ensemble_at(self, step: int) -> str:
        """The ensemble integrating from global step ``step`` to ``step + 1``."""
        if step < self.n_equilibration_steps and self.equilibration_ensemble is not None:
            return self.equilibration_ensemble
        return self.ensemble

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def differences(self, stored: dict[str, Any], ignore: frozenset[str]) -> list[str]:
        """Fields (not in ``ignore``) whose value differs from ``stored``, as text."""
        return [
            f"{f.name}: file {stored.get(f.name)!r}, now {getattr(self, f.name)!r}"
            for f in fields(self)
            if f.name not in ignore and stored.get(f.name) != getattr(self, f.name)
        ]


def _steps(ps: float, timestep_fs: float) -> int:
    # round, not floor: 0.1 ps / 0.5 fs must give 200 steps despite float error.
    return round(ps * 1000.0 / timestep_fs)


def _validate(c: MDConfig) -> None:
    _number(c, "temperature_K", 0.0, MAX_TEMPERATURE_K, "K")
    _number(c, "timestep_fs", 0.0, MAX_TIMESTEP_FS, "fs")
    _number(c, "production_ps", 0.0, math.inf, "ps")
    _number(c, "equilibration_ps", 0.0, math.inf, "ps", allow_zero=True)
    for name in ("every", "nhc_chain", "nhc_tloop", "minimize_steps", "checkpoint_every"):
        _integer(c, name, minimum=1)
    _integer(c, "seed", minimum=0)
    _number(c, "nhc_tdamp_steps", 0.0, math.inf, "time steps")
    _number(c, "langevin_friction_per_ps", 0.0, math.inf, "1/ps")
    _number(c, "minimize_fmax", 0.0, math.inf, "eV/Å")
    _number(c, "min_distance_A", 0.0, math.inf, "Å", allow_zero=True)
    _number(c, "max_energy_change_eV_per_atom", 0.0, math.inf, "")
    _number(c, "max_temperature_factor", 1.0, math.inf, "")
    for name in ("minimize", "relax_cell", "exact_initial_temperature", "record_velocities"):
        if not isinstance(getattr(c, name), bool):
            raise MDConfigError(f"{name} must be True or False; got {getattr(c, name)!r}")
    if c.record_momenta is not None and not isinstance(c.record_momenta, bool):
        raise MDConfigError(f"record_momenta must be True, False or None; got {c.record_momenta!r}")
    for name in ("ensemble", "equilibration_ensemble"):
        value = getattr(c, name)
        if not (value in ENSEMBLES or (name == "equilibration_ensemble" and value is None)):
            raise MDConfigError(f"{name} must be one of {', '.join(ENSEMBLES)}; got {value!r}")
    if _steps(c.production_ps, c.timestep_fs) < c.every:
        raise MDConfigError(
            f"production_ps = {c.production_ps} ps is shorter than one frame interval "
            f"(every = {c.every} steps × {c.timestep_fs} fs)"
        )
    if c.relax_cell and not c.minimize:
        raise MDConfigError("relax_cell needs minimize=True")


def _number(
    c: MDConfig, name: str, low: float, high: float, unit: str, allow_zero: bool = False
) -> None:
    value = getattr(c, name)
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    ok = ok and math.isfinite(value) and (value >= low if allow_zero else value > low)
    ok = ok and value <= high
    if not ok:
        lower = "[" if allow_zero else "("
        upper = f"{high:g}]" if math.isfinite(high) else "∞)"
        raise MDConfigError(f"{name} must be in {lower}{low:g}, {upper} {unit}; got {value!r}")
    object.__setattr__(c, name, float(value))  # numpy floats → float, for JSON and equality


def _integer(c: MDConfig, name: str, minimum: int) -> None:
    value = getattr(c, name)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise MDConfigError(f"{name} must be an integer ≥ {minimum}; got {value!r}")
    object.__setattr__(c, name, int(value))  # numpy integers → int, for JSON and equality
