"""accelmd train liflow -> accelmd checkpoints -> accelmd rollout liflow, end to end."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms

from explorer.cli import main
from explorer.h5md import read_h5md
from explorer.testing import brownian_trajectory


def test_train_then_rollout_from_the_command_line(tmp_path, capsys):
    traj = brownian_trajectory(0.2, n_atoms=8, n_frames=600, dt_ps=0.02, frame_atoms=4, seed=0)
    traj.metadata.update(material="toy", temperature_K=800.0)
    data = traj.save(tmp_path / "toy_800K.h5")
    assert (
        main(
            [
                "train",
                "liflow",
                "--data",
                str(data),
                "--name",
                "tiny",
                "--out-dir",
                str(tmp_path),
                "--max-steps",
                "2",
                "--eval-every",
                "2",
                "--features",
                "8",
                "--layers",
                "1",
                "--batch-size",
                "2",
                "--no-progress",
            ]
        )
        == 0
    )
    card = tmp_path / "tiny.json"
    assert card.exists() and "best validation loss" in capsys.readouterr().out
    structure = tmp_path / "toy.extxyz"
    Atoms(numbers=traj.numbers, positions=traj.positions[0], cell=traj.cell, pbc=True).write(
        structure
    )
    out = tmp_path / "rollout.h5"
    with pytest.warns(UserWarning, match="outside the training temperatures"):
        code = main(
            [
                "rollout",
                "liflow",
                "--checkpoint",
                str(card),
                "--material",
                str(structure),
                "--supercell",
                "1",
                "1",
                "1",
                "--temperature",
                "300",
                "--steps",
                "3",
                "--flow-steps",
                "2",
                "--corrector-strength",
                "0",
                "--out",
                str(out),
            ]
        )
    assert code == 0
    frames = read_h5md(out)
    assert frames.n_frames == 4
    np.testing.assert_allclose(frames.times_ps, [0.0, 1.0, 2.0, 3.0])
    assert frames.metadata["knobs"]["temperature_K"] == 300.0


def test_rollout_without_a_checkpoint_says_what_to_do(tmp_path, capsys):
    code = main(
        [
            "rollout",
            "liflow",
            "--material",
            "LGPS",
            "--temperature",
            "900",
            "--steps",
            "1",
            "--out",
            str(tmp_path / "x.h5"),
        ]
    )
    assert code == 2
    assert "accelmd train liflow" in capsys.readouterr().err


def test_eval_reports_metrics_against_references(tmp_path, capsys):
    import json

    traj = brownian_trajectory(0.2, n_atoms=8, n_frames=600, dt_ps=0.02, frame_atoms=4, seed=1)
    traj.metadata.update(material="toy", temperature_K=800.0)
    data = traj.save(tmp_path / "toy_800K.h5")
    assert (
        main(
            [
                "train",
                "liflow",
                "--data",
                str(data),
                "--name",
                "tiny",
                "--out-dir",
                str(tmp_path),
                "--max-steps",
                "2",
                "--eval-every",
                "2",
                "--features",
                "8",
                "--layers",
                "1",
                "--batch-size",
                "2",
                "--no-progress",
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert (
        main(
            [
                "eval",
                "liflow",
                "--checkpoint",
                str(tmp_path / "tiny.json"),
                "--references",
                str(data),
                "--seeds",
                "1",
                "--steps",
                "3",
                "--flow-steps",
                "2",
                "--corrector-strength",
                "0",
                "--json",
            ]
        )
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert report["summary"]["n_records"] == 1
    assert report["records"][0]["temperature_K"] == 800.0
