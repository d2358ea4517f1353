"""Polymer observables against analytic cases and symmetries (MSGN paper App. B)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation
from scipy.stats import wasserstein_distance

from explorer.analysis.polymer import (
    autocorrelation,
    contact_map,
    mean_internal_distance,
    radius_of_gyration_sq,
    relaxation_time,
    rg2_distribution,
    wasserstein_1d,
)
from explorer.errors import AnalysisError


def gaussian_chains(n_chains: int, n_bonds: int, b: float, seed: int = 0) -> np.ndarray:
    """Ideal (freely jointed Gaussian) chains: bond vectors N(0, b²/3 I), so ⟨|bond|²⟩ = b²."""
    rng = np.random.default_rng(seed)
    steps = rng.normal(scale=b / np.sqrt(3), size=(n_chains, n_bonds, 3))
    return np.concatenate([np.zeros((n_chains, 1, 3)), np.cumsum(steps, axis=1)], axis=1)


def test_rigid_rod_rg2_is_exact() -> None:
    n, b = 11, 0.7
    rod = np.zeros((n, 3))
    rod[:, 2] = b * np.arange(n)
    assert radius_of_gyration_sq(rod)[0] == pytest.approx(b**2 * (n**2 - 1) / 12)


def test_ideal_chain_rg2_is_n_b2_over_6() -> None:
    n_bonds, b = 400, 1.3
    rg2 = radius_of_gyration_sq(gaussian_chains(400, n_bonds, b))
    # Exact mean for N bonds: b² N (N + 2) / (6 (N + 1)) → N b² / 6 for large N.
    assert rg2.mean() == pytest.approx(n_bonds * b**2 / 6, rel=0.06)


def test_ideal_chain_internal_distance_grows_as_root_s() -> None:
    b = 1.0
    s, r_rms = mean_internal_distance(gaussian_chains(200, 100, b, seed=1), s_max=50, rms=True)
    np.testing.assert_allclose(r_rms**2 / s, b**2, rtol=0.05)
    _, r_mean = mean_internal_distance(gaussian_chains(200, 100, b, seed=1), s_max=50)
    # ⟨|R|⟩ of a 3-D Gaussian vector = √(8/(3π)) · R_rms.
    np.testing.assert_allclose(r_mean / r_rms, np.sqrt(8 / (3 * np.pi)), rtol=0.03)


def test_rg2_mass_weighting() -> None:
    # Two beads at distance d: R_g² = m1 m2 d² / (m1 + m2)².
    x = np.array([[0.0, 0, 0], [2.0, 0, 0]])
    assert radius_of_gyration_sq(x, np.array([1.0, 3.0]))[0] == pytest.approx(3 * 4 / 16)


def test_observables_are_rigid_motion_and_permutation_invariant() -> None:
    chains = gaussian_chains(5, 30, 1.0, seed=2)
    rot = Rotation.random(random_state=3).as_matrix()
    moved = chains @ rot.T + np.array([5.0, -2.0, 7.0])
    masses = np.random.default_rng(4).uniform(0.5, 2.0, size=31)
    np.testing.assert_allclose(
        radius_of_gyration_sq(moved, masses), radius_of_gyration_sq(chains, masses)
    )
    np.testing.assert_allclose(mean_internal_distance(moved)[1], mean_internal_distance(chains)[1])
    np.testing.assert_allclose(contact_map(moved, 2.0), contact_map(chains, 2.0))
    perm = np.random.default_rng(5).permutation(31)
    np.testing.assert_allclose(
        radius_of_gyration_sq(chains[:, perm], masses[perm]), radius_of_gyration_sq(chains, masses)
    )


def test_exponential_acf_gives_known_relaxation_time() -> None:
    # AR(1) series y_{n+1} = φ y_n + noise has ACF φ^lag = exp(-lag dt / τ).
    tau, dt, n = 20.0, 1.0, 200_000
    phi = np.exp(-dt / tau)
    rng = np.random.default_rng(6)
    noise = rng.normal(size=n)
    y = np.empty(n)
    y[0] = 0.0
    for i in range(1, n):
        y[i] = phi * y[i - 1] + noise[i]
    acf = autocorrelation(y + 10.0, max_lag=100)
    assert acf[0] == pytest.approx(1.0)
    np.testing.assert_allclose(acf[:40], phi ** np.arange(40), atol=0.03)
    assert relaxation_time(acf, dt) == pytest.approx(tau, rel=0.1)
    assert relaxation_time(acf, dt, method="crossing") == pytest.approx(tau, rel=0.1)


def test_acf_matches_direct_sum() -> None:
    y = np.random.default_rng(7).normal(size=300).cumsum()
    acf = autocorrelation(y, max_lag=20)
    d = y - y.mean()
    direct = [np.mean(d[: y.size - k] * d[k:]) / d.var() for k in range(21)]
    np.testing.assert_allclose(acf, direct, atol=1e-10)


def test_contact_map_of_two_known_pairs() -> None:
    x = np.array([[[0.0, 0, 0], [1.0, 0, 0], [5.0, 0, 0]], [[0.0, 0, 0], [3.0, 0, 0], [5, 0, 0]]])
    cmap = contact_map(x, cutoff=1.5)
    np.testing.assert_allclose(np.diag(cmap), 1.0)
    np.testing.assert_allclose(cmap, cmap.T)
    assert cmap[0, 1] == pytest.approx(0.5) and cmap[0, 2] == 0.0


def test_rg2_distribution_is_normalised() -> None:
    centres, density = rg2_distribution(np.random.default_rng(8).gamma(5.0, size=5000), bins=30)
    assert np.sum(density * np.diff(centres).mean()) == pytest.approx(1.0)


def test_wasserstein_matches_scipy_and_shift() -> None:
    rng = np.random.default_rng(9)
    a, b = rng.normal(size=500), rng.gamma(2.0, size=300)
    assert wasserstein_1d(a, b) == pytest.approx(wasserstein_distance(a, b))
    assert wasserstein_1d(a, a + 1.5) == pytest.approx(1.5)


def test_bad_inputs_raise_analysis_errors() -> None:
    with pytest.raises(AnalysisError):
        radius_of_gyration_sq(np.zeros((4, 2)))
    with pytest.raises(AnalysisError):
        autocorrelation(np.ones(10))
    with pytest.raises(AnalysisError):
        relaxation_time(np.ones(10), method="crossing")
