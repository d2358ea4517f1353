"""The FlashMD command line: registration, rollout to H5MD with velocities, training."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from explorer.cli_flashmd import (
    add_flashmd_data,
    add_flashmd_eval,
    add_flashmd_rollout,
    add_flashmd_train,
)
from explorer.errors import UnknownElementError
from explorer.h5md import read_h5md


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="accelmd")
    sub = parser.add_subparsers(dest="command", required=True)
    for command, register in (
        ("rollout", add_flashmd_rollout),
        ("train", add_flashmd_train),
        ("eval", add_flashmd_eval),
    ):
        families = sub.add_parser(command).add_subparsers(dest="family", required=True)
        register(families)
    add_flashmd_data(sub)
    return parser


def test_rollout_writes_positions_and_velocities(trained, tmp_path) -> None:
    out = tmp_path / "run.h5"
    card = trained["result"].card_path
    args = _parser().parse_args(
        ["rollout", "flashmd", "--checkpoint", str(card), "--system", str(trained["files"]["val"]),
         "--steps", "4", "--thermostat", "bussi", "--temperature", "94.4",
         "--no-energy-conservation", "--out", str(out)]
    )  # fmt: skip
    assert args.handler(args) == 0
    traj = read_h5md(out)
    assert traj.n_frames == 5 and traj.velocities is not None
    assert np.all(np.isfinite(traj.velocities))
    assert traj.metadata["stride_fs"] == 8.0
    assert "temperature" in traj.energies


def test_rollout_rejects_unknown_elements(trained, tmp_path) -> None:
    card = trained["result"].card_path
    args = _parser().parse_args(
        ["rollout", "flashmd", "--checkpoint", str(card), "--system", "al110", "--steps", "1",
         "--temperature", "500", "--out", str(tmp_path / "x.h5")]
    )  # fmt: skip
    with pytest.raises(UnknownElementError, match="Al"):
        args.handler(args)


def test_train_and_eval_commands(trained, tmp_path, capsys) -> None:
    files = trained["files"]
    args = _parser().parse_args(
        ["train", "flashmd", "--train", str(files["train"]), "--val", str(files["val"]),
         "--stride-fs", "8", "--energy-model", "argon", "--name", "flashmd_cli",
         "--out-dir", str(tmp_path), "--max-steps", "4", "--eval-every", "2",
         "--features", "8", "--layers", "1", "--cutoff", "5", "--energy-structures", "1",
         "--free-flight-baseline", "--no-progress"]
    )  # fmt: skip
    assert args.handler(args) == 0
    card = json.loads((tmp_path / "flashmd_cli.json").read_text())
    assert card["model"]["stride_fs"] == 8.0 and card["steps"] == 4
    assert card["model"]["free_flight_baseline"] is True
    capsys.readouterr()
    args = _parser().parse_args(
        ["eval", "flashmd", "--checkpoint", str(tmp_path / "flashmd_cli.json"),
         "--test", str(files["val"]), "--rollout-steps", "3", "--json"]
    )  # fmt: skip
    assert args.handler(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["test"]["rmse_q"] > 0 and report["verlet_same_stride"]["rmse_q"] > 0
    assert set(report["rollouts"]) >= {"nve_filter", "langevin_filter", "bussi_filter",
                                       "bussi_no_filter", "langevin_no_filter",
                                       "reference_langevin"}  # fmt: skip
    exact = report["rollouts"]["reference_langevin"]
    assert exact["strides"] == 3 and np.isfinite(exact["temperature_error_K"])
    assert "over_seeds" not in exact  # one seed by default

    args = _parser().parse_args(
        ["eval", "flashmd", "--checkpoint", str(tmp_path / "flashmd_cli.json"),
         "--test", str(files["val"]), "--rollout-steps", "3", "--rollout-seeds", "2", "--json"]
    )  # fmt: skip
    assert args.handler(args) == 0
    rollouts = json.loads(capsys.readouterr().out)["rollouts"]
    # A 4-step model blows up at once; every thermostatted setting still runs both seeds.
    for label in ("langevin_filter", "langevin_no_filter", "bussi_filter", "bussi_no_filter"):
        assert len(rollouts[label]["over_seeds"]["strides_per_seed"]) == 2
    exact = rollouts["reference_langevin"]
    first, second = exact["over_seeds"]["temperature_error_K_per_seed"]
    # Seed 0's report is the entry itself; the thermostat noise differs per seed.
    assert first == exact["temperature_error_K"] and first != second
    assert exact["over_seeds"]["completed"] == 2
    assert "over_seeds" not in rollouts["nve_filter"]  # deterministic: run once
