"""FlashMD evaluation helpers against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms, units
from ase.constraints import FixCom
from ase.data import atomic_masses
from ase.md.verlet import VelocityVerlet

from explorer.errors import ExplorerError
from explorer.flashmd.data import load_pairs
from explorer.flashmd.energy import EnergyModel, kinetic_energy
from explorer.flashmd.evaluate import (
    WARMUP_TIME_CONSTANTS,
    frame_temperatures,
    layer_msd,
    reference_langevin_run,
    seed_summary,
    species_temperatures,
    temperature_summary,
    verlet_baseline,
    warmup_frames,
)
from explorer.flashmd.systems import argon_calculator
from explorer.trajectory import Trajectory

from .conftest import small_argon


def test_layer_msd_ranks_atoms_by_initial_height_in_the_slab_frame() -> None:
    z = np.repeat(np.arange(4.0), 3)  # 4 layers of 3 atoms
    start = np.stack([np.zeros(12), np.zeros(12), z], axis=1)
    moved = start.copy()
    moved[z == 3.0, 0] += 2.0  # the top layer moves 2 Å: the centre of mass 0.5 Å
    traj = Trajectory(positions=np.stack([start, moved]), cell=np.eye(3) * 10,
                      numbers=np.full(12, 13), times_ps=[0.0, 1.0])  # fmt: skip
    assert layer_msd(traj, 1.0, n_layers=4) == pytest.approx([0.25, 0.25, 0.25, 2.25])
    shifted = start + np.array([0.3, -1.0, 0.2])
    drifted = Trajectory(positions=np.stack([start, shifted]), cell=np.eye(3) * 10,
                         numbers=np.full(12, 13), times_ps=[0.0, 1.0])  # fmt: skip
    assert layer_msd(drifted, 1.0, n_layers=4) == pytest.approx([0, 0, 0, 0], abs=1e-12)


def _ase_temperature_without_com(numbers: np.ndarray, velocities_A_ps: np.ndarray) -> float:
    """ASE's temperature of the centre-of-mass-free velocities with FixCom (3N − 3 dof)."""
    atoms = Atoms(numbers)
    v = velocities_A_ps / (1000.0 * units.fs)
    masses = atoms.get_masses()
    atoms.set_velocities(v - masses @ v / masses.sum())
    atoms.set_constraint(FixCom())
    return atoms.get_temperature()


def test_frame_temperatures_match_ase_with_fixcom_and_ignore_drift() -> None:
    rng = np.random.default_rng(3)
    numbers = np.full(10, 18)
    velocities = rng.normal(size=(4, 10, 3)) * 5.0
    traj = Trajectory(positions=np.zeros((4, 10, 3)), cell=np.eye(3) * 10, numbers=numbers,
                      times_ps=np.arange(4.0), velocities=velocities)  # fmt: skip
    expected = [_ase_temperature_without_com(numbers, v) for v in velocities]
    assert frame_temperatures(traj) == pytest.approx(expected, rel=1e-10)
    assert species_temperatures(traj)["Ar"] == pytest.approx(np.mean(expected[1:]), rel=1e-10)
    boosted = velocities + np.array([3.0, 0.0, -2.0])
    drifting = Trajectory(positions=np.zeros((4, 10, 3)), cell=np.eye(3) * 10, numbers=numbers,
                          times_ps=np.arange(4.0), velocities=boosted)  # fmt: skip
    assert frame_temperatures(drifting) == pytest.approx(expected, rel=1e-10)
    no_velocities = Trajectory(positions=np.zeros((3, 10, 3)), cell=np.eye(3), numbers=numbers,
                               times_ps=np.arange(3.0))  # fmt: skip
    assert species_temperatures(no_velocities) == {}


