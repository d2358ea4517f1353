"""End-to-end training: the loss falls, runs resume exactly, checkpoints round-trip."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from explorer.cg.data import Batch, CGPolymer, make_batch
from explorer.cg.model import ModelConfig
from explorer.cg.simulate import CGSimulator
from explorer.cg.train import (
    CGModules,
    TrainConfig,
    WeightAverage,
    _predict_batch,
    _validate,
    fit_scales,
    load_training_polymers,
    refit_variance,
    train,
    variance_ratio,
)
from explorer.checkpoints import load_checkpoint
from explorer.errors import AnalysisError, MDConfigError

from .conftest import tiny_train_config


def _paths(polymer_dir: Path) -> list[Path]:
    return sorted(polymer_dir.glob("train_I_*.h5"))


def test_tiny_training_run_reduces_the_loss(polymer_dir: Path) -> None:
    config = tiny_train_config(max_steps=60, eval_every=20)
    polymers = load_training_polymers(_paths(polymer_dir), config.bead_size)
    val = polymers[-1:]
    torch.manual_seed(config.seed)  # the same initial weights as train() draws
    initial = CGModules.create(config.model, fit_scales(polymers[:-1], config.model.history))
    rng = np.random.default_rng(config.seed + 1)
    batches = [
        make_batch(val, rng, config.model.history, config.model.cutoff, 2, 4) for _ in range(2)
    ]
    before = _validate(initial, batches, config.seed + 2)["nll"]
    result = train(_paths(polymer_dir), config, progress=False)
    assert result.best_val < before - 0.05
    assert all(np.isfinite(h[:6]).all() for h in result.history)  # no rollout column here
    assert all(np.isnan(h[6]) for h in result.history)


@pytest.mark.parametrize("ema_decay", [0.0, 0.9])
def test_training_resumes_exactly(polymer_dir: Path, tmp_path: Path, ema_decay: float) -> None:
    config = tiny_train_config(max_steps=20, ema_decay=ema_decay)
    straight = train(_paths(polymer_dir), config, progress=False)

    class Interrupt(Exception):
        pass

    def stop_at_10(line: str) -> None:
        if line.startswith("step 10:"):
            raise Interrupt

    with pytest.raises(Interrupt):
        train(
            _paths(polymer_dir),
            config,
            out_name="cg-r",
            out_dir=tmp_path,
            progress=False,
            log=stop_at_10,
        )
    resumed = train(
        _paths(polymer_dir),
        config,
        out_name="cg-r",
        out_dir=tmp_path,
        resume_from=tmp_path / "cg-r.state.pt",
        progress=False,
    )
    assert resumed.steps == 20
    np.testing.assert_allclose(np.array(resumed.history), np.array(straight.history), rtol=1e-6)


def test_checkpoint_card_and_weights_round_trip(tiny_checkpoint: Path) -> None:
    ckpt = load_checkpoint(tiny_checkpoint)
    assert ckpt.family == "cg"
    assert set(ckpt.state_dicts) == {"embedding", "dynamics", "score"}
    card = ckpt.card
    assert card["units"]["length"] == "sigma" and card["dt_tau"] == pytest.approx(0.5)
    assert card["training_files"] and card["validation_polymers"] == ["train_I_001"]
    sim = CGSimulator.from_checkpoint(tiny_checkpoint)
    assert sim.bead_size == card["bead_size"]


def test_rollout_validation_selects_by_rg2_error(
    polymer_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import explorer.cg.train as cg_train

    config = tiny_train_config(max_steps=30, eval_every=10, rollout_validation_steps=5)
    real, errors = cg_train.rollout_error, iter([0.5, 0.1, 0.3])
    seen = []

    def scripted(*args, **kwargs) -> float:
        seen.append(real(*args, **kwargs))  # the real rollouts run and score in [0, 1]
        return next(errors)

    monkeypatch.setattr(cg_train, "rollout_error", scripted)
    result = train(_paths(polymer_dir), config, out_name="cg-roll", out_dir=tmp_path,
                   progress=False)  # fmt: skip
    assert len(seen) == 3 and all(0.0 <= e <= 1.0 for e in seen)
    assert result.best_step == 20 and result.best_val == 0.1  # not the NLL's choice
    assert [h[6] for h in result.history] == [0.5, 0.1, 0.3]
    card = load_checkpoint("cg-roll", tmp_path).card
    assert card["selected_by"] == "rollout_rg2_error" and card["best_rollout_rg2_error"] == 0.1


def test_rollout_error_scores_a_diverging_model_as_one(polymer_dir: Path) -> None:
    from explorer.cg.train import rollout_error

    config = tiny_train_config()
    paths = _paths(polymer_dir)
    polymers = load_training_polymers(paths, config.bead_size)
    torch.manual_seed(0)
    modules = CGModules.create(config.model, fit_scales(polymers, config.model.history))
    args = (paths, polymers, config.bead_size, polymers[0].dt_tau, 5, 0)
    calm = rollout_error(modules, *args)
    assert 0.0 <= calm <= 1.0
    original = modules.dynamics.forward
    modules.dynamics.forward = lambda *a, **k: (o := original(*a, **k))._replace(mean=o.mean * 1e6)
    assert rollout_error(modules, *args) == 1.0


def test_correlated_noise_and_rg_step_loss_train_and_roll_out(polymer_dir: Path) -> None:
    base = tiny_train_config(max_steps=20, eval_every=10)
    config = replace(base, model=replace(base.model, correlated_noise=True), rg_step_weight=1.0)
    result = train(_paths(polymer_dir), config, progress=False)
    assert all(np.isfinite(h[:6]).all() for h in result.history)
    assert result.modules.dynamics.correlated
    simulator = CGSimulator(result.modules, config.bead_size, 0.5, polymer_dir=polymer_dir)
    state = simulator.prepare(simulator.polymer_atoms("test_II_000"), seed=1)
    for _ in range(5):
        state = simulator.step(state)
    assert torch.isfinite(state.x).all()


def test_a_wall_prior_is_part_of_the_trained_and_simulated_mean(polymer_dir: Path) -> None:
    from explorer.cg.data import graph_edges
    from explorer.cg.model import wall_acceleration

    base = tiny_train_config(max_steps=10, eval_every=5)
    config = replace(base, model=replace(base.model, wall_k=2.0, wall_r0=1.5))
    result = train(_paths(polymer_dir), config, progress=False)
    modules = result.modules
    assert (modules.config.wall_k, modules.config.wall_r0) == (2.0, 1.5)
    simulator = CGSimulator(modules, config.bead_size, 0.5, polymer_dir=polymer_dir)
    state = simulator.prepare(simulator.polymer_atoms("test_II_000"), seed=1)
    x = 0.4 * state.x  # squeezed, so the wall acts
    edges, flag = graph_edges(x[None], state.polymer.bond_matrix, modules.config.cutoff)
    graph = torch.zeros(x.shape[0], dtype=torch.long)
    sc = modules.scales
    with torch.no_grad():
        out = modules.dynamics(
            state.c, state.weights, x / sc.length, state.v.transpose(0, 1) / sc.velocity,
            edges, flag, graph, 1,
        )  # fmt: skip
    walled = modules.with_priors(out, x, state.weights, edges, flag)
    wall = wall_acceleration(x, state.weights, edges, flag, 2.0, 1.5)
    assert float(wall.abs().max()) > 0
    torch.testing.assert_close(walled.mean - out.mean, wall / sc.acceleration)
    torch.testing.assert_close(walled.log_var, out.log_var)
    off = replace(modules, config=replace(modules.config, wall_k=0.0))
    assert off.with_priors(out, x, state.weights, edges, flag) is out


def test_a_stretch_prior_is_part_of_the_trained_and_simulated_mean(polymer_dir: Path) -> None:
    from explorer.cg.data import edge_limits, graph_edges
    from explorer.cg.model import stretch_acceleration, wall_acceleration

    base = tiny_train_config(max_steps=10, eval_every=5)
    model = replace(base.model, wall_k=1.0, stretch_k=3.0, stretch_fraction=0.3)
    result = train(_paths(polymer_dir), replace(base, model=model), progress=False)
    modules = result.modules
    assert (modules.config.stretch_k, modules.config.stretch_fraction) == (3.0, 0.3)
    simulator = CGSimulator(modules, base.bead_size, 0.5, polymer_dir=polymer_dir)
    state = simulator.prepare(simulator.polymer_atoms("test_II_000"), seed=1)
    poly = state.polymer
    state = replace(state, x=2.0 * state.x)  # swollen, so the stretch prior acts
    edges, flag = graph_edges(state.x[None], poly.bond_matrix, modules.config.cutoff)
    limit = edge_limits(edges, poly)
    src, dst = edges[:, 0], edges[:, 1]
    torch.testing.assert_close(limit, poly.distance_limits[src, dst])
    sc = modules.scales
    with torch.no_grad():
        bare = modules.dynamics(
            state.c, state.weights, state.x / sc.length, state.v.transpose(0, 1) / sc.velocity,
            edges, flag, torch.zeros(poly.n_beads, dtype=torch.long), 1,
        )  # fmt: skip
    wall = wall_acceleration(state.x, state.weights, edges, flag, 1.0, 1.2)
    stretch = stretch_acceleration(state.x, state.weights, edges, 0.3 * limit, 3.0)
    assert float(stretch.abs().max()) > 0
    simulated, _ = simulator._predict(state)
    torch.testing.assert_close(simulated.mean - bare.mean, (wall + stretch) / sc.acceleration)
    with pytest.raises(MDConfigError, match="extension limits"):
        modules.with_priors(bare, state.x, state.weights, edges, flag)
    # training batches carry the same limits for their edges
    batch = make_batch([poly], np.random.default_rng(0), modules.config.history, 8.0, 1, 2)
    m = poly.n_beads
    torch.testing.assert_close(
        batch.edge_limit, poly.distance_limits[batch.edges[:, 0] % m, batch.edges[:, 1] % m]
    )


def test_input_noise_aims_at_the_clean_next_frame(polymer_dir: Path) -> None:
    from explorer.cg.train import perturb_inputs

    config = tiny_train_config()
    polymers = load_training_polymers(_paths(polymer_dir), config.bead_size)
    rng = np.random.default_rng(0)
    k, cutoff = config.model.history, config.model.cutoff
    batch = make_batch(polymers, rng, k, cutoff, 2, 16)
    generator = torch.Generator().manual_seed(0)
    assert perturb_inputs(batch, 0.0, cutoff, generator) is batch

    noisy = perturb_inputs(batch, 0.1, cutoff, generator)
    # the clean batch is consistent: semi-implicit Euler with the target lands on next_x ...
    landed = batch.x + batch.dt * (batch.v[:, 0] + batch.dt * batch.target)
    torch.testing.assert_close(landed, batch.next_x, atol=1e-4, rtol=0)
    # ... and so is the perturbed one, from its own perturbed state
    landed = noisy.x + noisy.dt * (noisy.v[:, 0] + noisy.dt * noisy.target)
    torch.testing.assert_close(landed, batch.next_x, atol=1e-4, rtol=0)
    # positions moved by N(0, 0.1²) per coordinate; velocities by the difference of two draws
    assert float((noisy.x - batch.x).std()) == pytest.approx(0.1, rel=0.1)
    dv = (noisy.v - batch.v) * batch.dt
    assert float(dv.std()) == pytest.approx(0.1 * 2**0.5, rel=0.1)
    # the oldest history position is perturbed too, consistently with the velocities
    oldest = batch.x - batch.dt * batch.v.sum(1)
    noisy_oldest = noisy.x - noisy.dt * noisy.v.sum(1)
    assert float((noisy_oldest - oldest).std()) == pytest.approx(0.1, rel=0.1)
    assert noisy.edges.shape[1] == 2 and noisy.edges.shape[0] == noisy.bond_flag.shape[0]
    torch.testing.assert_close(noisy.next_x, batch.next_x)


def test_training_with_input_noise_trains_on_perturbed_inputs(polymer_dir: Path) -> None:
    clean_config = tiny_train_config(max_steps=10, eval_every=10)
    noisy_config = replace(clean_config, input_noise=0.05)
    clean = train(_paths(polymer_dir), clean_config, progress=False)
    noisy = train(_paths(polymer_dir), noisy_config, progress=False)
    assert all(np.isfinite(h[:6]).all() for h in noisy.history)
    a = clean.modules.dynamics.state_dict()
    b = noisy.modules.dynamics.state_dict()
    assert any(not torch.equal(a[k], b[k]) for k in a)  # same seed, different inputs


def test_weight_average_is_an_exponential_moving_average_and_swaps_back() -> None:
    layer = torch.nn.Linear(2, 1)
    average = WeightAverage(layer.parameters(), decay=0.75)
    start = [p.detach().clone() for p in layer.parameters()]
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(4.0)
    average.update()
    for a, s0 in zip(average.average, start, strict=True):
        torch.testing.assert_close(a, s0 + 0.25 * 4.0)  # 0.75 * old + 0.25 * new
    raw = [p.detach().clone() for p in layer.parameters()]
    with average.swapped_in():
        for p, a in zip(layer.parameters(), average.average, strict=True):
            torch.testing.assert_close(p.detach(), a)
    for p, r in zip(layer.parameters(), raw, strict=True):
        torch.testing.assert_close(p.detach(), r)  # training continues from the raw weights


def test_training_with_an_average_selects_and_saves_the_average(
    polymer_dir: Path, tmp_path: Path
) -> None:
    config = tiny_train_config(max_steps=12, eval_every=12, ema_decay=0.8)
    train(_paths(polymer_dir), config, out_name="cg-ema", out_dir=tmp_path, progress=False)
    state = torch.load(tmp_path / "cg-ema.state.pt", weights_only=True)
    saved = load_checkpoint("cg-ema", tmp_path).state_dicts
    flat_best = [v for name in ("embedding", "dynamics", "score")
                 for v in state["best_state"][name].values()]  # fmt: skip
    assert len(flat_best) == len(state["average"])
    for best, avg in zip(flat_best, state["average"], strict=True):
        torch.testing.assert_close(best, avg)
    raw = state["modules"]["dynamics"]
    kept = saved["dynamics"]
    assert any(not torch.equal(raw[k], kept[k]) for k in raw)  # the average, not the last step
    assert all(torch.equal(state["best_state"]["dynamics"][k], kept[k]) for k in kept)
    assert load_checkpoint("cg-ema", tmp_path).card["train_config"]["ema_decay"] == 0.8


@pytest.mark.parametrize("decay", [-0.1, 1.0])
def test_an_average_decay_outside_0_1_is_refused(decay: float) -> None:
    with pytest.raises(MDConfigError, match="ema_decay"):
        TrainConfig(ema_decay=decay)


def _batch(polymer_dir: Path, samples: int = 4):
    config = tiny_train_config()
    polymers = load_training_polymers(_paths(polymer_dir), config.bead_size)
    torch.manual_seed(0)
    modules = CGModules.create(config.model, fit_scales(polymers, config.model.history))
    rng = np.random.default_rng(5)
    batch = make_batch(polymers, rng, config.model.history, config.model.cutoff, 2, samples)
    return modules, batch


def test_the_equilibrium_drift_of_frozen_chains_is_their_start_frames_offset(
    polymer_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model whose step stops every bead (a = -v/Δt, no noise) keeps the start frames:
    the term is then (m₁ − R)(m₂ − R) / R² of the two halves' start-frame R_g² means."""
    import explorer.cg.train as cg_train
    from explorer.cg.model import DynamicsOutput, graph_rg2

    modules, batch = _batch(polymer_dir)
    sc = modules.scales

    def stopping(c, weights, x, v, edges, flag, graph, n_graphs):
        mean = -(v[:, 0] * sc.velocity) / batch.dt / sc.acceleration
        return DynamicsOutput(mean, torch.zeros(len(x)), torch.zeros(n_graphs, 1))

    monkeypatch.setattr(modules, "dynamics", stopping)
    monkeypatch.setattr(cg_train, "acceleration_noise", lambda out, *a: torch.zeros_like(out.mean))
    got = cg_train.rollout_rg2_drift(modules, batch, 3, torch.Generator().manual_seed(0))
    start = graph_rg2(batch.x, batch.weights, batch.graph, 2 * 4).reshape(2, 4)
    m1, m2 = start[:, :2].mean(1), start[:, 2:].mean(1)
    ref = torch.tensor([float(np.mean(p.rg2_cg)) for p in batch.polymers])
    expected = ((m1 - ref) * (m2 - ref) / ref**2).mean()
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)


