"""PMF slices: harmonic wells of known stiffness, slabs, grids and errors."""

from __future__ import annotations

import numpy as np
import pytest
from ase import units
from ase.geometry import cellpar_to_cell

from explorer.analysis.pmf import pmf_slice
from explorer.errors import AnalysisError
from explorer.trajectory import Trajectory

TEMPERATURE_K = 600.0
K_SPRING = 1.0  # eV/Å², so σ = sqrt(k_B T / k) ≈ 0.23 Å at 600 K
LI, S = 3, 16
AXES = {"ab": (0, 1, 2), "bc": (1, 2, 0), "ac": (0, 2, 1)}


def _harmonic_li(
    cell: np.ndarray,
    plane: str,
    wells: list[tuple[float, float]],
    w_ranges: list[tuple[float, float]],
    per_well: int = 10,
    n_frames: int = 2000,
    seed: int = 0,
) -> Trajectory:
    """Li atoms vibrating isotropically (σ² = k_B T / k) around sites.

    Well ``n`` sits at in-plane fractional position ``wells[n]`` and holds
    ``per_well`` atoms spread over ``w_ranges[n]`` along the third axis. Two
    static S atoms check that only Li is counted. Atoms are shifted by random
    lattice vectors, as in unwrapped trajectories.
    """
    rng = np.random.default_rng(seed)
    first, second, normal = AXES[plane]
    sites = []
    for (u, v), (w_lo, w_hi) in zip(wells, w_ranges, strict=True):
        for w in np.linspace(w_lo, w_hi, per_well):
            frac = np.zeros(3)
            frac[[first, second, normal]] = u, v, w
            sites.append(frac)
    sites = np.array(sites) @ cell
    sigma = np.sqrt(units.kB * TEMPERATURE_K / K_SPRING)
    li = sites + sigma * rng.standard_normal((n_frames, *sites.shape))
    li += rng.integers(-2, 3, size=li.shape) @ cell
    s = np.broadcast_to(np.array([[0.1, 0.1, 0.1], [0.9, 0.9, 0.9]]) @ cell, (n_frames, 2, 3))
    return Trajectory(
        positions=np.concatenate([li, s], axis=1),
        cell=cell,
        numbers=[LI] * len(sites) + [S, S],
        times_ps=0.01 * np.arange(n_frames),
        metadata={"temperature_K": TEMPERATURE_K},
    )


