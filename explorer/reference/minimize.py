"""Geometry minimisation before MD (LiFlow §IV.2: "building a supercell ... and
minimizing the structure" before NVT).

FIRE (Bitzek et al., PRL 97, 170201, 2006) rather than BFGS: it only needs
forces, tolerates the rough energy surfaces of ML potentials and unphysical
starting geometries, and is what MLIP packages (CHGNet's StructOptimizer, MACE)
use by default. With ``relax_cell`` the cell relaxes too, through ASE's
``FrechetCellFilter`` (stress in the log-deformation metric, so the cell and
the positions converge to the same ``fmax``).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import numpy as np
from ase import Atoms
from ase.filters import FrechetCellFilter
from ase.optimize import FIRE

from explorer.errors import SimulationDiverged


@dataclass(frozen=True)
class MinimizeReport:
    """Outcome of a minimisation (energies in eV, fmax in eV/Å)."""

    converged: bool
    steps: int
    fmax: float
    energy_before_eV: float
    energy_after_eV: float
    relax_cell: bool
    wall_time_s: float

    def as_dict(self) -> dict:
        return asdict(self)


def minimize(atoms: Atoms, fmax: float, steps: int, relax_cell: bool = False) -> MinimizeReport:
    """Relax ``atoms`` in place (positions, and the cell if ``relax_cell``).

    ``atoms`` must carry a calculator. Not converging within ``steps`` is not an
    error (MLIP surfaces can creep); the report says so and the run's metadata
    keeps it. A non-finite energy or position afterwards raises
    :class:`SimulationDiverged`.
    """
    start = time.perf_counter()
    energy_before = float(atoms.get_potential_energy())
    target = FrechetCellFilter(atoms) if relax_cell else atoms
    optimizer = FIRE(target, logfile=None)
    converged = bool(optimizer.run(fmax=fmax, steps=steps))
    energy_after = float(atoms.get_potential_energy())
    forces = target.get_forces()
    if not (math.isfinite(energy_after) and np.all(np.isfinite(atoms.positions))):
        raise SimulationDiverged(
            f"minimisation diverged: energy {energy_after} eV after {optimizer.nsteps} steps",
            reason="non-finite energy or positions during minimisation",
            step=0,
        )
    return MinimizeReport(
        converged=converged,
        steps=int(optimizer.nsteps),
        fmax=float(np.sqrt((forces**2).sum(axis=1).max())) if len(forces) else 0.0,
        energy_before_eV=energy_before,
        energy_after_eV=energy_after,
        relax_cell=relax_cell,
        wall_time_s=time.perf_counter() - start,
    )
