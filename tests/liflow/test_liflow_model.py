"""Symmetries and wiring of the LiFlow vector-field network (LiFlow §II.2 eqs. 3–7, §IV.4)."""

from __future__ import annotations

import pytest
import torch

from explorer.errors import ExplorerError, UnknownElementError
from explorer.liflow import FlowModel, FlowModelConfig
from explorer.liflow.model import EdgeHalves, edge_halves

DTYPE = torch.float64
ELEMENTS = (3, 8, 16)


def small_model(seed: int = 0, **overrides) -> FlowModel:
    torch.manual_seed(seed)
    cfg = FlowModelConfig(elements=ELEMENTS, num_features=16, num_rbf=8, **overrides)
    return FlowModel(cfg).to(DTYPE)


def random_structure(seed: int, n_atoms: int = 6):
    """A random triclinic periodic cell (edges 4.5–6.5 Å) with atoms and displacements."""
    g = torch.Generator().manual_seed(seed)
    cell = torch.diag(4.5 + 2.0 * torch.rand(3, generator=g, dtype=DTYPE))
    cell = cell + 1.2 * torch.triu(torch.rand(3, 3, generator=g, dtype=DTYPE) - 0.5, 1)
    positions = torch.rand(n_atoms, 3, generator=g, dtype=DTYPE) @ cell
    displacement = 0.4 * torch.randn(n_atoms, 3, generator=g, dtype=DTYPE)
    numbers = torch.tensor(ELEMENTS, dtype=torch.int64)[torch.arange(n_atoms) % 3]
    return numbers, positions, displacement, cell


def orthogonal(seed: int, reflect: bool) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=DTYPE))
    if (torch.linalg.det(q) < 0) != reflect:
        q = q * torch.tensor([-1.0, 1.0, 1.0], dtype=DTYPE)
    return q


@pytest.fixture(scope="module")
def model() -> FlowModel:
    return small_model()


def run(model: FlowModel, numbers, positions, displacement, cell, temp=900.0, t=0.3):
    return model(numbers, positions, displacement, cell, temp, t)


@pytest.mark.parametrize("reflect", [False, True])
def test_rotation_and_reflection_equivariance(model: FlowModel, reflect: bool) -> None:
    numbers, x, d, cell = random_structure(1)
    q = orthogonal(2, reflect)
    out = run(model, numbers, x, d, cell)
    out_rot = run(model, numbers, x @ q.T, d @ q.T, cell @ q.T)
    assert out.abs().max() > 1e-3  # not trivially zero
    torch.testing.assert_close(out_rot, out @ q.T, rtol=0, atol=1e-8)


def test_permutation_equivariance(model: FlowModel) -> None:
    numbers, x, d, cell = random_structure(3)
    perm = torch.randperm(len(numbers), generator=torch.Generator().manual_seed(4))
    out = run(model, numbers, x, d, cell)
    out_perm = run(model, numbers[perm], x[perm], d[perm], cell)
    torch.testing.assert_close(out_perm, out[perm], rtol=0, atol=1e-10)


def test_lattice_and_global_translation_invariance(model: FlowModel) -> None:
    numbers, x, d, cell = random_structure(5)
    out = run(model, numbers, x, d, cell)
    lattice = torch.tensor([[1, 0, -2], [0, 0, 0], [-1, 3, 1], [2, 0, 0], [0, 0, 0], [0, -1, 0]])
    shifted = x + lattice.to(DTYPE) @ cell  # x_i + L_i, displacement unchanged (eq. 5)
    torch.testing.assert_close(run(model, numbers, shifted, d, cell), out, rtol=0, atol=1e-10)
    moved = x + torch.tensor([3.7, -12.1, 0.4], dtype=DTYPE)  # eq. 4
    torch.testing.assert_close(run(model, numbers, moved, d, cell), out, rtol=0, atol=1e-10)


def test_supercell_invariance(model: FlowModel) -> None:
    numbers, x, d, cell = random_structure(6)
    out = run(model, numbers, x, d, cell)
    super_x = torch.cat([x, x + cell[0]])
    super_cell = torch.diag(torch.tensor([2.0, 1.0, 1.0], dtype=DTYPE)) @ cell
    super_out = run(model, numbers.repeat(2), super_x, d.repeat(2, 1), super_cell)
    torch.testing.assert_close(super_out, out.repeat(2, 1), rtol=0, atol=1e-10)


def test_output_depends_on_temperature_and_flow_time(model: FlowModel) -> None:
    numbers, x, d, cell = random_structure(7)
    base = run(model, numbers, x, d, cell, temp=700.0, t=0.2)
    assert (run(model, numbers, x, d, cell, temp=1100.0, t=0.2) - base).abs().max() > 1e-4
    assert (run(model, numbers, x, d, cell, temp=700.0, t=0.8) - base).abs().max() > 1e-4
    # the intermediate geometry is used beyond the vector initialisation
    assert (
        run(model, numbers, x, 1.5 * d, cell, temp=700.0, t=0.2) - 1.5 * base
    ).abs().max() > 1e-6


def test_gradients_reach_every_parameter() -> None:
    model = small_model(seed=1, trainable_rbf=True)
    numbers, x, d, cell = random_structure(8)
    run(model, numbers, x, d, cell).pow(2).sum().backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
        assert param.grad.abs().max() > 0, name


