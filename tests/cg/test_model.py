"""The CG networks: exact translation invariance and rotation equivariance, NLL, embeddings."""

from __future__ import annotations

import pytest
import torch
from scipy.spatial.transform import Rotation

from explorer.cg.data import graph_edges
from explorer.cg.model import (
    DynamicsGNN,
    EmbeddingGNN,
    ModelConfig,
    ScoreGNN,
    cg_embedding,
    gaussian_nll,
)

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


def _dynamics(net: DynamicsGNN, d: dict, x: torch.Tensor, v: torch.Tensor):
    edges, flag = graph_edges(x[None], d["bond"], CONFIG.cutoff)
    graph = torch.zeros(x.shape[0], dtype=torch.long)
    return net(d["c"], d["w"], x, v, edges, flag, graph, 1)


def test_dynamics_gaussian_is_translation_invariant_and_rotation_equivariant() -> None:
    torch.manual_seed(0)
    net = DynamicsGNN(CONFIG).double().eval()
    d = _inputs()
    rot = torch.as_tensor(Rotation.random(random_state=1).as_matrix())
    shift = torch.tensor([3.0, -1.0, 7.5], dtype=torch.float64)
    mean, log_var, pooled = _dynamics(net, d, d["x"], d["v"])
    mean_t, log_var_t, _ = _dynamics(net, d, d["x"] + shift, d["v"])
    mean_r, log_var_r, pooled_r = _dynamics(net, d, d["x"] @ rot.T, d["v"] @ rot.T)
    assert mean.abs().max() > 1e-3  # a non-trivial output
    torch.testing.assert_close(mean_t, mean)
    torch.testing.assert_close(mean_r, mean @ rot.T)
    torch.testing.assert_close(log_var_r, log_var)
    torch.testing.assert_close(log_var_t, log_var)
    torch.testing.assert_close(pooled_r, pooled)  # the R_g² head sees invariants only


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
