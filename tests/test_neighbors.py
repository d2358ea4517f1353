"""Tests of explorer.neighbors against ASE's neighbour list and for its invariances."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.neighborlist import primitive_neighbor_list

import explorer.neighbors as nb
from explorer.errors import NeighborListError
from explorer.neighbors import edge_vectors, radius_graph, radius_graph_from_atoms, reverse_edges

BACKENDS = ["torch", "vesin"]
Edges = dict[tuple[int, int, tuple[int, int, int]], float]


def ase_edges(positions: np.ndarray, cell: np.ndarray, pbc, cutoff: float) -> Edges:
    """Reference: ASE's primitive neighbour list, same (i, j, S) convention."""
    i, j, shifts, d = primitive_neighbor_list(
        "ijSd", np.asarray(pbc, dtype=bool), cell, positions, cutoff, self_interaction=False
    )
    return {
        (a, b, tuple(s)): x
        for a, b, s, x in zip(i.tolist(), j.tolist(), shifts.tolist(), d.tolist(), strict=True)
    }


def graph_edges(graph: nb.PeriodicGraph) -> Edges:
    i, j = graph.edge_index.cpu().tolist()
    shifts = graph.cell_shifts.cpu().tolist()
    d = graph.distances.detach().cpu().tolist()
    return {(a, b, tuple(s)): x for a, b, s, x in zip(i, j, shifts, d, strict=True)}


def assert_matches(got: Edges, ref: Edges, tol: float = 1e-5) -> None:
    assert set(got) == set(ref), (
        f"missing {sorted(set(ref) - set(got))[:5]}, extra {sorted(set(got) - set(ref))[:5]}"
    )
    if ref:
        assert max(abs(got[k] - ref[k]) for k in ref) < tol


def random_cell(rng: np.random.Generator, lengths, skew: float) -> np.ndarray:
    return np.diag(lengths) + skew * rng.normal(size=(3, 3))


def _cases() -> list[tuple[str, np.ndarray, np.ndarray, list[bool], float]]:
    """(name, positions, cell, pbc, cutoff); seeded, positions partly outside the cell."""
    rng = np.random.default_rng(2024)
    cases = []

    def add(name, cell, n, pbc, cutoff, spread=(-0.3, 1.3)):
        frac = rng.uniform(*spread, size=(n, 3))
        cases.append((name, frac @ cell, cell, pbc, cutoff))

    for k in range(4):
        add(f"triclinic{k}", random_cell(rng, rng.uniform(4, 8, 3), 1.5), 9, [True] * 3, 4.5)
    skewed = np.array([[4.0, 0.0, 0.0], [3.7, 1.2, 0.0], [-3.1, 2.4, 1.9]])
    add("strongly_skewed", skewed, 6, [True] * 3, 4.0)
    add("thin_along_c", random_cell(rng, [6.0, 7.0, 1.3], 0.3), 5, [True] * 3, 4.0)
    add("cutoff_above_whole_cell", random_cell(rng, [2.5, 3.0, 2.8], 0.4), 3, [True] * 3, 6.5)
    add("one_atom", random_cell(rng, [2.2, 2.6, 3.0], 0.5), 1, [True] * 3, 5.0)
    add("two_atoms", random_cell(rng, [3.0, 3.3, 2.9], 0.6), 2, [True] * 3, 5.0)
    add("slab", random_cell(rng, [4.0, 4.5, 5.0], 1.0), 6, [True, True, False], 5.0)
    add("wire", random_cell(rng, [5.0, 5.0, 2.5], 0.8), 5, [False, False, True], 5.5)
    add("mixed_thin", random_cell(rng, [1.6, 5.0, 5.0], 0.3), 4, [True, False, True], 4.0)
    add("molecule", random_cell(rng, [5.0, 5.0, 5.0], 0.5), 8, [False] * 3, 3.0)
    zero_c = np.array([[3.0, 0.0, 0.0], [1.2, 3.1, 0.0], [0.0, 0.0, 0.0]])
    frac = rng.uniform(-0.2, 1.2, size=(5, 3))
    positions = frac @ zero_c + np.outer(rng.uniform(-2, 2, 5), [0.3, -0.2, 1.0])
    cases.append(("slab_zero_vacuum_vector", positions, zero_c, [True, True, False], 4.0))
    positions = rng.uniform(-3, 3, size=(6, 3))
    cases.append(("molecule_zero_cell", positions, np.zeros((3, 3)), [False] * 3, 3.5))
    return cases


