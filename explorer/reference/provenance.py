"""What a reference-MD file says about how it was made, and whether it can be continued.

The metadata (``parameters/`` of the H5MD file) holds everything needed to
reproduce a run: the protocol (:class:`MDConfig` as ``md_config`` plus the
headline fields flat), the calculator's name and version, the integrators and
their parameters, the material and supercell, the minimisation outcome, the
software versions and the run's status and wall time.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import ase
import h5py
from ase import Atoms

from explorer import __version__
from explorer.errors import ResumeError, SimulationDiverged, TrajectoryFileError
from explorer.h5md import h5md_frame_count, read_metadata_from, read_restart
from explorer.reference.config import RESUMABLE_FIELDS, MDConfig
from explorer.reference.dynamics import thermostat_description
from explorer.reference.minimize import MinimizeReport

PRODUCER = "explorer.reference.md.run_md"
UNITS = {
    "positions": "Angstrom (unwrapped)",
    "time": "ps since the start of production",
    "momenta": "amu Angstrom / ps",
    "velocities": "Angstrom / ps",
    "energies": "eV",
    "temperature": "K",
}


@dataclass(frozen=True)
class ExistingRun:
    """An H5MD file found at the output path."""

    path: Path
    metadata: dict[str, Any]
    restart: dict[str, Any] | None
    n_frames: int


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _version(package: str) -> str | None:
    try:
        return importlib_metadata.version(package)
    except importlib_metadata.PackageNotFoundError:
        return None


def run_metadata(
    atoms: Atoms,
    config: MDConfig,
    calculator_info: dict[str, Any],
    minimization: MinimizeReport | None,
) -> dict[str, Any]:
    """Metadata of a new run (``atoms`` as MD starts: minimised, with velocities)."""
    versions = {
        "accelmd-explorer": __version__,
        "ase": ase.__version__,
        "numpy": _version("numpy"),
        "h5py": _version("h5py"),
        "torch": _version("torch"),  # from package metadata: importing torch is slow
        "python": platform.python_version(),
    }
    eq_ensemble = config.equilibration_ensemble or config.ensemble
    supercell = atoms.info.get("supercell")
    return {
        "producer": PRODUCER,
        "status": "running",
        "started_at": utc_now(),
        "wall_time_s": 0.0,
        "md_config": config.to_dict(),
        "ensemble": config.ensemble,
        "equilibration_ensemble": eq_ensemble,
        "thermostat": thermostat_description(config.ensemble, config),
        "equilibration_thermostat": thermostat_description(eq_ensemble, config),
        "temperature_K": config.temperature_K,
        "timestep_fs": config.timestep_fs,
        "frame_interval_fs": config.frame_interval_fs,
        "every": config.every,
        "seed": config.seed,
        "n_equilibration_steps": config.n_equilibration_steps,
        "n_production_steps": config.n_production_steps,
        "planned_frames": config.n_frames,
        "initial_velocities": (
            "Maxwell-Boltzmann from numpy default_rng(seed), zero total momentum"
            + (", rescaled to exactly temperature_K" if config.exact_initial_temperature else "")
        ),
        "calculator": calculator_info,
        "material": atoms.info.get("material"),
        "supercell": list(supercell) if supercell is not None else None,
        "formula": atoms.get_chemical_formula(),
        "n_atoms": len(atoms),
        "minimization": minimization.as_dict() if minimization else None,
        "versions": versions,
        "explorer_version": __version__,
        "ase_version": ase.__version__,
        "torch_version": versions["torch"],
        "units": UNITS,
    }


def inspect_existing(path: Path) -> ExistingRun | None:
    """The run already at ``path``, None if there is no file.

    Raises:
        TrajectoryFileError: the file exists but is not HDF5/H5MD (never overwritten).
    """
    if not path.exists():
        return None
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise TrajectoryFileError(
            f"{path}: exists but is not a readable HDF5 file ({exc}); not overwriting it. "
            "Delete it or choose another output path."
        ) from exc
    with f:
        if "h5md" not in f:
            raise TrajectoryFileError(f"{path}: exists and is not an H5MD file; not overwriting")
        metadata = read_metadata_from(f)
        has_frames = "particles/all/position/value" in f
    n_frames = h5md_frame_count(path) if has_frames else 0
    return ExistingRun(path, metadata, read_restart(path), n_frames)


def check_resumable(existing: ExistingRun, config: MDConfig, calculator_info: dict) -> None:
    """Raise unless ``existing`` is a run of this protocol that may be continued."""
    path, meta = existing.path, existing.metadata
    start_over = "delete the file or pass resume=False to start over"
    if meta.get("producer") != PRODUCER:
        raise ResumeError(f"{path}: not written by run_md; {start_over}")
    if existing.restart is None:
        if existing.n_frames > 0:
            raise ResumeError(f"{path}: holds frames but no restart state; {start_over}")
        return
    differences = config.differences(meta.get("md_config", {}), RESUMABLE_FIELDS)
    if differences:
        raise ResumeError(
            f"{path}: holds a run with other settings ({'; '.join(differences)}); "
            f"use another output path, or {start_over}"
        )
    stored_name = (meta.get("calculator") or {}).get("name")
    if stored_name != calculator_info.get("name"):
        raise ResumeError(
            f"{path}: was run with calculator {stored_name!r}, not "
            f"{calculator_info.get('name')!r}; {start_over}"
        )
    status = str(meta.get("status", ""))
    if status.startswith("diverged"):
        raise SimulationDiverged(
            meta.get("diverged_message", f"{path}: this run diverged earlier ({status})"),
            reason=status.removeprefix("diverged: "),
            step=meta.get("diverged_step"),
            frames_written=existing.n_frames,
            path=str(path),
        )
