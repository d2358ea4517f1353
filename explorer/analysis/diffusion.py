"""Self-diffusivity from the MSD and Arrhenius fits of D(T).

LiFlow seed (001) eq. 17: in the diffusive regime MSD_S(t) → 6 D_S t (3-D).
D is fitted by least squares to MSD = 6 D t + c over a window of lags, and its
uncertainty propagated from the covariance of the time-origin-averaged MSD of a random walk
(the model behind kinisi; McCluskey et al., J. Chem. Theory Comput. 2024):
for lags t_i ≤ t_j,

    Cov[MSD(t_i), MSD(t_j)] = s_i² / N_j,   N_j = n_atoms · T / t_j,

where s_i² is the observed variance of the squared displacements at lag t_i
and N_j the number of statistically independent displacements of length t_j
in a trajectory of length T. Neighbouring lags share most of their
displacements, so ordinary least squares on the MSD would understate the
uncertainty of D by an order of magnitude; the propagated one is calibrated
(tested on Brownian motion).

Arrhenius (seed 001 §II.4): D(T) = D0 exp(−Ea / k_B T), fitted as a weighted
straight line ln D vs 1/(k_B T); Ea in eV with a 95 % confidence interval.

Units: D in Å²/ps internally (1 Å²/ps = 1e-4 cm²/s), times in ps, T in K.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from ase.units import kB
from scipy import stats

from explorer.analysis.msd import uniform_frame_spacing
from explorer.errors import AnalysisError
from explorer.trajectory import Trajectory

A2_PS_TO_CM2_S = 1e-4
DIMENSIONS = 3


@dataclass(frozen=True)
class DiffusionResult:
    """Self-diffusivity of one species with its standard uncertainty.

    ``D_A2_ps`` ± ``D_std_A2_ps`` in Å²/ps; ``intercept_A2`` is the fitted
    offset c of MSD = 6 D t + c (vibrations, ballistic start), Å².
    """

    species: str
    D_A2_ps: float
    D_std_A2_ps: float
    intercept_A2: float
    fit_start_ps: float
    fit_end_ps: float
    n_atoms: int
    n_lags: int

    @property
    def D_cm2_s(self) -> float:
        return self.D_A2_ps * A2_PS_TO_CM2_S

    @property
    def D_std_cm2_s(self) -> float:
        return self.D_std_A2_ps * A2_PS_TO_CM2_S


def fit_lags(
    n_frames: int, dt_ps: float, start_ps: float | None, end_ps: float | None, max_points: int
) -> np.ndarray:
    """Frame lags (integers ≥ 1) of the fit window, at most ``max_points`` of them.

    Defaults: from 10 % to 50 % of the trajectory span. Short lags are still
    ballistic or vibrational; beyond half the span few independent
    displacements remain.
    """
    span = (n_frames - 1) * dt_ps
    start = 0.1 * span if start_ps is None else start_ps
    end = 0.5 * span if end_ps is None else min(end_ps, span)
    first = max(1, int(np.ceil(start / dt_ps - 1e-9)))
    last = int(np.floor(end / dt_ps + 1e-9))
    if last - first + 1 < 3:
        raise AnalysisError(
            f"fit window {start:.3g}–{end:.3g} ps holds fewer than 3 lags of {dt_ps:.3g} ps; "
            "use a longer trajectory or a wider window"
        )
    lags = np.unique(np.linspace(first, last, min(max_points, last - first + 1)).round())
    return lags.astype(int)


def squared_displacements(positions: np.ndarray, lag: int) -> np.ndarray:
    """All squared displacements over ``lag`` frames, every origin and atom, Å²."""
    step = positions[lag:] - positions[:-lag]
    return np.einsum("fai,fai->fa", step, step).ravel()


def msd_covariance(variances: np.ndarray, n_independent: np.ndarray) -> np.ndarray:
    """Random-walk covariance of MSD estimates at increasing lags (module docstring)."""
    i, j = np.meshgrid(np.arange(variances.size), np.arange(variances.size), indexing="ij")
    shorter, longer = np.minimum(i, j), np.maximum(i, j)
    return variances[shorter] / n_independent[longer]


def least_squares_with_covariance(
    x: np.ndarray, y: np.ndarray, covariance: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Fit y = a x + b; returns (a, b) and their covariance given Cov[y].

    The estimate is ordinary least squares and its covariance the sandwich
    (XᵀX)⁻¹ Xᵀ Σ X (XᵀX)⁻¹. A full GLS fit would invert Σ, whose neighbouring
    lags are correlated at 0.9–0.99: small errors in the modelled Σ then
    dominate the estimate (measured: z-scores with a spread of 6 on Brownian
    motion), while the sandwich needs no inverse and stays calibrated.
    """
    design = np.column_stack([x, np.ones_like(x)])
    bread = np.linalg.inv(design.T @ design)
    params = bread @ design.T @ y
    params_cov = bread @ design.T @ covariance @ design @ bread
    return params, params_cov