def test_the_equilibrium_drift_passes_gradients_through_the_draws(polymer_dir: Path) -> None:
    from explorer.cg.train import rollout_rg2_drift

    modules, batch = _batch(polymer_dir)
    loss = rollout_rg2_drift(modules, batch, 4, torch.Generator().manual_seed(1))
    loss.backward()
    grads = [p.grad for p in modules.dynamics.parameters() if p.grad is not None]
    assert torch.isfinite(loss) and grads and any(float(g.abs().sum()) > 0 for g in grads)
    embedding = [p.grad for p in modules.embedding.parameters() if p.grad is not None]
    assert embedding  # the bead types reach the term through the embedding GNN
    _, single = _batch(polymer_dir, samples=1)
    with pytest.raises(Exception, match="at least 2 samples"):
        rollout_rg2_drift(modules, single, 2, torch.Generator())


def test_training_with_the_equilibrium_term_records_it(polymer_dir: Path, tmp_path: Path) -> None:
    config = tiny_train_config(max_steps=4, eval_every=2, equilibrium_weight=2.0,
                               equilibrium_steps=3)  # fmt: skip
    result = train(_paths(polymer_dir), config, out_name="cg-eq", out_dir=tmp_path,
                   progress=False)  # fmt: skip
    assert result.steps == 4
    card = load_checkpoint("cg-eq", tmp_path).card
    assert card["train_config"]["equilibrium_weight"] == 2.0
    assert card["train_config"]["equilibrium_steps"] == 3
    with pytest.raises(MDConfigError, match="equilibrium"):
        TrainConfig(equilibrium_weight=-1.0)
    with pytest.raises(MDConfigError, match="equilibrium"):
        TrainConfig(equilibrium_steps=0)


