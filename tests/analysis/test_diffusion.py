"""Self-diffusivity with uncertainty (seed 001 eq. 17) and Arrhenius fits."""

from __future__ import annotations

import numpy as np
import pytest
from ase.units import kB

from explorer.analysis.diffusion import arrhenius_fit, diffusion_coefficient, fit_lags
from explorer.errors import AnalysisError
from explorer.testing import brownian_trajectory


def test_brownian_D_recovered_within_5_percent():
    D = 0.05  # Å²/ps = 5e-6 cm²/s, a typical fast Li conductor at 600 K
    # σ_D/D ≈ 1.7 % for 2000 atoms with the default window, so 5 % is 3σ.
    traj = brownian_trajectory(D, n_atoms=2000, n_frames=1000, dt_ps=0.1, frame_atoms=50, seed=7)
    result = diffusion_coefficient(traj, "Li")
    assert abs(result.D_A2_ps - D) < 0.05 * D
    assert abs(result.D_A2_ps - D) < 3 * result.D_std_A2_ps
    assert result.D_cm2_s == pytest.approx(result.D_A2_ps * 1e-4)
    assert result.n_atoms == 2000
    assert result.fit_start_ps == pytest.approx(0.1 * 99.9, abs=0.1)
    assert result.fit_end_ps == pytest.approx(0.5 * 99.9, abs=0.1)


def test_uncertainty_is_calibrated_on_brownian_motion():
    """Over independent trajectories, (D − D_true)/σ_D has unit spread."""
    D = 0.05
    z = []
    for seed in range(40):
        traj = brownian_trajectory(D, n_atoms=16, n_frames=400, seed=seed)
        result = diffusion_coefficient(traj, "Li")
        z.append((result.D_A2_ps - D) / result.D_std_A2_ps)
    assert 0.7 < np.std(z) < 1.4
    assert abs(np.mean(z)) < 0.5


def test_fit_window_and_errors():
    lags = fit_lags(n_frames=101, dt_ps=0.5, start_ps=5.0, end_ps=20.0, max_points=100)
    assert lags[0] == 10 and lags[-1] == 40 and lags.size == 31
    assert fit_lags(1001, 0.1, None, None, 20).size == 20
    traj = brownian_trajectory(0.05, n_atoms=4, n_frames=10, frame_atoms=2)
    with pytest.raises(AnalysisError, match="fewer than 3 lags"):
        diffusion_coefficient(traj, "Li", start_ps=0.0, end_ps=0.15)
    with pytest.raises(AnalysisError, match="do not move"):
        diffusion_coefficient(traj, "S")
    with pytest.raises(AnalysisError, match="no Na"):
        diffusion_coefficient(traj, "Na")


def test_arrhenius_recovers_activation_energy():
    Ea, ln_D0 = 0.25, np.log(5.0)
    temps = np.array([600.0, 800.0, 1000.0, 1200.0])
    D = np.exp(ln_D0 - Ea / (kB * temps))
    exact = arrhenius_fit(temps, D, 0.05 * D)
    assert exact.Ea_eV == pytest.approx(Ea, rel=1e-9)
    assert exact.ln_D0 == pytest.approx(ln_D0, rel=1e-9)
    np.testing.assert_allclose(exact.predict(temps), D, rtol=1e-9)
    low, high = exact.Ea_ci95_eV
    assert low < Ea < high


def test_arrhenius_confidence_interval_has_95_percent_coverage():
    rng = np.random.default_rng(0)
    Ea, temps = 0.3, np.array([600.0, 700.0, 800.0, 900.0, 1000.0, 1200.0])
    D_true = 10.0 * np.exp(-Ea / (kB * temps))
    hits = 0
    trials = 400
    for _ in range(trials):
        sigma = 0.1 * D_true
        D = D_true * np.exp(rng.normal(scale=0.1, size=temps.size))
        low, high = arrhenius_fit(temps, D, sigma).Ea_ci95_eV
        hits += low < Ea < high
    assert 0.90 < hits / trials < 0.99


def test_arrhenius_without_uncertainties_and_errors():
    temps = np.array([600.0, 800.0, 1000.0])
    D = np.exp(-0.2 / (kB * temps)) * np.array([1.0, 1.05, 0.97])
    fit = arrhenius_fit(temps, D)
    assert fit.Ea_ci95_eV[0] < fit.Ea_eV < fit.Ea_ci95_eV[1]
    with pytest.raises(AnalysisError, match="three temperatures"):
        arrhenius_fit(temps[:2], D[:2])
    with pytest.raises(AnalysisError, match="positive"):
        arrhenius_fit(temps, -D)
    with pytest.raises(AnalysisError, match="distinct"):
        arrhenius_fit([800.0, 800.0], [1.0, 1.1], [0.1, 0.1])
