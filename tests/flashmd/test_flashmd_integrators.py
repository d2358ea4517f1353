"""FlashMD integrators and filters against exact physics (a velocity-Verlet stand-in model)."""

from __future__ import annotations

import numpy as np
import pytest
from ase import units
from ase.calculators.lj import LennardJones
from ase.md.verlet import VelocityVerlet

from explorer.errors import MDConfigError, SimulationDiverged, UnknownElementError
from explorer.flashmd.energy import EnergyModel
from explorer.flashmd.filters import (
    bussi_half_step,
    energy_rescale_factor,
    langevin_half_step,
    random_rotation,
)
from explorer.flashmd.integrators import FlashMDBussi, FlashMDLangevin, FlashMDVerlet
from explorer.flashmd.lj import FastLennardJones


def test_fast_lj_equals_ase_lennard_jones(argon32) -> None:
    kw = {"epsilon": 0.0104, "sigma": 3.4, "rc": 8.5, "ro": 6.8}
    atoms = argon32.copy()
    atoms.rattle(0.2, seed=5)
    ref = LennardJones(smooth=True, **kw)
    fast = FastLennardJones(**kw)
    assert fast.get_potential_energy(atoms) == pytest.approx(ref.get_potential_energy(atoms), 1e-12)
    np.testing.assert_allclose(fast.get_forces(atoms), ref.get_forces(atoms), atol=1e-12)


def test_flashmd_verlet_with_exact_model_reproduces_ase_verlet(argon32, verlet_stub) -> None:
    reference = argon32.copy()
    reference.calc = argon32.calc
    VelocityVerlet(reference, timestep=1.0 * units.fs).run(3 * 8)
    atoms = argon32.copy()
    FlashMDVerlet(atoms, verlet_stub(8)).run(3)
    np.testing.assert_allclose(atoms.positions, reference.positions, atol=1e-10)
    np.testing.assert_allclose(atoms.get_momenta(), reference.get_momenta(), atol=1e-10)


def test_energy_filter_removes_the_drift_of_an_energy_injecting_model(argon32, verlet_stub) -> None:
    energy = EnergyModel("argon")

    def total(a) -> float:
        return energy.potential_of(a) + a.get_kinetic_energy()

    e0 = total(argon32)
    drifting = argon32.copy()
    FlashMDVerlet(drifting, verlet_stub(4, kick=1.02)).run(5)
    filtered = argon32.copy()
    FlashMDVerlet(filtered, verlet_stub(4, kick=1.02), energy_conservation=True,
                  energy_model=energy).run(5)  # fmt: skip
    assert abs(total(drifting) - e0) > 0.05  # 2 % momentum kicks heat the system
    assert total(filtered) == pytest.approx(e0, abs=1e-9)  # eq. 7 restores E exactly


def test_energy_rescale_factor_and_its_failure() -> None:
    alpha = energy_rescale_factor(-10.0, -9.5, 2.0)
    assert 2.0 * alpha**2 + (-9.5 - 2.0) == pytest.approx(-10.0)
    with pytest.raises(SimulationDiverged, match="smaller stride"):
        energy_rescale_factor(-10.0, 0.0, 2.0)
    # 10 atoms with 2 eV of kinetic energy: 0.2 eV per atom = 1547 K.
    with pytest.raises(SimulationDiverged, match=r"1 eV per atom.*0\.2 eV per atom, 1547 K"):
        energy_rescale_factor(-10.0, 0.0, 2.0, n_atoms=10)
    # After a blow-up both energies are huge and nearly equal; say it blew up.
    blown_up = r"blew up \(predicted kinetic temperature 7\.7e\+53 K"
    with pytest.raises(SimulationDiverged, match=blown_up):
        energy_rescale_factor(-10.0, 1.0e51, 1.0e51, n_atoms=10)


