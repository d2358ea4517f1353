"""RDFs against MDAnalysis, ASE, brute force and physics (ideal gas, invariances)."""

from __future__ import annotations

import sys
from itertools import product

import numpy as np
import pytest
from ase.geometry import cellpar_to_cell

from explorer.analysis.rdf import (
    RDFResult,
    default_r_max,
    min_overlap_score,
    overlap_score,
    pair_key,
    pair_samples,
    rdf,
    rdf_from_frames,
    rdf_iae,
    rdf_mae,
    select_frames,
    sparse_pairs,
    to_distinct_pair_normalisation,
)
from explorer.errors import AnalysisError
from explorer.trajectory import Trajectory

# Lengths and angles exactly representable in float32, so that MDAnalysis
# (which keeps box dimensions in float32) sees the very same cell as we do.
CELLPAR = np.array([10.5, 11.25, 9.75, 82.0, 97.5, 104.0], dtype=np.float32)
LI, S = 3, 16


def _crystal(
    rng: np.random.Generator,
    n_frames: int = 4,
    noise: float = 0.3,
    cellpar: np.ndarray = CELLPAR,
    grid: tuple[int, int, int] = (4, 4, 6),
    dyadic: bool = False,
) -> Trajectory:
    """A perturbed triclinic crystal of 2/3 Li and 1/3 S on a grid of sites.

    With ``dyadic`` the cell and positions are rounded to multiples of 2^-8 and
    2^-12 Å, so that adding lattice vectors is exact in float32 storage.
    """
    cell = cellpar_to_cell(cellpar.astype(np.float64))
    if dyadic:
        cell = np.round(cell * 256) / 256
    sites = (
        np.stack(np.meshgrid(*[np.arange(n) / n for n in grid], indexing="ij"), -1).reshape(-1, 3)
        @ cell
    )
    numbers = np.full(len(sites), LI)
    numbers[rng.permutation(len(sites))[: len(sites) // 3]] = S
    positions = sites + noise * rng.standard_normal((n_frames, len(sites), 3))
    if dyadic:
        positions = np.round(positions * 4096) / 4096
    return Trajectory(
        positions=positions, cell=cell, numbers=numbers, times_ps=0.1 * np.arange(n_frames)
    )


@pytest.fixture(scope="module")
def crystal() -> Trajectory:
    return _crystal(np.random.default_rng(7))


# -- independent tools ------------------------------------------------------------


def _mdanalysis_rdf(traj: Trajectory, sel_a: str, sel_b: str, r_max: float, n_bins: int):
    import MDAnalysis as mda
    from MDAnalysis.analysis.rdf import InterRDF
    from MDAnalysis.coordinates.memory import MemoryReader

    u = mda.Universe.empty(traj.n_atoms, trajectory=True)
    u.add_TopologyAttr("type", [str(z) for z in traj.numbers])
    u.load_new(
        traj.positions.copy(),
        format=MemoryReader,
        dimensions=np.tile(CELLPAR, (traj.n_frames, 1)),
    )
    g1, g2 = u.select_atoms(sel_a), u.select_atoms(sel_b)
    # Same group: drop i == j (self distance 0); MDAnalysis then divides by N(N-1).
    block = (1, 1) if sel_a == sel_b else None
    analysis = InterRDF(g1, g2, nbins=n_bins, range=(0.0, r_max), exclusion_block=block)
    analysis.run()
    return analysis.results.bins, analysis.results.rdf


def test_cell_matches_mdanalysis_convention():
    from MDAnalysis.lib.mdamath import triclinic_vectors

    np.testing.assert_allclose(
        cellpar_to_cell(CELLPAR.astype(np.float64)),
        triclinic_vectors(CELLPAR.astype(np.float64), dtype=np.float64),
        atol=1e-12,
    )


def test_against_mdanalysis(crystal):
    ours = rdf(crystal, discard_fraction=0.0)
    n_bins = ours.r.size
    counts = ours.species_counts
    n_total = crystal.n_atoms
    cases = [
        ("all", "all", ours.total * n_total / (n_total - 1)),
        (
            "type 3",
            "type 3",
            to_distinct_pair_normalisation(ours.partial("Li", "Li"), ("Li", "Li"), counts),
        ),
        (
            "type 16",
            "type 16",
            to_distinct_pair_normalisation(ours.partial("S", "S"), ("S", "S"), counts),
        ),
        ("type 3", "type 16", ours.partial("Li", "S")),
        ("type 16", "type 3", ours.partial("S", "Li")),
    ]
    for sel_a, sel_b, expected in cases:
        r, g = _mdanalysis_rdf(crystal, sel_a, sel_b, ours.r_max, n_bins)
        np.testing.assert_allclose(r, ours.r, atol=1e-9)
        assert g.max() > 1.0  # a meaningful, non-empty comparison
        # Pair counts agree exactly (measured 2e-14), so 1e-6 rather than 1e-3: it also
        # catches a 4πr²dr shell, which is off by ~dr²/(12 r²) relative.
        np.testing.assert_allclose(expected, g, atol=1e-6, rtol=0, err_msg=f"{sel_a} / {sel_b}")


def test_against_ase(crystal):
    from ase.geometry.rdf import get_rdf

    ours = rdf(crystal, discard_fraction=0.0)
    frames = crystal.to_atoms_list()
    n_bins = ours.r.size
    g, r = get_rdf(frames, ours.r_max, n_bins)
    np.testing.assert_allclose(r, ours.r, atol=1e-9)
    np.testing.assert_allclose(ours.total, g, atol=1e-6, rtol=0)
    for a, b in [("Li", "Li"), ("Li", "S"), ("S", "Li"), ("S", "S")]:
        g = get_rdf(frames, ours.r_max, n_bins, elements=(a, b), no_dists=True)
        np.testing.assert_allclose(ours.partial(a, b), g, atol=1e-6, rtol=0, err_msg=f"{a}-{b}")


def _brute_force_counts(positions, cell, numbers, pair, edges, n_images):
    """Ordered-pair counts by explicit enumeration of lattice images."""
    shifts = np.array(list(product(range(-n_images, n_images + 1), repeat=3))) @ cell
    a = positions[:, numbers == pair[0]]
    b = positions[:, numbers == pair[1]]
    d = np.linalg.norm(
        b[:, None, :, None, :] + shifts[None, None, None] - a[:, :, None, None, :], axis=-1
    )
    d = d[d > 1e-9]  # the atom itself at zero shift
    return np.histogram(d, bins=edges)[0]


def test_beyond_half_cell_matches_brute_force():
    traj = _crystal(
        np.random.default_rng(3),
        n_frames=2,
        grid=(2, 2, 3),
        cellpar=np.array([6.0, 6.5, 7.0, 75.0, 100.0, 112.0], np.float32),
    )
    r_max = 2.6 * default_r_max(traj.cell)  # several images of every atom
    ours = rdf(traj, r_max=r_max, bin_width=0.1, discard_fraction=0.0)
    positions = traj.positions.astype(np.float64)
    numbers = traj.numbers
    n_of = ours.species_counts
    shell = 4 / 3 * np.pi * np.diff(ours.edges**3)
    for a, b in [(LI, LI), (LI, S), (S, S)]:
        counts = _brute_force_counts(positions, traj.cell, numbers, (a, b), ours.edges, 4)
        key = pair_key(*[{LI: "Li", S: "S"}[z] for z in (a, b)])
        expected = traj.volume * counts / (traj.n_frames * n_of[key[0]] * n_of[key[1]] * shell)
        np.testing.assert_allclose(ours.partials[key], expected, atol=1e-9)


def test_ase_backend_gives_the_same_result(crystal, monkeypatch):
    with_vesin = rdf(crystal[:2], r_max=7.0, discard_fraction=0.0)
    monkeypatch.setitem(sys.modules, "vesin", None)  # import vesin -> ImportError
    with_ase = rdf(crystal[:2], r_max=7.0, discard_fraction=0.0)
    np.testing.assert_allclose(with_vesin.total, with_ase.total, atol=1e-12)
    for key, g in with_vesin.partials.items():
        np.testing.assert_allclose(g, with_ase.partials[key], atol=1e-12)


# -- physics --------------------------------------------------------------------------


def test_ideal_gas_including_periodic_images():
    rng = np.random.default_rng(11)
    cell = cellpar_to_cell([9.0, 10.0, 11.0, 70.0, 80.0, 100.0])
    n_atoms, n_frames = 150, 40
    positions = rng.random((n_frames, n_atoms, 3)) @ cell
    traj = Trajectory(positions, cell, np.full(n_atoms, LI), np.arange(n_frames, dtype=float))
    r_max = 11.5  # beyond every lattice vector: images beyond the minimum image count
    assert r_max > 2 * default_r_max(cell)
    result = rdf(traj, r_max=r_max, bin_width=0.2, discard_fraction=0.0)
    volume = traj.volume
    shell = 4 / 3 * np.pi * np.diff(result.edges**3)
    # Each atom also sees its own images at the lattice-vector lengths (deterministic).
    lattice = np.array(list(product(range(-3, 4), repeat=3))) @ cell
    lengths = np.linalg.norm(lattice, axis=1)
    images_per_bin = np.histogram(lengths[lengths > 0], bins=result.edges)[0]
    expected = n_frames * (n_atoms * (n_atoms - 1) * shell / volume + n_atoms * images_per_bin)
    observed = result.total * n_frames * n_atoms**2 * shell / volume
    # Unordered pair counts are ~Poisson; ordered ones count each twice.
    sigma = np.sqrt(2 * n_frames * n_atoms * (n_atoms - 1) * shell / volume)
    z = (observed - expected) / sigma
    assert np.abs(z).max() < 5
    assert abs(z.mean()) < 5 / np.sqrt(z.size)
    assert images_per_bin.sum() > 0  # the image spikes were tested
    # Away from image spikes g = (N - 1)/N (our N^2 normalisation).
    far = (images_per_bin == 0) & (result.r > 2.0)
    assert np.average(result.total[far], weights=shell[far]) == pytest.approx(
        (n_atoms - 1) / n_atoms, abs=0.01
    )


def test_partials_sum_to_total(crystal):
    result = rdf(crystal, discard_fraction=0.0)
    n = crystal.n_atoms
    summed = np.zeros_like(result.total)
    for (a, b), g in result.partials.items():
        weight = result.species_counts[a] * result.species_counts[b] / n**2
        summed += (1 if a == b else 2) * weight * g
    np.testing.assert_allclose(summed, result.total, atol=1e-12)


def _assert_same(first: RDFResult, second: RDFResult, atol: float = 1e-6) -> None:
    np.testing.assert_allclose(first.edges, second.edges, atol=1e-12)
    np.testing.assert_allclose(first.total, second.total, atol=atol)
    assert first.partials.keys() == second.partials.keys()
    for key in first.partials:
        np.testing.assert_allclose(first.partials[key], second.partials[key], atol=atol)


def test_rotation_invariance():
    traj = _crystal(np.random.default_rng(5), n_frames=2)
    rotation, _ = np.linalg.qr(np.random.default_rng(6).standard_normal((3, 3)))
    rotation *= np.sign(np.linalg.det(rotation))  # proper rotation
    positions = traj.positions.astype(np.float64)
    # float64 path: float32 storage of rotated positions would move distances by 1e-6 Å.
    reference = rdf_from_frames(positions, traj.cell, traj.numbers, r_max=9.0)
    rotated = rdf_from_frames(positions @ rotation.T, traj.cell @ rotation.T, traj.numbers, 9.0)
    _assert_same(reference, rotated)


@pytest.fixture(scope="module")
def dyadic_crystal() -> Trajectory:
    return _crystal(np.random.default_rng(9), n_frames=2, dyadic=True)


def test_permutation_invariance(dyadic_crystal):
    traj = dyadic_crystal
    order = np.random.default_rng(1).permutation(traj.n_atoms)
    permuted = Trajectory(traj.positions[:, order], traj.cell, traj.numbers[order], traj.times_ps)
    _assert_same(rdf(traj, discard_fraction=0.0), rdf(permuted, discard_fraction=0.0))


def test_lattice_shift_invariance(dyadic_crystal):
    traj = dyadic_crystal
    shifts = np.random.default_rng(2).integers(-3, 4, size=traj.positions.shape) @ traj.cell
    shifted = Trajectory(traj.positions + shifts, traj.cell, traj.numbers, traj.times_ps)
    assert np.array_equal(
        shifted.positions.astype(np.float64), traj.positions.astype(np.float64) + shifts
    )  # exact in float32
    _assert_same(rdf(traj, discard_fraction=0.0), rdf(shifted, discard_fraction=0.0))


def test_supercell_invariance(dyadic_crystal):
    traj = dyadic_crystal
    shifts = np.array(list(product(range(2), repeat=3))) @ traj.cell
    positions = (traj.positions[:, None] + shifts[None, :, None]).reshape(traj.n_frames, -1, 3)
    supercell = Trajectory(
        positions, 2 * traj.cell, np.tile(traj.numbers, len(shifts)), traj.times_ps
    )
    r_max = default_r_max(traj.cell)
    _assert_same(
        rdf(traj, r_max=r_max, discard_fraction=0.0),
        rdf(supercell, r_max=r_max, discard_fraction=0.0),
    )


# -- frames, options, errors ------------------------------------------------------------


def test_induction_period_and_stride():
    traj = _crystal(np.random.default_rng(0), n_frames=10)
    traj.times_ps = np.arange(10, dtype=float)  # 1 ps per frame
    assert select_frames(traj).tolist() == list(range(2, 10))  # 20 %
    assert select_frames(traj, discard_ps=5.0).tolist() == [5, 6, 7, 8, 9]
    assert select_frames(traj, discard_fraction=0.0, frame_stride=3).tolist() == [0, 3, 6, 9]
    assert rdf(traj, frame_stride=2).n_frames_used == 4
    later = rdf(traj, discard_ps=5.0)
    np.testing.assert_allclose(later.total, rdf(traj[5:], discard_fraction=0.0).total)
    with pytest.raises(AnalysisError):
        select_frames(traj, discard_ps=20.0)
    with pytest.raises(AnalysisError):
        select_frames(traj, discard_fraction=1.0)


def test_grid_defaults_and_pairs(crystal):
    result = rdf(crystal, pairs=[("S", "Li")])
    assert list(result.partials) == [("Li", "S")]
    assert result.bin_width == 0.05
    assert result.r_max <= default_r_max(crystal.cell) < result.r_max + 0.05
    np.testing.assert_allclose(result.r, result.edges[:-1] + 0.025)
    assert pair_key("S", "Li") == ("Li", "S")


def test_errors(crystal):
    with pytest.raises(AnalysisError, match="not in the system"):
        rdf(crystal, pairs=[("Li", "Na")])
    with pytest.raises(AnalysisError):
        rdf(crystal, pairs=[("Li", "Xx")])
    with pytest.raises(AnalysisError):
        rdf(crystal, r_max=0.01)
    with pytest.raises(AnalysisError, match="pairs per frame"):
        rdf(crystal, r_max=1e4)
    open_cell = Trajectory(
        crystal.positions, crystal.cell, crystal.numbers, crystal.times_ps, pbc=[True, True, False]
    )
    with pytest.raises(AnalysisError, match="periodic"):
        rdf(open_cell)
    with pytest.raises(AnalysisError):
        rdf(crystal).partial("Li", "Na")


# -- scores ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_results() -> tuple[RDFResult, RDFResult]:
    hot = _crystal(np.random.default_rng(21), noise=0.45)
    cold = _crystal(np.random.default_rng(22), noise=0.15)
    return rdf(hot, discard_fraction=0.0), rdf(cold, discard_fraction=0.0)


def test_scores_of_identical_rdfs(two_results):
    result, _ = two_results
    assert rdf_mae(result, result) == 0.0
    assert all(score == 1.0 for score in overlap_score(result, result).values())
    assert min_overlap_score(result, result) == 1.0


def test_scores_of_different_rdfs(two_results):
    hot, cold = two_results
    scores = overlap_score(hot, cold)
    assert set(scores) == {("Li", "Li"), ("Li", "S"), ("S", "S")}
    assert scores == pytest.approx(overlap_score(cold, hot), abs=1e-12)
    assert all(0.0 <= s < 0.99 for s in scores.values())
    assert min_overlap_score(hot, cold) == min(scores.values())
    # Eq. 7 written out with trapezoids on the bin centres (equal to bin sums here).
    g, g_ref = hot.partial("Li", "S"), cold.partial("Li", "S")
    expected = 1 - np.trapezoid(np.abs(g - g_ref), hot.r) / (
        np.trapezoid(g, hot.r) + np.trapezoid(g_ref, hot.r)
    )
    assert scores[("Li", "S")] == pytest.approx(expected, abs=0.02)
    iae = rdf_iae(hot, cold)
    assert iae == pytest.approx(rdf_iae(cold, hot))
    assert iae == pytest.approx(np.sum(np.abs(hot.total - cold.total)) * 0.05)
    assert rdf_iae(hot, cold, r_max=2.0) < iae
    assert rdf_iae(hot, cold, pair=("S", "Li")) > 0
    # The MAE is the integral over the range it covers: the mean |Δg| over the bins.
    assert rdf_mae(hot, cold) == pytest.approx(iae / hot.r_max)
    assert rdf_mae(hot, cold) == pytest.approx(np.mean(np.abs(hot.total - cold.total)))
    assert rdf_mae(hot, cold, r_max=2.0) == pytest.approx(rdf_iae(hot, cold, r_max=2.0) / 2.0)
    assert rdf_mae(hot, cold, pair=("S", "Li")) == pytest.approx(
        rdf_iae(hot, cold, pair=("Li", "S")) / hot.r_max
    )


def test_mae_and_integral_of_step_functions():
    """g = 2 on [0, 0.5) Å against g = 2 on [0.25, 0.75) Å, 2-Å grids of 0.05-Å bins:
    |Δg| = 2 on 0.5 Å of the 2 Å, so ∫|Δg| dr = 1 Å and the MAE (1/2 Å) · 1 Å = 0.5."""
    a, b = _step_result(0, 10), _step_result(5, 15)
    assert rdf_iae(a, b) == pytest.approx(1.0)
    assert rdf_mae(a, b) == pytest.approx(0.5)
    # Over [0, 1 Å] the same difference is half the range: the MAE doubles, ∫ does not.
    assert rdf_iae(a, b, r_max=1.0) == pytest.approx(1.0)
    assert rdf_mae(a, b, r_max=1.0) == pytest.approx(1.0)


def _step_result(lo: int, hi: int, n_bins: int = 40, bin_width: float = 0.05) -> RDFResult:
    edges = bin_width * np.arange(n_bins + 1)
    g = np.zeros(n_bins)
    g[lo:hi] = 2.0
    return RDFResult(
        0.5 * (edges[1:] + edges[:-1]), edges, g, {("Li", "Li"): g}, 1, float(edges[-1]), bin_width
    )


def test_overlap_bounds_and_grids():
    assert min_overlap_score(_step_result(0, 10), _step_result(20, 30)) == 0.0
    assert min_overlap_score(_step_result(0, 10), _step_result(5, 15)) == pytest.approx(0.5)
    # A longer grid is compared on the common range only.
    assert min_overlap_score(_step_result(0, 10), _step_result(0, 10, n_bins=60)) == 1.0
    with pytest.raises(AnalysisError, match="bin widths"):
        rdf_mae(_step_result(0, 10), _step_result(0, 10, bin_width=0.1))
    with pytest.raises(AnalysisError, match="beyond"):
        rdf_mae(_step_result(0, 10), _step_result(0, 10), r_max=5.0)
    empty = _step_result(0, 10)
    empty.partials = {}
    with pytest.raises(AnalysisError, match="share no"):
        min_overlap_score(empty, _step_result(0, 10))


def test_pair_samples_count_the_distances_behind_each_partial():
    """Inverting the normalisation gives the brute-force number of distinct pairs."""
    from ase import Atoms
    from ase.neighborlist import neighbor_list

    traj = _crystal(np.random.default_rng(5), n_frames=3)
    result = rdf(traj, discard_fraction=0.0)
    for r_max in (None, 2.5):
        cutoff = result.r_max if r_max is None else r_max
        expected = dict.fromkeys(result.partials, 0)
        for frame in traj.positions:
            atoms = Atoms(numbers=traj.numbers, positions=frame, cell=traj.cell, pbc=True)
            i, j = neighbor_list("ij", atoms, cutoff)
            for a, b in expected:
                za, zb = atoms.numbers[i], atoms.numbers[j]
                ordered = np.sum(
                    (za == LI if a == "Li" else za == S) & (zb == (LI if b == "Li" else S))
                )
                expected[(a, b)] += ordered / 2 if a == b else ordered
        got = pair_samples(result, r_max)
        for key, count in expected.items():
            assert got[key] == pytest.approx(count, rel=1e-9), (key, r_max)


def test_sparse_pairs_are_the_thinly_sampled_ones():
    """Two S atoms among 94 Li: S–S has about one distance per frame, Li–S some tens
    (each S sees ~30 Li within r_max, too few over 2 frames), Li–Li thousands."""
    traj = _crystal(np.random.default_rng(6), n_frames=2)
    numbers = np.full(traj.n_atoms, LI)
    numbers[:2] = S
    traj = Trajectory(traj.positions, traj.cell, numbers, traj.times_ps)
    result = rdf(traj, discard_fraction=0.0)
    samples = pair_samples(result)
    n_bins = result.r.size
    assert samples[("S", "S")] < n_bins < 5 * n_bins < samples[("Li", "Li")]
    assert sparse_pairs(result, result) == [("Li", "S"), ("S", "S")]
    assert sparse_pairs(result, result, per_bin=0.0) == []
    # Sparse in either result is enough.
    dense = rdf(_crystal(np.random.default_rng(6), n_frames=6), discard_fraction=0.0)
    assert ("S", "S") in sparse_pairs(dense, result)
    assert ("S", "S") not in sparse_pairs(dense, dense)
    no_volume = _step_result(0, 10)
    with pytest.raises(AnalysisError, match="no volume"):
        pair_samples(no_volume)
