"""End-to-end training: the loss falls, runs resume exactly, checkpoints round-trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from explorer.cg.data import make_batch
from explorer.cg.simulate import CGSimulator
from explorer.cg.train import (
    CGModules,
    _validate,
    fit_scales,
    load_training_polymers,
    train,
)
from explorer.checkpoints import load_checkpoint

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
    assert all(np.isfinite(h).all() for h in result.history)


def test_training_resumes_exactly(polymer_dir: Path, tmp_path: Path) -> None:
    config = tiny_train_config(max_steps=20)
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
