"""FlashMD inference-time filters and thermostat half-steps (FlashMD App A.4, C, D).

All functions are pure: numpy arrays in ASE units (Å, amu, eV, momenta amu·Å/t_ASE with
t_ASE = Å·√(amu/eV) ≈ 10.18 fs), an explicit ``numpy.random.Generator`` where random.

* :func:`energy_rescale_factor` — App C, eq. 7: after a step, momenta are scaled by
  α = √(1 − (E' − E) / K') so the total energy equals its value before the step
  (E, E' total energies before/after, K' kinetic energy after).
* :func:`random_rotation` — App A.4: a Haar-random rotation (optionally with inversion)
  applied to q, p and the cell before the model and undone after. Our PaiNN backbone is
  E(3)-equivariant, so this filter changes results only at rounding level; it exists for
  parity with the paper's knobs and for non-equivariant models.
* :func:`langevin_half_step` — the O part of OBABO (App D, eq. 9) over half a stride:
  p ← c p + √(m k_B T (1 − c²)) ξ with c = exp(−Δτ / (2 τ_L)), τ_L = 1/γ.
* :func:`bussi_half_step` — the stochastic velocity rescaling of Bussi, Donadio &
  Parrinello (J. Chem. Phys. 126, 014101, 2007, eq. A7) over half a stride: the kinetic
  energy K follows its exact Ornstein–Uhlenbeck-like update towards K̄ = N_f k_B T / 2 with
  time constant τ, and all momenta are scaled by one factor.
"""

from __future__ import annotations

import math

import numpy as np
from ase import units

from explorer.errors import SimulationDiverged

__all__ = [
    "bussi_half_step",
    "energy_rescale_factor",
    "kinetic_energy_ase",
    "langevin_half_step",
    "random_rotation",
]


def kinetic_energy_ase(momenta: np.ndarray, masses: np.ndarray) -> float:
    """Σ p² / 2m in eV for ASE momenta and masses in amu."""
    return float(0.5 * np.sum(momenta * momenta / masses[:, None]))


#: Above this kinetic temperature (K) a prediction has blown up rather than drifted.
BLOWN_UP_K = 1.0e5


def energy_rescale_factor(
    energy_before: float, energy_after: float, kinetic_after: float, n_atoms: int | None = None
) -> float:
    """α of FlashMD eq. 7 (all energies in eV).

    ``n_atoms`` (optional) only makes the failure message quote per-atom energies and the
    kinetic temperature of the prediction (3 k_B T / 2 per atom), so that a blown-up
    step reads as one instead of as two huge, nearly equal numbers.

    Raises:
        SimulationDiverged: the step gained more energy than its kinetic energy can give
            back (1 − ΔE / K' ≤ 0), or a value is not finite.
    """
    if not (math.isfinite(energy_before) and math.isfinite(energy_after) and kinetic_after > 0):
        raise SimulationDiverged(
            "energy-conservation filter: non-finite energy or zero kinetic energy after the "
            "step; the model left its training domain (try a checkpoint with a smaller stride)",
            reason="energy filter",
        )
    radicand = 1.0 - (energy_after - energy_before) / kinetic_after
    if radicand <= 0.0:
        raise SimulationDiverged(
            _unrescalable(energy_after - energy_before, kinetic_after, n_atoms),
            reason="energy filter",
        )
    return math.sqrt(radicand)


def _unrescalable(gain: float, kinetic_after: float, n_atoms: int | None) -> str:
    """Why eq. 7 has no real α: ``gain`` (eV) exceeds the kinetic energy (eV) after the step."""
    advice = "(try a checkpoint with a smaller stride)"
    if not n_atoms:
        return (
            f"energy-conservation filter: the step gained {gain:.3g} eV, more than the "
            f"kinetic energy {kinetic_after:.3g} eV it could rescale; the prediction is "
            f"unphysical {advice}"
        )
    temperature = 2.0 * kinetic_after / (3.0 * n_atoms * units.kB)
    if temperature > BLOWN_UP_K:
        return (
            f"energy-conservation filter: the prediction blew up (predicted kinetic "
            f"temperature {temperature:.2g} K, energy gain {gain / n_atoms:.2g} eV per atom) "
            f"{advice}"
        )
    return (
        f"energy-conservation filter: the step gained {gain / n_atoms:.3g} eV per atom, more "
        f"than the predicted kinetic energy ({kinetic_after / n_atoms:.3g} eV per atom, "
        f"{temperature:.0f} K) it could rescale; the prediction is unphysical {advice}"
    )


def random_rotation(rng: np.random.Generator, inversion: bool = True) -> np.ndarray:
    """A Haar-random 3×3 orthogonal matrix (det −1 with probability ½ if ``inversion``)."""
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))  # makes the QR factor Haar-distributed
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    if inversion and rng.random() < 0.5:
        q = -q
    return q


def langevin_half_step(
    momenta: np.ndarray,
    masses: np.ndarray,
    temperature_K: float,
    time_constant_fs: float,
    half_stride_fs: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Exact Ornstein–Uhlenbeck propagation of the momenta over ``half_stride_fs`` (eq. 9)."""
    c = math.exp(-half_stride_fs / time_constant_fs)
    sigma = np.sqrt(masses * units.kB * temperature_K * (1.0 - c * c))[:, None]
    return c * momenta + sigma * rng.standard_normal(momenta.shape)


def bussi_half_step(
    momenta: np.ndarray,
    masses: np.ndarray,
    temperature_K: float,
    time_constant_fs: float,
    half_stride_fs: float,
    rng: np.random.Generator,
    degrees_of_freedom: int | None = None,
) -> np.ndarray:
    """Stochastic velocity rescaling over ``half_stride_fs`` (Bussi et al. 2007, eq. A7).

    ``degrees_of_freedom`` N_f defaults to 3N − 3 (total momentum is conserved).
    """
    n_f = degrees_of_freedom if degrees_of_freedom is not None else 3 * len(masses) - 3
    kinetic = kinetic_energy_ase(momenta, masses)
    if kinetic <= 0.0 or n_f < 1:
        return momenta
    target = 0.5 * n_f * units.kB * temperature_K
    c = math.exp(-half_stride_fs / time_constant_fs)
    r1 = rng.standard_normal()
    # Σ_{i=2}^{N_f} R_i² is χ² with N_f − 1 degrees of freedom.
    rest = 2.0 * rng.standard_gamma(0.5 * (n_f - 1)) if n_f > 1 else 0.0
    new_kinetic = (
        c * kinetic
        + (1.0 - c) * target * (r1 * r1 + rest) / n_f
        + 2.0 * r1 * math.sqrt(c * (1.0 - c) * target * kinetic / n_f)
    )
    # The positive root; the velocity-reversing root of Bussi's appendix matters only
    # when the thermostat nearly freezes the system in one half-step.
    return math.sqrt(max(new_kinetic, 0.0) / kinetic) * momenta
