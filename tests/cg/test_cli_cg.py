"""``accelmd rollout | train | eval cg`` handlers, driven through argparse."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from explorer.analysis.polymer import radius_of_gyration_sq
from explorer.cg import simulate
from explorer.cg.polymers import load_polymer
from explorer.cli_cg import add_cg_eval, add_cg_rollout, add_cg_train
from explorer.errors import SimulationDiverged
from explorer.h5md import read_h5md


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="accelmd")
    commands = parser.add_subparsers(dest="command")
    for name, add in (("rollout", add_cg_rollout), ("train", add_cg_train), ("eval", add_cg_eval)):
        families = commands.add_parser(name).add_subparsers(dest="family")
        add(families)
    return parser


@pytest.fixture
def local_polymers(polymer_dir: Path) -> Path:
    return polymer_dir


def test_rollout_cli_writes_cg_h5md_with_masses(
    tiny_checkpoint: Path, local_polymers: Path, tmp_path: Path
) -> None:
    out = tmp_path / "roll.h5"
    args = _parser().parse_args(
        [
            "rollout",
            "cg",
            "--checkpoint",
            str(tiny_checkpoint),
            "--polymer",
            "test_II_000",
            "--polymer-dir",
            str(local_polymers),
            "--steps",
            "5",
            "--out",
            str(out),
            "--refinement-strength",
            "1",
            "--seed",
            "2",
        ]
    )
    assert args.handler(args) == 0
    traj = read_h5md(out)
    assert traj.n_frames == 6 and np.all(np.isfinite(traj.positions))
    with h5py.File(out, "r") as f:
        masses = f["particles/all/mass"][()]
        assert "connectivity/all_bonds" in f
    np.testing.assert_allclose(masses, traj.metadata["cg_masses"])
    assert masses.sum() == pytest.approx(
        len(load_polymer(local_polymers / "test_II_000.h5").polymer.types)
    )
    # A user recomputes R_g² from the file alone and gets the stored observable.
    np.testing.assert_allclose(
        radius_of_gyration_sq(traj.positions, masses), traj.energies["rg2_cg"], rtol=1e-5
    )
    assert traj.metadata["knobs"]["refinement"] == 1


def test_rollout_cli_reports_divergence_and_keeps_frames(
    tiny_checkpoint: Path, local_polymers: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = simulate.CGSimulator.step
    calls = {"n": 0}

    def failing_step(self, state):
        calls["n"] += 1
        if calls["n"] == 3:
            raise SimulationDiverged("CG rollout diverged at step 3: test", step=3)
        return original(self, state)

    monkeypatch.setattr(simulate.CGSimulator, "step", failing_step)
    out = tmp_path / "fail.h5"
    args = _parser().parse_args(
        [
            "rollout",
            "cg",
            "--checkpoint",
            str(tiny_checkpoint),
            "--polymer",
            "test_II_000",
            "--polymer-dir",
            str(local_polymers),
            "--steps",
            "10",
            "--out",
            str(out),
        ]
    )
    with pytest.raises(SimulationDiverged, match="3 frames kept"):
        args.handler(args)
    assert read_h5md(out).n_frames == 3


@pytest.mark.slow
def test_train_and_eval_cli(local_polymers: Path, tmp_path: Path, capsys) -> None:
    data = [str(p) for p in sorted(local_polymers.glob("train_I_*.h5"))]
    args = _parser().parse_args(
        [
            "train",
            "cg",
            "--data",
            *data,
            "--name",
            "cg-cli",
            "--out-dir",
            str(tmp_path),
            "--max-steps",
            "4",
            "--eval-every",
            "2",
            "--hidden",
            "8",
            "--layers",
            "1",
            "--validation",
            "1",
            "--frame-stride",
            "2",
            "--rollout-validation-steps",
            "5",
            "--ema",
            "0.5",
            "--equilibrium-loss",
            "0.5",
            "2",
            "--no-progress",
        ]
    )
    assert args.handler(args) == 0
    card = tmp_path / "cg-cli.json"
    written = json.loads(card.read_text())
    assert written["dt_tau"] == 2 * 0.5 and written["selected_by"] == "rollout_rg2_error"
    assert written["train_config"]["ema_decay"] == 0.5
    assert written["train_config"]["equilibrium_weight"] == 0.5
    assert written["train_config"]["equilibrium_steps"] == 2
    args = _parser().parse_args(
        [
            "eval",
            "cg",
            "--checkpoint",
            str(card),
            "--polymers",
            "test_II_000",
            "--steps",
            "20",
            "--polymer-dir",
            str(local_polymers),
            "--json",
        ]
    )
    capsys.readouterr()
    assert args.handler(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["polymers"][0]["polymer"] == "test_II_000"
    assert {
        "model_r2",
        "short_md_emd",
        "model_t_relax_mae_tau",
        "model_overstretched_fraction",
    } <= set(report["summary"])
    # --write-card stores the summary with the rows it summarises
    args = _parser().parse_args(
        ["eval", "cg", "--checkpoint", str(card), "--polymers", "test_II_000", "--steps", "20",
         "--polymer-dir", str(local_polymers), "--write-card", "--json"]
    )  # fmt: skip
    capsys.readouterr()
    assert args.handler(args) == 0
    stored = json.loads(card.read_text())
    assert stored["validation_metrics"] == json.loads(capsys.readouterr().out)["summary"]
    assert [r["polymer"] for r in stored["validation_per_polymer"]] == ["test_II_000"]


def test_retraining_keeps_the_cards_variant_records(local_polymers: Path, tmp_path: Path) -> None:
    data = [str(p) for p in sorted(local_polymers.glob("train_I_*.h5"))]
    argv = ["train", "cg", "--data", *data, "--name", "cg-keep", "--out-dir", str(tmp_path),
            "--max-steps", "2", "--eval-every", "2", "--hidden", "8", "--layers", "1",
            "--validation", "1", "--input-noise", "0.05", "--wall", "1.5", "1.1",
            "--stretch", "4", "0.5", "--no-progress"]  # fmt: skip
    args = _parser().parse_args(argv)
    assert args.handler(args) == 0
    card_path = tmp_path / "cg-keep.json"
    card = json.loads(card_path.read_text())
    assert "variants_tried" not in card
    assert card["train_config"]["input_noise"] == 0.05
    assert (card["model"]["wall_k"], card["model"]["wall_r0"]) == (1.5, 1.1)
    assert (card["model"]["stretch_k"], card["model"]["stretch_fraction"]) == (4.0, 0.5)
    card["variants_tried"] = [{"id": "A", "model_r2": 0.1}]
    card["variants_tried_note"] = "what was tried"
    card["validation_metrics"] = {"model_r2": 0.5}  # describes the old weights only
    card_path.write_text(json.dumps(card))

    args = _parser().parse_args([*argv, "--seed", "1"])
    assert args.handler(args) == 0
    retrained = json.loads(card_path.read_text())
    assert retrained["train_config"]["seed"] == 1
    assert retrained["variants_tried"] == [{"id": "A", "model_r2": 0.1}]
    assert retrained["variants_tried_note"] == "what was tried"
    assert "validation_metrics" not in retrained


def test_train_cli_refuses_settings_the_model_cannot_use(
    local_polymers: Path, tmp_path: Path, capsys
) -> None:
    from explorer.cli import main

    data = [str(p) for p in sorted(local_polymers.glob("train_I_*.h5"))]
    common = ["train", "cg", "--data", *data, "--out-dir", str(tmp_path), "--no-progress"]
    assert main([*common, "--history", "0"]) == 2
    assert "history must be >= 1" in capsys.readouterr().err
    assert main([*common, "--wall", "-1", "1.2"]) == 2
    assert "wall_k must be >= 0" in capsys.readouterr().err
    assert main([*common, "--stretch", "1", "0"]) == 2
    assert "stretch_fraction > 0" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # refused before any file was written


def test_overextension_warning_counts_frames_beyond_full_extension() -> None:
    from explorer.cli_cg import overextension_warning

    assert overextension_warning([0.3, 0.5, float("nan")]) == ""
    assert overextension_warning([]) == ""
    text = overextension_warning([0.4, 1.25, 0.9, 1.5, float("nan")])
    assert text.startswith("2 of 4 frames (50.0 %)") and "largest extension 1.50" in text


def test_rollout_cli_warns_when_frames_leave_the_physical_region(
    tiny_checkpoint: Path, local_polymers: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    monkeypatch.setattr(simulate.CGSimulator, "_extension", staticmethod(lambda p, x: 1.2))
    out = tmp_path / "far.h5"
    args = _parser().parse_args(
        ["rollout", "cg", "--checkpoint", str(tiny_checkpoint), "--polymer", "test_II_000",
         "--polymer-dir", str(local_polymers), "--steps", "3", "--out", str(out)]
    )  # fmt: skip
    assert args.handler(args) == 0
    err = capsys.readouterr().err
    assert "warning: 4 of 4 frames (100.0 %) put two CG beads farther apart" in err


def test_data_cg_generates_the_polymer_dataset_as_the_error_messages_say(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys
) -> None:
    """`accelmd train cg` / `eval cg` tell a user without data to run `accelmd data --cg`."""
    import explorer.cli_cg as cli_cg
    from explorer.cli import main

    calls = []

    def generate(progress: bool = True, directory: Path | None = None) -> list[Path]:
        calls.append(progress)
        return [tmp_path / "train_I_000.h5"]

    monkeypatch.setattr(cli_cg, "generate_polymer_data", generate)
    assert main(["data", "--cg"]) == 0
    assert calls == [True]
    assert "train_I_000.h5: done" in capsys.readouterr().out
