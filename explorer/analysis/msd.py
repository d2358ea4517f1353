"""Mean squared displacement per species with time-origin averaging.

LiFlow seed (001) eq. 16: for the atoms S of one species,

    MSD_S(t) = 1/|S| Σ_{i∈S} ⟨ |x_i(t0 + t) − x_i(t0)|² ⟩_{t0},

averaged over every time origin t0 of the (unwrapped) trajectory. Lags are in
ps, MSD in Å². Computed for all lags at once with the FFT form of the
time-origin average (O(F log F) per atom instead of O(F²)).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from explorer.errors import AnalysisError
from explorer.trajectory import Trajectory

_UNIFORM_TOLERANCE = 1e-3  # relative spread of frame spacings accepted as uniform
_ROUND_OFF = 1e-12  # relative precision of the FFT origin average


@dataclass(frozen=True)
class MSDResult:
    """MSD curves of each species on a common grid of lag times.

    Attributes:
        times_ps: (lags,) lag times, ps, starting at 0.
        msd: species symbol -> (lags,) MSD, Å².
        n_origins: (lags,) number of time origins averaged at each lag.
        n_atoms: species symbol -> number of atoms averaged.
        total_time_ps: span of the analysed trajectory, ps.
    """

    times_ps: np.ndarray
    msd: dict[str, np.ndarray]
    n_origins: np.ndarray
    n_atoms: dict[str, int]
    total_time_ps: float

    @property
    def species(self) -> list[str]:
        return list(self.msd)

    def log10(self, species: str) -> np.ndarray:
        """log10 of MSD in Å² (LiFlow's kinetic metric); NaN where MSD = 0."""
        values = self.msd[species]
        with np.errstate(divide="ignore"):
            return np.where(values > 0, np.log10(np.where(values > 0, values, 1.0)), np.nan)

    def at(self, species: str, time_ps: float) -> float:
        """MSD of a species at a lag time, Å² (linear interpolation)."""
        return float(np.interp(time_ps, self.times_ps, self.msd[species]))


def uniform_frame_spacing(times_ps: np.ndarray) -> float:
    """The constant spacing between frames, ps; raises if frames are uneven."""
    if times_ps.size < 2:
        raise AnalysisError("need at least two frames")
    steps = np.diff(times_ps)
    dt = float(np.median(steps))
    if np.max(np.abs(steps - dt)) > _UNIFORM_TOLERANCE * dt:
        raise AnalysisError(
            "frames are not evenly spaced in time; resample the trajectory first "
            f"(spacings from {steps.min():.4g} to {steps.max():.4g} ps)"
        )
    return dt


def squared_displacement_origin_average(positions: np.ndarray) -> np.ndarray:
    """Time-origin averaged squared displacement of each atom, Å².

    ``positions`` (frames, atoms, 3) unwrapped; returns (frames, atoms) where
    row m is ⟨|x(t0+m) − x(t0)|²⟩ over the F − m origins. Uses
    |a − b|² = a² + b² − 2a·b: the squared terms from running sums and the
    cross term as an autocorrelation by FFT.
    """
    x = np.asarray(positions, dtype=np.float64)
    n = x.shape[0]
    if n < 2:
        raise AnalysisError("need at least two frames")
    counts = n - np.arange(n)  # origins per lag
    sq = np.sum(x**2, axis=2)  # (frames, atoms)
    # Σ_{t0} |x(t0)|² + |x(t0+m)|² over t0 = 0..n-m-1, from cumulative sums.
    cumsum = np.concatenate([np.zeros((1, sq.shape[1])), np.cumsum(sq, axis=0)])
    total = cumsum[-1]
    lags = np.arange(n)
    head = cumsum[n - lags]  # Σ_{t0 < n-m} |x(t0)|²
    tail = total - cumsum[lags]  # Σ_{t0 >= m} |x(t0)|²
    size = 1 << int(np.ceil(np.log2(2 * n)))
    spectrum = np.fft.rfft(x, n=size, axis=0)
    cross = np.fft.irfft(spectrum * spectrum.conj(), n=size, axis=0)[:n].sum(axis=2)
    msd = (head + tail - 2.0 * cross) / counts[:, None]
    msd[0] = 0.0
    # The FFT leaves round-off of ~1e-15 of |x|²; zero it so that atoms that
    # do not move have MSD 0 (and no spurious 1e-13 Å² on a log scale).
    msd[msd < _ROUND_OFF * sq.max()] = 0.0
    return msd


def msd(
    traj: Trajectory,
    species: Iterable[str] | None = None,
    max_lag_ps: float | None = None,
    subtract_drift: bool = False,
) -> MSDResult:
    """MSD per species (LiFlow seed eq. 16), time-origin averaged.

    Args:
        traj: trajectory with unwrapped positions and evenly spaced frames.
        species: element symbols to analyse; default every element present.
        max_lag_ps: longest lag returned; default the whole trajectory (the
            last lags average few origins and are noisy).
        subtract_drift: remove the centre-of-mass drift of the whole system
            (mass-weighted) from every frame first, as MD with a fixed centre
            of mass would have it.
    """
    dt = uniform_frame_spacing(traj.times_ps)
    positions = traj.positions.astype(np.float64)
    if subtract_drift:
        positions = positions - centre_of_mass_drift(traj)[:, None, :]
    symbols = np.asarray(traj.symbols)
    wanted = list(dict.fromkeys(species)) if species is not None else list(dict.fromkeys(symbols))
    n_lags = traj.n_frames
    if max_lag_ps is not None:
        n_lags = min(n_lags, int(np.floor(max_lag_ps / dt + 1e-9)) + 1)
    curves, counts = {}, {}
    for symbol in wanted:
        index = np.flatnonzero(symbols == symbol)
        if index.size == 0:
            raise AnalysisError(
                f"no {symbol} atoms in this trajectory (it holds {sorted(set(symbols))})"
            )
        per_atom = squared_displacement_origin_average(positions[:, index])
        curves[symbol] = per_atom[:n_lags].mean(axis=1)
        counts[symbol] = int(index.size)
    return MSDResult(
        times_ps=dt * np.arange(n_lags),
        msd=curves,
        n_origins=traj.n_frames - np.arange(n_lags),
        n_atoms=counts,
        total_time_ps=float(traj.times_ps[-1] - traj.times_ps[0]),
    )


def centre_of_mass_drift(traj: Trajectory) -> np.ndarray:
    """Mass-weighted centre-of-mass displacement from frame 0, (frames, 3) Å."""
    from ase.data import atomic_masses

    masses = atomic_masses[traj.numbers]
    com = np.einsum("fai,a->fi", traj.positions.astype(np.float64), masses) / masses.sum()
    return com - com[0]
