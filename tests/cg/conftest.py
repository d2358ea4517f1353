"""Tiny polymer references and a tiny CG checkpoint shared by the CG tests (seconds)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from explorer.cg.model import ModelConfig
from explorer.cg.polymers import PolymerRun, random_copolymer, regular_copolymer, run_polymer
from explorer.cg.train import TrainConfig

TINY_RUN = PolymerRun(length_tau=30.0, record_every_tau=0.5, equilibrate_tau=2.0, restart_every=20)
TINY_MODEL = ModelConfig(
    embed_dim=8,
    embed_layers=1,
    hidden=16,
    layers=1,
    history=2,
    cutoff=5.0,
    score_hidden=8,
    score_layers=1,
    noise_levels=4,
)


def tiny_train_config(**overrides: object) -> TrainConfig:
    base = dict(
        model=TINY_MODEL,
        bead_size=4,
        max_steps=40,
        eval_every=10,
        patience=10,
        lr=3e-3,
        lr_final=1e-3,
        n_polymers=2,
        samples_per_polymer=4,
        validation_batches=2,
        n_validation=1,
    )
    return TrainConfig(**{**base, **overrides})  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def polymer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two class-I training chains and one class-II test chain of ~16 beads, 61 frames each."""
    directory = tmp_path_factory.mktemp("polymers")
    rng = np.random.default_rng(0)
    chains = [regular_copolymer(f"train_I_{k:03d}", rng, 16) for k in range(2)]
    chains.append(random_copolymer("test_II_000", rng, 16))
    for k, chain in enumerate(chains):
        run = PolymerRun(**{**TINY_RUN.__dict__, "seed": k})
        run_polymer(chain, directory / f"{chain.name}.h5", run)
    return directory


@pytest.fixture(scope="session")
def tiny_checkpoint(polymer_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CG checkpoint trained for a few steps on the tiny chains; returns its card path."""
    from explorer.cg.train import train

    out = tmp_path_factory.mktemp("ckpt")
    paths = sorted(polymer_dir.glob("train_I_*.h5"))
    result = train(
        paths, tiny_train_config(max_steps=10), out_name="cg-tiny", out_dir=out, progress=False
    )
    assert result.card_path is not None
    return result.card_path