def test_species_temperatures_obey_equipartition_with_unequal_masses() -> None:
    """Maxwell–Boltzmann velocities at 300 K for a light and a heavy element, centre-of-mass
    motion removed: each element reads 300 K (its share of the 3N − 3 degrees of freedom is
    3 Σ (1 − m_i / M)); with 3 per atom the heavy element would read low."""
    rng = np.random.default_rng(0)
    numbers = np.array([3] * 6 + [54] * 4)  # Li, Xe
    masses = atomic_masses[numbers]
    sigma = np.sqrt(units.kB * 300.0 / masses)[None, :, None]  # ASE velocity units
    velocities = rng.normal(size=(4000, 10, 3)) * sigma * 1000.0 * units.fs  # Å/ps
    traj = Trajectory(positions=np.zeros((4000, 10, 3)), cell=np.eye(3) * 10, numbers=numbers,
                      times_ps=np.arange(4000.0), velocities=velocities)  # fmt: skip
    result = species_temperatures(traj)
    assert result["Li"] == pytest.approx(300.0, rel=0.03)
    assert result["Xe"] == pytest.approx(300.0, rel=0.03)
    assert np.mean(frame_temperatures(traj)) == pytest.approx(300.0, rel=0.02)


def test_warmup_frames_skip_five_time_constants() -> None:
    traj = Trajectory(
        positions=np.zeros((40, 1, 3)),
        cell=np.eye(3),
        numbers=[18],
        times_ps=2.0 + 0.016 * np.arange(40),
    )  # 16 fs strides from t = 2 ps
    assert WARMUP_TIME_CONSTANTS == 5.0
    assert warmup_frames(traj, 100.0) == 32  # 500 fs = 31.25 strides: frame 32 is the first after
    assert warmup_frames(traj, 16.0) == 5  # exactly 80 fs = frame 5
    assert warmup_frames(traj, 0.0) == 1  # frame 0 is the start, never counted


def test_species_temperatures_from_a_later_frame() -> None:
    """A cold start then hot frames: leaving out the start frames gives the hot value."""
    numbers = np.array([18] * 8)
    scale = np.array([0.1, 0.1, 0.1, 5.0, 5.0, 5.0])[:, None, None]
    velocities = np.random.default_rng(0).normal(size=(6, 8, 3)) * scale
    traj = Trajectory(positions=np.zeros((6, 8, 3)), cell=np.eye(3) * 10, numbers=numbers,
                      times_ps=np.arange(6.0), velocities=velocities)  # fmt: skip
    hot = [_ase_temperature_without_com(numbers, velocities[frame]) for frame in (3, 4, 5)]
    assert species_temperatures(traj, 3)["Ar"] == pytest.approx(np.mean(hot), rel=1e-10)
    assert species_temperatures(traj)["Ar"] < species_temperatures(traj, 3)["Ar"]
    assert species_temperatures(traj, 6) == {}


def test_kinetic_energy_in_ev() -> None:
    # one argon atom at 0.01 Å/fs: ½ m v² = ½ · 39.948 · 1e-4 amu·Å²/fs² ≈ 0.207 eV
    p = np.array([[0.01 * 39.948, 0.0, 0.0]])
    assert kinetic_energy(p, np.array([39.948])) == pytest.approx(0.5 * 39.948e-4 * 103.6427, 1e-4)


def test_verlet_with_the_data_step_is_exact(argon_files) -> None:
    """One VV step of 4 fs on 4-fs pairs of a 1-fs VV run: small but non-zero error;
    the baseline's error grows with the step."""
    small = verlet_baseline(
        load_pairs([argon_files["val"]], 4.0, False)[:3], EnergyModel("argon"), 4.0
    )
    large = verlet_baseline(
        load_pairs([argon_files["val"]], 16.0, False)[:3], EnergyModel("argon"), 16.0
    )
    assert small["rmse_q"] < 1e-3 and large["rmse_q"] > small["rmse_q"]