CASES = _cases()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_matches_ase(case, backend):
    _, positions, cell, pbc, cutoff = case
    graph = radius_graph(
        torch.tensor(positions), torch.tensor(cell), cutoff, pbc=torch.tensor(pbc), backend=backend
    )
    assert_matches(graph_edges(graph), ase_edges(positions, cell, pbc, cutoff), tol=1e-9)
    assert graph.edge_index.dtype == torch.int64 and graph.cell_shifts.dtype == torch.int64
    assert graph.vectors.dtype == torch.float64


def test_cases_exercise_the_hard_paths():
    """The reference cases do contain several images and self images, as intended."""
    _, positions, cell, pbc, cutoff = next(c for c in CASES if c[0] == "cutoff_above_whole_cell")
    ref = ase_edges(positions, cell, pbc, cutoff)
    assert max(max(abs(s) for s in key[2]) for key in ref) >= 2
    assert any(i == j for i, j, _ in ref)


@pytest.mark.parametrize("backend", BACKENDS)
def test_float32_matches_ase(backend):
    _, positions, cell, pbc, cutoff = CASES[0]
    graph = radius_graph(
        torch.tensor(positions, dtype=torch.float32),
        torch.tensor(cell, dtype=torch.float32),
        cutoff,
        backend=backend,
    )
    assert graph.vectors.dtype == torch.float32
    assert_matches(graph_edges(graph), ase_edges(positions, cell, pbc, cutoff), tol=1e-5)


def _batch_inputs():
    """Three different structures (sizes, cells, pbc) as batched tensors."""
    picked = [CASES[1], CASES[5], CASES[9]]
    positions = torch.tensor(np.concatenate([c[1] for c in picked]))
    cells = torch.tensor(np.stack([c[2] for c in picked]))
    pbc = torch.tensor([c[3] for c in picked])
    batch = torch.repeat_interleave(torch.arange(3), torch.tensor([len(c[1]) for c in picked]))
    return picked, positions, cells, pbc, batch


@pytest.mark.parametrize("backend", BACKENDS)
def test_batched_equals_concatenation(backend):
    picked, positions, cells, pbc, batch = _batch_inputs()
    cutoff = 4.0
    graph = radius_graph(positions, cells, cutoff, batch=batch, pbc=pbc, backend=backend)
    expected: Edges = {}
    offset = 0
    for _, pos, cell, pbc_b, _ in picked:
        for (i, j, s), d in ase_edges(pos, cell, pbc_b, cutoff).items():
            expected[(i + offset, j + offset, s)] = d
        offset += len(pos)
    assert_matches(graph_edges(graph), expected, tol=1e-9)
    assert torch.equal(graph.edge_batch, batch[graph.edge_index[0]])
    assert graph.num_nodes == len(positions) and graph.num_edges == len(expected)


def test_backends_agree_exactly_and_edges_are_sorted():
    _, positions, cells, pbc, batch = _batch_inputs()
    graphs = [
        radius_graph(positions, cells, 4.0, batch=batch, pbc=pbc, backend=b) for b in BACKENDS
    ]
    assert torch.equal(graphs[0].edge_index, graphs[1].edge_index)
    assert torch.equal(graphs[0].cell_shifts, graphs[1].cell_shifts)
    torch.testing.assert_close(graphs[0].vectors, graphs[1].vectors, rtol=0, atol=0)
    keys = np.column_stack([graphs[0].edge_index.T.numpy(), graphs[0].cell_shifts.numpy()])
    order = np.lexsort(keys.T[::-1])
    assert np.array_equal(order, np.arange(len(keys)))


def test_chunking_and_grouping_do_not_change_the_graph(monkeypatch):
    _, positions, cells, pbc, batch = _batch_inputs()
    reference = radius_graph(positions, cells, 4.0, batch=batch, pbc=pbc, backend="torch")
    monkeypatch.setattr(nb, "CANDIDATE_BUDGET", 50)  # one row per chunk, one structure a group
    chunked = radius_graph(positions, cells, 4.0, batch=batch, pbc=pbc, backend="torch")
    assert torch.equal(reference.edge_index, chunked.edge_index)
    assert torch.equal(reference.cell_shifts, chunked.cell_shifts)


