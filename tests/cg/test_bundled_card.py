"""The bundled cg-polymers card: its headline metrics are the summary of its own rows."""

from __future__ import annotations

import json

import pytest

from explorer.cg.evaluate import summarize
from explorer.cg.polymers import POLYMER_DIR
from explorer.checkpoints import CHECKPOINT_DIR


def test_card_metrics_summarise_its_per_polymer_rows() -> None:
    card = json.loads((CHECKPOINT_DIR / "cg-polymers.json").read_text())
    rows = card["validation_per_polymer"]
    bundled_tests = sorted(p.stem for p in POLYMER_DIR.glob("test_II_*.h5"))
    assert [r["polymer"] for r in rows] == bundled_tests  # every bundled test chain
    summary = summarize(rows)
    assert summary.keys() == card["validation_metrics"].keys()
    for key, value in summary.items():
        assert card["validation_metrics"][key] == pytest.approx(value, rel=1e-9), key
    reference = json.loads((POLYMER_DIR / "reference_observables.json").read_text())["polymers"]
    for row in rows:  # the rows compare against the bundled long references
        assert row["reference_mean_rg2"] == pytest.approx(
            reference[row["polymer"]]["mean_rg2"], rel=1e-6
        )