def test_reference_langevin_without_friction_is_velocity_verlet() -> None:
    """τ → ∞ switches the thermostat off: the run must follow ASE's VelocityVerlet from the
    same positions and momenta, one frame per stride."""
    start = small_argon(seed=3)
    traj = reference_langevin_run(start, argon_calculator(), 94.4, 1e15, strides=4, stride_fs=4.0)
    assert traj.n_frames == 5 and traj.times_ps == pytest.approx([0, 0.004, 0.008, 0.012, 0.016])
    atoms = start.copy()
    atoms.calc = argon_calculator()
    frames = [atoms.get_positions()]
    dyn = VelocityVerlet(atoms, 1.0 * units.fs)
    for _ in range(4):
        dyn.run(4)
        frames.append(atoms.get_positions())
    assert np.abs(traj.positions - np.asarray(frames)).max() < 1e-6
    assert traj.energies["temperature"][-1] == pytest.approx(atoms.get_temperature(), rel=1e-6)
    v = atoms.get_velocities() * 1000.0 * units.fs  # Å/ps
    assert np.abs(traj.velocities[-1] - v).max() < 1e-6


def test_reference_langevin_holds_the_target_and_is_summarised() -> None:
    """A hot start (200 K) relaxes to the 94.4 K target; the summary's steady-state error
    leaves out the warm-up, the overall error does not."""
    start = small_argon(seed=4, temperature_K=200.0)
    knobs = {"thermostat": "langevin", "temperature_K": 94.4, "time_constant_fs": 40.0}
    traj = reference_langevin_run(start, argon_calculator(), 94.4, 40.0, strides=300, stride_fs=8.0)
    summary = temperature_summary(traj, knobs)
    first = warmup_frames(traj, 40.0)
    temperature = frame_temperatures(traj)
    assert summary["temperature_error_steady_K"] == pytest.approx(temperature[first:].mean() - 94.4)
    assert summary["temperature_error_K"] == pytest.approx(temperature[1:].mean() - 94.4)
    assert abs(summary["temperature_error_steady_K"]) < 8.0  # σ_T = 13.6 K, ~60 correlation times
    assert summary["temperature_error_K"] > summary["temperature_error_steady_K"]
    assert summary["temperature_error_by_species_K"]["Ar"] == pytest.approx(
        summary["temperature_error_K"], rel=1e-6
    )


def test_temperature_summary_without_thermostat_has_no_error() -> None:
    traj = reference_langevin_run(small_argon(), argon_calculator(), 94.4, 1e15, 3, 4.0)
    summary = temperature_summary(traj, {"thermostat": "none", "temperature_K": 94.4})
    assert set(summary) == {"mean_temperature_K"}


def test_reference_langevin_rejects_a_stride_off_the_time_step() -> None:
    with pytest.raises(ExplorerError, match="multiple"):
        reference_langevin_run(small_argon(), argon_calculator(), 94.4, 100.0, 2, 2.5)


def test_seed_summary_counts_failures_and_averages_the_completed_runs() -> None:
    reports = [
        {"status": "done", "strides": 100, "temperature_error_K": 2.0,
         "temperature_error_steady_K": 1.0},
        {"status": "failed", "strides": 49, "temperature_error_K": 50.0},
        {"status": "done", "strides": 100, "temperature_error_K": -4.0,
         "temperature_error_steady_K": -3.0},
    ]  # fmt: skip
    summary = seed_summary(reports)
    assert summary["seeds"] == 3 and summary["completed"] == 2
    assert summary["strides_per_seed"] == [100, 49, 100]
    assert summary["temperature_error_K_mean_completed"] == pytest.approx(-1.0)
    assert summary["temperature_error_steady_K_mean_completed"] == pytest.approx(-1.0)
    steady = summary["temperature_error_steady_K_per_seed"]
    assert steady[0] == 1.0 and np.isnan(steady[1]) and steady[2] == -3.0
    assert "temperature_error_K_per_seed" not in seed_summary([{"status": "done"}])
