"""Two-dimensional potentials of mean force of one species on a lattice plane.

LiFlow seed 001 §II.4 (Fig. 4) shows Li PMFs on the a–b and a–c planes,
defined as the negative log density scaled by k_B T::

    F(u, v) = −k_B T ln( ρ(u, v) / ρ_max )          [eV]

Conventions used here:

* Positions are wrapped into the cell and expressed in fractional coordinates
  (u, v, w) along the lattice vectors. The plane ``"ab"`` histograms (u, v),
  i.e. it projects along the third lattice vector c (an oblique projection in
  a triclinic cell); ``"bc"`` and ``"ac"`` likewise.
* ``slab=(w0, thickness)`` keeps only atoms whose third fractional coordinate
  lies within ``thickness / 2`` of ``w0`` (periodically); without it the
  whole cell is projected.
* ρ is the mean number of atoms per frame per unit projected area, Å⁻²
  (bin area = |a × b| / (n_u n_v)); the PMF is shifted so that its minimum
  is 0 and is ``+inf`` in bins that were never visited.
* k_B is ``ase.units.kB`` (eV/K).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ase import units

from explorer.analysis.rdf import select_frames
from explorer.errors import AnalysisError
from explorer.trajectory import Trajectory

#: Lattice-vector indices of the two in-plane axes and of the projection axis.
PLANES: dict[str, tuple[int, int, int]] = {"ab": (0, 1, 2), "bc": (1, 2, 0), "ac": (0, 2, 1)}
TEMPERATURE_KEY = "temperature_K"


@dataclass
class PMFResult:
    """A PMF on a (n_u, n_v) grid of a lattice plane; first index along the first axis.

    Attributes:
        plane: ``"ab"``, ``"bc"`` or ``"ac"``.
        species: element whose density was histogrammed.
        frac_edges_u, frac_edges_v: (n + 1,) fractional bin edges along the two axes.
        frac_u, frac_v: (n,) fractional bin centres.
        xy: (n_u, n_v, 2) Cartesian bin centres in the plane, Å, in an
            orthonormal in-plane frame: x along the first lattice vector, y
            perpendicular to it within the plane.
        xy_corners: (n_u + 1, n_v + 1, 2) Cartesian bin corners, Å (for pcolormesh).
        pmf: (n_u, n_v) free energy, eV; 0 at the minimum, +inf where ρ = 0.
        density: (n_u, n_v) mean atoms per frame per projected area, Å⁻².
        counts: (n_u, n_v) number of samples (atom-frames) per bin.
        temperature_K: temperature used for k_B T, K.
        n_frames_used: frames histogrammed.
        slab: (w0, thickness) in fractional units, or None.
    """

    plane: str
    species: str
    frac_edges_u: np.ndarray
    frac_edges_v: np.ndarray
    frac_u: np.ndarray
    frac_v: np.ndarray
    xy: np.ndarray
    xy_corners: np.ndarray
    pmf: np.ndarray
    density: np.ndarray
    counts: np.ndarray
    temperature_K: float
    n_frames_used: int
    slab: tuple[float, float] | None = None


def resolve_temperature(traj: Trajectory, temperature_K: float | None) -> float:
    """The argument, else ``traj.metadata["temperature_K"]``, else AnalysisError."""
    if temperature_K is None:
        temperature_K = traj.metadata.get(TEMPERATURE_KEY)
    if temperature_K is None:
        raise AnalysisError(
            "no temperature: pass temperature_K or set metadata['temperature_K'] on the trajectory"
        )
    temperature_K = float(temperature_K)
    if not temperature_K > 0:
        raise AnalysisError(f"temperature must be positive; got {temperature_K} K")
    return temperature_K


def plane_frame(cell: np.ndarray, plane: str) -> np.ndarray:
    """(2, 2) rows = the two in-plane lattice vectors in an orthonormal in-plane frame, Å.

    x runs along the first lattice vector, y perpendicular to it within the
    plane, so fractional (u, v) maps to Cartesian ``(u, v) @ plane_frame``.
    """
    first, second, _ = PLANES[plane]
    a, b = np.asarray(cell, dtype=np.float64)[[first, second]]
    x_hat = a / np.linalg.norm(a)
    b_perp = b - (b @ x_hat) * x_hat
    y_hat = b_perp / np.linalg.norm(b_perp)
    return np.array([[a @ x_hat, 0.0], [b @ x_hat, b @ y_hat]])


def _fractional_samples(
    traj: Trajectory, frames: np.ndarray, atoms: np.ndarray, plane: str
) -> np.ndarray:
    """(samples, 3) wrapped fractional coordinates ordered (u, v, w) for the plane."""
    positions = traj.positions[frames][:, atoms].astype(np.float64).reshape(-1, 3)
    frac = positions @ np.linalg.inv(traj.cell)
    frac -= np.floor(frac)
    # Rounding can leave exactly 1.0 after the floor; fold it back into [0, 1).
    frac[frac >= 1.0] = 0.0
    return frac[:, list(PLANES[plane])]


def _in_slab(w: np.ndarray, slab: tuple[float, float]) -> np.ndarray:
    """Mask of fractional w within ``thickness / 2`` of ``w0``, periodically."""
    w0, thickness = slab
    if not 0.0 < thickness <= 1.0:
        raise AnalysisError(f"slab thickness must lie in (0, 1] (fractional); got {thickness}")
    offset = (w - w0 + 0.5) % 1.0 - 0.5
    return np.abs(offset) <= 0.5 * thickness


def pmf_slice(
    traj: Trajectory,
    species: str = "Li",
    plane: str = "ab",
    bins: tuple[int, int] = (60, 60),
    temperature_K: float | None = None,
    discard_fraction: float = 0.0,
    slab: tuple[float, float] | None = None,
    discard_ps: float | None = None,
    frame_stride: int = 1,
) -> PMFResult:
    """2-D PMF ``F = −k_B T ln(ρ / ρ_max)`` of ``species`` on a lattice plane (seed 001 Fig. 4).

    Args:
        traj: trajectory (unwrapped positions are fine; they are wrapped here).
        species: element symbol, e.g. ``"Li"``.
        plane: ``"ab"``, ``"bc"`` or ``"ac"``: the two lattice vectors spanning
            the plane; the projection runs along the third.
        bins: bins along the first and second in-plane axis.
        temperature_K: K; default ``traj.metadata["temperature_K"]``.
        discard_fraction, discard_ps, frame_stride: frame selection as in
            ``explorer.analysis.rdf.select_frames``.
        slab: ``(w0, thickness)`` along the third axis, fractional; only atoms
            within the slab are counted.

    Returns:
        PMFResult with the PMF in eV (+inf in empty bins) and the grid.
    """
    if plane not in PLANES:
        raise AnalysisError(f"plane must be one of {sorted(PLANES)}; got {plane!r}")
    n_u, n_v = (int(n) for n in bins)
    if n_u < 1 or n_v < 1:
        raise AnalysisError(f"bins must be positive; got {bins}")
    first, second, normal = PLANES[plane]
    needed_periodic = [first, second] + ([normal] if slab is not None else [])
    if not np.all(traj.pbc[needed_periodic]):
        raise AnalysisError(
            f"plane {plane!r} (and a slab) needs periodic cell axes {needed_periodic}"
        )
    atoms = traj.species_indices(species)
    if atoms.size == 0:
        raise AnalysisError(f"no {species!r} atoms in the trajectory ({sorted(set(traj.symbols))})")
    temperature_K = resolve_temperature(traj, temperature_K)
    frames = select_frames(traj, discard_fraction, discard_ps, frame_stride)

    frac = _fractional_samples(traj, frames, atoms, plane)
    if slab is not None:
        frac = frac[_in_slab(frac[:, 2], slab)]
        if frac.shape[0] == 0:
            raise AnalysisError(f"no {species} atom lies in the slab {slab}")
    edges_u = np.linspace(0.0, 1.0, n_u + 1)
    edges_v = np.linspace(0.0, 1.0, n_v + 1)
    counts, _, _ = np.histogram2d(frac[:, 0], frac[:, 1], bins=(edges_u, edges_v))

    frame_xy = plane_frame(traj.cell, plane)
    bin_area = abs(np.linalg.det(frame_xy)) / (n_u * n_v)
    density = counts / (frames.size * bin_area)
    with np.errstate(divide="ignore"):
        pmf = -units.kB * temperature_K * np.log(density / density.max())

    centres_u = 0.5 * (edges_u[:-1] + edges_u[1:])
    centres_v = 0.5 * (edges_v[:-1] + edges_v[1:])
    return PMFResult(
        plane=plane,
        species=species,
        frac_edges_u=edges_u,
        frac_edges_v=edges_v,
        frac_u=centres_u,
        frac_v=centres_v,
        xy=_grid_xy(centres_u, centres_v, frame_xy),
        xy_corners=_grid_xy(edges_u, edges_v, frame_xy),
        pmf=pmf,
        density=density,
        counts=counts.astype(np.int64),
        temperature_K=temperature_K,
        n_frames_used=int(frames.size),
        slab=None if slab is None else (float(slab[0]), float(slab[1])),
    )


def _grid_xy(u: np.ndarray, v: np.ndarray, frame_xy: np.ndarray) -> np.ndarray:
    """(len(u), len(v), 2) in-plane Cartesian points of a fractional grid, Å."""
    uu, vv = np.meshgrid(u, v, indexing="ij")
    return np.stack([uu, vv], axis=-1) @ frame_xy