def test_shared_cell_and_empty_structures():
    rng = np.random.default_rng(3)
    cell = random_cell(rng, [5.0, 5.5, 6.0], 0.5)
    pos = [rng.random((4, 3)) @ cell, rng.random((3, 3)) @ cell]
    positions = torch.tensor(np.concatenate(pos))
    batch = torch.tensor([0] * 4 + [2] * 3)  # structure 1 has no atoms
    cells = torch.tensor(np.stack([cell, cell, cell]))
    shared = radius_graph(positions, torch.tensor(cell), 4.0, batch=batch)
    stacked = radius_graph(positions, cells, 4.0, batch=batch, backend="torch")
    assert torch.equal(shared.edge_index, stacked.edge_index)
    expected = {**ase_edges(pos[0], cell, [True] * 3, 4.0)}
    for (i, j, s), d in ase_edges(pos[1], cell, [True] * 3, 4.0).items():
        expected[(i + 4, j + 4, s)] = d
    assert_matches(graph_edges(shared), expected, tol=1e-9)


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_atoms_and_no_edges(backend):
    empty = radius_graph(torch.zeros(0, 3), torch.eye(3) * 5, 3.0, backend=backend)
    assert empty.edge_index.shape == (2, 0) and empty.vectors.shape == (0, 3)
    sparse = radius_graph(torch.tensor([[0.0, 0, 0], [2.5, 2.5, 2.5]]), torch.eye(3) * 5, 1.0)
    assert sparse.num_edges == 0 and sparse.cell_shifts.shape == (0, 3)


@pytest.mark.parametrize("backend", BACKENDS)
def test_rotation_invariance(backend):
    _, positions, cell, _, cutoff = CASES[4]
    rotation, _ = np.linalg.qr(np.random.default_rng(7).normal(size=(3, 3)))
    before = radius_graph(torch.tensor(positions), torch.tensor(cell), cutoff, backend=backend)
    after = radius_graph(
        torch.tensor(positions @ rotation.T),
        torch.tensor(cell @ rotation.T),
        cutoff,
        backend=backend,
    )
    assert torch.equal(before.edge_index, after.edge_index)
    assert torch.equal(before.cell_shifts, after.cell_shifts)  # S is in lattice coordinates
    torch.testing.assert_close(before.distances, after.distances, rtol=0, atol=1e-10)


@pytest.mark.parametrize("backend", BACKENDS)
def test_lattice_translation_of_one_atom(backend):
    _, positions, cell, _, cutoff = CASES[6]  # several images per axis
    atom, translation = 1, np.array([2, -1, 3])
    moved = positions.copy()
    moved[atom] += translation @ cell
    before = graph_edges(radius_graph(torch.tensor(positions), torch.tensor(cell), cutoff))
    after = graph_edges(
        radius_graph(torch.tensor(moved), torch.tensor(cell), cutoff, backend=backend)
    )
    # r_j − r_i + S·cell is unchanged when S absorbs the translation of i or j.
    expected = {}
    for (i, j, s), d in before.items():
        shift = np.array(s) + (translation if i == atom else 0) - (translation if j == atom else 0)
        expected[(i, j, tuple(shift.tolist()))] = d
    assert_matches(after, expected, tol=1e-9)


