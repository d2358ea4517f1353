"""Rollout: background thread, streaming, stop within a step, errors keep frames."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from ase.build import bulk

from explorer.analysis.diffusion import diffusion_coefficient
from explorer.errors import ExplorerError, SimulationDiverged
from explorer.h5md import read_h5md
from explorer.session import CANCELLED, DONE, FAILED, Rollout
from explorer.testing import BrownianSimulator


def li2s():
    return bulk("Li2S", "fluorite", a=5.7, cubic=True).repeat(2)


def test_rollout_runs_to_the_end_and_recovers_the_physics(tmp_path):
    rollout = Rollout(
        BrownianSimulator(),
        li2s(),
        n_steps=400,
        knobs={"D_A2_ps": {"Li": 0.05}, "step_ps": 0.1, "seed": 3},
        out_path=tmp_path / "toy.h5",
        metadata={"simulator": "brownian"},
    )
    traj = rollout.run()
    assert rollout.status == DONE and traj.n_frames == 401
    np.testing.assert_allclose(traj.times_ps[:3], [0.0, 0.1, 0.2])
    assert traj.metadata["knobs"]["seed"] == 3 and traj.metadata["simulator"] == "brownian"
    D = diffusion_coefficient(traj, "Li")
    assert abs(D.D_A2_ps - 0.05) < 3 * D.D_std_A2_ps
    on_disk = read_h5md(tmp_path / "toy.h5")  # streamed to H5MD as it ran
    np.testing.assert_array_equal(on_disk.positions, traj.positions)
    assert on_disk.metadata["status"] == DONE
    progress = rollout.progress()
    assert progress.fraction == 1.0 and progress.simulated_ps == pytest.approx(40.0)


def test_same_seed_same_frames():
    runs = [Rollout(BrownianSimulator(), li2s(), 20, {"seed": 1}).run().positions for _ in range(2)]
    np.testing.assert_array_equal(runs[0], runs[1])
    other = Rollout(BrownianSimulator(), li2s(), 20, {"seed": 2}).run().positions
    assert not np.array_equal(runs[0], other)


def test_stop_cancels_within_one_step_and_keeps_frames():
    seen = threading.Event()
    rollout = Rollout(BrownianSimulator(delay_s=0.05), li2s(), n_steps=10_000)
    rollout.subscribe(lambda index, frame: index >= 3 and seen.set())
    rollout.start()
    assert seen.wait(10)
    assert rollout.progress().eta_s is not None  # running: an ETA is reported
    rollout.stop()
    assert rollout.join(timeout=5)
    assert rollout.status == CANCELLED
    n = rollout.n_frames
    assert 4 <= n < 100
    assert rollout.trajectory().n_frames == n
    assert len(rollout.frames_since(n - 2)) == 2


def test_simulator_error_fails_the_rollout_but_keeps_frames(tmp_path):
    rollout = Rollout(BrownianSimulator(fail_at_step=5), li2s(), 20, out_path=tmp_path / "x.h5")
    with pytest.raises(SimulationDiverged, match="step 5"):
        rollout.run()
    assert rollout.status == FAILED and "step 5" in rollout.progress().message
    assert rollout.trajectory().n_frames == 5  # initial frame + 4 good steps
    assert read_h5md(tmp_path / "x.h5").n_frames == 5


def test_misuse_is_reported():
    rollout = Rollout(BrownianSimulator(), li2s(), 1)
    with pytest.raises(ExplorerError, match="no frame"):
        rollout.trajectory()
    rollout.run()
    with pytest.raises(ExplorerError, match="already been started"):
        rollout.start()
    with pytest.raises(ExplorerError, match="n_steps"):
        Rollout(BrownianSimulator(), li2s(), -1)
