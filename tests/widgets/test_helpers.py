"""Pure helpers behind the controls: card summaries, warnings, references, uploads."""

from __future__ import annotations

import io

import numpy as np
import pytest

from explorer.errors import OverlappingAtomsError, UnreadableStructureError
from explorer.materials import load_material
from explorer.session import Progress
from widgets import helpers
from widgets.runs import demo_diffusivity

from .conftest import toy_atoms

BUNDLED_CARD = {
    "name": "liflow_LGPS",
    "family": "liflow",
    "materials": ["LGPS"],
    "elements": [3, 15, 16, 32],
    "training_temperatures_K": [600.0, 800.0, 1000.0, 1200.0],
    "evaluation": {
        "summary": {
            "mae_log10_msd_li": 0.213,
            "spearman_li": 0.8,
            "rdf_mae": 0.151,
            "stable_fraction": 1.0,
        }
    },
}


def test_card_summary_says_what_and_how_well():
    line = helpers.card_summary(BUNDLED_CARD)
    assert line.startswith("liflow_LGPS: trained on LGPS at 600–1200 K (Li/P/S/Ge)")
    assert "log10 MSD_Li MAE 0.21" in line and "stable 100 %" in line
    assert "RDF MAE 0.151," in line  # dimensionless (eq. 18), no unit
    assert "\n" not in line and "recommended" not in line
    tuned = helpers.card_summary({**BUNDLED_CARD, "recommended_knobs": {"prior_scale_frame": 0.7}})
    assert tuned.endswith("; recommended prior scale frame 0.7")


def test_card_summary_of_a_cli_trained_card_falls_back_to_files_and_loss():
    card = {"name": "tiny", "family": "liflow", "training_files": [{"name": "toy_800K.h5"}],
            "best_val_loss": 3.1, "model": {"elements": [3, 16]}}  # fmt: skip
    line = helpers.card_summary(card)
    assert "trained on toy_800K.h5" in line and "best validation loss 3.1" in line
    assert "(Li/S)" in line


def test_warnings_for_unseen_elements_and_temperature_outside_training():
    lgps = load_material("LGPS")
    card = {**BUNDLED_CARD, "elements": [3, 16], "materials": ["Li3PS4-beta"]}
    problems = helpers.model_warnings(card, lgps, [1500.0])
    text = " | ".join(problems)
    assert "P, Ge are not in the vocabulary" in text
    assert "1500 K outside the training range 600–1200 K" in text
    assert "not trained on LGPS" in text
    assert helpers.model_warnings(BUNDLED_CARD, lgps, [900.0]) == []


def test_default_card_prefers_the_material_then_multi_material():
    cards = [{"materials": ["Li3N"]}, {"materials": ["LGPS", "Li3N"]}, {"materials": ["LGPS"]}]
    assert helpers.default_card_index(cards, "LGPS") == 1  # first card listing LGPS
    assert helpers.default_card_index(cards, "LLZO") == 1
    assert helpers.default_card_index(cards[:1], None) == 0


def test_matching_reference_needs_material_and_rounded_temperature(tmp_path):
    (tmp_path / "LGPS_800K.h5").write_bytes(b"")
    assert helpers.matching_reference("LGPS", 800.2, tmp_path) == tmp_path / "LGPS_800K.h5"
    assert helpers.matching_reference("LGPS", 900.0, tmp_path) is None
    assert helpers.matching_reference(None, 800.0, tmp_path) is None
    note = helpers.reference_note("LGPS", 900.0, tmp_path)
    assert "no reference MD for LGPS at 900 K (available: 800 K)" == note


def test_default_repeats_follow_the_reference_dataset_then_the_width_rule():
    assert helpers.default_repeats(load_material("LGPS")) == (1, 1, 1)
    # The dataset's 1×2×2 (7.7 Å along a, stated in the plan), not the width rule's 2×2×2.
    assert helpers.default_repeats(load_material("Li3PS4-gamma")) == (1, 2, 2)
    assert helpers.default_repeats(load_material("Li3N")) == (3, 3, 3)  # not in the dataset
    small = toy_atoms()
    assert helpers.default_repeats(small) == (2, 2, 2)  # 8 Å < 9 Å widths
    big = helpers.with_repeats(small, (2, 1, 1))
    assert len(big) == 24 and big.info["supercell"] == (2, 1, 1)


