"""ASE integrators for the reference MD and their exact, restartable state.

Units: ASE internal units (Å, eV, amu, ASE time = Å·sqrt(amu/eV) ≈ 10.18 fs);
``PS`` converts picoseconds to ASE time. Frames leave this module in Å/ps and
amu·Å/ps (see :func:`to_per_ps`).

Ensembles (choices and sources):

* ``"nvt"``: Nosé–Hoover chain (``ase.md.nose_hoover_chain.NoseHooverChainNVT``,
  Martyna–Klein–Tuckerman 1992). LiFlow (§IV.2) asks for a velocity-scaling
  thermostat, because velocity-randomising ones (Langevin, Andersen) decorrelate
  velocities and lower diffusivities; Geodite uses 10 chain links and a damping
  time of 100 × the time step, our defaults.
* ``"nve"``: velocity Verlet (``ase.md.verlet.VelocityVerlet``), for FlashMD.
* ``"langevin"``: ``ase.md.langevin.Langevin`` (Vanden-Eijnden–Ciccotti), with the
  centre of mass held by ``ase.constraints.FixCom``: without it the whole cell
  random-walks with D = kT / (M_total γ), tenths of Å²/ps for ~100 atoms at γ = 1/ps,
  which would pollute every MSD.

A restart state is a flat dict (arrays and scalars, see ``H5MDWriter.write_restart``)
that reproduces the run bit for bit: float64 positions and momenta, the cell,
the chain variables of the Nosé–Hoover thermostat and the bit-generator state of
the Langevin noise.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np
from ase import Atoms, units
from ase.constraints import FixCom
from ase.md.langevin import Langevin
from ase.md.md import MolecularDynamics
from ase.md.nose_hoover_chain import NoseHooverChainNVT
from ase.md.velocitydistribution import Stationary, force_temperature
from ase.md.verlet import VelocityVerlet

from explorer.errors import ResumeError

if TYPE_CHECKING:
    from explorer.reference.config import MDConfig

PS = 1000.0 * units.fs  # one picosecond in ASE time units
# The Langevin noise gets its own stream, independent of the initial velocities.
_NOISE_STREAM = 1


def to_per_ps(value: np.ndarray) -> np.ndarray:
    """ASE velocities (Å/ASE-time) or momenta (amu·Å/ASE-time) → per ps."""
    return np.asarray(value, dtype=np.float64) * PS


def thermostat_description(ensemble: str, config: MDConfig) -> dict[str, Any]:
    """Name and parameters of the integrator of ``ensemble``, for metadata."""
    if ensemble == "nvt":
        return {
            "name": "NoseHooverChainNVT",
            "module": "ase.md.nose_hoover_chain",
            "tchain": config.nhc_chain,
            "tdamp_fs": config.nhc_tdamp_steps * config.timestep_fs,
            "tdamp_steps": config.nhc_tdamp_steps,
            "tloop": config.nhc_tloop,
        }
    if ensemble == "langevin":
        return {
            "name": "Langevin",
            "module": "ase.md.langevin",
            "friction_per_ps": config.langevin_friction_per_ps,
            "fixcm": "ase.constraints.FixCom",
            "noise_seed": [config.seed, _NOISE_STREAM],
        }
    return {"name": "VelocityVerlet", "module": "ase.md.verlet"}


def set_initial_momenta(atoms: Atoms, temperature_K: float, seed: int, exact: bool) -> None:
    """Maxwell–Boltzmann momenta at ``temperature_K`` with zero total momentum.

    Draws from ``np.random.default_rng(seed)``; ``exact`` rescales to exactly
    ``temperature_K`` (ASE's 3N-degree-of-freedom temperature) after removing the
    centre-of-mass motion, so that short runs start where they should.
    """
    rng = np.random.default_rng(seed)
    try:  # ASE >= 3.29 renamed MaxwellBoltzmannDistribution (same draw)
        from ase.md.velocitydistribution import thermalize_momenta
    except ImportError:  # pragma: no cover - older ASE
        from ase.md.velocitydistribution import MaxwellBoltzmannDistribution as legacy

        legacy(atoms, temperature_K=temperature_K, rng=rng)
    else:
        thermalize_momenta(atoms, temperature_K, rng=rng)
    Stationary(atoms, preserve_temperature=True)
    if exact:
        force_temperature(atoms, temperature_K, unit="K")


def build_integrator(ensemble: str, atoms: Atoms, config: MDConfig) -> MolecularDynamics:
    """A fresh integrator for ``ensemble`` on ``atoms`` (whose momenta must be set)."""
    dt = config.timestep_fs * units.fs
    # Constraints are ours alone: FixCom for Langevin, none otherwise.
    atoms.set_constraint(FixCom() if ensemble == "langevin" else None)
    if ensemble == "nvt":
        return NoseHooverChainNVT(
            atoms,
            timestep=dt,
            temperature_K=config.temperature_K,
            tdamp=config.nhc_tdamp_steps * dt,
            tchain=config.nhc_chain,
            tloop=config.nhc_tloop,
        )
    if ensemble == "nve":
        return VelocityVerlet(atoms, timestep=dt)
    if ensemble == "langevin":
        return Langevin(
            atoms,
            timestep=dt,
            temperature_K=config.temperature_K,
            friction=config.langevin_friction_per_ps / PS,
            fixcm=False,
            rng=np.random.default_rng([config.seed, _NOISE_STREAM]),
        )
    raise ValueError(f"unknown ensemble {ensemble!r}")


def capture_state(dyn: MolecularDynamics, atoms: Atoms) -> dict[str, Any]:
    """Everything needed to continue ``dyn`` exactly after the current step."""
    state: dict[str, Any] = {
        "positions": np.array(atoms.get_positions(), dtype=np.float64),
        "momenta": np.array(atoms.get_momenta(), dtype=np.float64),
        "cell": np.array(atoms.cell[:], dtype=np.float64),
        "numbers": np.array(atoms.numbers, dtype=np.int64),
    }
    if isinstance(dyn, NoseHooverChainNVT):
        # NoseHooverChainNVT integrates its own copies _q, _p and copies them to
        # the atoms at the end of each step; they are the authoritative state.
        state["positions"] = np.array(dyn._q, dtype=np.float64)
        state["momenta"] = np.array(dyn._p, dtype=np.float64)
        thermostat = _chain(dyn)
        state["nhc_eta"] = np.array(thermostat._eta, dtype=np.float64)
        state["nhc_p_eta"] = np.array(thermostat._p_eta, dtype=np.float64)
    if isinstance(dyn, Langevin):
        state["rng_state"] = json.dumps(dyn.rng.bit_generator.state)
    return state


def restore_atoms(atoms: Atoms, state: dict[str, Any]) -> None:
    """Put the saved cell, positions and momenta on ``atoms`` (no constraint applied)."""
    numbers = np.asarray(state["numbers"])
    if not np.array_equal(numbers, atoms.numbers):
        raise ResumeError(
            "the saved MD state holds different atoms than the structure given "
            f"({len(numbers)} saved, {len(atoms)} given, or another order)"
        )
    atoms.set_constraint()
    atoms.set_cell(np.asarray(state["cell"], dtype=np.float64), scale_atoms=False)
    atoms.set_positions(np.asarray(state["positions"], dtype=np.float64), apply_constraint=False)
    atoms.set_momenta(np.asarray(state["momenta"], dtype=np.float64), apply_constraint=False)


def restore_integrator(dyn: MolecularDynamics, state: dict[str, Any]) -> None:
    """Restore the thermostat variables / noise stream of a freshly built ``dyn``."""
    if isinstance(dyn, NoseHooverChainNVT):
        thermostat = _chain(dyn)
        eta = np.asarray(state.get("nhc_eta"), dtype=np.float64)
        p_eta = np.asarray(state.get("nhc_p_eta"), dtype=np.float64)
        if eta.shape != thermostat._eta.shape or p_eta.shape != thermostat._p_eta.shape:
            raise ResumeError(
                f"saved Nosé–Hoover chain has {eta.size} links, the run has "
                f"{thermostat._eta.size}; the restart state does not fit this integrator"
            )
        thermostat._eta = eta.copy()
        thermostat._p_eta = p_eta.copy()
    if isinstance(dyn, Langevin):
        if "rng_state" not in state:
            raise ResumeError("the restart state has no Langevin random-number state")
        dyn.rng.bit_generator.state = json.loads(state["rng_state"])


def _chain(dyn: NoseHooverChainNVT) -> Any:
    """The chain thermostat of ``dyn``; fails clearly if ASE renamed its internals."""
    thermostat = getattr(dyn, "_thermostat", None)
    if thermostat is None or not hasattr(thermostat, "_eta") or not hasattr(dyn, "_q"):
        raise ResumeError(
            "this ASE version's NoseHooverChainNVT keeps its state in unknown attributes; "
            "exact restarts need ASE 3.24-3.29 layout (_q, _p, _thermostat._eta/_p_eta)"
        )
    return thermostat
