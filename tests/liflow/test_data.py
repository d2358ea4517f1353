"""LiFlow training pairs: Δτ lag, splits without overlap, balanced sampling."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from explorer.errors import AnalysisError
from explorer.liflow.data import (
    collate,
    lag_in_frames,
    sample_batch,
    source_from_trajectory,
    split_pairs,
)
from explorer.testing import brownian_trajectory
from explorer.trajectory import Trajectory


def walk(n_frames: int, seed: int, n_atoms: int = 8, frame_atoms: int = 4) -> Trajectory:
    traj = brownian_trajectory(
        0.1, n_atoms=n_atoms, n_frames=n_frames, dt_ps=0.02, frame_atoms=frame_atoms, seed=seed
    )
    traj.metadata["temperature_K"] = 800.0
    return traj


def test_lag_is_one_ps_of_frames():
    traj = walk(200, 0)
    assert lag_in_frames(traj) == 50
    with pytest.raises(AnalysisError, match="whole number"):
        lag_in_frames(traj, delta_ps=0.03)


def test_pairs_are_displacements_one_ps_apart():
    traj = walk(120, 1)
    src = source_from_trajectory(traj, "walk")
    assert src.n_pairs == 70 and src.temperature_K == 800.0 and src.composition == "Li2S"
    batch = collate([src], [(0, 10), (0, 30)], torch.float64)
    n = traj.n_atoms
    np.testing.assert_allclose(batch.positions[:n].numpy(), traj.positions[10], atol=1e-6)
    np.testing.assert_allclose(
        batch.displacements[n:].numpy(), traj.positions[80] - traj.positions[30], atol=1e-6
    )
    assert batch.batch.tolist() == [0] * n + [1] * n
    assert batch.cell.shape == (2, 3, 3) and batch.temperature_K.tolist() == [800.0, 800.0]


def test_training_and_validation_share_no_frame():
    src = source_from_trajectory(walk(400, 2), "walk")
    train, valid = split_pairs([src], validation_fraction=0.3)
    boundary = 400 - 120
    assert np.all(train.start + src.lag_frames < boundary)
    assert np.all(valid.start >= boundary) and len(valid) == 120 - src.lag_frames
    assert len(train) == boundary - src.lag_frames


def test_validation_tail_holds_at_least_one_delta_tau_of_pairs():
    # 10 ps at 20 fs: a 10 % tail is exactly one Δτ and would hold no pair.
    src = source_from_trajectory(walk(501, 3), "walk")
    _, valid = split_pairs([src], validation_fraction=0.1)
    assert len(valid) == src.lag_frames  # the tail grew to 2 Δτ


def test_sampling_balances_compositions():
    long = source_from_trajectory(walk(600, 3), "long")  # Li2S composition, many pairs
    other = walk(100, 4, n_atoms=6, frame_atoms=6)  # LiS composition, few pairs
    short = source_from_trajectory(other, "short")
    train, _ = split_pairs([long, short], validation_fraction=0.0)
    assert train.weights.sum() == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    batch = sample_batch([long, short], train, 4, rng)
    assert batch.temperature_K.shape == (4,) and int(batch.batch.max()) == 3
    picks = rng.choice(len(train), size=20000, p=train.weights)
    share_short = np.mean(train.source[picks] == 1)
    assert share_short == pytest.approx(0.5, abs=0.02)


def test_errors():
    traj = walk(30, 5)
    with pytest.raises(AnalysisError, match="no pair"):
        source_from_trajectory(traj, "short")
    del traj.metadata["temperature_K"]
    with pytest.raises(AnalysisError, match="temperature_K"):
        source_from_trajectory(traj, "x")
