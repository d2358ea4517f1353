"""Single-chain polymer observables (MSGN paper App. B), pure numpy.

Positions are (frames, beads, 3) or (beads, 3) arrays in any length unit (σ for the CG
family); times in any time unit (τ). Functions:

- :func:`radius_of_gyration_sq`: ``R_g² = Σ m_i d_i² / Σ m_i`` with d_i the distance of bead
  i from the centre of mass (mass-weighted; works for fine beads and CG beads alike).
- :func:`rg2_distribution`: normalised histogram (density) of R_g² samples.
- :func:`mean_internal_distance`: ``⟨R(s)⟩ = Σ_{i=1}^{M-s} |x_i - x_{i+s}| / (M - s)``
  along a given chain order, averaged over frames (also its root-mean-square variant).
- :func:`autocorrelation`: normalised ACF ``C(y) = (⟨a(t) a(t+y)⟩_t - ⟨a⟩²) / (⟨a²⟩ - ⟨a⟩²)``
  of a series, e.g. R_g²(t).
- :func:`relaxation_time`: the time at which an ACF decays to 1/e, from a fit of
  ``exp(-y / t_R)`` to the ACF before it first drops below a floor, or by interpolation
  at the first 1/e crossing.
- :func:`contact_map`: fraction of frames in which beads i, j are closer than a cutoff.
- :func:`wasserstein_1d`: the earth mover's distance between two 1-D samples.
"""

from __future__ import annotations

import numpy as np

from explorer.errors import AnalysisError

__all__ = [
    "autocorrelation",
    "contact_map",
    "mean_internal_distance",
    "radius_of_gyration_sq",
    "relaxation_time",
    "rg2_distribution",
    "wasserstein_1d",
]


def _frames(positions: np.ndarray) -> np.ndarray:
    x = np.asarray(positions, dtype=np.float64)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or x.shape[-1] != 3 or x.shape[1] == 0:
        raise AnalysisError(f"positions must be (frames, beads, 3) or (beads, 3); got {x.shape}")
    return x


def radius_of_gyration_sq(positions: np.ndarray, masses: np.ndarray | None = None) -> np.ndarray:
    """Mass-weighted R_g² per frame, shape (frames,) (a 2-D input gives shape (1,))."""
    x = _frames(positions)
    m = np.ones(x.shape[1]) if masses is None else np.asarray(masses, dtype=np.float64)
    if m.shape != (x.shape[1],) or np.any(m <= 0):
        raise AnalysisError(f"masses must be {x.shape[1]} positive values; got shape {m.shape}")
    w = m / m.sum()
    com = np.einsum("i,fid->fd", w, x)
    return np.einsum("i,fi->f", w, ((x - com[:, None]) ** 2).sum(-1))


