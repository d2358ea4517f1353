"""The CG networks: exact translation invariance and rotation equivariance, NLL, embeddings."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.spatial.transform import Rotation

from explorer.cg.data import graph_edges
from explorer.cg.model import (
    DynamicsGNN,
    DynamicsOutput,
    EmbeddingGNN,
    ModelConfig,
    ScoreGNN,
    acceleration_noise,
    bead_covariance,
    cg_embedding,
    correlated_gaussian_nll,
    gaussian_nll,
    stretch_acceleration,
    wall_acceleration,
)
from explorer.errors import MDConfigError

CONFIG = ModelConfig(embed_dim=8, hidden=16, layers=2, history=3, cutoff=4.0, score_hidden=8)


def _inputs(seed: int = 0, m: int = 9) -> dict:
    g = torch.Generator().manual_seed(seed)
    x = torch.cumsum(torch.randn(m, 3, generator=g, dtype=torch.float64), 0)
    bond = torch.zeros(m, m, dtype=torch.bool)
    idx = torch.arange(m - 1)
    bond[idx, idx + 1] = bond[idx + 1, idx] = True
    return {
        "c": torch.randn(m, CONFIG.embed_dim, generator=g, dtype=torch.float64),
        "w": torch.rand(m, generator=g, dtype=torch.float64) + 1.0,
        "x": x,
        "v": torch.randn(m, CONFIG.history, 3, generator=g, dtype=torch.float64),
        "bond": bond,
    }


def _dynamics(net: DynamicsGNN, d: dict, x: torch.Tensor, v: torch.Tensor) -> DynamicsOutput:
    edges, flag = graph_edges(x[None], d["bond"], CONFIG.cutoff)
    graph = torch.zeros(x.shape[0], dtype=torch.long)
    return net(d["c"], d["w"], x, v, edges, flag, graph, 1)


def _covariance(net: DynamicsGNN, d: dict, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    edges, _ = graph_edges(x[None], d["bond"], CONFIG.cutoff)
    graph = torch.zeros(x.shape[0], dtype=torch.long)
    return bead_covariance(_dynamics(net, d, x, v), edges, graph, 1)[0]


@pytest.mark.parametrize("correlated", [False, True])
def test_dynamics_gaussian_is_translation_invariant_and_rotation_equivariant(
    correlated: bool,
) -> None:
    torch.manual_seed(0)
    config = ModelConfig(**{**CONFIG.to_dict(), "correlated_noise": correlated})
    net = DynamicsGNN(config).double().eval()
    d = _inputs()
    rot = torch.as_tensor(Rotation.random(random_state=1).as_matrix())
    shift = torch.tensor([3.0, -1.0, 7.5], dtype=torch.float64)
    out = _dynamics(net, d, d["x"], d["v"])
    moved = _dynamics(net, d, d["x"] + shift, d["v"])
    turned = _dynamics(net, d, d["x"] @ rot.T, d["v"] @ rot.T)
    assert out.mean.abs().max() > 1e-3  # a non-trivial output
    torch.testing.assert_close(moved.mean, out.mean)
    torch.testing.assert_close(turned.mean, out.mean @ rot.T)
    torch.testing.assert_close(turned.log_var, out.log_var)
    torch.testing.assert_close(moved.log_var, out.log_var)
    torch.testing.assert_close(turned.pooled, out.pooled)  # the R_g² head sees invariants only
    cov = _covariance(net, d, d["x"], d["v"])
    torch.testing.assert_close(_covariance(net, d, d["x"] @ rot.T + shift, d["v"] @ rot.T), cov)
    off_diagonal = cov - torch.diag(torch.diagonal(cov))
    assert (off_diagonal.abs().max() > 1e-3) == correlated


def test_bead_covariance_permutes_with_the_beads() -> None:
    torch.manual_seed(5)
    net = DynamicsGNN(ModelConfig(**{**CONFIG.to_dict(), "correlated_noise": True})).double()
    net.eval()
    d = _inputs(6)
    perm = torch.randperm(d["x"].shape[0], generator=torch.Generator().manual_seed(7))
    shuffled = {**d, "c": d["c"][perm], "w": d["w"][perm], "bond": d["bond"][perm][:, perm]}
    cov = _covariance(net, d, d["x"], d["v"])
    assert (cov - torch.diag(torch.diagonal(cov))).abs().max() > 1e-3  # really correlated
    torch.testing.assert_close(_covariance(net, shuffled, d["x"][perm], d["v"][perm]),
                               cov[perm][:, perm])  # fmt: skip


def _random_output(m: int, n_graphs: int, seed: int) -> tuple[DynamicsOutput, torch.Tensor]:
    """A random correlated Gaussian over ``n_graphs`` chains of m beads (fully connected)."""
    g = torch.Generator().manual_seed(seed)
    pairs = torch.tensor([(i, j) for i in range(m) for j in range(m) if i != j])
    edges = torch.cat([pairs + k * m for k in range(n_graphs)])
    n = m * n_graphs
    out = DynamicsOutput(
        mean=torch.randn(n, 3, generator=g, dtype=torch.float64),
        log_var=torch.randn(n, generator=g, dtype=torch.float64) - 1.0,
        pooled=torch.zeros(n_graphs, 1, dtype=torch.float64),
        self_coupling=torch.randn(n, generator=g, dtype=torch.float64),
        edge_coupling=0.5 * torch.randn(edges.shape[0], generator=g, dtype=torch.float64),
    )
    return out, edges


def test_correlated_nll_matches_torch_multivariate_normal() -> None:
    m, n_graphs = 5, 3
    out, edges = _random_output(m, n_graphs, 8)
    graph = torch.arange(n_graphs).repeat_interleave(m)
    target = torch.randn(m * n_graphs, 3, generator=torch.Generator().manual_seed(9),
                         dtype=torch.float64)  # fmt: skip
    cov = bead_covariance(out, edges, graph, n_graphs)
    reference = 0.0
    for k in range(n_graphs):
        rows = slice(k * m, (k + 1) * m)
        dist = torch.distributions.MultivariateNormal(out.mean[rows].T, covariance_matrix=cov[k])
        reference -= float(dist.log_prob(target[rows].T).sum())
    reference = reference / (3 * m * n_graphs) - 0.5 * math.log(2 * math.pi)
    ours = correlated_gaussian_nll(out, target, edges, graph, n_graphs)
    assert float(ours) == pytest.approx(reference, rel=1e-10)
    independent = out._replace(self_coupling=None, edge_coupling=None)
    torch.testing.assert_close(
        correlated_gaussian_nll(independent, target, edges, graph, n_graphs),
        gaussian_nll(out.mean, out.log_var, target),
    )


def test_correlated_nll_pads_chains_of_different_length() -> None:
    small, e_small = _random_output(4, 1, 10)
    large, e_large = _random_output(6, 1, 11)
    both = DynamicsOutput(*(torch.cat([a, b]) for a, b in zip(small, large, strict=True)))
    edges = torch.cat([e_small, e_large + 4])
    graph = torch.tensor([0] * 4 + [1] * 6)
    target = torch.zeros(10, 3, dtype=torch.float64)
    joint = correlated_gaussian_nll(both, target, edges, graph, 2)
    alone = [
        correlated_gaussian_nll(o, target[:n], e, torch.zeros(n, dtype=torch.long), 1) * n
        for o, e, n in ((small, e_small, 4), (large, e_large, 6))
    ]
    assert float(joint) == pytest.approx(float(sum(alone)) / 10, rel=1e-10)


def test_acceleration_noise_has_the_model_covariance() -> None:
    m = 4
    out, edges = _random_output(m, 1, 12)
    g = torch.Generator().manual_seed(13)
    n = 40_000
    z = torch.randn(2, n, m, 3, generator=g, dtype=torch.float64)
    draws = torch.stack([acceleration_noise(out, edges, z[0, i], z[1, i]) for i in range(n)])
    empirical = torch.einsum("nmd,nkd->mk", draws, draws) / (3 * n)
    cov = bead_covariance(out, edges, torch.zeros(m, dtype=torch.long), 1)[0]
    torch.testing.assert_close(empirical, cov, atol=0.03 * float(cov.diagonal().max()), rtol=0)


def test_score_is_equivariant() -> None:
    torch.manual_seed(1)
    net = ScoreGNN(CONFIG).double().eval()
    d = _inputs(2)
    rot = torch.as_tensor(Rotation.random(random_state=3).as_matrix())
    sigma = torch.full((d["x"].shape[0],), 0.3, dtype=torch.float64)

    def score(x: torch.Tensor) -> torch.Tensor:
        edges, flag = graph_edges(x[None], d["bond"], CONFIG.cutoff)
        return net(d["c"], d["w"], x, sigma, edges, flag)

    out = score(d["x"])
    torch.testing.assert_close(score(d["x"] @ rot.T + 2.0), out @ rot.T)


def test_embedding_is_mean_of_atom_embeddings_and_ignores_positions() -> None:
    torch.manual_seed(2)
    net = EmbeddingGNN(CONFIG).eval()
    types = torch.tensor([0, 1, 2, 3, 1, 0])
    bonds = torch.tensor([[0, 1], [1, 2], [2, 3], [3, 4], [4, 5]])
    c = net(types, torch.ones(6), bonds)
    groups = torch.tensor([0, 0, 0, 1, 1, 1])
    cg = cg_embedding(c, groups, 2)
    torch.testing.assert_close(cg[0], c[:3].mean(0))
    torch.testing.assert_close(cg[1], c[3:].mean(0))


def test_gaussian_nll_is_minimal_at_the_truth() -> None:
    target = torch.randn(50, 3, generator=torch.Generator().manual_seed(4))
    best = gaussian_nll(target, torch.full((50,), -4.0), target)
    assert best < gaussian_nll(target + 0.1, torch.full((50,), -4.0), target)
    # For a fixed error the optimal variance is the mean squared error per coordinate.
    err = torch.full((50, 3), 0.5)
    nll = [
        float(gaussian_nll(err, torch.full((50,), float(lv)), torch.zeros(50, 3)))
        for lv in (-2.0, torch.log(torch.tensor(0.25)), 0.0)
    ]
    assert nll[1] == pytest.approx(min(nll))


def test_expected_next_rg2_matches_sampling() -> None:
    from explorer.cg.model import expected_next_rg2, graph_rg2

    m, n_graphs, dt, scale = 5, 2, 3.0, 0.2
    out, edges = _random_output(m, n_graphs, 14)
    graph = torch.arange(n_graphs).repeat_interleave(m)
    g = torch.Generator().manual_seed(15)
    x = 2.0 * torch.randn(m * n_graphs, 3, generator=g, dtype=torch.float64)
    v = torch.randn(m * n_graphs, 3, generator=g, dtype=torch.float64)
    masses = torch.rand(m * n_graphs, generator=g, dtype=torch.float64) + 0.5
    expected = expected_next_rg2(out, x, v, masses, edges, graph, n_graphs, dt, scale)
    n = 20_000
    z = torch.randn(2, n, m * n_graphs, 3, generator=g, dtype=torch.float64)
    draws = [out.mean + acceleration_noise(out, edges, z[0, i], z[1, i]) for i in range(n)]
    samples = torch.stack(
        [graph_rg2(x + dt * v + dt * dt * scale * a, masses, graph, n_graphs) for a in draws]
    )
    mean, err = samples.mean(0), samples.std(0) / n**0.5
    assert torch.all((mean - expected).abs() < 4 * err)
    # and R_g² is translation invariant, as the masses' centre is removed
    torch.testing.assert_close(graph_rg2(x + 5.0, masses, graph, n_graphs),
                               graph_rg2(x, masses, graph, n_graphs))  # fmt: skip


def test_wall_pushes_two_overlapping_beads_apart_by_hookes_law() -> None:
    x = torch.tensor([[0.0, 0.0, 0.0], [0.8, 0.0, 0.0]], dtype=torch.float64)
    w = torch.tensor([2.0, 4.0], dtype=torch.float64)
    edges = torch.tensor([[0, 1], [1, 0]])
    a = wall_acceleration(x, w, edges, torch.zeros(2, dtype=torch.float64), k=3.0, r0=1.2)
    force = 3.0 * (1.2 - 0.8)  # ε/σ, along the separation
    expected = torch.tensor([[-force / 2.0, 0, 0], [force / 4.0, 0, 0]], dtype=torch.float64)
    torch.testing.assert_close(a, expected)
    # a CG bond carries no wall, nor a pair beyond r0, nor k = 0
    bonded = wall_acceleration(x, w, edges, torch.ones(2, dtype=torch.float64), k=3.0, r0=1.2)
    assert torch.equal(bonded, torch.zeros_like(x))
    assert torch.equal(wall_acceleration(x, w, edges, torch.zeros(2), k=3.0, r0=0.7), 0 * x)
    assert torch.equal(wall_acceleration(x, w, edges, torch.zeros(2), k=0.0, r0=1.2), 0 * x)


def test_wall_keeps_momentum_and_rotates_with_the_chain() -> None:
    d = _inputs(seed=3, m=12)
    x = 0.3 * d["x"]  # a crumpled chain: many non-bonded pairs inside r0
    edges, flag = graph_edges(x[None], d["bond"], 2.0)
    a = wall_acceleration(x, d["w"], edges, flag, k=2.0, r0=1.2)
    assert float(a.abs().max()) > 0.1
    torch.testing.assert_close((d["w"][:, None] * a).sum(0), torch.zeros(3, dtype=x.dtype))
    rot = torch.as_tensor(Rotation.random(random_state=4).as_matrix(), dtype=x.dtype)
    rotated = wall_acceleration(x @ rot.T + 5.0, d["w"], edges, flag, k=2.0, r0=1.2)
    torch.testing.assert_close(rotated, a @ rot.T)


@pytest.mark.parametrize("k, r0", [(-1.0, 1.2), (1.0, 0.0), (float("nan"), 1.2)])
def test_a_wall_needs_a_non_negative_stiffness_and_a_positive_range(k, r0) -> None:
    with pytest.raises(ValueError, match="wall_k"):
        ModelConfig(wall_k=k, wall_r0=r0)


def test_stretch_prior_pulls_an_overstretched_pair_together_by_hookes_law() -> None:
    x = torch.tensor([[0.0, 0.0, 0.0], [0.0, 3.0, 0.0]], dtype=torch.float64)
    w = torch.tensor([2.0, 4.0], dtype=torch.float64)
    edges = torch.tensor([[0, 1], [1, 0]])
    limit = torch.full((2,), 2.5, dtype=torch.float64)
    a = stretch_acceleration(x, w, edges, limit, k=4.0)
    force = 4.0 * (3.0 - 2.5)  # ε/σ, towards the partner
    expected = torch.tensor([[0, force / 2.0, 0], [0, -force / 4.0, 0]], dtype=torch.float64)
    torch.testing.assert_close(a, expected)
    # nothing inside the limit, without a limit (+inf) or with k = 0
    assert torch.equal(stretch_acceleration(x, w, edges, limit + 1.0, k=4.0), 0 * x)
    assert torch.equal(stretch_acceleration(x, w, edges, limit * float("inf"), k=4.0), 0 * x)
    assert torch.equal(stretch_acceleration(x, w, edges, limit, k=0.0), 0 * x)


def test_stretch_prior_keeps_momentum_and_rotates_with_the_chain() -> None:
    d = _inputs(seed=5, m=12)
    x = 3.0 * d["x"]  # a swollen chain: bonded pairs beyond the limit
    edges, _ = graph_edges(x[None], d["bond"], 6.0)
    limit = torch.full((edges.shape[0],), 1.0, dtype=x.dtype)
    a = stretch_acceleration(x, d["w"], edges, limit, k=2.0)
    assert float(a.abs().max()) > 0.1
    torch.testing.assert_close((d["w"][:, None] * a).sum(0), torch.zeros(3, dtype=x.dtype))
    rot = torch.as_tensor(Rotation.random(random_state=6).as_matrix(), dtype=x.dtype)
    rotated = stretch_acceleration(x @ rot.T - 2.0, d["w"], edges, limit, k=2.0)
    torch.testing.assert_close(rotated, a @ rot.T)
    # and it lowers the potential: a small step along it shortens the stretched pairs
    r = (x[edges[:, 1]] - x[edges[:, 0]]).norm(dim=-1)
    x2 = x + 1e-3 * d["w"][:, None] * a
    r2 = (x2[edges[:, 1]] - x2[edges[:, 0]]).norm(dim=-1)
    energy = lambda rr: float(((rr - limit).clamp(min=0) ** 2).sum())  # noqa: E731
    assert energy(r2) < energy(r)


@pytest.mark.parametrize("k, f", [(-1.0, 0.6), (1.0, 0.0), (float("nan"), 0.6)])
def test_a_stretch_prior_needs_a_non_negative_stiffness_and_a_positive_fraction(k, f) -> None:
    with pytest.raises(ValueError, match="stretch_k"):
        ModelConfig(stretch_k=k, stretch_fraction=f)


@pytest.mark.parametrize("history", [0, -1])
def test_the_integrator_needs_at_least_one_history_velocity(history) -> None:
    # Semi-implicit Euler steps from the latest velocity; k = 0 used to crash in make_batch.
    with pytest.raises(MDConfigError, match="history must be >= 1"):
        ModelConfig(history=history)