def test_a_failed_stride_raises_and_keeps_the_last_good_state(argon32, verlet_stub) -> None:
    """A non-finite prediction, or one the filter cannot rescale, stops the run cleanly."""

    class NaNModel(verlet_stub):
        def predict(self, *args, **kwargs):
            dq, p_new = super().predict(*args, **kwargs)
            return dq * float("nan"), p_new

    atoms = argon32.copy()
    before = atoms.positions.copy(), atoms.get_momenta()
    with pytest.raises(SimulationDiverged, match="non-finite") as failure:
        FlashMDVerlet(atoms, NaNModel(4)).run(1)
    assert failure.value.reason == "non-finite prediction"
    np.testing.assert_array_equal(atoms.positions, before[0])

    class LeapingModel(verlet_stub):  # 300x the true displacement: atoms land on each other
        def predict(self, *args, **kwargs):
            dq, p_new = super().predict(*args, **kwargs)
            return 300.0 * dq, p_new

    atoms = argon32.copy()
    good = atoms.positions.copy(), atoms.get_momenta()
    dyn = FlashMDVerlet(atoms, LeapingModel(4), energy_conservation=True,
                        energy_model=EnergyModel("argon"))  # fmt: skip
    with pytest.raises(SimulationDiverged, match="energy-conservation filter"):
        dyn.run(1)
    np.testing.assert_array_equal(atoms.positions, good[0])
    np.testing.assert_array_equal(atoms.get_momenta(), good[1])


def test_timestep_must_be_the_checkpoint_stride(argon32, verlet_stub) -> None:
    with pytest.raises(MDConfigError, match="stride"):
        FlashMDVerlet(argon32, verlet_stub(8), timestep=5.0 * units.fs)


def test_unknown_element_raises(argon32, verlet_stub) -> None:
    atoms = argon32.copy()
    atoms.numbers[0] = 36
    with pytest.raises(UnknownElementError, match="Kr"):
        FlashMDVerlet(atoms, verlet_stub(4))


def test_langevin_half_step_samples_maxwell_boltzmann() -> None:
    rng = np.random.default_rng(0)
    masses = np.full(20000, 40.0)
    p = np.zeros((20000, 3))
    for _ in range(20):
        p = langevin_half_step(p, masses, 300.0, 50.0, 32.0, rng)
    # <p²> per component = m k_B T (ASE units).
    assert np.mean(p**2) / (40.0 * units.kB * 300.0) == pytest.approx(1.0, abs=0.03)


def test_bussi_half_step_relaxes_the_kinetic_energy_to_its_target() -> None:
    rng = np.random.default_rng(1)
    masses = np.full(500, 40.0)
    p = rng.normal(size=(500, 3)) * np.sqrt(40.0 * units.kB * 50.0)  # 50 K
    kinetic = []
    for _ in range(400):
        p = bussi_half_step(p, masses, 300.0, 100.0, 32.0, rng)
        kinetic.append(0.5 * np.sum(p**2) / 40.0)
    target = 0.5 * (3 * 500 - 3) * units.kB * 300.0
    assert np.mean(kinetic[100:]) / target == pytest.approx(1.0, abs=0.02)


def test_thermostatted_integrators_heat_a_cold_system(argon32, verlet_stub) -> None:
    for cls in (FlashMDLangevin, FlashMDBussi):
        atoms = argon32.copy()
        atoms.set_momenta(atoms.get_momenta() * 0.1)
        dyn = cls(atoms, verlet_stub(4), temperature_K=300.0, time_constant_fs=4.0,
                  rng=np.random.default_rng(0))  # fmt: skip
        dyn.run(6)
        assert atoms.get_temperature() > 100.0


def test_random_rotation_is_orthogonal_and_filter_keeps_exact_model(argon32, verlet_stub) -> None:
    rng = np.random.default_rng(0)
    r = random_rotation(rng)
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
    plain, rotated = argon32.copy(), argon32.copy()
    FlashMDVerlet(plain, verlet_stub(4)).run(2)
    FlashMDVerlet(rotated, verlet_stub(4), random_rotation=True, rng=rng).run(2)
    np.testing.assert_allclose(rotated.positions, plain.positions, atol=1e-9)
