"""The energy model of a FlashMD checkpoint: V(q) from a reference calculator, K(p), E = V + K.

FlashMD uses an energy model twice: to pick the best weights during training (App B.2, the
energy RMSE of predicted states) and in the energy-conservation filter (App C). Ours is
the reference calculator the training data came from (LJ for argon, EMT for Al), named in
the model card under ``energy_model``. Units: eV, Å, amu, momenta amu·Å/fs.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms, units
from ase.calculators.calculator import Calculator

from explorer.errors import CalculatorError

__all__ = ["EV_PER_AMU_A2_FS2", "EnergyModel", "kinetic_energy"]

# 1 amu·Å²/fs² in eV (= 1 / units.fs², units.fs being one fs in ASE time units): ≈ 103.6.
EV_PER_AMU_A2_FS2 = 1.0 / units.fs**2


def kinetic_energy(momenta: np.ndarray, masses: np.ndarray) -> float:
    """K = Σ p² / 2m in eV, p in amu·Å/fs, m in amu."""
    p = np.asarray(momenta, dtype=np.float64)
    m = np.asarray(masses, dtype=np.float64)[:, None]
    return float(0.5 * np.sum(p * p / m) * EV_PER_AMU_A2_FS2)


class EnergyModel:
    """Potential energy of structures with a fixed cell (one calculator, reused).

    Args:
        name: ``"argon"`` (the FlashMD LJ argon potential), ``"al110"`` or ``"emt"``
            (ASE EMT), ``"lj"`` (ASE LJ defaults), or any :func:`make_calculator` name.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.calculator = _calculator(name)

    def potential(self, numbers: np.ndarray, positions: np.ndarray, cell: np.ndarray, pbc) -> float:
        """V(q) in eV."""
        atoms = Atoms(numbers=numbers, positions=positions, cell=cell, pbc=pbc)
        atoms.calc = self.calculator
        try:
            return float(atoms.get_potential_energy())
        except (RuntimeError, ValueError) as exc:
            raise CalculatorError(f"energy model {self.name!r} failed: {exc}") from exc

    def potential_of(self, atoms: Atoms) -> float:
        """V of an ASE Atoms (positions as they are), eV."""
        return self.potential(atoms.numbers, atoms.positions, atoms.cell.array, atoms.pbc)

    def total(
        self,
        numbers: np.ndarray,
        positions: np.ndarray,
        momenta: np.ndarray,
        masses: np.ndarray,
        cell: np.ndarray,
        pbc,
    ) -> float:
        """E = V(q) + K(p) in eV (momenta amu·Å/fs)."""
        return self.potential(numbers, positions, cell, pbc) + kinetic_energy(momenta, masses)


def _calculator(name: str) -> Calculator:
    from explorer.flashmd.systems import SYSTEMS, system_calculator

    if name in SYSTEMS:
        return system_calculator(name)
    from explorer.reference.calculators import make_calculator

    return make_calculator(name, device="cpu")