def test_a_state_saved_before_the_averaging_and_equilibrium_settings_resumes(
    polymer_dir: Path, tmp_path: Path
) -> None:
    import json

    config = tiny_train_config(max_steps=4, eval_every=2)
    train(_paths(polymer_dir), config, out_name="cg-old", out_dir=tmp_path, progress=False)
    path = tmp_path / "cg-old.state.pt"
    state = torch.load(path, weights_only=True)
    old = json.loads(state["config"])
    for key in (
        "ema_decay",
        "equilibrium_weight",
        "equilibrium_steps",
        "pick_by_frames",
        "variance_steps",
    ):
        del old[key]
    state["config"] = json.dumps(old)
    del state["average"]
    torch.save(state, path)
    more = tiny_train_config(max_steps=6, eval_every=2)
    resumed = train(_paths(polymer_dir), more, out_name="cg-old", out_dir=tmp_path,
                    resume_from=path, progress=False)  # fmt: skip
    assert resumed.steps == 6


def test_batches_can_pick_polymers_by_their_frames(polymer_dir: Path) -> None:
    config = tiny_train_config()
    k, cutoff = config.model.history, config.model.cutoff
    long = load_training_polymers(_paths(polymer_dir)[:1], config.bead_size)[0]
    short = replace(long, name="short", positions=long.positions[: k + 1 + 10])  # 10 starts
    n_long = long.positions.shape[0] - k - 1

    def share_of_short(by_frames: bool) -> float:
        rng = np.random.default_rng(0)
        picks = [
            p.name
            for _ in range(100)
            for p in make_batch([long, short], rng, k, cutoff, 8, 1, by_frames=by_frames).polymers
        ]
        return picks.count("short") / len(picks)

    assert share_of_short(False) == pytest.approx(0.5, abs=0.05)
    assert share_of_short(True) == pytest.approx(10 / (10 + n_long), abs=0.03)
    assert share_of_short(True) < 0.2