def test_structure_summary_has_composition_and_cell():
    text = helpers.structure_summary(toy_atoms())
    assert text.startswith("Li8 S4 · 12 atoms (8 Li)")
    assert "a, b, c = 8.00, 8.00, 8.00 Å" in text


def test_upload_of_a_good_extxyz_file():
    buffer = io.StringIO()
    toy_atoms().write(buffer, format="extxyz")
    atoms = helpers.atoms_from_upload("mine.extxyz", buffer.getvalue().encode())
    assert len(atoms) == 12 and atoms.info["source"] == "mine.extxyz"
    assert atoms.info["material"] is None


@pytest.mark.parametrize(
    ("name", "content", "error", "text"),
    [
        ("big.cif", b"x" * 2000, UnreadableStructureError, "over the upload limit"),
        ("notes.txt", b"hello", UnreadableStructureError, "unsupported file type"),
        ("empty.cif", b"  \n", UnreadableStructureError, "empty.cif: file is empty"),
        ("bad.extxyz", b"2\nLattice=oops\nLi 0 0\n", UnreadableStructureError, "bad.extxyz"),
    ],
)
def test_bad_uploads_raise_readable_errors(name, content, error, text):
    with pytest.raises(error, match=text) as info:
        helpers.atoms_from_upload(name, content, max_bytes=1000)
    assert "/tmp" not in str(info.value)  # the user's file name, not our temporary copy


def test_upload_with_overlapping_atoms():
    atoms = toy_atoms()
    atoms.positions[1] = atoms.positions[0] + np.array([0.1, 0.0, 0.0])
    buffer = io.StringIO()
    atoms.write(buffer, format="extxyz")
    with pytest.raises(OverlappingAtomsError, match=r"0\.100 Å apart"):
        helpers.atoms_from_upload("close.xyz", buffer.getvalue().encode())


def test_progress_text_and_temperatures():
    progress = Progress("running", 12, 50, 12.0, 3.4, 10.2)
    assert helpers.progress_text(progress) == (
        "running · 12/50 steps · 12 ps simulated · wall 3.4 s · ETA 10.2 s"
    )
    assert helpers.parse_temperatures("800, 600 1000 600") == [600.0, 800.0, 1000.0]
    with pytest.raises(ValueError, match="'hot' is not a temperature"):
        helpers.parse_temperatures("600, hot")
    assert helpers.steps_label(20, 1.0) == "= 20 ps simulated"


def test_demo_diffusivity_is_arrhenius():
    assert demo_diffusivity(1000.0) == pytest.approx(0.5)
    assert demo_diffusivity(600.0) < demo_diffusivity(800.0) < demo_diffusivity(1000.0)


def test_sessions_share_one_loaded_checkpoint_until_it_changes(tmp_path, monkeypatch):
    import os

    from explorer.liflow.simulate import LiFlowSimulator
    from widgets.runs import ModelChoice, shared_liflow_simulator

    loads = []
    monkeypatch.setattr(
        LiFlowSimulator,
        "from_checkpoint",
        classmethod(lambda cls, p, device: loads.append(p) or object()),
    )
    shared_liflow_simulator.cache_clear()
    path = tmp_path / "m.json"
    path.write_text("{}")
    card = {"name": "m", "family": "liflow"}
    first, second = ModelChoice("m", card, path=path), ModelChoice("m", card, path=path)
    assert first.simulator("cpu") is second.simulator("cpu")  # two sessions, one load
    assert len(loads) == 1
    os.utime(path, ns=(0, path.stat().st_mtime_ns + 10**9))  # the checkpoint is rewritten
    assert ModelChoice("m", card, path=path).simulator("cpu") is not first.simulator("cpu")
    assert len(loads) == 2
    shared_liflow_simulator.cache_clear()