def test_zero_and_clashing_displacements_are_finite(model: FlowModel) -> None:
    numbers, x, d, cell = random_structure(9)
    zero = torch.zeros_like(d, requires_grad=True)
    out = run(model, numbers, x, zero, cell)
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(zero.grad).all()
    clash = d.clone()
    clash[1] = x[0] + d[0] - x[1]  # atoms 0 and 1 coincide in x + d
    assert torch.isfinite(run(model, numbers, x, clash, cell)).all()


def test_batched_equals_per_structure(model: FlowModel) -> None:
    structures = [random_structure(10, 5), random_structure(11, 7)]
    temps, times = torch.tensor([650.0, 1200.0], dtype=DTYPE), torch.tensor([0.1, 0.9])
    numbers = torch.cat([s[0] for s in structures])
    x = torch.cat([s[1] for s in structures])
    d = torch.cat([s[2] for s in structures])
    cells = torch.stack([s[3] for s in structures])
    batch = torch.tensor([0] * 5 + [1] * 7)
    graph = model.build_graph(x, cells, batch)
    out = model(numbers, x, d, cells, temps, times, batch=batch, graph=graph)
    for k, (z, xs, ds, c) in enumerate(structures):
        single = model(z, xs, ds, c, temps[k], times[k])
        torch.testing.assert_close(out[batch == k], single, rtol=0, atol=1e-10)
    torch.testing.assert_close(model(numbers, x, d, cells, temps, times, batch=batch), out)


def test_current_geometry_computed_once_gives_the_same_field(model: FlowModel) -> None:
    """The terms of x alone, computed once for all flow steps, change nothing."""
    numbers, x, d, cell = random_structure(12, 7)
    graph = model.build_graph(x, cell)
    current = model.current_geometry(x, cell, graph)
    assert len(current.filters) == model.config.num_layers
    for t, scale in ((0.0, 0.0), (0.4, 1.0), (0.9, 2.5)):
        displaced = scale * d
        once = model(numbers, x, displaced, cell, 900.0, t, graph=graph, current=current)
        each = model(numbers, x, displaced, cell, 900.0, t, graph=graph)
        torch.testing.assert_close(once, each, rtol=0, atol=0)
    # So do the species and temperature features, computed once.
    conditioning = model.node_conditioning(numbers, 900.0, torch.zeros_like(numbers), x)
    with_all = model(
        numbers, x, d, cell, 900.0, 0.4, graph=graph, current=current, conditioning=conditioning
    )
    torch.testing.assert_close(with_all, model(numbers, x, d, cell, 900.0, 0.4), rtol=0, atol=0)
    hotter = model.node_conditioning(numbers, 1200.0, torch.zeros_like(numbers), x)
    assert not torch.allclose(with_all, model(numbers, x, d, cell, 900.0, 0.4, conditioning=hotter))
    # Terms of another structure do change the field: they are used, not ignored.
    other = model.current_geometry(x + 0.3 * d, cell, graph)
    moved = model(numbers, x, d, cell, 900.0, 0.4, graph=graph, current=other)
    assert not torch.allclose(moved, model(numbers, x, d, cell, 900.0, 0.4, graph=graph))


def test_filters_on_half_the_edges_equal_filters_on_every_edge(model: FlowModel) -> None:
    """The intermediate structure's filters are computed on one edge of each (i, j, S) /
    (j, i, −S) pair and gathered: the same field as every edge filtered on its own (the
    trivial pairing, each edge its own representative)."""
    numbers, x, d, cell = random_structure(5, 9)
    graph = model.build_graph(x, cell)
    halves = edge_halves(graph)
    assert 2 * halves.half.numel() == graph.num_edges
    vectors = graph.vectors[halves.half][halves.gather] * halves.sign.unsqueeze(-1)
    torch.testing.assert_close(vectors, graph.vectors, rtol=0, atol=0)
    ids = torch.arange(graph.num_edges)
    every = EdgeHalves(ids, ids, torch.ones_like(ids))
    for t, scale in ((0.0, 0.0), (0.5, 1.0), (0.9, 3.0)):
        paired = model(numbers, x, scale * d, cell, 900.0, t, graph=graph, halves=halves)
        full = model(numbers, x, scale * d, cell, 900.0, t, graph=graph, halves=every)
        torch.testing.assert_close(paired, full, rtol=1e-12, atol=1e-12)


def test_unknown_element_is_named(model: FlowModel) -> None:
    numbers, x, d, cell = random_structure(12)
    numbers[2] = 26
    with pytest.raises(UnknownElementError, match=r"Fe \(Z=26\)") as info:
        run(model, numbers, x, d, cell)
    assert isinstance(info.value, ExplorerError)


def test_paper_defaults_and_float32() -> None:
    cfg = FlowModelConfig()
    assert (cfg.num_features, cfg.num_rbf, cfg.num_layers) == (64, 20, 3)
    assert (cfg.cutoff, cfg.distance_offset) == (5.0, 0.5)
    numbers, x, d, cell = random_structure(13)
    out = FlowModel(cfg)(numbers, x.float(), d.float(), cell.float(), 800.0, 0.5)
    assert out.shape == (6, 3) and out.dtype == torch.float32
