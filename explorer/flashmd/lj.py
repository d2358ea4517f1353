"""A vectorised Lennard-Jones calculator, term for term ASE's ``LennardJones(smooth=True)``.

ASE's :class:`ase.calculators.lj.LennardJones` loops over atoms in Python: 28 ms per force
call for 256 argon atoms on one core of our CI machine, which would make the FlashMD argon
benchmark (App H: ten 1-fs NVE runs) cost most of the CPU budget. This class computes the
same function with one neighbour list (vesin, a C++ cell list) and numpy array operations:

    u(r) = 4 ε [(σ/r)¹² − (σ/r)⁶] · f_c(r²),
    f_c(x) = 1 (x < r_o²),  (r_c² − x)² (r_c² + 2x − 3 r_o²) / (r_c² − r_o²)³ (r_o² ≤ x < r_c²),
    0 beyond,

the smooth switch ASE takes from JAX-MD, so energies and forces agree with ASE to rounding
(checked in ``tests/flashmd``). Units: ε in eV, σ, r_o, r_c in Å, energies eV, forces eV/Å.
Only ``energy``, ``free_energy``, ``energies`` and ``forces`` are implemented (no stress:
our NVE/NVT runs are at fixed cell).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes

from explorer.errors import CalculatorError

__all__ = ["FastLennardJones"]


class FastLennardJones(Calculator):
    """Smoothly cut Lennard-Jones pair potential (module docstring).

    Args:
        epsilon: well depth ε, eV.
        sigma: σ, Å.
        rc: cutoff r_c, Å (default 3σ, as ASE).
        ro: onset of the switch r_o, Å (default 0.66 r_c, as ASE).
    """

    implemented_properties: ClassVar[list[str]] = ["energy", "free_energy", "energies", "forces"]
    nolabel = True

    def __init__(
        self,
        epsilon: float = 1.0,
        sigma: float = 1.0,
        rc: float | None = None,
        ro: float | None = None,
    ) -> None:
        super().__init__()
        self.epsilon = float(epsilon)
        self.sigma = float(sigma)
        self.rc = float(rc) if rc is not None else 3.0 * self.sigma
        self.ro = float(ro) if ro is not None else 0.66 * self.rc
        if not (self.epsilon > 0 and self.sigma > 0 and 0 < self.ro < self.rc):
            raise CalculatorError(
                f"need epsilon > 0, sigma > 0 and 0 < ro < rc; got ε={epsilon}, σ={sigma}, "
                f"ro={self.ro}, rc={self.rc}"
            )
        from vesin import NeighborList

        # Half list: every pair once, energies and forces are then symmetric sums.
        self._neighbors = NeighborList(cutoff=self.rc, full_list=False)

    def describe(self) -> str:
        """One line for metadata and model cards."""
        return (
            f"FastLennardJones(epsilon={self.epsilon:g} eV, sigma={self.sigma:g} Å, "
            f"rc={self.rc:g} Å, ro={self.ro:g} Å; = ase LennardJones(smooth=True))"
        )

    def calculate(
        self,
        atoms: Atoms | None = None,
        properties: list[str] | None = None,
        system_changes: list[str] = all_changes,
    ) -> None:
        super().calculate(atoms, properties, system_changes)
        assert self.atoms is not None
        energies, forces = self.energies_forces(self.atoms)
        self.results["energies"] = energies
        self.results["energy"] = self.results["free_energy"] = float(energies.sum())
        self.results["forces"] = forces

    def energies_forces(self, atoms: Atoms) -> tuple[np.ndarray, np.ndarray]:
        """Per-atom energies (N,) in eV (half of each pair to each atom), forces (N, 3) eV/Å."""
        n = len(atoms)
        i, j, d = self._neighbors.compute(
            np.asarray(atoms.positions, dtype=np.float64),
            np.asarray(atoms.cell.array, dtype=np.float64),
            np.asarray(atoms.pbc, dtype=bool),
            quantities="ijD",
        )
        r2 = np.einsum("ek,ek->e", d, d)
        rc2, ro2 = self.rc**2, self.ro**2
        c6 = (self.sigma**2 / r2) ** 3
        c12 = c6 * c6
        pair_energy = 4.0 * self.epsilon * (c12 - c6)
        # du/d(d_ij) / r: the LJ radial derivative divided by r (ASE's "general derivative").
        du = -24.0 * self.epsilon * (2.0 * c12 - c6) / r2
        inside = r2 >= ro2
        fc = np.ones_like(r2)
        dfc = np.zeros_like(r2)
        x = r2[inside]
        fc[inside] = (rc2 - x) ** 2 * (rc2 + 2.0 * x - 3.0 * ro2) / (rc2 - ro2) ** 3
        dfc[inside] = 6.0 * (rc2 - x) * (ro2 - x) / (rc2 - ro2) ** 3
        beyond = r2 >= rc2
        fc[beyond] = 0.0
        dfc[beyond] = 0.0
        du = fc * du + 2.0 * dfc * pair_energy
        pair_energy = pair_energy * fc
        pair_force = du[:, None] * d  # force on i from j points along d = r_j − r_i
        # bincount with weights: several times faster than np.add.at for scatter-adds.
        half = 0.5 * pair_energy
        energies = np.bincount(i, half, minlength=n) + np.bincount(j, half, minlength=n)
        forces = np.stack(
            [
                np.bincount(i, pair_force[:, k], minlength=n)
                - np.bincount(j, pair_force[:, k], minlength=n)
                for k in range(3)
            ],
            axis=1,
        )
        return energies, forces
