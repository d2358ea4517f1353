"""accelmd train liflow -> accelmd checkpoints -> accelmd rollout | eval liflow, end to end."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
from ase import Atoms

from explorer.checkpoints import CHECKPOINT_DIR
from explorer.cli import main
from explorer.h5md import read_h5md
from explorer.testing import brownian_trajectory


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny checkpoint trained through the CLI, shared by the tests below."""
    tmp_path = tmp_path_factory.mktemp("liflow_cli")
    traj = brownian_trajectory(0.2, n_atoms=8, n_frames=600, dt_ps=0.02, frame_atoms=4, seed=0)
    traj.metadata.update(material="toy", temperature_K=800.0)
    data = traj.save(tmp_path / "toy_800K.h5")
    args = ["train", "liflow", "--data", str(data), "--name", "tiny", "--out-dir",
            str(tmp_path), "--max-steps", "2", "--eval-every", "2", "--features", "8",
            "--layers", "1", "--batch-size", "2", "--no-progress"]  # fmt: skip
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(args)
    return traj, data, tmp_path / "tiny.json", code, out.getvalue()


def test_train_then_rollout_from_the_command_line(trained, tmp_path):
    traj, _, card, code, printed = trained
    assert code == 0
    assert card.exists() and "best validation loss" in printed
    structure = tmp_path / "toy.extxyz"
    Atoms(numbers=traj.numbers, positions=traj.positions[0], cell=traj.cell, pbc=True).write(
        structure
    )
    out = tmp_path / "rollout.h5"
    with pytest.warns(UserWarning, match="outside the training temperatures"):
        code = main(["rollout", "liflow", "--checkpoint", str(card), "--material",
                     str(structure), "--supercell", "1", "1", "1", "--temperature", "300",
                     "--steps", "3", "--flow-steps", "2", "--corrector-strength", "0",
                     "--out", str(out)])  # fmt: skip
    assert code == 0
    frames = read_h5md(out)
    assert frames.n_frames == 4
    np.testing.assert_allclose(frames.times_ps, [0.0, 1.0, 2.0, 3.0])
    assert frames.metadata["knobs"]["temperature_K"] == 300.0
    assert frames.metadata["prior_choice"] == {"li": True, "frame": False}  # the card's
    assert frames.metadata["knobs_in_effect"] == {
        "prior_scale_li": 1.0, "prior_scale_frame": 1.0, "flow_steps": 2
    }  # fmt: skip


def test_rollout_without_a_checkpoint_says_what_to_do(tmp_path, capsys, monkeypatch):
    import explorer.checkpoints

    monkeypatch.setattr(explorer.checkpoints, "list_checkpoints", lambda *a, **k: [])
    code = main(["rollout", "liflow", "--material", "LGPS", "--temperature", "900",
                 "--steps", "1", "--out", str(tmp_path / "x.h5")])  # fmt: skip
    assert code == 2
    assert "accelmd train liflow" in capsys.readouterr().err


@pytest.mark.skipif(
    not (CHECKPOINT_DIR / "liflow_LGPS.json").exists(), reason="no bundled LGPS checkpoint"
)
def test_rollout_without_a_checkpoint_takes_the_material_s_bundled_one(tmp_path):
    out = tmp_path / "x.h5"
    code = main(["rollout", "liflow", "--material", "LGPS", "--temperature", "900", "--steps",
                 "1", "--flow-steps", "2", "--device", "cpu", "--corrector-start", "mean",
                 "--out", str(out)])  # fmt: skip
    assert code == 0
    traj = read_h5md(out)
    assert traj.metadata["checkpoint"] == "liflow_LGPS" and traj.n_frames == 2
    assert traj.metadata["knobs"]["corrector_start"] == "mean"


def test_eval_reports_metrics_against_references(trained, capsys):
    _, data, card, code, _ = trained
    assert code == 0
    assert main(["eval", "liflow", "--checkpoint", str(card), "--references", str(data),
                 "--seeds", "1", "--steps", "3", "--flow-steps", "2",
                 "--corrector-strength", "0", "--json"]) == 0  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    assert report["summary"]["n_records"] == 1
    assert report["records"][0]["temperature_K"] == 800.0


def test_corrector_noise_reaches_the_corrector_s_training(trained, tmp_path):
    _, data, _, _, _ = trained
    args = ["train", "liflow", "--data", str(data), "--name", "corr", "--kind", "corrector",
            "--out-dir", str(tmp_path), "--max-steps", "1", "--eval-every", "1",
            "--features", "8", "--layers", "1", "--batch-size", "2", "--no-progress",
            "--corrector-noise", "0.25"]  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(args) == 0
    card = json.loads((tmp_path / "corr.json").read_text())
    assert card["train_config"]["noise_max_A"] == 0.25
    assert card["prior"]["corrector_max_noise"] == 0.25
    assert main([*args[:-1], "0"]) != 0  # a clear error, not a default


