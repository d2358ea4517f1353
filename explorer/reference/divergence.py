"""Cheap checks that stop a blown-up MD run early, with a reason a person can act on.

Two levels, so that the per-step cost stays negligible:

* every step, :func:`nonfinite_reason` looks for NaN/inf in positions, momenta and
  the calculator's cached forces and energy (a sum per array, no copies);
* every frame, :func:`frame_reason` adds the closest interatomic distance
  (periodic images included), the potential-energy change per atom since the
  start of MD, and the instantaneous temperature.

Each returns ``None`` when all is well, else a one-line reason.
"""

from __future__ import annotations

import math

import numpy as np
from ase import Atoms
from ase.neighborlist import neighbor_list


def nonfinite_reason(atoms: Atoms) -> str | None:
    """Why the state of ``atoms`` is not finite, or None."""
    calc = atoms.calc
    results = getattr(calc, "results", {}) if calc is not None else {}
    # The calculator first: a NaN force is the cause, NaN momenta its consequence.
    arrays = {
        "forces": results.get("forces"),
        "energy": results.get("energy"),
        "positions": atoms.arrays["positions"],
        "momenta": atoms.arrays.get("momenta"),
    }
    for name, value in arrays.items():
        # inf - inf = nan, so one sum catches both without a boolean temporary.
        if value is not None and not math.isfinite(float(np.sum(value))):
            return f"non-finite {name} (NaN or inf)"
    return None


def closest_pair(atoms: Atoms, cutoff: float) -> tuple[float, int, int] | None:
    """(distance Å, i, j) of the closest pair within ``cutoff``, periodic images included."""
    if cutoff <= 0 or len(atoms) < 1:
        return None
    try:
        from vesin import NeighborList

        i, j, d = NeighborList(cutoff=cutoff, full_list=False).compute(
            atoms.positions, atoms.cell[:], np.asarray(atoms.pbc), quantities="ijd"
        )
    except Exception:  # vesin missing or refusing this cell: ASE is slower but general
        i, j, d = neighbor_list("ijd", atoms, cutoff)
    if len(d) == 0:
        return None
    k = int(np.argmin(d))
    return float(d[k]), int(i[k]), int(j[k])


def frame_reason(
    atoms: Atoms,
    *,
    min_distance_A: float,
    reference_energy_per_atom: float,
    max_energy_change_eV_per_atom: float,
    target_temperature_K: float,
    max_temperature_factor: float,
) -> str | None:
    """Why the frame in ``atoms`` is a blow-up, or None.

    Energy: |E_pot/N − E_ref/N| > ``max_energy_change_eV_per_atom``, with E_ref the
    potential energy when MD started (after minimisation). A rise means an
    explosion, a fall an MLIP "hole" (atoms collapsing into an unphysical
    minimum); both are far beyond physics at these bounds (heating a solid to
    5000 K adds ~0.65 eV/atom of potential energy).
    Temperature: T > ``max_temperature_factor`` × target.
    """
    reason = nonfinite_reason(atoms)
    if reason:
        return reason
    pair = closest_pair(atoms, min_distance_A)
    if pair is not None:
        d, i, j = pair
        symbols = atoms.get_chemical_symbols()
        image = "a periodic image of " if i == j else ""
        return (
            f"atoms {i} ({symbols[i]}) and {image}{j} ({symbols[j]}) are {d:.3f} Å apart, "
            f"closer than min_distance_A = {min_distance_A} Å"
        )
    n = len(atoms)
    energy = atoms.get_potential_energy() / n
    change = energy - reference_energy_per_atom
    if abs(change) > max_energy_change_eV_per_atom:
        return (
            f"potential energy changed by {change:+.3g} eV/atom since the start of MD "
            f"(bound ±{max_energy_change_eV_per_atom} eV/atom)"
        )
    temperature = atoms.get_temperature()
    if temperature > max_temperature_factor * target_temperature_K:
        return (
            f"temperature {temperature:.0f} K exceeds {max_temperature_factor:g} × the target "
            f"{target_temperature_K:g} K"
        )
    return None