def _fit_hessian(points: np.ndarray, values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted least squares of ``c + l·x + ½ xᵀ K x``; returns the 2×2 K."""
    x, y = points.T
    design = np.stack([np.ones_like(x), x, y, 0.5 * x**2, x * y, 0.5 * y**2], axis=1)
    root_w = np.sqrt(weights)
    coef, *_ = np.linalg.lstsq(design * root_w[:, None], values * root_w, rcond=None)
    return np.array([[coef[3], coef[4]], [coef[4], coef[5]]])


def _near(expected_pmf: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Bins whose *expected* PMF is below 1.5 k_B T: well sampled, and chosen
    without looking at the noisy estimate (selecting on it would bias the fit)."""
    return (expected_pmf < 1.5 * units.kB * TEMPERATURE_K) & (counts > 0)


def test_orthorhombic_well_recovers_spring_constant():
    cell = np.diag([8.0, 9.0, 10.0])
    traj = _harmonic_li(cell, "ab", [(0.5, 0.5)], [(0.0, 0.9)])
    result = pmf_slice(traj, "Li", "ab", bins=(100, 100))
    offset = result.xy - np.array([4.0, 4.5])
    near = _near(0.5 * K_SPRING * np.sum(offset**2, axis=-1), result.counts)
    # Counting noise of a bin is ~1/sqrt(counts) in ln ρ, hence the weights.
    hessian = _fit_hessian(offset[near], result.pmf[near], result.counts[near])
    np.testing.assert_allclose(hessian, K_SPRING * np.eye(2), atol=0.1 * K_SPRING)
    assert result.pmf.min() == 0.0
    assert np.isinf(result.pmf[0, 0]) and result.counts[0, 0] == 0  # far from the well


@pytest.mark.parametrize("plane", ["ab", "ac", "bc"])
def test_triclinic_well_recovers_spring_constant(plane):
    cell = cellpar_to_cell([8.0, 8.5, 9.0, 75.0, 100.0, 110.0])
    traj = _harmonic_li(cell, plane, [(0.5, 0.5)], [(0.0, 0.95)], per_well=20, n_frames=2000)
    result = pmf_slice(traj, "Li", plane, bins=(90, 90))
    # The well is isotropic in 3-D Cartesian space; its fractional coordinates
    # (u, v) = δ · M with M = columns of inv(cell) have covariance σ² MᵀM, so
    # ½ k_B T ξᵀ (σ² MᵀM)⁻¹ ξ = ½ ξᵀ [k (MᵀM)⁻¹] ξ (projection along the third axis).
    first, second, _ = AXES[plane]
    m = np.linalg.inv(cell)[:, [first, second]]
    expected = K_SPRING * np.linalg.inv(m.T @ m)
    uu, vv = np.meshgrid(result.frac_u, result.frac_v, indexing="ij")
    xi = np.stack([uu, vv], axis=-1) - 0.5
    near = _near(0.5 * np.einsum("...i,ij,...j->...", xi, expected, xi), result.counts)
    hessian_frac = _fit_hessian(xi[near], result.pmf[near], result.counts[near])
    np.testing.assert_allclose(hessian_frac, expected, rtol=0, atol=0.1 * np.abs(expected).max())
    k_recovered = np.trace(hessian_frac @ (m.T @ m)) / 2
    assert k_recovered == pytest.approx(K_SPRING, rel=0.1)


def test_cartesian_grid_of_a_triclinic_plane():
    cell = cellpar_to_cell([8.0, 8.5, 9.0, 75.0, 100.0, 110.0])
    traj = _harmonic_li(cell, "ac", [(0.5, 0.5)], [(0.0, 0.9)], n_frames=5)
    result = pmf_slice(traj, "Li", "ac", bins=(10, 20))
    a, c = cell[0], cell[2]
    step_u = result.xy[1, 0] - result.xy[0, 0]
    step_v = result.xy[0, 1] - result.xy[0, 0]
    assert np.linalg.norm(step_u) == pytest.approx(np.linalg.norm(a) / 10)
    assert np.linalg.norm(step_v) == pytest.approx(np.linalg.norm(c) / 20)
    assert step_u @ step_v == pytest.approx((a / 10) @ (c / 20))  # the angle between a and c
    assert step_u[1] == pytest.approx(0.0)  # x along the first axis
    assert result.xy_corners.shape == (11, 21, 2)
    np.testing.assert_allclose(result.frac_edges_u, np.linspace(0, 1, 11))


def test_density_is_atoms_per_projected_area():
    cell = np.diag([8.0, 9.0, 10.0])
    traj = _harmonic_li(cell, "ab", [(0.5, 0.5)], [(0.0, 0.9)], n_frames=50)
    result = pmf_slice(traj, "Li", "ab", bins=(40, 30), temperature_K=300.0)
    bin_area = 8.0 * 9.0 / (40 * 30)
    assert result.density.sum() * bin_area == pytest.approx(10.0)  # Li atoms per frame
    assert result.counts.sum() == 10 * 50
    assert result.temperature_K == 300.0  # the argument wins over metadata
    with np.errstate(divide="ignore"):
        expected = -units.kB * 300.0 * np.log(result.density / result.density.max())
    np.testing.assert_array_equal(result.pmf, expected)


def test_slab_selects_atoms_along_the_third_axis():
    cell = np.diag([8.0, 9.0, 10.0])
    traj = _harmonic_li(
        cell, "ab", [(0.25, 0.25), (0.75, 0.75)], [(0.2, 0.3), (0.6, 0.85)], n_frames=200
    )
    # Complementary slabs [0.05, 0.45] and [0.45, 1.05], each >= 6 σ from the other well.
    lower = pmf_slice(traj, "Li", "ab", bins=(8, 8), slab=(0.25, 0.4))
    upper = pmf_slice(traj, "Li", "ab", bins=(8, 8), slab=(0.75, 0.6))
    both = pmf_slice(traj, "Li", "ab", bins=(8, 8))
    assert lower.counts[2, 2] > 0 and lower.counts[6, 6] == 0 and np.isinf(lower.pmf[6, 6])
    assert upper.counts[6, 6] > 0 and upper.counts[2, 2] == 0
    np.testing.assert_array_equal(lower.counts + upper.counts, both.counts)
    # A slab across the periodic boundary w = 0 ≡ 1 catches atoms on both sides.
    wrapped = _harmonic_li(cell, "ab", [(0.5, 0.5)], [(0.9, 1.1)], n_frames=100)
    assert pmf_slice(wrapped, "Li", "ab", slab=(0.0, 0.4)).counts.sum() == 10 * 100
    assert pmf_slice(wrapped, "Li", "ab", slab=(0.98, 0.05)).counts.sum() < 10 * 100


def test_frames_discarded():
    traj = _harmonic_li(np.diag([8.0, 9.0, 10.0]), "ab", [(0.5, 0.5)], [(0.0, 0.9)], n_frames=50)
    result = pmf_slice(traj, discard_fraction=0.2)
    assert result.n_frames_used == 40
    assert result.counts.sum() == 10 * 40


def test_errors():
    traj = _harmonic_li(np.diag([8.0, 9.0, 10.0]), "ab", [(0.5, 0.5)], [(0.0, 0.9)], n_frames=5)
    with pytest.raises(AnalysisError, match="no 'Na'"):
        pmf_slice(traj, "Na")
    with pytest.raises(AnalysisError, match="plane"):
        pmf_slice(traj, "Li", "xy")
    with pytest.raises(AnalysisError, match="thickness"):
        pmf_slice(traj, "Li", slab=(0.5, 0.0))
    flat = _harmonic_li(np.diag([8.0, 9.0, 10.0]), "ab", [(0.5, 0.5)], [(0.2, 0.2)], n_frames=5)
    with pytest.raises(AnalysisError, match="in the slab"):
        pmf_slice(flat, "Li", slab=(0.7, 0.1))  # 5 Å = 20 σ away from every Li
    cold = Trajectory(traj.positions, traj.cell, traj.numbers, traj.times_ps)
    with pytest.raises(AnalysisError, match="temperature"):
        pmf_slice(cold, "Li")
    with pytest.raises(AnalysisError, match="positive"):
        pmf_slice(cold, "Li", temperature_K=-5.0)
    assert pmf_slice(cold, "Li", temperature_K=300.0).temperature_K == 300.0