def rg2_distribution(
    rg2: np.ndarray, bins: int | np.ndarray = 40, value_range: tuple[float, float] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Density histogram of R_g² samples: (bin centres, density) integrating to 1."""
    values = np.asarray(rg2, dtype=np.float64).reshape(-1)
    if values.size == 0:
        raise AnalysisError("no R_g² samples")
    density, edges = np.histogram(values, bins=bins, range=value_range, density=True)
    return 0.5 * (edges[1:] + edges[:-1]), density


def mean_internal_distance(
    positions: np.ndarray,
    order: np.ndarray | None = None,
    s_max: int | None = None,
    rms: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """⟨R(s)⟩ for s = 1 … s_max along ``order`` (default: bead index order).

    Returns (s, R(s)); with ``rms`` the root-mean-square ``√⟨|x_i - x_{i+s}|²⟩`` instead of
    the mean distance (R(s)² ∝ s for an ideal chain).
    """
    x = _frames(positions)
    if order is not None:
        x = x[:, np.asarray(order, dtype=np.int64)]
    n = x.shape[1]
    s_max = n - 1 if s_max is None else int(s_max)
    if not 1 <= s_max <= n - 1:
        raise AnalysisError(f"s_max must be in [1, {n - 1}], got {s_max}")
    s = np.arange(1, s_max + 1)
    out = np.empty(s.size)
    for k, sep in enumerate(s):
        d2 = ((x[:, sep:] - x[:, :-sep]) ** 2).sum(-1)
        out[k] = np.sqrt(d2.mean()) if rms else np.sqrt(d2).mean()
    return s, out


def autocorrelation(series: np.ndarray, max_lag: int | None = None) -> np.ndarray:
    """Normalised autocorrelation C(y), y = 0 … max_lag frames (C(0) = 1).

    Each lag averages over all available pairs (t, t + y), as in App. B.
    """
    a = np.asarray(series, dtype=np.float64).reshape(-1)
    n = a.size
    max_lag = n - 1 if max_lag is None else int(max_lag)
    if n < 2 or not 0 <= max_lag < n:
        raise AnalysisError(f"need ≥ 2 samples and 0 ≤ max_lag < {n}; got {n}, {max_lag}")
    mean, var = a.mean(), a.var()
    if var <= 0:
        raise AnalysisError("the series is constant; its autocorrelation is undefined")
    # FFT of the zero-padded deviations: O(n log n) for the long test trajectories.
    dev = a - mean
    size = 1 << int(np.ceil(np.log2(2 * n)))
    spectrum = np.fft.rfft(dev, size)
    corr = np.fft.irfft(spectrum * np.conj(spectrum), size)[: max_lag + 1]
    return corr / (n - np.arange(max_lag + 1)) / var


def relaxation_time(
    acf: np.ndarray, dt: float = 1.0, method: str = "fit", floor: float = 0.05
) -> float:
    """Relaxation time t_R of an ACF sampled every ``dt`` (same unit as ``dt``).

    ``method="fit"``: least-squares fit of log C(y) = -y / t_R through the origin over the
    lags before C first drops below ``floor`` (noise dominates below), App. B's
    exponential fit. ``method="crossing"``: linear interpolation of the first 1/e crossing.
    """
    c = np.asarray(acf, dtype=np.float64).reshape(-1)
    if c.size < 2 or not np.isfinite(c[0]):
        raise AnalysisError("the ACF needs at least two finite lags")
    y = np.arange(c.size) * float(dt)
    if method == "crossing":
        below = np.flatnonzero(c < np.exp(-1.0))
        if below.size == 0:
            raise AnalysisError("the ACF never decays below 1/e; the series is too short")
        k = int(below[0])
        frac = (c[k - 1] - np.exp(-1.0)) / (c[k - 1] - c[k])
        return float(y[k - 1] + frac * (y[k] - y[k - 1]))
    if method != "fit":
        raise AnalysisError(f"method must be 'fit' or 'crossing', got {method!r}")
    low = np.flatnonzero(c < floor)
    stop = int(low[0]) if low.size else c.size
    if stop < 2:
        raise AnalysisError("the ACF decays within one lag; sample the series more finely")
    yy, lc = y[1:stop], np.log(c[1:stop])
    slope = (yy @ lc) / (yy @ yy)
    if slope >= 0:
        raise AnalysisError("the ACF does not decay; the series is too short")
    return float(-1.0 / slope)


def contact_map(positions: np.ndarray, cutoff: float) -> np.ndarray:
    """(beads, beads) fraction of frames with |x_i - x_j| < ``cutoff`` (diagonal 1)."""
    x = _frames(positions)
    if cutoff <= 0:
        raise AnalysisError(f"cutoff must be positive, got {cutoff}")
    d = np.linalg.norm(x[:, :, None] - x[:, None], axis=-1)
    return (d < cutoff).mean(axis=0)


def wasserstein_1d(a: np.ndarray, b: np.ndarray) -> float:
    """Earth mover's distance W₁ between the empirical distributions of samples a and b."""
    a = np.sort(np.asarray(a, dtype=np.float64).reshape(-1))
    b = np.sort(np.asarray(b, dtype=np.float64).reshape(-1))
    if a.size == 0 or b.size == 0:
        raise AnalysisError("both samples must be non-empty")
    grid = np.sort(np.concatenate([a, b]))
    cdf_a = np.searchsorted(a, grid[:-1], side="right") / a.size
    cdf_b = np.searchsorted(b, grid[:-1], side="right") / b.size
    return float(np.sum(np.abs(cdf_a - cdf_b) * np.diff(grid)))
