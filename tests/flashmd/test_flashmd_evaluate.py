"""FlashMD evaluation helpers against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms, units

from explorer.flashmd.data import load_pairs
from explorer.flashmd.energy import EnergyModel, kinetic_energy
from explorer.flashmd.evaluate import (
    WARMUP_TIME_CONSTANTS,
    layer_msd,
    species_temperatures,
    verlet_baseline,
    warmup_frames,
)
from explorer.trajectory import Trajectory


def test_layer_msd_ranks_atoms_by_initial_height() -> None:
    z = np.repeat(np.arange(4.0), 3)  # 4 layers of 3 atoms
    start = np.stack([np.zeros(12), np.zeros(12), z], axis=1)
    moved = start.copy()
    moved[z == 3.0, 0] += 2.0  # the top layer moves 2 Å
    traj = Trajectory(positions=np.stack([start, moved]), cell=np.eye(3) * 10,
                      numbers=np.full(12, 13), times_ps=[0.0, 1.0])  # fmt: skip
    assert layer_msd(traj, 1.0, n_layers=4) == pytest.approx([0, 0, 0, 4.0])


def test_species_temperatures_match_ase_per_element() -> None:
    """Ar hot, Kr cold: each element's mean T equals ASE's temperature of its atoms."""
    rng = np.random.default_rng(3)
    numbers = np.array([18] * 6 + [36] * 4)
    velocities = rng.normal(size=(3, 10, 3)) * np.where(numbers == 18, 6.0, 2.0)[None, :, None]
    traj = Trajectory(positions=np.zeros((3, 10, 3)), cell=np.eye(3) * 10, numbers=numbers,
                      times_ps=np.arange(3.0), velocities=velocities)  # fmt: skip
    expected = {}
    for symbol, z in (("Ar", 18), ("Kr", 36)):
        chosen = numbers == z
        per_frame = []
        for frame in (1, 2):  # frame 0 is the start, left out
            atoms = Atoms(numbers[chosen])
            atoms.set_velocities(velocities[frame][chosen] / (1000.0 * units.fs))
            per_frame.append(atoms.get_temperature())
        expected[symbol] = np.mean(per_frame)
    result = species_temperatures(traj)
    assert result == pytest.approx(expected, rel=1e-10)
    assert result["Ar"] > 3 * result["Kr"]
    assert (
        species_temperatures(
            Trajectory(
                positions=np.zeros((3, 10, 3)),
                cell=np.eye(3),
                numbers=numbers,
                times_ps=np.arange(3.0),
            )
        )
        == {}
    )


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
    hot = []
    for frame in (3, 4, 5):
        atoms = Atoms(numbers)
        atoms.set_velocities(velocities[frame] / (1000.0 * units.fs))
        hot.append(atoms.get_temperature())
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
