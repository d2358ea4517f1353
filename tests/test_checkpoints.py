"""Checkpoints: safetensors round trip, sha256 verification, clear errors."""

from __future__ import annotations

import pytest
import torch

from explorer.checkpoints import (
    CheckpointError,
    list_checkpoints,
    load_checkpoint,
    read_card,
    save_checkpoint,
)


def modules():
    torch.manual_seed(0)
    return {"propagator": torch.nn.Linear(3, 4), "corrector": torch.nn.Linear(3, 2)}


def test_round_trip_restores_every_module(tmp_path):
    nets = modules()
    card_path = save_checkpoint("toy", nets, {"family": "liflow", "elements": [3, 16]}, tmp_path)
    checkpoint = load_checkpoint("toy", tmp_path)
    assert checkpoint.family == "liflow" and checkpoint.card["elements"] == [3, 16]
    for name, net in nets.items():
        fresh = torch.nn.Linear(3, net.out_features)
        fresh.load_state_dict(checkpoint.state_dicts[name])
        assert torch.equal(fresh.weight, net.weight)
    assert load_checkpoint(card_path).name == "toy"  # by path too
    assert [c["name"] for c in list_checkpoints(tmp_path)] == ["toy"]


def test_tampered_weights_are_refused(tmp_path):
    save_checkpoint("toy", modules(), {"family": "liflow"}, tmp_path)
    weights = tmp_path / "toy.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        load_checkpoint("toy", tmp_path)


def test_missing_and_malformed(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint 'nope'"):
        load_checkpoint("nope", tmp_path)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        read_card("bad", tmp_path)
    save_checkpoint("toy", modules(), {}, tmp_path)
    (tmp_path / "toy.safetensors").unlink()
    with pytest.raises(CheckpointError, match="missing"):
        load_checkpoint("toy", tmp_path)
    with pytest.raises(CheckpointError, match="invalid"):
        save_checkpoint("../evil", modules(), {}, tmp_path)
