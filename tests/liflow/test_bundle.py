"""The bundled-checkpoint pipeline: plans, prior labels, train -> combine -> evaluate, resume."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from explorer.checkpoints import load_checkpoint, read_card
from explorer.h5md import H5MDWriter
from explorer.liflow.bundle import (
    BundleError,
    BundlePlan,
    BundleSettings,
    build_bundle,
    bundle_plans,
    prior_choices_from_references,
    reevaluate_bundle,
    reuse_modules,
    reuse_propagator,
    split_files,
)
from explorer.liflow.simulate import LiFlowSimulator
from explorer.reference.dataset import REFERENCE_RUNS, ReferenceRun
from explorer.testing import brownian_trajectory

TINY = BundleSettings(
    features=8, layers=1, rbf=4, propagator_steps=4, corrector_steps=2, eval_every=2,
    patience=1, batch_size=2, eval_seeds=1, eval_steps=2, knob_seeds=1, device="cpu",
    compile=False,
)  # fmt: skip

# Two toy "materials" of 6 Li + 6 S in a 7 Å box: A diffuses fast, B slowly.
RUNS = (
    ReferenceRun("toyA", 600.0, "train", (1, 1, 1)),
    ReferenceRun("toyA", 1000.0, "train", (1, 1, 1)),
    ReferenceRun("toyB", 800.0, "train", (1, 1, 1)),
    ReferenceRun("toyB", 900.0, "heldout", (1, 1, 1)),
)
D_A2_PS = {"toyA": 0.5, "toyB": 0.02}


def _write_references(directory):
    for k, run in enumerate(RUNS):
        traj = brownian_trajectory(
            D_A2_PS[run.material], n_atoms=6, n_frames=300, dt_ps=0.05, cell=7.0,
            frame_atoms=6, seed=k,
        )  # fmt: skip
        traj.metadata.update(material=run.material, temperature_K=run.temperature_K)
        traj.save(directory / run.filename)


@pytest.fixture(scope="module")
def references(tmp_path_factory):
    directory = tmp_path_factory.mktemp("references")
    _write_references(directory)
    return directory


def test_plans_cover_every_training_material_and_one_multi_material_model():
    plans = bundle_plans()
    materials = list(dict.fromkeys(r.material for r in REFERENCE_RUNS if r.split == "train"))
    assert [p.name for p in plans] == [f"liflow_{m}" for m in materials] + ["liflow_multi"]
    assert plans[-1].materials == tuple(materials) and plans[-1].evaluate_heldout
    assert [p.name for p in plans if p.knob_study] == ["liflow_LGPS"]
    assert not any(p.evaluate_heldout for p in plans[:-1])
    assert all(p.fine_corrector for p in plans)  # Li3InCl6 too, since 2026-12-06


def test_split_files_refuses_missing_and_unfinished_runs(references, tmp_path):
    found = split_files("train", ("toyA",), references, RUNS)
    assert [p.name for p in found] == ["toyA_600K.h5", "toyA_1000K.h5"]
    with pytest.raises(BundleError, match=r"toyA_600K\.h5.*make data"):
        split_files("train", ("toyA",), tmp_path, RUNS)
    running = brownian_trajectory(0.1, n_atoms=2, n_frames=5)
    running.metadata.update(status="running")
    running.save(tmp_path / "toyB_800K.h5")
    with pytest.raises(BundleError, match=r"toyB_800K\.h5"):
        split_files("train", ("toyB",), tmp_path, RUNS)
    # A run still equilibrating has written its file but no frame yet.
    path = tmp_path / "toyB_900K.h5"
    H5MDWriter(path, [3, 3], np.eye(3) * 9, metadata={"status": "running"}).close()
    with pytest.raises(BundleError, match=r"toyB_900K\.h5"):
        split_files("heldout", None, tmp_path, RUNS)


def test_prior_labels_follow_each_reference_msd(references):
    paths = split_files("train", None, references, RUNS)
    choices = {stem: (li, frame) for stem, li, frame in prior_choices_from_references(paths)}
    # MSD/t = 6 D: 3 Å²/ps for toyA (>= 1, large), 0.12 Å²/ps for toyB (small);
    # the S atoms never move (small).
    assert choices == {
        "toyA_600K": (True, False),
        "toyA_1000K": (True, False),
        "toyB_800K": (False, False),
    }
    # A lower Li threshold (BundleSettings.li_label_threshold_A2_ps) gives toyB the large
    # Li prior; the frame threshold stays the classifier's default.
    lower = BundleSettings(li_label_threshold_A2_ps=0.1).label_thresholds()
    assert lower == {"li": 0.1, "frame": BundleSettings().label_thresholds()["frame"]}
    relabelled = prior_choices_from_references(paths, lower)
    assert ("toyB_800K", True, False) in relabelled


def _build(plan, settings, references, out_dir, work_dir, log=lambda _: None, **kw):
    """build_bundle on the toy references, quietly unless ``log`` collects the lines."""
    kw.setdefault("command", "pytest")
    return build_bundle(
        plan, settings, reference_dir=references, out_dir=out_dir, work_dir=work_dir,
        runs=RUNS, progress=False, log=log, **kw,
    )  # fmt: skip


@pytest.fixture(scope="module")
def built(references, tmp_path_factory):
    out = tmp_path_factory.mktemp("bundle")
    plan = BundlePlan("liflow_toy", ("toyA", "toyB"), evaluate_heldout=True, knob_study=True)
    logs: list[str] = []
    card_path = _build(plan, TINY, references, out, out / "work", log=logs.append)
    return plan, card_path, out, logs


def test_bundle_card_records_training_data_selector_and_metrics(built, references):
    _, card_path, _, _ = built
    card = read_card(card_path)
    assert card["family"] == "liflow" and card["kind"] == "propagator+corrector+fine corrector"
    assert card["materials"] == ["toyA", "toyB"] and card["elements"] == [3, 16]
    assert card["training_temperatures_K"] == [600.0, 800.0, 1000.0]
    assert {f["name"] for f in card["training_files"]} == {
        "toyA_600K.h5", "toyA_1000K.h5", "toyB_800K.h5",
    }  # fmt: skip
    assert all(len(f["sha256"]) == 64 for f in card["training_files"])
    assert set(card["training"]) == {"propagator", "corrector", "corrector_fine"}
    assert card["training"]["propagator"]["train_config"]["max_steps"] == 4
    corrector = card["training"]["corrector"]["train_config"]
    assert corrector["noise_max_A"] == TINY.corrector_noise_A == 0.5
    assert card["prior"]["corrector_max_noise"] == 0.5  # the Corrector's, not the default
    fine = card["training"]["corrector_fine"]["train_config"]
    assert fine["kind"] == "corrector" and fine["max_steps"] == TINY.corrector_steps
    assert fine["noise_max_A"] == card["corrector_fine_max_noise"] == 0.2
    assert card["models"]["propagator"]["num_features"] == 8
    assert ["toyB_800K", False, False] in card["prior_choices_training"]
    assert 0.0 <= card["selector"]["train_accuracy"]["li"] <= 1.0
    assert card["selector"]["thresholds_A2_ps"] == TINY.label_thresholds()
    assert card["settings"]["li_label_threshold_A2_ps"] == 1.0
    assert card["selector"]["heldout_accuracy"] is not None
    # Evaluation on the training references, the held-out one, and the knob table.
    ev = card["evaluation"]
    assert ev["summary"]["n_records"] == 3 and ev["rollout_ps"] == 2.0
    assert card["evaluation_heldout"]["references"] == ["toyB_900K.h5"]
    # The Corrector's own RDF bias, per reference and on average.
    bias = ev["corrector_rdf_bias"]
    assert sorted(bias) == sorted(ev["references"]) and all(v > 0 for v in bias.values())
    assert ev["summary"]["corrector_rdf_bias"] == pytest.approx(np.mean(list(bias.values())))
    assert len(card["knob_study"]) == 9
    assert {(r["prior_scale_li"], r["corrector_strength"]) for r in card["knob_study"]} == {
        (s, c) for s in (0.5, 1.0, 2.0) for c in (0.0, 0.5, 1.0)
    }
    assert "NaN" not in card_path.read_text()  # strict JSON: undefined metrics are null
    json.loads(card_path.read_text())


def test_bundle_loads_as_simulator_with_its_prior_classifier(built, references):
    _, card_path, _, _ = built
    ckpt = load_checkpoint(card_path)
    assert set(ckpt.state_dicts) == {"propagator", "corrector", "corrector_fine", "selector"}
    sim = LiFlowSimulator.from_checkpoint(card_path, device="cpu")
    assert sim.selector is not None and sim.corrector is not None
    assert sim.fine_corrector is not None
    from explorer.h5md import read_h5md

    atoms = read_h5md(references / "toyA_600K.h5", slice(0, 1)).to_atoms(0)
    state = sim.prepare(atoms, 700.0, seed=1)
    assert state.prior_choices == tuple(sim.prior_choices([atoms], [700.0]))
    assert set(state.prior_choices[0]) == {"li", "frame"}
    sim.min_distance_A = 0.1  # 4-step toy modules may clash; loading is what is tested
    state = sim.step(state)
    assert np.isfinite(state.positions.numpy()).all()


def test_rebuilding_reuses_trained_modules(built, references):
    plan, card_path, out, _ = built
    before = load_checkpoint(card_path).state_dicts["propagator"]
    logs: list[str] = []
    _build(plan, TINY, references, out, out / "work", log=logs.append)
    assert any("already trained" in line for line in logs)
    assert not any("training on" in line for line in logs)
    assert any("up to date" in line for line in logs)
    after = load_checkpoint(card_path).state_dicts["propagator"]
    for key, value in before.items():
        assert np.array_equal(value.numpy(), after[key].numpy())


def test_modules_only_trains_into_the_work_dir_and_a_full_build_reuses_them(references, tmp_path):
    plan = BundlePlan("liflow_toy", ("toyA",))
    work, out = tmp_path / "work", tmp_path / "out"
    path = _build(plan, TINY, references, out, work, modules_only=True)
    assert path == work / "liflow_toy.propagator.json" and path.exists()
    assert (work / "liflow_toy.corrector.json").exists()
    assert (work / "liflow_toy.corrector_fine.json").exists()
    assert not out.exists()  # neither combined nor evaluated
    without = dataclasses.replace(plan, name="liflow_plain", fine_corrector=False)
    _build(without, TINY, references, out, work, modules_only=True)
    assert (work / "liflow_plain.corrector.json").exists()
    assert not (work / "liflow_plain.corrector_fine.json").exists()
    logs: list[str] = []
    card_path = _build(plan, TINY, references, out, work, log=logs.append)
    assert not any("training on" in line for line in logs)
    assert "evaluation" in read_card(card_path)


def test_a_changed_corrector_setting_retrains_only_the_corrector(built, references, tmp_path):
    import dataclasses
    import shutil

    plan, _, out, _ = built
    copy = tmp_path / "bundle"
    shutil.copytree(out, copy)
    logs: list[str] = []
    settings = dataclasses.replace(TINY, corrector_noise_A=0.3)
    card_path = _build(plan, settings, references, copy, copy / "work", log=logs.append)
    name = plan.name
    assert f"{name}.propagator: already trained" in " ".join(logs)
    # the saved state of the 0.5-Å Corrector cannot be resumed with 0.3 Å: afresh
    assert f"{name}.corrector: settings changed since the saved state; training afresh" in logs
    card = read_card(card_path)
    assert card["training"]["corrector"]["train_config"]["noise_max_A"] == 0.3
    assert card["prior"]["corrector_max_noise"] == 0.3


def test_report_tables_the_card_with_targets_and_verdicts(built):
    from explorer.liflow.report import liflow_report, metric_rows

    _, card_path, _, _ = built
    card = read_card(card_path)
    text = liflow_report([card, {"family": "flashmd", "name": "other"}])
    assert "## liflow_toy" in text and "other" not in text
    assert "Evaluation on the training materials" in text
    assert "Evaluation on held-out materials/temperatures" in text
    assert "**Knob study** (LGPS):" in text and text.count("| 0.5 |") >= 3
    assert "toyA_600K" not in text  # file names stay in the card; the report counts them
    assert "Recommended knobs" not in text
    tuned = liflow_report([{**card, "recommended_knobs": {"prior_scale_frame": 0.7}}])
    assert (
        "Recommended knobs, the defaults of rollouts and the evaluations below: "
        "prior_scale_frame = 0.7" in tuned
    )
    assert "Below" not in text
    assert "Below 900 K each Corrector integrates all N flow steps" in liflow_report(
        [{**card, "full_corrector_flow_below_K": 900.0}]
    )
    summary = card["evaluation"]["summary"]
    rows = {label: (value, verdict) for label, value, _, verdict in metric_rows(summary)}
    mae = summary["mae_log10_msd_li"]
    assert rows["log10 MSD_Li MAE"] == (f"{mae:.3f}", "meets" if mae <= 0.3 else "misses")


def test_report_says_where_and_how_long_modules_trained(built):
    import copy

    from explorer.liflow.report import liflow_report

    card = copy.deepcopy(read_card(built[1]))
    text = liflow_report([card])
    assert "(on cuda" not in text
    steps = card["training"]["corrector_fine"]["steps"]
    assert f"; fine corrector {steps} steps in" in text
    record = card["training"]["propagator"]
    record["train_config"].update(device="cuda", max_wall_s=300.0)
    record["stopped_at_time_limit"] = True
    card["training"]["corrector"]["train_config"]["device"] = "cuda"
    text = liflow_report([card])
    assert f"propagator {record['steps']} steps in" in text
    assert "s (on cuda, stopped at its 5-min limit);" in text
    assert text.count("(on cuda") == 2


def _copy_bundle(card_path, directory):
    """Copy a built bundle (card and weights) into ``directory``; its card."""
    import shutil

    for suffix in (".json", ".safetensors"):
        shutil.copy(card_path.with_suffix(suffix), directory / card_path.with_suffix(suffix).name)
    return read_card(card_path)


def _change_settings(path, card, **settings):
    """Write ``card`` to ``path`` with its build ``settings`` changed."""
    changed = json.loads(json.dumps(card))
    changed["settings"].update(settings)
    path.write_text(json.dumps(changed))


def test_reevaluation_redoes_the_cards_metrics_from_the_same_rollouts(built, references, tmp_path):
    plan, card_path, _, _ = built
    before = _copy_bundle(card_path, tmp_path)
    stale = json.loads(json.dumps(before))
    stale["evaluation"]["summary"]["rdf_mae"] = 99.0
    del stale["knob_study"]
    (tmp_path / f"{plan.name}.json").write_text(json.dumps(stale))
    reevaluate_bundle(
        plan.name, tmp_path, references, RUNS, command="pytest re-eval", log=lambda _: None,
        plan=plan,
    )  # fmt: skip
    after = read_card(tmp_path / f"{plan.name}.json")
    # Same weights and settings, so the same seeded rollouts and the same metrics.
    summary, expected = after["evaluation"]["summary"], before["evaluation"]["summary"]
    assert summary.keys() == expected.keys() and summary["rdf_mae"] != 99.0
    for key, value in expected.items():
        if isinstance(value, float):
            assert summary[key] == pytest.approx(value, rel=1e-6), key
    assert len(after["knob_study"]) == len(before["knob_study"])
    assert after["weights_sha256"] == before["weights_sha256"]
    assert after["evaluation_command"] == "pytest re-eval" and after["evaluation_date"]
    from explorer.liflow.report import liflow_report

    assert "with `pytest re-eval`." in liflow_report([after])
    with pytest.raises(BundleError, match="not a bundled"):
        reevaluate_bundle("liflow_nothing", tmp_path, references, RUNS, log=lambda _: None)
    with pytest.raises(BundleError, match="no card"):
        reevaluate_bundle(plan.name, tmp_path / "empty", references, RUNS, plan=plan)


def test_a_recommended_frame_prior_scale_reaches_the_card_and_its_evaluation(
    built, references, tmp_path
):
    plan, card_path, _, _ = built
    before = _copy_bundle(card_path, tmp_path)
    assert before["recommended_knobs"] == {}
    _change_settings(tmp_path / f"{plan.name}.json", before, recommended_prior_scale_frame=0.25)
    reevaluate_bundle(plan.name, tmp_path, references, RUNS, log=lambda _: None, plan=plan)
    after = read_card(tmp_path / f"{plan.name}.json")
    assert after["recommended_knobs"] == {"prior_scale_frame": 0.25}
    sim = LiFlowSimulator.from_checkpoint(tmp_path / f"{plan.name}.json", device="cpu")
    assert sim.knob_default("prior_scale_frame") == 0.25
    # The rollouts drew the same seeds with a 4x narrower frame prior: the frame moves less.
    records = [c["evaluation"]["records"] for c in (before, after)]
    moved = [np.nanmean([r.get("log10_msd_frame", np.nan) for r in rs]) for rs in records]
    assert moved[1] < moved[0]


def test_a_full_corrector_flow_threshold_reaches_the_card_and_its_evaluation(
    built, references, tmp_path
):
    plan, card_path, _, _ = built
    before = _copy_bundle(card_path, tmp_path)
    assert "full_corrector_flow_below_K" not in before
    assert BundleSettings().inference_settings() == {}
    # above every reference temperature
    _change_settings(tmp_path / f"{plan.name}.json", before, full_corrector_flow_below_K=5000.0)
    steps_seen: list[int] = []
    real = LiFlowSimulator.flow_steps_of

    def spy(self, model, state):
        steps = real(self, model, state)
        if model is not self.propagator:
            steps_seen.append((steps, state.flow_steps))
        return steps

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(LiFlowSimulator, "flow_steps_of", spy)
        reevaluate_bundle(plan.name, tmp_path, references, RUNS, log=lambda _: None, plan=plan)
    after = read_card(tmp_path / f"{plan.name}.json")
    assert after["full_corrector_flow_below_K"] == 5000.0
    sim = LiFlowSimulator.from_checkpoint(tmp_path / f"{plan.name}.json", device="cpu")
    assert sim.full_corrector_flow_below_K == 5000.0
    # every Corrector flow took the Propagator's N steps (not ⌈N / 2⌉)
    assert steps_seen and all(steps == n for steps, n in steps_seen)


def test_report_marks_misses_and_undefined_metrics():
    from explorer.liflow.report import metric_rows

    rows = metric_rows({"mae_log10_msd_li": 0.5, "spearman_li": None, "rdf_mae": 0.01,
                        "rdf_iae_A": 0.5, "stable_fraction": 0.75})  # fmt: skip
    by = {label.split(" (")[0]: (value, verdict) for label, value, _, verdict in rows}
    assert by["log10 MSD_Li MAE"] == ("0.500", "misses")
    assert by["Spearman ρ"] == ("n/a", "")
    assert by["RDF MAE"] == ("0.010", "meets")
    assert by["RDF integrated error ∫ abs(Δg) dr to half the cell width, Å"] == ("0.500", "")
    assert not any("|" in label for label, *_ in rows)  # Markdown table cells
    # the target is the paper's dimensionless MAE: 0.09 misses it
    assert (
        dict((r[0].split(" (")[0], r[3]) for r in metric_rows({"rdf_mae": 0.09}))["RDF MAE"]
        == "misses"
    )
    assert by["stable rollouts"] == ("75 %", "misses")


def test_reuse_propagator_retrains_only_the_corrector(built, references, tmp_path):
    plan, card_path, _, _ = built
    work = tmp_path / "work"
    module = reuse_propagator(card_path, plan.name, work)
    assert module == work / f"{plan.name}.propagator.json"
    logs: list[str] = []
    other_noise = dataclasses.replace(TINY, corrector_noise_A=0.2)
    rebuilt_path = _build(plan, other_noise, references, tmp_path / "out", work, log=logs.append)
    assert any("propagator: already trained" in line for line in logs)
    assert any("corrector: training" in line for line in logs)
    old, new = load_checkpoint(card_path), load_checkpoint(rebuilt_path)
    for key, value in old.state_dicts["propagator"].items():
        assert torch.equal(new.state_dicts["propagator"][key], value)
    assert new.card["training"]["propagator"] == old.card["training"]["propagator"]
    assert new.card["prior"] == {**old.card["prior"], "corrector_max_noise": 0.2}
    assert new.card["training"]["corrector"]["train_config"]["noise_max_A"] == 0.2
    with pytest.raises(BundleError, match="not a bundled LiFlow checkpoint"):
        reuse_propagator(module, plan.name, tmp_path / "again")  # a module, not a bundle


def test_reuse_modules_adds_a_fine_corrector_to_a_bundle_without_one(references, tmp_path):
    plan = BundlePlan("liflow_toy", ("toyA",))
    plain = dataclasses.replace(TINY, fine_corrector_noise_A=None)
    first = _build(plan, plain, references, tmp_path / "v1", tmp_path / "w1")
    old = load_checkpoint(first)
    assert set(old.state_dicts) == {"propagator", "corrector", "selector"}
    assert "corrector_fine_max_noise" not in old.card
    with pytest.raises(BundleError, match="no corrector_fine module"):
        reuse_modules(first, plan.name, tmp_path / "w2", ("propagator", "corrector_fine"))

    work = tmp_path / "w2"
    paths = reuse_modules(first, plan.name, work)
    assert paths == [work / f"{plan.name}.propagator.json", work / f"{plan.name}.corrector.json"]
    logs: list[str] = []
    second = _build(plan, TINY, references, tmp_path / "v2", work, log=logs.append)
    assert any("propagator: already trained" in line for line in logs)
    assert any("corrector: already trained" in line for line in logs)
    assert any("corrector_fine: training" in line for line in logs)
    new = load_checkpoint(second)
    for kind in ("propagator", "corrector"):
        for key, value in old.state_dicts[kind].items():
            assert torch.equal(new.state_dicts[kind][key], value)
        assert new.card["training"][kind] == old.card["training"][kind]
    assert new.card["corrector_fine_max_noise"] == 0.2 and "corrector_fine" in new.state_dicts
