"""Choosing among CG checkpoints by long class-I rollouts (explorer.cg.selection, select CLI)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open

from explorer.analysis.polymer import radius_of_gyration_sq
from explorer.cg.polymers import (
    PolymerRun,
    dataset_plan,
    load_polymer,
    regular_copolymer,
    run_polymer,
    selection_plan,
)
from explorer.cg.selection import CandidateScore, rank_checkpoints, score_simulator
from explorer.cg.simulate import CGSimulator
from explorer.checkpoints import CheckpointError, copy_checkpoint, load_checkpoint, read_card
from explorer.cli import main
from explorer.errors import ExplorerError

from .conftest import TINY_RUN, tiny_train_config

CHAINS = ["train_I_000", "train_I_001"]


def test_selection_plan_is_class_one_long_and_apart_from_the_bundled_chains() -> None:
    plan = selection_plan()
    again = selection_plan()
    assert [p.name for p, _ in plan] == [f"sel_I_{k:03d}" for k in range(16)]
    assert [p.cu_sequence for p, _ in plan] == [p.cu_sequence for p, _ in again]
    assert {p.polymer_class for p, _ in plan} == {"I"}
    for polymer, run in plan:
        assert run.length_tau == 8_000.0 and run.record_every_tau == 10.0
        # class I: the chain is one four-CU pattern repeated exactly
        pattern = list(polymer.cu_sequence[:4])
        assert list(polymer.cu_sequence) == (pattern * 20)[: len(polymer.cu_sequence)]
    # compositions spread (patterns with repeated units), unlike the bundled class-I chains
    assert any(len(set(p.cu_sequence)) < 4 for p, _ in plan)
    assert len({run.seed for _, run in plan}) == len(plan)
    bundled = {p.cu_sequence for p, _ in dataset_plan()}
    assert not bundled & {p.cu_sequence for p, _ in plan[:3] if len(set(p.cu_sequence)) == 4}


def test_score_compares_rollout_means_with_the_references(
    tiny_checkpoint: Path, polymer_dir: Path
) -> None:
    simulator = CGSimulator.from_checkpoint(tiny_checkpoint, polymer_dir=polymer_dir)
    score = score_simulator(simulator, CHAINS, seeds=(0, 1), steps=6)
    assert [row["polymer"] for row in score.per_polymer] == CHAINS
    truth, pred = [], []
    for row in score.per_polymer:
        data = load_polymer(row["polymer"], polymer_dir)
        reference = radius_of_gyration_sq(data.positions, data.polymer.masses).mean()
        assert row["reference_mean_rg2"] == pytest.approx(reference)
        assert len(row["model_mean_rg2"]) == 2  # one per rollout seed
        assert row["model_mean_rg2"][0] != row["model_mean_rg2"][1]
        truth.append(reference)
        pred.append(np.mean(row["model_mean_rg2"]))
    truth, pred = np.array(truth), np.array(pred)
    assert score.mae == pytest.approx(np.abs(pred - truth).mean())
    assert score.mean_relative_error == pytest.approx((np.abs(pred - truth) / truth).mean())
    assert score.stable_fraction == 1.0
    same = score_simulator(simulator, CHAINS, seeds=(0, 1), steps=6)
    assert same.mae == score.mae  # seeded: the same rollouts


def test_score_refuses_empty_polymer_or_seed_lists_and_empty_rollouts(
    tiny_checkpoint: Path, polymer_dir: Path
) -> None:
    simulator = CGSimulator.from_checkpoint(tiny_checkpoint, polymer_dir=polymer_dir)
    with pytest.raises(ExplorerError, match="polymer"):
        score_simulator(simulator, [])
    with pytest.raises(ExplorerError, match="seed"):
        score_simulator(simulator, CHAINS, seeds=())
    with pytest.raises(ExplorerError, match="at least 1 learned step, got 0"):
        score_simulator(simulator, CHAINS, steps=0)


def test_rank_puts_stable_candidates_first_then_smaller_mae() -> None:
    def score(name: str, mae: float, stable: float) -> CandidateScore:
        return CandidateScore(name, mae, 0.0, 0.0, stable)

    scores = [score("a", 0.2, 0.5), score("b", float("nan"), 1.0), score("c", 0.4, 1.0)]
    scores.append(score("d", 0.3, 1.0))
    assert [s.name for s in sorted(scores, key=lambda s: s.rank_key)] == ["d", "c", "b", "a"]


@pytest.fixture(scope="module")
def second_checkpoint(polymer_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another tiny checkpoint: the same recipe with another training seed."""
    from explorer.cg.train import train

    out = tmp_path_factory.mktemp("ckpt2")
    paths = sorted(polymer_dir.glob("train_I_*.h5"))
    result = train(
        paths,
        tiny_train_config(max_steps=10, seed=1),
        out_name="cg-tiny-seed1",
        out_dir=out,
        progress=False,
    )
    assert result.card_path is not None
    return result.card_path


def test_rank_checkpoints_orders_real_candidates_by_their_scores(
    tiny_checkpoint: Path, second_checkpoint: Path, polymer_dir: Path
) -> None:
    ranking = rank_checkpoints(
        [tiny_checkpoint, second_checkpoint], CHAINS, polymer_dir, steps=6
    )  # fmt: skip
    assert {s.source for s in ranking} == {str(tiny_checkpoint), str(second_checkpoint)}
    assert ranking[0].mae <= ranking[1].mae
    for s in ranking:  # each score is that checkpoint's own
        simulator = CGSimulator.from_checkpoint(s.source, polymer_dir=polymer_dir)
        assert score_simulator(simulator, CHAINS, steps=6).mae == s.mae
    with pytest.raises(ExplorerError, match="checkpoint"):
        rank_checkpoints([], CHAINS, polymer_dir)


