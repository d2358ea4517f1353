"""FlashMD training pairs, a short training run, resuming, checkpoints and the simulator."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from explorer.checkpoints import load_checkpoint
from explorer.errors import AnalysisError, MDConfigError, SimulationDiverged
from explorer.flashmd.data import collate, load_pairs, pairs_from_trajectory, target_scales
from explorer.flashmd.evaluate import rollout_report
from explorer.flashmd.simulate import FlashMDSimulator
from explorer.flashmd.train import TrainConfig, train
from explorer.h5md import read_h5md
from explorer.session import FAILED, Rollout


def test_pairs_with_stride_and_time_reversal(argon_files) -> None:
    traj = read_h5md(argon_files["train"])
    pairs = pairs_from_trajectory(traj, stride_fs=8.0)  # 2 frames of 4 fs
    assert len(pairs) == 2 * (traj.n_frames - 2)
    forward, backward = pairs[0], pairs[1]
    np.testing.assert_allclose(forward.next_positions, traj.positions[2], atol=1e-6)
    np.testing.assert_allclose(forward.momenta * 1000.0, traj.momenta[0])
    np.testing.assert_allclose(backward.positions, forward.next_positions)
    np.testing.assert_allclose(backward.momenta, -forward.next_momenta)
    np.testing.assert_allclose(backward.next_momenta, -forward.momenta)
    dq, pt = collate(pairs[:2]).targets()
    assert dq.shape == (64, 3) and pt.shape == (64, 3)
    s_q, s_p = target_scales(pairs)
    assert s_q > 0 and s_p > 0


def test_free_flight_scales_are_the_rms_of_the_residuals(argon_files) -> None:
    pairs = load_pairs([argon_files["train"]], stride_fs=8.0)
    residual_q, residual_p = [], []
    for p in pairs:
        sqrt_m = np.sqrt(p.masses)[:, None]
        residual_q.append((p.next_positions - p.positions - 8.0 * p.momenta / p.masses[:, None])
                          * sqrt_m)  # fmt: skip
        residual_p.append((p.next_momenta - p.momenta) / sqrt_m)
    s_q, s_p = target_scales(pairs, free_flight_stride_fs=8.0)
    np.testing.assert_allclose(s_q, np.sqrt(np.mean(np.concatenate(residual_q) ** 2)), rtol=1e-6)
    np.testing.assert_allclose(s_p, np.sqrt(np.mean(np.concatenate(residual_p) ** 2)), rtol=1e-6)
    # over 8 fs most of the motion is free flight: the residuals are much smaller
    plain_q, plain_p = target_scales(pairs)
    assert s_q < 0.5 * plain_q and s_p < 0.5 * plain_p


def test_bad_stride_and_missing_momenta_are_rejected(argon_files) -> None:
    traj = read_h5md(argon_files["train"])
    with pytest.raises(AnalysisError, match="whole number"):
        pairs_from_trajectory(traj, stride_fs=6.0)
    traj.momenta = None
    with pytest.raises(AnalysisError, match="momenta"):
        pairs_from_trajectory(traj, stride_fs=8.0)


def test_short_training_reduces_the_loss_and_writes_a_card(trained) -> None:
    result = trained["result"]
    first, last = result.history[0], result.history[-1]
    assert last["train_loss"] < first["train_loss"]
    card = json.loads(Path(result.card_path).read_text())
    assert card["family"] == "flashmd" and card["stride_fs"] == 8.0
    assert card["elements"] == [18] and card["energy_model"] == "argon"
    assert card["training_files"][0]["name"] == "train.h5"
    assert len(card["training_files"][0]["sha256"]) == 64
    assert {"rmse_q", "rmse_v", "rmse_energy_eV", "score"} <= set(card["validation_metrics"])
    ckpt = load_checkpoint(result.card_path)
    assert float(ckpt.state_dicts["flashmd"]["q_scale"]) > 0


def test_resume_continues_the_same_run(trained) -> None:
    root, files, config = trained["root"], trained["files"], trained["config"]
    longer = TrainConfig(**{**config.__dict__, "max_steps": 45})
    resumed = train([files["train"]], [files["val"]], longer, out_dir=root, progress=False,
                    resume_from=root / "training_state" / "flashmd_tiny")  # fmt: skip
    assert [h["step"] for h in resumed.history] == [15, 30, 45]
    changed = TrainConfig(**{**config.__dict__, "lr": 1e-3})
    with pytest.raises(Exception, match="settings differ"):
        train([files["train"]], [files["val"]], changed, out_dir=root, progress=False,
              resume_from=root / "training_state" / "flashmd_tiny")  # fmt: skip


def test_a_time_limit_stops_at_a_validation_and_may_change_on_resume(trained, tmp_path) -> None:
    files, config = trained["files"], trained["config"]
    limited = TrainConfig(**{**config.__dict__, "max_steps": 45, "max_wall_s": 0.0})
    result = train([files["train"]], [files["val"]], limited, out_name="limited",
                   out_dir=tmp_path, progress=False)  # fmt: skip
    assert result.steps == config.eval_every and result.stopped_at_time_limit
    card = json.loads(Path(result.card_path).read_text())
    assert card["stopped_at_time_limit"] is True and card["steps"] == config.eval_every
    assert all(v.device.type == "cpu" for v in result.model.state_dict().values())
    # where and how long a run executes is not what it learns: the state resumes
    unlimited = TrainConfig(**{**config.__dict__, "max_steps": 2 * config.eval_every})
    state = tmp_path / "training_state" / "limited"
    resumed = train([files["train"]], [files["val"]], unlimited, out_dir=tmp_path,
                    progress=False, resume_from=state)  # fmt: skip
    assert [h["step"] for h in resumed.history] == [config.eval_every, 2 * config.eval_every]
    assert not resumed.stopped_at_time_limit


def test_simulator_rollout_is_seeded_and_checks_stride(trained, argon32) -> None:
    sim = FlashMDSimulator.from_checkpoint(trained["result"].card_path)
    knobs = {"temperature_K": 94.4, "thermostat": "langevin", "seed": 3,
             "energy_conservation": False}  # fmt: skip
    a = Rollout(sim, argon32, 3, knobs).run()
    b = Rollout(sim, argon32, 3, knobs).run()
    np.testing.assert_array_equal(a.positions, b.positions)
    assert a.velocities is not None and a.times_ps[-1] == pytest.approx(0.024)
    with pytest.raises(MDConfigError, match="stride"):
        sim.prepare(argon32, stride_fs=16.0)


def test_rollout_report_gives_the_temperature_error_per_element(trained, argon32) -> None:
    sim = FlashMDSimulator.from_checkpoint(trained["result"].card_path)
    knobs = {"temperature_K": 94.4, "thermostat": "langevin", "seed": 3,
             "energy_conservation": False, "time_constant_fs": 100.0}  # fmt: skip
    report = rollout_report(sim, argon32, 3, knobs)
    assert report["status"] == "done", report.get("error")
    by_species = report["temperature_error_by_species_K"]
    assert set(by_species) == {"Ar"}  # one element: its temperature is the overall one
    assert by_species["Ar"] == pytest.approx(report["temperature_error_K"], abs=0.05)
    assert "temperature_error_steady_K" not in report  # 24 fs: all within the warm-up

    # 5 time constants of 5 fs = 25 fs: the steady state starts at the 4th 8-fs stride
    short = {**knobs, "time_constant_fs": 5.0}
    report = rollout_report(sim, argon32, 6, short)
    assert report["steady_state_from_ps"] == pytest.approx(0.032)
    steady = report["temperature_error_steady_by_species_K"]["Ar"]
    assert steady == pytest.approx(report["temperature_error_steady_K"], abs=0.05)


def test_blow_up_stops_the_rollout_and_keeps_frames(trained, argon32) -> None:
    sim = FlashMDSimulator.from_checkpoint(trained["result"].card_path)
    sim.model.p_scale.fill_(50.0)  # a broken model: momenta 50× too large
    rollout = Rollout(sim, argon32, 5, {"temperature_K": 94.4, "energy_conservation": False})
    rollout.start()
    rollout.join()
    assert rollout.status == FAILED and isinstance(rollout.error, SimulationDiverged)
    assert "smaller stride" in str(rollout.error)
    assert rollout.n_frames >= 1  # frame 0 (and any before the blow-up) kept


def test_load_pairs_needs_files() -> None:
    with pytest.raises(AnalysisError):
        load_pairs([], 8.0)