@pytest.mark.parametrize("backend", BACKENDS)
def test_permutation_permutes_edges(backend):
    _, positions, cell, _, cutoff = CASES[2]
    perm = np.random.default_rng(11).permutation(len(positions))  # new atom a = old perm[a]
    new_index = np.argsort(perm)
    before = graph_edges(radius_graph(torch.tensor(positions), torch.tensor(cell), cutoff))
    after = graph_edges(
        radius_graph(torch.tensor(positions[perm]), torch.tensor(cell), cutoff, backend=backend)
    )
    expected = {(int(new_index[i]), int(new_index[j]), s): d for (i, j, s), d in before.items()}
    assert_matches(after, expected, tol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradcheck_positions_and_cell(backend):
    cell0 = torch.tensor([[2.9, 0.0, 0.0], [0.7, 3.1, 0.0], [0.4, -0.5, 3.3]], dtype=torch.float64)
    pos0 = torch.tensor([[0.1, 0.2, 0.3], [1.4, 1.1, 1.9]], dtype=torch.float64) @ cell0 / 3.0
    cutoff = 3.6
    graph = radius_graph(pos0, cell0, cutoff, backend=backend)
    # No pair sits at the cutoff, so the edge set is constant under gradcheck's perturbations.
    assert graph.num_edges > 2 and (graph.distances - cutoff).abs().min() > 1e-3
    assert bool((graph.edge_index[0] == graph.edge_index[1]).any())  # self images

    def distances(pos: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
        return radius_graph(pos, cell, cutoff, backend=backend).distances

    inputs = (pos0.clone().requires_grad_(), cell0.clone().requires_grad_())
    assert torch.autograd.gradcheck(distances, inputs)


def test_gradient_of_energy_like_sum_is_translation_invariant():
    _, positions, cell, _, cutoff = CASES[0]
    pos = torch.tensor(positions, requires_grad=True)
    graph = radius_graph(pos, torch.tensor(cell), cutoff)
    (graph.distances**2).sum().backward()
    torch.testing.assert_close(pos.grad.sum(dim=0), torch.zeros(3, dtype=torch.float64))


def test_edge_vectors_recomputes_graph_vectors():
    _, positions, cells, pbc, batch = _batch_inputs()
    graph = radius_graph(positions, cells, 4.0, batch=batch, pbc=pbc)
    vectors = edge_vectors(positions, cells, graph.edge_index, graph.cell_shifts, batch)
    torch.testing.assert_close(vectors, graph.vectors, rtol=0, atol=0)
    with pytest.raises(NeighborListError, match="needs batch"):
        edge_vectors(positions, cells, graph.edge_index, graph.cell_shifts)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_reverse_edges_pairs_every_edge_with_its_reverse(case):
    """(j, i, −S) of every edge, found by search: an involution without fixed points whose
    vectors are the exact negatives, including self images and several images."""
    _, positions, cell, pbc, cutoff = case
    graph = radius_graph(torch.tensor(positions), torch.tensor(cell), cutoff, pbc=torch.tensor(pbc))
    rev = reverse_edges(graph)
    ids = torch.arange(graph.num_edges)
    assert torch.equal(rev[rev], ids) and not bool((rev == ids).any())
    assert torch.equal(graph.edge_index[:, rev], graph.edge_index.flip(0))
    assert torch.equal(graph.cell_shifts[rev], -graph.cell_shifts)
    assert torch.equal(graph.vectors[rev], -graph.vectors)


def test_reverse_edges_of_a_batch_stay_in_their_structure():
    _, positions, cells, pbc, batch = _batch_inputs()
    graph = radius_graph(positions, cells, 4.0, batch=batch, pbc=pbc)
    rev = reverse_edges(graph)
    assert torch.equal(graph.edge_batch[rev], graph.edge_batch)
    assert torch.equal(graph.vectors[rev], -graph.vectors)


def test_reverse_edges_refuses_a_list_that_is_not_full():
    _, positions, cell, _, cutoff = CASES[0]
    graph = radius_graph(torch.tensor(positions), torch.tensor(cell), cutoff)
    half = graph.edge_index[0] < graph.edge_index[1]  # keeps (i, j) but drops (j, i)
    broken = nb.PeriodicGraph(
        graph.edge_index[:, half], graph.cell_shifts[half], graph.vectors[half],
        graph.distances[half], graph.batch, graph.cutoff, graph.backend,
    )  # fmt: skip
    with pytest.raises(NeighborListError, match="full, sorted list"):
        reverse_edges(broken)
    empty = radius_graph(torch.zeros(1, 3), torch.eye(3) * 10.0, 1.0)
    assert reverse_edges(empty).shape == (0,)


def test_radius_graph_from_atoms():
    picked = [CASES[0], CASES[9]]
    frames = [Atoms("H" * len(p), positions=p, cell=c, pbc=f) for _, p, c, f, _ in picked]
    graph = radius_graph_from_atoms(frames, 4.0, dtype=torch.float64)
    direct = radius_graph(
        torch.tensor(np.concatenate([c[1] for c in picked])),
        torch.tensor(np.stack([c[2] for c in picked])),
        4.0,
        batch=torch.repeat_interleave(torch.arange(2), torch.tensor([len(c[1]) for c in picked])),
        pbc=torch.tensor([c[3] for c in picked]),
    )
    assert torch.equal(graph.edge_index, direct.edge_index)
    single = radius_graph_from_atoms(frames[0], 4.0)
    assert single.vectors.dtype == torch.float32
    assert_matches(graph_edges(single), ase_edges(picked[0][1], picked[0][2], [True] * 3, 4.0))


def test_vesin_failure_falls_back_to_torch(monkeypatch):
    import vesin_torch

    class Refusing:
        def __init__(self, **_kwargs):
            pass

        def compute(self, *_args, **_kwargs):
            raise RuntimeError("refused")

    monkeypatch.setattr(vesin_torch, "NeighborList", Refusing)
    _, positions, cell, pbc, cutoff = CASES[0]
    graph = radius_graph(torch.tensor(positions), torch.tensor(cell), cutoff, backend="vesin")
    assert graph.backend == "torch"
    assert_matches(graph_edges(graph), ase_edges(positions, cell, pbc, cutoff), tol=1e-9)


def test_auto_backend_on_cpu_is_vesin():
    graph = radius_graph(torch.rand(4, 3) * 4, torch.eye(3) * 4, 3.0)
    assert graph.backend == "vesin"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("backend", ["auto", *BACKENDS])
def test_cuda_matches_cpu(backend):
    _, positions, cells, pbc, batch = _batch_inputs()
    cpu = radius_graph(positions, cells, 4.0, batch=batch, pbc=pbc, backend="torch")
    gpu = radius_graph(
        positions.cuda(), cells.cuda(), 4.0, batch=batch.cuda(), pbc=pbc.cuda(), backend=backend
    )
    assert gpu.edge_index.is_cuda and gpu.vectors.is_cuda
    assert torch.equal(cpu.edge_index, gpu.edge_index.cpu())
    assert torch.equal(cpu.cell_shifts, gpu.cell_shifts.cpu())
    torch.testing.assert_close(cpu.distances, gpu.distances.cpu())
    for case in CASES:  # includes cutoffs above half the cell and mixed pbc
        _, pos, cell, pbc_b, cutoff = case
        graph = radius_graph(
            torch.tensor(pos, device="cuda"),
            torch.tensor(cell, device="cuda"),
            cutoff,
            pbc=torch.tensor(pbc_b),
            backend=backend,
        )
        assert_matches(graph_edges(graph), ase_edges(pos, cell, pbc_b, cutoff), tol=1e-9)


# --------------------------------------------------------------------------- errors

POS = torch.rand(3, 3) * 3
CELL = torch.eye(3) * 4


@pytest.mark.parametrize("cutoff", [0.0, -1.0, float("nan"), float("inf"), "five"])
def test_bad_cutoff(cutoff):
    with pytest.raises(NeighborListError, match="cutoff"):
        radius_graph(POS, CELL, cutoff)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("cell", "pbc"),
    [
        ([[4, 0, 0], [0, 4, 0], [0, 0, 0]], [True, True, True]),
        ([[4, 0, 0], [8, 0, 0], [0, 0, 4]], [True, True, False]),
        ([[0, 0, 0], [0, 4, 0], [0, 0, 4]], [True, False, False]),
    ],
)
def test_singular_periodic_cell(cell, pbc, backend):
    with pytest.raises(NeighborListError, match="singular"):
        radius_graph(POS, torch.tensor(cell, dtype=torch.float32), 2.0, pbc=pbc, backend=backend)


def test_singular_cell_is_fine_along_non_periodic_directions():
    cell = torch.tensor([[4.0, 0, 0], [0, 4, 0], [0, 0, 0]])
    graph = radius_graph(POS, cell, 2.0, pbc=[True, True, False])
    assert graph.num_edges >= 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"positions": torch.rand(3, 2)}, "positions must have shape"),
        ({"positions": torch.ones(3, 3, dtype=torch.int64)}, "floating point"),
        ({"positions": torch.tensor([[0.0, 0, 0], [float("nan"), 0, 0]])}, "not finite"),
        ({"cell": torch.eye(4)}, "cell must have shape"),
        ({"cell": torch.eye(3).expand(2, 3, 3)}, "no batch"),
        ({"batch": torch.tensor([0, 1])}, "batch must have shape"),
        ({"batch": torch.tensor([0, 1, 0])}, "sorted"),
        ({"batch": torch.tensor([-1, 0, 0])}, "negative"),
        ({"batch": torch.tensor([0.0, 0, 0])}, "integers"),
        ({"batch": torch.tensor([0, 1, 2]), "cell": torch.eye(3).expand(2, 3, 3)}, "holds only"),
        ({"pbc": [True, False]}, "pbc must have shape"),
        ({"pbc": [1, 1, 1]}, "booleans"),
        ({"backend": "matscipy"}, "unknown backend"),
    ],
)
def test_bad_inputs(kwargs, match):
    args = {"positions": POS, "cell": CELL, "cutoff": 2.0, **kwargs}
    with pytest.raises(NeighborListError, match=match):
        radius_graph(**args)


def test_too_thin_cell_for_dense_backend():
    cell = torch.diag(torch.tensor([1e-3, 1e-3, 5.0], dtype=torch.float64))
    with pytest.raises(NeighborListError, match="too thin"):
        radius_graph(torch.zeros(1, 3, dtype=torch.float64), cell, 5.0, backend="torch")


def test_empty_atoms_list():
    with pytest.raises(NeighborListError, match="at least one"):
        radius_graph_from_atoms([], 3.0)
