"""LiFlow training: flow-matching targets, Corrector noise, determinism, resume, checkpoints."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from explorer.checkpoints import load_checkpoint
from explorer.h5md import write_h5md
from explorer.liflow.data import collate, source_from_trajectory
from explorer.liflow.losses import (
    corrector_example,
    flow_matching_loss,
    flow_matching_target,
    propagator_example,
)
from explorer.liflow.model import FlowModel, FlowModelConfig
from explorer.liflow.prior import PriorConfig, masses_of, prior_std
from explorer.liflow.train import TrainConfig, can_resume, train
from explorer.neighbors import radius_graph
from explorer.testing import brownian_trajectory

TINY = FlowModelConfig(elements=(3, 16), num_features=8, num_rbf=4, num_layers=1)


def walk(seed: int, n_frames: int = 40):
    traj = brownian_trajectory(
        0.2, n_atoms=4, n_frames=n_frames, dt_ps=0.1, cell=6.0, frame_atoms=2, seed=seed
    )
    traj.metadata["temperature_K"] = 800.0 + 200.0 * seed
    return traj


@pytest.fixture(scope="module")
def sources():
    return [source_from_trajectory(walk(s), f"walk{s}") for s in range(2)]


def config(**kw) -> TrainConfig:
    base = dict(
        model=TINY,
        batch_size=4,
        max_steps=12,
        eval_every=4,
        validation_batches=2,
        validation_fraction=0.4,
        device="cpu",
    )
    return TrainConfig(**{**base, **kw})


def test_flow_matching_target_is_linear_interpolant():
    g = torch.Generator().manual_seed(0)
    d0, d1 = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    t = torch.rand(5, generator=g)
    d_t, u = flow_matching_target(d0, d1, t)
    assert torch.allclose(d_t, (1 - t[:, None]) * d0 + t[:, None] * d1)
    assert torch.equal(u, d1 - d0)
    assert torch.allclose(flow_matching_target(d0, d1, torch.tensor(0.0))[0], d0)
    assert torch.allclose(flow_matching_target(d0, d1, torch.tensor(1.0))[0], d1)


class Oracle(torch.nn.Module):
    """Returns exactly d1 − d0, recovered from the interpolant: (d_t − d0) / t."""

    def __init__(self, example):
        super().__init__()
        self.example = example

    def build_graph(self, positions, cell, batch):
        return radius_graph(positions, cell, 3.0, batch=batch)

    def forward(self, numbers, positions, d_t, cell, temperature_K, t, batch, graph, halves):
        ex = self.example
        assert torch.equal(positions, ex.positions) and torch.equal(t, ex.flow_time)
        return (d_t - ex.d0) / t[batch, None]


def test_propagator_example_and_zero_loss_for_exact_model(sources):
    batch = collate(sources, [(0, 0), (1, 5)], torch.float64)
    g = torch.Generator().manual_seed(1)
    ex = propagator_example(batch, PriorConfig(), g, torch.tensor([True, False]), False)
    assert torch.equal(ex.positions, batch.positions) and torch.equal(ex.d1, batch.displacements)
    assert torch.allclose(ex.target, ex.d1 - ex.d0)
    m = masses_of(batch.numbers, torch.float64)
    for b in range(2):  # prior drawn without centre-of-mass drift
        sel = batch.batch == b
        assert torch.allclose(
            (m[sel, None] * ex.d0[sel]).sum(0), torch.zeros(3, dtype=torch.float64), atol=1e-10
        )
    loss = flow_matching_loss(Oracle(ex), ex)
    assert float(loss) == pytest.approx(0.0, abs=1e-20)


def test_corrector_target_is_minus_noise_with_small_mb_prior(sources):
    batch = collate(sources, [(0, 3), (1, 7), (0, 9)], torch.float64)
    prior = PriorConfig(corrector_scale=0.05)
    ex = corrector_example(batch, prior, torch.Generator().manual_seed(2), noise_max_A=0.1)
    x1 = batch.positions + batch.displacements
    assert torch.allclose(ex.d1, -(ex.positions - x1))  # target: back to the clean frame
    eps = ex.positions - x1
    assert 0 < float(eps.abs().max()) < 0.6  # σ ≤ 0.1 Å
    # the prior is the small MB prior: same draw as sampling from prior.corrector()
    std = prior_std(batch.numbers, batch.temperature_K, prior.corrector(), batch=batch.batch)
    std_li = std[batch.numbers == 3]
    assert float(std_li.max()) < 0.02
    z = ex.d0 / std.to(torch.float64)[:, None]
    assert float(z.abs().max()) < 6.0


def test_loss_decreases_on_tiny_data(sources):
    torch.manual_seed(0)
    model = FlowModel(TINY).double()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    batch = collate(sources, [(0, 0), (1, 3)], torch.float64)
    losses = []
    for _ in range(30):
        g = torch.Generator().manual_seed(0)  # one fixed batch and fixed draws: overfit it
        ex = propagator_example(batch, PriorConfig(kind="isotropic", scale=0.5), g)
        loss = flow_matching_loss(model, ex)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])


def test_train_is_deterministic_and_resumes_exactly(sources, tmp_path):
    cfg = config(max_steps=12)
    full = train(sources, cfg, progress=False, state_path=tmp_path / "full.pt")
    again = train(sources, cfg, progress=False)
    assert full.history == again.history and len(full.history) == 3
    half = train(sources, config(max_steps=8), progress=False, state_path=tmp_path / "half.pt")
    assert half.history == full.history[:2]
    resumed = train(sources, cfg, progress=False, resume_from=tmp_path / "half.pt")
    assert resumed.history == full.history and resumed.steps == 12
    for k, v in full.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k
    with pytest.raises(ValueError, match="lr"):
        train(sources, config(lr=1e-3), progress=False, resume_from=tmp_path / "half.pt")
    assert can_resume(tmp_path / "half.pt", cfg)  # only the step budget differs
    assert not can_resume(tmp_path / "half.pt", config(lr=1e-3))
    assert not can_resume(tmp_path / "missing.pt", cfg)


def test_early_stopping_restores_best_weights(sources, tmp_path):
    # a huge learning rate makes validation erratic, so patience runs out quickly
    cfg = config(max_steps=60, eval_every=2, patience=2, lr=0.3, kind="corrector")
    res = train(sources, cfg, progress=False, state_path=tmp_path / "s.pt")
    assert res.stopped_early and res.steps < 60
    vals = [h[2] for h in res.history]
    best = int(np.argmin(vals))
    assert res.best_val_loss == vals[best] and len(vals) - 1 - best == 2
    assert res.best_step == res.history[best][0] < res.steps
    saved = torch.load(tmp_path / "s.pt", weights_only=True)
    final = res.model.state_dict()
    assert all(torch.equal(final[k], v) for k, v in saved["best_weights"].items())
    assert any(not torch.equal(final[k], v) for k, v in saved["model"].items())


def test_a_time_limit_stops_at_the_next_validation_and_is_recorded(sources, tmp_path):
    cfg = config(max_steps=40, eval_every=4, max_wall_s=0.0)
    res = train(sources, cfg, out_name="limited", out_dir=tmp_path, progress=False)
    assert res.steps == 4 and res.stopped_at_time_limit and not res.stopped_early
    card = json.loads((tmp_path / "limited.json").read_text())
    assert card["stopped_at_time_limit"] is True and card["steps"] == 4
    assert [row[0] for row in card["history"]] == [4]
    unlimited = train(sources, config(max_steps=8, eval_every=4), progress=False)
    assert unlimited.steps == 8 and not unlimited.stopped_at_time_limit
    # how long a run may take is not what it learns: a limited run's state resumes
    train(sources, cfg, progress=False, state_path=tmp_path / "s.pt")
    assert can_resume(tmp_path / "s.pt", config(max_steps=40, eval_every=4))


def test_checkpoint_written_and_loadable(tmp_path):
    paths = []
    for s in range(2):
        paths.append(tmp_path / f"walk{s}.h5md")
        write_h5md(walk(s), paths[-1])
    lines = []
    out = tmp_path / "ckpt"
    res = train(
        paths, config(max_steps=4), out_name="tiny", out_dir=out, progress=False, log=lines.append
    )
    assert lines and (out / "tiny.state.pt").exists()
    ckpt = load_checkpoint(res.card_path)
    card = ckpt.card
    assert card["family"] == "liflow" and card["kind"] == "propagator"
    assert card["model"]["elements"] == [3, 16]
    assert card["prior"]["kind"] == "adaptive" and card["train_config"]["max_steps"] == 4
    assert [f["name"] for f in card["training_files"]] == ["walk0.h5md", "walk1.h5md"]
    assert all(len(f["sha256"]) == 64 for f in card["training_files"])
    assert card["best_val_loss"] == res.best_val_loss and card["steps"] == 4
    assert {"date", "torch_version", "wall_time_s"} <= set(card)
    model = FlowModel(FlowModelConfig(**{**card["model"]}))
    model.load_state_dict(ckpt.state_dicts["propagator"])


def test_trained_checkpoint_drives_a_rollout(tmp_path):
    """Training writes the card keys that LiFlowSimulator.from_checkpoint reads."""
    from ase import Atoms

    from explorer.liflow.simulate import LiFlowSimulator
    from explorer.session import DONE, Rollout

    paths = [tmp_path / "walk0.h5md"]
    write_h5md(walk(0), paths[0])
    res = train(paths, config(max_steps=2), out_name="tiny", out_dir=tmp_path, progress=False)
    simulator = LiFlowSimulator.from_checkpoint(res.card_path)
    source = walk(0)
    atoms = Atoms(numbers=source.numbers, positions=source.positions[0], cell=source.cell, pbc=True)
    rollout = Rollout(
        simulator, atoms, n_steps=2, knobs={"temperature_K": 800.0, "flow_steps": 2, "seed": 0}
    )
    rollout.run()
    assert rollout.status == DONE and rollout.n_frames == 3


def test_resume_may_switch_compile_on_but_not_what_is_learned(sources, tmp_path, monkeypatch):
    half = tmp_path / "half.pt"
    train(sources, config(max_steps=4), progress=False, state_path=half)
    # Only how the run executes differs: resuming is allowed (torch.compile is stubbed
    # to eager here; the real compiled path is checked in the slow test below).
    monkeypatch.setattr(torch, "compile", lambda module, **kw: module)
    resumed = train(sources, config(max_steps=8, compile=True), progress=False, resume_from=half)
    assert resumed.steps == 8
    with pytest.raises(ValueError, match="batch_size"):
        train(sources, config(batch_size=2), progress=False, resume_from=half)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("c++") is None, reason="torch.compile needs a C++ compiler")
def test_compiled_training_follows_the_eager_run(sources):
    eager = train(sources, config(max_steps=4), progress=False)
    compiled = train(sources, config(max_steps=4, compile=True), progress=False)
    # Fused kernels reorder float32 sums: equal to rounding, not bit for bit.
    np.testing.assert_allclose(
        np.array(compiled.history), np.array(eager.history), rtol=1e-3, atol=1e-6
    )