def test_copy_checkpoint_keeps_every_tensor_and_renames(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    card = copy_checkpoint(tiny_checkpoint, "chosen", tmp_path, {"selection": {"x": 1}})
    original, copy = load_checkpoint(tiny_checkpoint), load_checkpoint(card)
    assert copy.name == "chosen" and copy.card["selection"] == {"x": 1}
    assert copy.card["model"] == original.card["model"]
    for module, state in original.state_dicts.items():
        for key, value in state.items():
            assert np.array_equal(copy.state_dicts[module][key].numpy(), value.numpy())
    with safe_open(str(tmp_path / "chosen.safetensors"), "pt") as f:
        assert f.metadata()["name"] == "chosen"
    with pytest.raises(CheckpointError, match="weights_sha256"):
        copy_checkpoint(tiny_checkpoint, "other", tmp_path, {"weights_sha256": "0"})
    with pytest.raises(CheckpointError, match="invalid"):
        copy_checkpoint(tiny_checkpoint, "../x", tmp_path)


def test_copy_checkpoint_refuses_corrupt_weights(tiny_checkpoint: Path, tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    for suffix in (".json", ".safetensors"):
        shutil.copy(tiny_checkpoint.with_suffix(suffix), source / f"cg-tiny{suffix}")
    weights = source / "cg-tiny.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(CheckpointError, match="sha256"):
        copy_checkpoint(source / "cg-tiny.json", "chosen", tmp_path)
    assert not (tmp_path / "chosen.json").exists()


def test_select_cli_installs_the_best_and_keeps_the_cards_records(
    tiny_checkpoint: Path, second_checkpoint: Path, polymer_dir: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    shutil.copy(tiny_checkpoint, out / "cg-chosen.json")
    shutil.copy(tiny_checkpoint.with_suffix(".safetensors"), out / "cg-chosen.safetensors")
    card = json.loads((out / "cg-chosen.json").read_text())
    card.update(name="cg-chosen", variants_tried=[{"id": "A"}])
    (out / "cg-chosen.json").write_text(json.dumps(card))
    args = ["select", "cg", "--candidates", str(second_checkpoint), str(tiny_checkpoint)]
    args += ["--polymers", *CHAINS, "--polymer-dir", str(polymer_dir), "--steps", "6"]
    assert main([*args, "--install", "cg-chosen", "--out-dir", str(out), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    best = record["candidates"][0]
    assert best["mae"] <= record["candidates"][1]["mae"]
    installed = read_card("cg-chosen", out)
    assert installed["variants_tried"] == [{"id": "A"}]
    assert installed["selection"]["candidates"][0]["source"] == best["source"]
    assert installed["train_config"] == read_card(best["source"])["train_config"]
    assert all(chain in installed["selection"]["protocol"] for chain in CHAINS)
    assert main(args) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and all("MAE" in line for line in lines)


def test_select_cli_explains_missing_selection_chains(
    tiny_checkpoint: Path, tmp_path: Path, capsys
) -> None:
    args = ["select", "cg", "--candidates", str(tiny_checkpoint), "--polymer-dir", str(tmp_path)]
    assert main(args) == 2
    assert "make cg-selection-data" in capsys.readouterr().err


def test_selection_chains_default_to_every_sel_file(
    tiny_checkpoint: Path, tmp_path: Path, capsys
) -> None:
    rng = np.random.default_rng(3)
    chain = regular_copolymer("sel_I_000", rng, 16, distinct=False)
    run_polymer(chain, tmp_path / "sel_I_000.h5", PolymerRun(**{**TINY_RUN.__dict__, "seed": 9}))
    args = ["select", "cg", "--candidates", str(tiny_checkpoint), "--polymer-dir", str(tmp_path)]
    assert main([*args, "--steps", "4", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert [row["polymer"] for row in record["candidates"][0]["per_polymer"]] == ["sel_I_000"]


class _Stop(Exception):
    pass


def test_an_incomplete_reference_is_refused_not_scored(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    """A file still being generated reads as a shorter valid trajectory; scoring it
    against a rollout would rank models on a truncated reference."""
    chain = regular_copolymer("sel_I_000", np.random.default_rng(4), 16, distinct=False)
    path = tmp_path / "sel_I_000.h5"
    written = []

    def stop_after_ten(n: int) -> None:
        written.append(n)
        if len(written) == 10:
            raise _Stop

    with pytest.raises(_Stop):
        run_polymer(
            chain, path, PolymerRun(**{**TINY_RUN.__dict__, "seed": 5}), progress=stop_after_ten
        )
    data = load_polymer(path)
    assert len(data.positions) == 10 and data.missing_frames == TINY_RUN.n_frames - 10
    simulator = CGSimulator.from_checkpoint(tiny_checkpoint, polymer_dir=tmp_path)
    with pytest.raises(ExplorerError, match="incomplete: 10 of 61 frames"):
        score_simulator(simulator, ["sel_I_000"], steps=4)
    run_polymer(chain, path, PolymerRun(**{**TINY_RUN.__dict__, "seed": 5}))  # resumed
    assert load_polymer(path).missing_frames == 0
    assert score_simulator(simulator, ["sel_I_000"], steps=4).stable_fraction == 1.0
