"""Checkpoints: safetensors round trip, sha256 verification, clear errors."""

from __future__ import annotations

import pytest
import torch

from explorer.checkpoints import (
    CheckpointError,
    card_headline,
    list_checkpoints,
    load_checkpoint,
    read_card,
    save_checkpoint,
    update_card,
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


def test_update_card_merges_fields_and_keeps_the_weights_hash(tmp_path):
    save_checkpoint("toy", modules(), {"family": "liflow", "best_val_loss": 0.5}, tmp_path)
    before = read_card("toy", tmp_path)
    update_card("toy", {"evaluation": {"rdf_mae": 0.04}}, tmp_path)
    after = read_card("toy", tmp_path)
    assert after["evaluation"] == {"rdf_mae": 0.04} and after["best_val_loss"] == 0.5
    assert after["weights_sha256"] == before["weights_sha256"]
    load_checkpoint("toy", tmp_path)  # still verifies
    with pytest.raises(CheckpointError, match="weights_sha256"):
        update_card("toy", {"weights_sha256": "0" * 64}, tmp_path)


def test_update_card_refuses_a_card_whose_weights_changed(tmp_path):
    save_checkpoint("toy", modules(), {"family": "liflow"}, tmp_path)
    weights = tmp_path / "toy.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        update_card("toy", {"evaluation": {}}, tmp_path)
    assert "evaluation" not in read_card("toy", tmp_path)


def test_card_headline_names_family_data_and_metrics():
    liflow = {
        "name": "liflow_LGPS", "family": "liflow", "kind": "propagator+corrector",
        "materials": ["LGPS"], "training_temperatures_K": [600.0, 1200.0],
        "evaluation": {"summary": {"mae_log10_msd_li": 0.21, "spearman_li": 0.9,
                                   "rdf_mae": 0.05, "stable_fraction": 1.0}},
    }  # fmt: skip
    assert card_headline(liflow) == (
        "liflow_LGPS: liflow propagator+corrector, trained on LGPS at 600–1200 K; "
        "log10 MSD_Li MAE 0.210, Spearman 0.900, RDF MAE 0.050, stable 100 %"
    )
    cg = {"name": "cg", "family": "cg", "training_files": [{}, {}],
          "validation_metrics": {"model_r2": -0.2, "short_md_r2": 0.94}}  # fmt: skip
    assert card_headline(cg) == (
        "cg: cg, trained on 2 reference files; ⟨Rg²⟩ r² -0.20 (short MD 0.94)"
    )
    assert card_headline({"name": "x", "family": "liflow", "best_val_loss": None}).endswith(
        "best validation loss n/a"
    )
    tuned = {**liflow, "recommended_knobs": {"prior_scale_li": 1.25, "prior_scale_frame": 0.7}}
    assert card_headline(tuned) == card_headline(liflow) + (
        "; recommended prior scale li 1.25, prior scale frame 0.7"
    )
    full = {**tuned, "full_corrector_flow_below_K": 900.0}
    assert card_headline(full) == card_headline(tuned) + "; full Corrector flows below 900 K"
    alone = {**liflow, "full_corrector_flow_below_K": 900.0}
    assert card_headline(alone) == card_headline(liflow) + "; full Corrector flows below 900 K"
