"""FlashMD behind the session protocol (``prepare`` / ``step`` / ``frame``, explorer.session).

One protocol step is one FlashMD stride, done by an integrator of
:mod:`explorer.flashmd.integrators` chosen by the knobs:

* ``thermostat``: ``"none"`` (NVE), ``"langevin"`` (OBABO) or ``"bussi"`` (SVR);
* ``temperature_K``: thermostat target, and the temperature of the Maxwell–Boltzmann
  momenta drawn (seeded, zero total momentum) when the atoms carry none;
* ``time_constant_fs``: thermostat time constant (100 fs);
* ``energy_conservation``: the App C filter (on by default, as in the paper's runs);
* ``random_rotation``: the App A.4 filter (off: the backbone is equivariant);
* ``stride_fs``: optional; must equal the checkpoint's stride (else MDConfigError);
* ``seed``: seeds momenta, thermostat noise and rotations.

After each stride the state is checked: non-finite values, two atoms closer than
``min_distance_A``, a temperature above ``max_temperature_factor`` × the reference, or
one atom whose kinetic energy exceeds ``max_atom_kinetic_kT`` × k_B × the reference (a
model pumping energy into a single atom, which the energy filter's global momentum
rescaling hides from the temperature for a few strides) raise
:class:`~explorer.errors.SimulationDiverged`. The reference temperature is the larger of
the thermostat target and the initial temperature (NVE: the initial one), so cooling a
hot structure with a thermostat is not read as a blow-up. The
Rollout keeps the frames produced before it. The integrator mutates the ASE Atoms of the
state in place (ASE's design), so ``step`` returns the same state object.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ase import Atoms, units
from ase.md.velocitydistribution import Stationary, thermalize_momenta

from explorer.checkpoints import CHECKPOINT_DIR, CheckpointError, load_checkpoint
from explorer.device import resolve_device
from explorer.errors import MDConfigError, SimulationDiverged
from explorer.flashmd.energy import EnergyModel
from explorer.flashmd.integrators import FlashMDBussi, FlashMDLangevin, FlashMDVerlet
from explorer.flashmd.model import FlashMDConfig, FlashMDModel
from explorer.neighbors import radius_graph
from explorer.session import Frame

__all__ = ["THERMOSTATS", "FlashMDSimulator", "FlashMDState"]

THERMOSTATS = ("none", "langevin", "bussi")
PS_PER_FS = 1e-3


@dataclass
class FlashMDState:
    """A FlashMD rollout: the atoms (positions Å, ASE momenta), integrator, step count."""

    atoms: Atoms
    dynamics: FlashMDVerlet
    reference_temperature_K: float
    step: int = 0

    @property
    def time_ps(self) -> float:
        return self.step * self.dynamics.stride_fs * PS_PER_FS


class FlashMDSimulator:
    """The FlashMD family of the Simulator protocol (module docstring).

    Args:
        model: a trained :class:`FlashMDModel`.
        energy_model: name of its energy model (for the filter and the energy observables);
            None disables both.
        name: checkpoint name used in messages.
        recommended_knobs: knob defaults measured to work for this checkpoint (the card's
            ``recommended_knobs``, e.g. ``{"energy_conservation": false}``); front ends use
            them when the user sets nothing.
        min_distance_A, max_temperature_factor, max_atom_kinetic_kT: divergence criteria
            (module docstring). In equilibrium one atom's kinetic energy exceeds 50 k_B T
            with probability ~1e-21 per atom and frame, so the default flags only runaways.
    """

    def __init__(
        self,
        model: FlashMDModel,
        energy_model: str | None = None,
        name: str = "custom",
        recommended_knobs: dict[str, Any] | None = None,
        min_distance_A: float = 0.5,
        max_temperature_factor: float = 5.0,
        max_atom_kinetic_kT: float = 50.0,
    ) -> None:
        self.model = model.eval()
        self.recommended_knobs = dict(recommended_knobs or {})
        self.energy_model_name = energy_model
        self.name = name
        self.min_distance_A = float(min_distance_A)
        self.max_temperature_factor = float(max_temperature_factor)
        self.max_atom_kinetic_kT = float(max_atom_kinetic_kT)

    @property
    def stride_fs(self) -> float:
        return float(self.model.config.stride_fs)

    @property
    def time_step_ps(self) -> float:
        return self.stride_fs * PS_PER_FS

    @classmethod
    def from_checkpoint(
        cls, name_or_path: str | Path, device: str = "auto", directory: Path = CHECKPOINT_DIR
    ) -> FlashMDSimulator:
        """Build the model of a ``family: "flashmd"`` card and load its weights (strict)."""
        ckpt = load_checkpoint(name_or_path, directory)
        if ckpt.family != "flashmd":
            raise CheckpointError(f"{ckpt.name}: family {ckpt.family!r} is not 'flashmd'")
        if "flashmd" not in ckpt.state_dicts:
            raise CheckpointError(f"{ckpt.name}: the weights hold no 'flashmd' module")
        model = FlashMDModel(FlashMDConfig(**ckpt.card["model"]))
        try:
            model.load_state_dict(ckpt.state_dicts["flashmd"], strict=True)
        except RuntimeError as exc:
            raise CheckpointError(f"{ckpt.name}: weights do not match the card ({exc})") from exc
        model.to(resolve_device(device))
        return cls(
            model,
            ckpt.card.get("energy_model"),
            name=ckpt.name,
            recommended_knobs=ckpt.card.get("recommended_knobs"),
        )

    # -- protocol --------------------------------------------------------------------
    def prepare(
        self,
        atoms: Atoms,
        temperature_K: float = 300.0,
        thermostat: str = "none",
        time_constant_fs: float = 100.0,
        energy_conservation: bool = True,
        random_rotation: bool = False,
        stride_fs: float | None = None,
        seed: int = 0,
        device: str | None = None,
    ) -> FlashMDState:
        """Initial state; knobs in the module docstring."""
        if thermostat not in THERMOSTATS:
            raise MDConfigError(f"thermostat must be one of {THERMOSTATS}, got {thermostat!r}")
        if not (math.isfinite(temperature_K) and temperature_K > 0):
            raise MDConfigError(f"temperature must be a finite number > 0 K, got {temperature_K}")
        if device is not None:
            self.model.to(resolve_device(device))
        atoms = atoms.copy()
        rng = np.random.default_rng(seed)
        if not np.any(atoms.get_momenta()):
            thermalize_momenta(atoms, temperature_K=temperature_K, rng=rng)
            Stationary(atoms)
        energy = None
        if self.energy_model_name is not None:
            energy = EnergyModel(self.energy_model_name)
        elif energy_conservation:
            raise MDConfigError(f"{self.name}: no energy model in the card; switch the filter off")
        timestep = None if stride_fs is None else float(stride_fs) * units.fs
        common: dict[str, Any] = {
            "energy_conservation": energy_conservation,
            "energy_model": energy,
            "random_rotation": random_rotation,
            "rng": rng,
        }
        dynamics: FlashMDVerlet
        if thermostat == "none":
            dynamics = FlashMDVerlet(atoms, self.model, timestep, **common)
            reference = float(atoms.get_temperature()) or temperature_K
        else:
            # A thermostat cooling a hotter start must not read as a blow-up.
            reference = max(temperature_K, float(atoms.get_temperature()))
            cls = FlashMDLangevin if thermostat == "langevin" else FlashMDBussi
            dynamics = cls(
                atoms,
                self.model,
                timestep,
                temperature_K=temperature_K,
                time_constant_fs=time_constant_fs,
                **common,
            )
        if energy is not None:
            dynamics.potential_energy = energy.potential_of(atoms)
        return FlashMDState(atoms, dynamics, reference)

    def step(self, state: FlashMDState) -> FlashMDState:
        """One stride; raises SimulationDiverged on a blow-up (module docstring)."""
        state.dynamics.run(1)
        state.step += 1
        reason = self._divergence(state.atoms, state.reference_temperature_K)
        if reason:
            raise SimulationDiverged(
                f"FlashMD ({self.name}, stride {self.stride_fs:g} fs) diverged at step "
                f"{state.step} (t = {state.time_ps:g} ps): {reason}. Try a checkpoint with a "
                "smaller stride, a thermostat, or the energy-conservation filter",
                reason=reason,
                step=state.step,
                time_ps=state.time_ps,
            )
        return state

    def frame(self, state: FlashMDState) -> Frame:
        """Positions (Å), velocities (Å/ps), temperature (K) and energies (eV)."""
        atoms = state.atoms
        kinetic = float(atoms.get_kinetic_energy())
        observables = {"temperature": float(atoms.get_temperature()), "kinetic_energy": kinetic}
        potential = state.dynamics.potential_energy
        if potential is not None:
            observables["potential_energy"] = potential
            observables["total_energy"] = potential + kinetic
        return Frame(
            positions=atoms.get_positions(),
            time_ps=state.time_ps,
            observables=observables,
            velocities=atoms.get_velocities() * (1000.0 * units.fs),
        )

    # -- internals -------------------------------------------------------------------
    def _divergence(self, atoms: Atoms, reference_K: float) -> str:
        positions, momenta = atoms.get_positions(), atoms.get_momenta()
        if not (np.all(np.isfinite(positions)) and np.all(np.isfinite(momenta))):
            return "non-finite positions or momenta"
        temperature = float(atoms.get_temperature())
        if temperature > self.max_temperature_factor * reference_K:
            return (
                f"kinetic-energy blow-up: T = {temperature:.0f} K > "
                f"{self.max_temperature_factor:g} × {reference_K:.0f} K"
            )
        atom_kinetic = 0.5 * np.sum(momenta**2, axis=1) / atoms.get_masses()
        hottest = int(np.argmax(atom_kinetic))
        kT = units.kB * reference_K
        if atom_kinetic[hottest] > self.max_atom_kinetic_kT * kT:
            return (
                f"atom {hottest} ({atoms.get_chemical_symbols()[hottest]}) carries "
                f"{atom_kinetic[hottest]:.2f} eV of kinetic energy = "
                f"{atom_kinetic[hottest] / kT:.0f} k_B T at {reference_K:.0f} K (bound "
                f"{self.max_atom_kinetic_kT:g} k_B T): the model is pumping energy into one atom"
            )
        close = radius_graph(
            torch.as_tensor(positions),
            torch.as_tensor(atoms.cell.array),
            self.min_distance_A,
            pbc=torch.as_tensor(atoms.pbc),
        )
        if close.num_edges:
            i, j = (int(v) for v in close.edge_index[:, 0])
            return (
                f"atoms {i} and {j} are {float(close.distances[0]):.3f} Å apart "
                f"(minimum {self.min_distance_A:g} Å)"
            )
        return ""