def _first_batch(polymers: list[CGPolymer], config: TrainConfig) -> Batch:
    rng = np.random.default_rng(3)
    return make_batch(polymers, rng, config.model.history, config.model.cutoff, 2, 8)


def _outputs(modules: CGModules, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        out = _predict_batch(modules, batch)
    return out.mean, out.log_var


def test_a_variance_head_starts_from_the_variance_channel(polymer_dir: Path) -> None:
    config = tiny_train_config()
    polymers = load_training_polymers(_paths(polymer_dir), config.bead_size)
    torch.manual_seed(0)
    modules = CGModules.create(config.model, fit_scales(polymers, config.model.history))
    batch = _first_batch(polymers, config)
    mean, log_var = _outputs(modules, batch)
    modules.dynamics.attach_variance_head()
    mean2, log_var2 = _outputs(modules, batch)
    torch.testing.assert_close(mean2, mean, rtol=0, atol=0)
    torch.testing.assert_close(log_var2, log_var, rtol=1e-6, atol=1e-6)


def test_the_variance_refit_calibrates_the_variance_and_nothing_else(polymer_dir: Path) -> None:
    config = tiny_train_config()
    polymers = load_training_polymers(_paths(polymer_dir), config.bead_size)
    modules = train(_paths(polymer_dir), tiny_train_config(max_steps=30), progress=False).modules
    # Miscalibrate on purpose: the variance e times too large, so r²/s² ≈ 1/e.
    with torch.no_grad():
        modules.dynamics.node_out[4].bias[modules.dynamics.k] += 1.0
    batch = _first_batch(polymers, config)
    mean, log_var = _outputs(modules, batch)
    others = {n: p.detach().clone() for n, p in modules.dynamics.named_parameters()}
    before = np.mean([variance_ratio(modules, p) for p in polymers])
    report = refit_variance(modules, polymers, steps=150, seed=0, lr=3e-3)
    after = np.mean([variance_ratio(modules, p) for p in polymers])
    assert before < 0.6 and abs(after - 1.0) < abs(before - 1.0) / 2
    assert report["nll_after"] < report["nll_before"]
    assert report["variance_ratio_before"].keys() == {p.name for p in polymers}
    mean2, log_var2 = _outputs(modules, batch)
    torch.testing.assert_close(mean2, mean, rtol=0, atol=0)  # the mean is frozen
    assert float((log_var2 - log_var).abs().max()) > 0.1
    for name, p in modules.dynamics.named_parameters():
        if not name.startswith("variance_out"):
            torch.testing.assert_close(p, others[name], rtol=0, atol=0)
    assert modules.config.variance_head and all(p.requires_grad for p in modules.parameters())
    too_short = replace(polymers[0], positions=polymers[0].positions[: config.model.history + 1])
    with pytest.raises(AnalysisError, match="too few frames"):
        variance_ratio(modules, too_short)


def test_training_with_a_variance_refit_saves_the_head(polymer_dir: Path, tmp_path: Path) -> None:
    config = tiny_train_config(max_steps=4, eval_every=2, variance_steps=5)
    result = train(_paths(polymer_dir), config, out_name="cg-var", out_dir=tmp_path,
                   progress=False)  # fmt: skip
    card = load_checkpoint("cg-var", tmp_path).card
    assert card["model"]["variance_head"] is True
    assert card["variance_refit"]["steps"] == 5
    assert set(card["variance_refit"]["variance_ratio_after"]) == {"train_I_000"}
    sim = CGSimulator.from_checkpoint("cg-var", directory=tmp_path)
    assert sim.modules.dynamics.variance_out is not None
    polymers = load_training_polymers(_paths(polymer_dir), config.bead_size)
    batch = _first_batch(polymers, config)
    for a, b in zip(_outputs(sim.modules, batch), _outputs(result.modules, batch), strict=True):
        torch.testing.assert_close(a, b)
    with pytest.raises(MDConfigError, match="variance"):
        TrainConfig(variance_steps=-1)
    with pytest.raises(MDConfigError, match="independent"):
        TrainConfig(variance_steps=5, model=ModelConfig(correlated_noise=True))
