"""MSD (seed 001 eq. 16) against direct sums and Brownian motion."""

from __future__ import annotations

import numpy as np
import pytest

from explorer.analysis.msd import msd, squared_displacement_origin_average
from explorer.errors import AnalysisError
from explorer.testing import brownian_trajectory
from explorer.trajectory import Trajectory


def direct_origin_average(x: np.ndarray) -> np.ndarray:
    n = x.shape[0]
    return np.array([np.mean(np.sum((x[m:] - x[: n - m]) ** 2, axis=2), axis=0) for m in range(n)])


def test_fft_average_equals_direct_sum():
    x = np.random.default_rng(0).normal(size=(64, 5, 3)).cumsum(axis=0) * 3.0
    np.testing.assert_allclose(
        squared_displacement_origin_average(x), direct_origin_average(x), atol=1e-9
    )


def test_brownian_msd_is_6Dt_per_species():
    D = 0.08
    traj = brownian_trajectory(D, n_atoms=200, n_frames=400, dt_ps=0.05, frame_atoms=20, seed=1)
    result = msd(traj, max_lag_ps=5.0)
    assert result.species == ["Li", "S"]
    assert result.n_atoms == {"Li": 200, "S": 20}
    assert result.times_ps[-1] == pytest.approx(5.0)
    assert result.n_origins[0] == traj.n_frames
    expected = 6 * D * result.times_ps
    np.testing.assert_allclose(result.msd["Li"][1:], expected[1:], rtol=0.05)
    np.testing.assert_array_equal(result.msd["S"], 0.0)
    assert np.isnan(result.log10("S")).all()
    np.testing.assert_allclose(result.log10("Li")[1:], np.log10(result.msd["Li"][1:]))
    assert result.at("Li", 2.5) == pytest.approx(6 * D * 2.5, rel=0.05)


def test_msd_is_invariant_to_rotation_and_lattice_shifts():
    traj = brownian_trajectory(0.1, n_atoms=10, n_frames=50, seed=2)
    rng = np.random.default_rng(3)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    shift = rng.integers(-2, 3, size=(traj.n_atoms, 3)) @ traj.cell
    moved = Trajectory(
        positions=(traj.positions + shift) @ q.T,
        cell=traj.cell @ q.T,
        numbers=traj.numbers,
        times_ps=traj.times_ps,
    )
    np.testing.assert_allclose(msd(moved).msd["Li"], msd(traj).msd["Li"], rtol=1e-5)


def test_drift_subtraction_removes_uniform_translation():
    traj = brownian_trajectory(0.05, n_atoms=30, n_frames=100, frame_atoms=30, seed=4)
    drift = np.linspace(0, 20, traj.n_frames)[:, None, None] * np.array([1.0, 0.0, 0.0])
    drifting = Trajectory(traj.positions + drift, traj.cell, traj.numbers, traj.times_ps)
    plain = msd(traj, subtract_drift=True).msd["Li"]
    np.testing.assert_allclose(msd(drifting, subtract_drift=True).msd["Li"], plain, atol=1e-3)
    assert msd(drifting).msd["Li"][-1] > 100


def test_errors():
    traj = brownian_trajectory(0.05, n_atoms=4, n_frames=10)
    with pytest.raises(AnalysisError, match="no Na atoms"):
        msd(traj, species=["Na"])
    uneven = Trajectory(traj.positions, traj.cell, traj.numbers, traj.times_ps**1.5)
    with pytest.raises(AnalysisError, match="not evenly spaced"):
        msd(uneven)
    with pytest.raises(AnalysisError, match="two frames"):
        msd(traj[:1])