def test_corrector_noise_reaches_the_bundle_settings(monkeypatch):
    import explorer.liflow.bundle as bundle

    seen = {}
    monkeypatch.setattr(bundle, "build_bundles", lambda names, settings, **kw: seen.update(
        names=names, settings=settings) or [])  # fmt: skip
    assert main(["train", "liflow", "--bundle", "liflow_LGPS", "--corrector-noise", "0.3"]) == 0
    assert seen["names"] == ["liflow_LGPS"] and seen["settings"].corrector_noise_A == 0.3
    assert main(["train", "liflow", "--bundle", "liflow_LGPS"]) == 0
    assert seen["settings"].corrector_noise_A == bundle.BundleSettings().corrector_noise_A
    assert seen["settings"].li_label_threshold_A2_ps == 1.0
    base = ["train", "liflow", "--bundle", "liflow_Li3InCl6", "--li-label-threshold"]
    assert main([*base, "0.15"]) == 0
    assert seen["settings"].label_thresholds()["li"] == 0.15
    for bad in ("0", "-1", "nan"):
        assert main([*base, bad]) != 0
    assert seen["settings"].recommended_knobs() == {}
    base = ["train", "liflow", "--bundle", "liflow_Li3PS4-beta", "--recommended-prior-scale-frame"]
    assert main([*base, "0.7"]) == 0
    assert seen["settings"].recommended_knobs() == {"prior_scale_frame": 0.7}
    for bad in ("0", "-0.5", "inf"):
        assert main([*base, bad]) != 0
    base = ["train", "liflow", "--bundle", "liflow_Li3InCl6", "--recommended-prior-scale-li"]
    assert main([*base, "1.25", "--recommended-prior-scale-frame", "0.9"]) == 0
    assert seen["settings"].recommended_knobs() == {
        "prior_scale_li": 1.25, "prior_scale_frame": 0.9
    }  # fmt: skip
    assert main([*base, "-1"]) != 0
    assert seen["settings"].full_corrector_flow_below_K is None
    base = ["train", "liflow", "--bundle", "liflow_Li3InCl6", "--full-corrector-flow-below-K"]
    assert main([*base, "900"]) == 0
    assert seen["settings"].inference_settings() == {"full_corrector_flow_below_K": 900.0}
    for bad in ("0", "-900", "nan"):
        assert main([*base, bad]) != 0


def test_reuse_propagator_copies_into_the_work_dir_of_one_bundle(monkeypatch, tmp_path):
    import explorer.liflow.bundle as bundle

    calls = []
    monkeypatch.setattr(bundle, "build_bundles", lambda names, settings, **kw: [])
    monkeypatch.setattr(bundle, "reuse_propagator", lambda *a: calls.append(a))
    args = ["train", "liflow", "--reuse-propagator", "liflow_LGPS", "--work-dir", str(tmp_path)]
    assert main([*args, "--bundle", "liflow_LGPS"]) == 0
    assert calls == [("liflow_LGPS", "liflow_LGPS", tmp_path)]
    for bundles in (["liflow_LGPS", "liflow_multi"], ["all"]):
        assert main([*args, "--bundle", *bundles]) != 0
    assert len(calls) == 1


def test_fine_corrector_noise_and_reuse_modules_reach_the_bundle(monkeypatch, tmp_path):
    import explorer.liflow.bundle as bundle

    seen, calls = {}, []
    monkeypatch.setattr(bundle, "build_bundles", lambda names, settings, **kw: seen.update(
        settings=settings) or [])  # fmt: skip
    monkeypatch.setattr(bundle, "reuse_modules", lambda *a: calls.append(a))
    base = ["train", "liflow", "--bundle", "liflow_LGPS"]
    assert main(base) == 0 and seen["settings"].fine_corrector_noise_A == 0.2
    assert main([*base, "--fine-corrector-noise", "0.15"]) == 0
    assert seen["settings"].fine_corrector_noise_A == 0.15
    assert main([*base, "--fine-corrector-noise", "0"]) == 0  # 0: no fine Corrector
    assert seen["settings"].fine_corrector_noise_A is None
    assert main([*base, "--fine-corrector-noise", "-0.1"]) != 0
    reuse = ["--reuse-modules", "liflow_LGPS", "--work-dir", str(tmp_path)]
    assert main([*base, *reuse]) == 0
    assert calls == [("liflow_LGPS", "liflow_LGPS", tmp_path)]
    assert main(["train", "liflow", "--bundle", "all", *reuse]) != 0
    assert main([*base, *reuse, "--reuse-propagator", "liflow_LGPS"]) != 0
    assert len(calls) == 1
