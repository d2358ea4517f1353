"""The FlashMD simulator's divergence checks, driven by an exact-physics stand-in model."""

from __future__ import annotations

import numpy as np
import torch
from ase import units

from explorer.errors import SimulationDiverged
from explorer.flashmd.simulate import FlashMDSimulator
from explorer.session import FAILED, Rollout


def test_a_thermostat_may_cool_a_hot_start_without_a_blow_up_alarm(argon32, verlet_stub) -> None:
    hot = argon32.copy()
    hot.set_momenta(hot.get_momenta() * np.sqrt(8.0))  # ~760 K, 8× the 94.4 K target
    assert hot.get_temperature() > 5.0 * 94.4
    sim = FlashMDSimulator(verlet_stub(4), energy_model=None, name="exact")
    knobs = {"temperature_K": 94.4, "thermostat": "langevin", "time_constant_fs": 20.0,
             "energy_conservation": False}  # fmt: skip
    traj = Rollout(sim, hot, 6, knobs).run()
    assert traj.n_frames == 7  # all 6 strides: not stopped as a blow-up
    assert hot.get_temperature() > 5.0 * 94.4  # the caller's atoms are untouched
    kinetic = traj.energies["kinetic_energy"]
    assert kinetic[-1] < 0.5 * kinetic[0]  # cooling towards the target


class _PumpOneAtom(torch.nn.Module):
    """Exact physics except that atom 0's momentum is multiplied by ``factor`` per stride:
    the local runaway a global energy check misses for a few strides."""

    def __init__(self, stub: torch.nn.Module, factor: float) -> None:
        super().__init__()
        self.stub, self.config, self.factor = stub, stub.config, factor

    def predict(self, *args, **kwargs):
        dq, p_new = self.stub.predict(*args, **kwargs)
        p_new = p_new.clone()
        p_new[0] *= self.factor
        return dq, p_new


def test_one_runaway_atom_stops_the_rollout_with_its_name(argon32, verlet_stub) -> None:
    atoms = argon32.copy()
    momenta = atoms.get_momenta()
    kT = units.kB * atoms.get_temperature()
    momenta[0] = [np.sqrt(2.0 * 3.0 * kT * atoms.get_masses()[0]), 0.0, 0.0]  # 3 kT
    atoms.set_momenta(momenta)
    sim = FlashMDSimulator(_PumpOneAtom(verlet_stub(4), 2.5), energy_model=None, name="pump")
    rollout = Rollout(sim, atoms, 10, {"temperature_K": 94.4, "energy_conservation": False})
    rollout.start()
    rollout.join()
    assert rollout.status == FAILED and isinstance(rollout.error, SimulationDiverged)
    message = str(rollout.error)
    assert "atom 0 (Ar)" in message and "pumping energy into one atom" in message
    assert 1 <= rollout.n_frames <= 3  # caught within two strides, frames kept
    # The whole system is still far below the global bound when the atom is flagged.
    assert atoms.get_temperature() < 5.0 * 94.4


def test_a_healthy_exact_run_passes_every_check(argon32, verlet_stub) -> None:
    sim = FlashMDSimulator(verlet_stub(4), energy_model=None, name="exact")
    rollout = Rollout(sim, argon32, 8, {"temperature_K": 94.4, "energy_conservation": False})
    traj = rollout.run()
    assert rollout.error is None and traj.n_frames == 9