def diffusion_coefficient(
    traj: Trajectory,
    species: str = "Li",
    start_ps: float | None = None,
    end_ps: float | None = None,
    max_points: int = 50,
    subtract_drift: bool = False,
) -> DiffusionResult:
    """Self-diffusivity of one species from its MSD (seed 001 eq. 17), Å²/ps.

    Args:
        traj: unwrapped trajectory with evenly spaced frames.
        species: element symbol.
        start_ps, end_ps: fit window of lag times (default 10 %–50 % of the span).
        max_points: lags used in the fit (evenly spaced in the window).
        subtract_drift: remove the system's centre-of-mass drift first.
    """
    from explorer.analysis.msd import centre_of_mass_drift

    dt = uniform_frame_spacing(traj.times_ps)
    index = traj.species_indices(species)
    if index.size == 0:
        raise AnalysisError(f"no {species} atoms in this trajectory")
    positions = traj.positions.astype(np.float64)
    if subtract_drift:
        positions = positions - centre_of_mass_drift(traj)[:, None, :]
    positions = positions[:, index]
    lags = fit_lags(traj.n_frames, dt, start_ps, end_ps, max_points)
    span = (traj.n_frames - 1) * dt
    means, variances = np.empty(lags.size), np.empty(lags.size)
    for k, lag in enumerate(lags):
        sq = squared_displacements(positions, int(lag))
        means[k], variances[k] = sq.mean(), sq.var(ddof=1)
    times = lags * dt
    if np.any(variances <= 0):
        raise AnalysisError(f"{species} atoms do not move: D cannot be estimated")
    n_independent = index.size * span / times
    params, params_cov = least_squares_with_covariance(
        times, means, msd_covariance(variances, n_independent)
    )
    slope_std = float(np.sqrt(max(params_cov[0, 0], 0.0)))
    return DiffusionResult(
        species=species,
        D_A2_ps=float(params[0]) / (2 * DIMENSIONS),
        D_std_A2_ps=slope_std / (2 * DIMENSIONS),
        intercept_A2=float(params[1]),
        fit_start_ps=float(times[0]),
        fit_end_ps=float(times[-1]),
        n_atoms=int(index.size),
        n_lags=int(lags.size),
    )


def diffusion_coefficients(
    traj: Trajectory, species: Sequence[str] | None = None, **kwargs: float | int | bool | None
) -> dict[str, DiffusionResult]:
    """:func:`diffusion_coefficient` for several species (default: all present)."""
    names = list(dict.fromkeys(traj.symbols)) if species is None else list(species)
    return {name: diffusion_coefficient(traj, name, **kwargs) for name in names}


@dataclass(frozen=True)
class ArrheniusResult:
    """D(T) = D0 exp(−Ea / k_B T).

    Attributes:
        Ea_eV: activation energy, eV.
        Ea_std_eV: its standard error, eV.
        Ea_ci95_eV: 95 % confidence interval (low, high), eV.
        ln_D0: ln of the prefactor D0 in Å²/ps.
        n_points: temperatures fitted.
    """

    Ea_eV: float
    Ea_std_eV: float
    Ea_ci95_eV: tuple[float, float]
    ln_D0: float
    ln_D0_std: float
    n_points: int
    covariance: np.ndarray

    def predict(self, temperature_K: np.ndarray | float) -> np.ndarray:
        """D at temperatures, Å²/ps."""
        beta = 1.0 / (kB * np.asarray(temperature_K, dtype=float))
        return np.exp(self.ln_D0 - self.Ea_eV * beta)


def arrhenius_fit(
    temperatures_K: Sequence[float],
    D: Sequence[float],
    D_std: Sequence[float] | None = None,
) -> ArrheniusResult:
    """Fit ln D = ln D0 − Ea/(k_B T) (seed 001 §II.4), Ea in eV with a 95 % CI.

    With uncertainties ``D_std`` (same unit as D) the points are weighted by
    1/σ²(ln D) with σ(ln D) = σ_D / D, and the parameter covariance is scaled by
    the reduced χ² when the scatter exceeds the error bars (never shrunk); the
    interval then uses the normal quantile. Without uncertainties the scatter
    alone sets the error (at least three temperatures; Student's t with n − 2
    degrees of freedom).
    """
    temps = np.asarray(temperatures_K, dtype=float)
    d = np.asarray(D, dtype=float)
    if temps.shape != d.shape or temps.ndim != 1:
        raise AnalysisError("temperatures and D must be 1-D sequences of equal length")
    if np.any(temps <= 0) or np.any(d <= 0):
        raise AnalysisError("temperatures and diffusivities must be positive for an Arrhenius fit")
    if np.unique(temps).size < 2:
        raise AnalysisError("an Arrhenius fit needs at least two distinct temperatures")
    n = temps.size
    x = -1.0 / (kB * temps)  # slope of ln D against x is Ea
    y = np.log(d)
    if D_std is None:
        if n < 3:
            raise AnalysisError("give uncertainties or at least three temperatures")
        sigma = np.ones(n)
    else:
        sigma = np.asarray(D_std, dtype=float) / d
        if sigma.shape != d.shape or np.any(sigma <= 0):
            raise AnalysisError("D_std must be positive and match D")
    design = np.column_stack([x, np.ones(n)])
    weights = 1.0 / sigma**2
    normal = design.T @ (design * weights[:, None])
    cov = np.linalg.inv(normal)
    params = cov @ (design.T @ (weights * y))
    dof = n - 2
    chi2 = float(np.sum(weights * (y - design @ params) ** 2))
    if D_std is None:
        cov = cov * chi2 / dof
        quantile = stats.t.ppf(0.975, dof)
    else:
        # Known error bars: normal quantile; inflate (never shrink) by the
        # Birge ratio when the points scatter more than their error bars say.
        cov = cov * max(1.0, chi2 / dof) if dof > 0 else cov
        quantile = stats.norm.ppf(0.975)
    ea, ea_std = float(params[0]), float(np.sqrt(cov[0, 0]))
    return ArrheniusResult(
        Ea_eV=ea,
        Ea_std_eV=ea_std,
        Ea_ci95_eV=(ea - quantile * ea_std, ea + quantile * ea_std),
        ln_D0=float(params[1]),
        ln_D0_std=float(np.sqrt(cov[1, 1])),
        n_points=n,
        covariance=cov,
    )
