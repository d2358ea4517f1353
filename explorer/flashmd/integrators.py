"""FlashMD integrators as ASE ``MolecularDynamics`` subclasses (FlashMD §3, App C, App D).

Used like ASE's own integrators::

    dyn = FlashMDLangevin(atoms, model=model, temperature_K=300, time_constant_fs=100)
    dyn.attach(observer, interval=1)
    dyn.run(100)                      # 100 strides of model.config.stride_fs each

* :class:`FlashMDVerlet` — NVE: one model call replaces Δτ / δt velocity-Verlet steps.
* :class:`FlashMDLangevin` — OBABO (eq. 9–10): a Langevin O half-step over Δτ/2, the
  FlashMD step as the BAB core, another O half-step.
* :class:`FlashMDBussi` — the same splitting with stochastic velocity rescaling (SVR).

Options shared by all: ``energy_conservation`` rescales the momenta after the FlashMD core
so that V + K equals its value before the core (App C, eq. 7; one energy evaluation per
step, the previous V is reused), with ``energy_model`` (an
:class:`~explorer.flashmd.energy.EnergyModel` or a name); ``random_rotation`` applies the
App A.4 filter. ``timestep`` (ASE time units) defaults to the checkpoint's stride, and any
other value raises :class:`~explorer.errors.MDConfigError`: a FlashMD model only knows
its own stride. The thermostat time constant is in fs; randomness comes from ``rng``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from ase import Atoms, units
from ase.md.md import MolecularDynamics

from explorer.errors import MDConfigError, SimulationDiverged, UnknownElementError
from explorer.flashmd.energy import EnergyModel
from explorer.flashmd.filters import (
    bussi_half_step,
    energy_rescale_factor,
    kinetic_energy_ase,
    langevin_half_step,
    random_rotation,
)
from explorer.flashmd.model import FlashMDModel

__all__ = ["FlashMDBussi", "FlashMDLangevin", "FlashMDVerlet"]


class FlashMDVerlet(MolecularDynamics):
    """NVE FlashMD (module docstring).

    Args:
        atoms: the system; momenta are taken as they are (set them first).
        model: a trained :class:`FlashMDModel`.
        timestep: ASE time units; default (and only allowed value) the model's stride.
        energy_conservation: apply the App C filter.
        energy_model: the energy model of the filter (instance or name).
        random_rotation: apply the App A.4 filter.
        rng: numpy Generator (rotations, thermostat noise).
        **kwargs: passed to ``MolecularDynamics`` (trajectory, logfile, loginterval...).
    """

    def __init__(
        self,
        atoms: Atoms,
        model: FlashMDModel,
        timestep: float | None = None,
        *,
        energy_conservation: bool = False,
        energy_model: EnergyModel | str | None = None,
        random_rotation: bool = False,
        rng: np.random.Generator | None = None,
        **kwargs: Any,
    ) -> None:
        stride_fs = float(model.config.stride_fs)
        if timestep is None:
            timestep = stride_fs * units.fs
        if not math.isclose(timestep / units.fs, stride_fs, rel_tol=1e-6):
            raise MDConfigError(
                f"time step {timestep / units.fs:g} fs is not the stride of this FlashMD "
                f"checkpoint ({stride_fs:g} fs); a FlashMD model only predicts its own stride "
                "— pick a checkpoint trained for the stride you want"
            )
        super().__init__(atoms, timestep, **kwargs)
        known = set(model.config.elements)
        unknown = sorted(set(atoms.numbers.tolist()) - known)
        if unknown:
            from ase.data import chemical_symbols

            names = ", ".join(chemical_symbols[z] for z in unknown)
            vocabulary = ", ".join(chemical_symbols[z] for z in sorted(known))
            raise UnknownElementError(
                f"element(s) {names} not in this FlashMD checkpoint's vocabulary ({vocabulary})"
            )
        self.model = model.eval()
        self.stride_fs = stride_fs
        if energy_conservation and energy_model is None:
            raise MDConfigError("energy_conservation needs an energy_model")
        if isinstance(energy_model, str):
            energy_model = EnergyModel(energy_model)
        self.energy_model = energy_model
        self.energy_conservation = bool(energy_conservation)
        self.random_rotation = bool(random_rotation)
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self.potential_energy: float | None = None  # V at the current positions, eV
        param = next(model.parameters())
        self._device, self._dtype = param.device, param.dtype

    def _refresh_properties(self) -> None:
        """ASE calls this after every step to cache forces; FlashMD needs none (and the
        atoms need no calculator), so nothing is computed here."""

    # -- the FlashMD core (B A B of OBABO) -------------------------------------------
    def flashmd_core(self) -> None:
        """Advance the atoms by one stride with the model (+ energy filter)."""
        atoms = self.atoms
        masses = atoms.get_masses()
        energy_before = None
        if self.energy_conservation:
            assert self.energy_model is not None
            if self.potential_energy is None:
                self.potential_energy = self.energy_model.potential_of(atoms)
            energy_before = self.potential_energy + kinetic_energy_ase(atoms.get_momenta(), masses)
        dq, p_new = self._predict(atoms, masses)
        if not (np.all(np.isfinite(dq)) and np.all(np.isfinite(p_new))):
            raise SimulationDiverged(
                "FlashMD predicted non-finite positions or momenta: the state left the "
                "model's training domain (try a checkpoint with a smaller stride, a "
                "thermostat, or the energy-conservation filter)",
                reason="non-finite prediction",
            )
        # On a failure below the atoms keep the last good state (positions and momenta).
        old_positions, old_potential = atoms.get_positions(), self.potential_energy
        atoms.set_positions(old_positions + dq, apply_constraint=False)
        try:
            if self.energy_model is not None:
                self.potential_energy = self.energy_model.potential_of(atoms)
            if energy_before is not None and self.potential_energy is not None:
                kinetic = kinetic_energy_ase(p_new, masses)
                total_after = self.potential_energy + kinetic
                alpha = energy_rescale_factor(energy_before, total_after, kinetic, len(atoms))
                p_new = alpha * p_new
        except SimulationDiverged:
            atoms.set_positions(old_positions, apply_constraint=False)
            self.potential_energy = old_potential
            raise
        atoms.set_momenta(p_new, apply_constraint=False)

    def _predict(self, atoms: Atoms, masses: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Model call in its units (fs): returns Δq (Å) and p' in ASE momentum units."""
        positions = atoms.get_positions()
        momenta = atoms.get_momenta() * units.fs  # amu·Å/t_ASE → amu·Å/fs
        cell = atoms.cell.array.copy()
        rotation = random_rotation(self.rng) if self.random_rotation else None
        if rotation is not None:  # row vectors: x → x Rᵀ
            positions, momenta, cell = (
                positions @ rotation.T,
                momenta @ rotation.T,
                cell @ rotation.T,
            )

        def t(x: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(x, dtype=self._dtype, device=self._device)

        with torch.no_grad():
            dq, p_new = self.model.predict(
                torch.as_tensor(atoms.numbers, device=self._device),
                t(positions),
                t(momenta),
                t(masses),
                t(cell),
                pbc=torch.as_tensor(atoms.pbc, device=self._device),
            )
        dq = dq.double().cpu().numpy()
        p_new = p_new.double().cpu().numpy()
        if rotation is not None:
            dq, p_new = dq @ rotation, p_new @ rotation
        return dq, p_new / units.fs

    def step(self) -> None:
        """One NVE stride."""
        self.flashmd_core()


class _Thermostatted(FlashMDVerlet):
    """OBABO-type splitting: thermostat half-stride, FlashMD core, thermostat half-stride."""

    def __init__(
        self,
        atoms: Atoms,
        model: FlashMDModel,
        timestep: float | None = None,
        *,
        temperature_K: float,
        time_constant_fs: float = 100.0,
        **kwargs: Any,
    ) -> None:
        if not (math.isfinite(temperature_K) and temperature_K > 0):
            raise MDConfigError(f"temperature must be > 0 K, got {temperature_K!r}")
        if not (math.isfinite(time_constant_fs) and time_constant_fs > 0):
            raise MDConfigError(f"time constant must be > 0 fs, got {time_constant_fs!r}")
        super().__init__(atoms, model, timestep, **kwargs)
        self.temperature_K = float(temperature_K)
        self.time_constant_fs = float(time_constant_fs)

    #: The thermostat's update of the momenta over a time span (subclasses set it):
    #: ``(momenta, masses, temperature_K, time_constant_fs, span_fs, rng) -> momenta``.
    half_step: Callable[..., np.ndarray]

    def thermostat_half_step(self) -> None:
        atoms = self.atoms
        p = type(self).half_step(
            atoms.get_momenta(),
            atoms.get_masses(),
            self.temperature_K,
            self.time_constant_fs,
            0.5 * self.stride_fs,
            self.rng,
        )
        atoms.set_momenta(p, apply_constraint=False)

    def step(self) -> None:
        self.thermostat_half_step()
        self.flashmd_core()
        self.thermostat_half_step()


class FlashMDLangevin(_Thermostatted):
    """OBABO Langevin with FlashMD as the BAB core (App D, eq. 9); γ = 1 / time_constant."""

    half_step = staticmethod(langevin_half_step)


class FlashMDBussi(_Thermostatted):
    """Stochastic velocity rescaling (Bussi et al. 2007) half-strides around FlashMD."""

    half_step = staticmethod(bussi_half_step)
