"""The CG-polymer tab driven through its Python API, as a user would click it.

Uses the bundled ``cg-polymers`` checkpoint and polymer references (skipped without them);
CG steps of a 10-bead chain take milliseconds.
"""

from __future__ import annotations

import shutil
import time

import numpy as np
import pytest

from explorer.checkpoints import CHECKPOINT_DIR
from widgets.cg_tab import CGTab, _polymer_dir_default

TIMEOUT_S = 30.0
CHECKPOINT = "cg-polymers"

pytestmark = pytest.mark.skipif(
    not (CHECKPOINT_DIR / f"{CHECKPOINT}.json").exists()
    or not list(_polymer_dir_default().glob("test_II_*.h5")),
    reason="bundled CG checkpoint or polymer references missing",
)


def make_tab(**kw) -> CGTab:
    return CGTab(poll_interval_s=0.05, **kw)


def run(tab: CGTab, n_steps: int) -> None:
    tab.n_steps.value = n_steps
    tab.run_button.click()
    assert tab.wait(TIMEOUT_S), "the run did not finish in time"


def trace(tab: CGTab, figure: str, key: str):
    (found,) = [t for t in tab.figures[figure].data if t.meta == key]
    return found


def test_polymer_list_puts_held_out_test_polymers_first():
    tab = make_tab()
    labels = [label for label, _ in tab.polymer.options]
    assert tab.polymer.value.startswith("test_II_")
    assert "held-out" in labels[0]
    assert any("training" in label for label in labels)
    assert tab.card["name"] == CHECKPOINT and "cg-polymers: cg" in tab.card_info.value
    assert tab.refinement.max == 10 and tab.refinement.value == 0
    assert "beads" in tab.polymer_info.value and "τ simulated" in tab.steps_info.value


def test_run_fills_rg2_histogram_rs_contacts_and_beads():
    tab = make_tab()
    tab.polymer.value = "test_II_001"
    tab.refinement.value = 1
    tab.langevin_steps.value = 2
    run(tab, 6)
    assert tab.rollout.status == "done", tab.message.value
    assert tab.rollout.n_frames == 7 and tab.rollout.knobs["refinement"] == 1
    assert "6/6 steps" in tab.progress_info.value and "τ simulated" in tab.progress_info.value
    rg2 = trace(tab, "rg2", "rg2:fine:model")
    np.testing.assert_allclose(rg2.x, 2.0 * np.arange(7))
    assert all(v > 0 for v in rg2.y)
    ref_mean = trace(tab, "rg2", "rg2:mean:reference").y[0]
    assert ref_mean == pytest.approx(tab.reference.mean_rg2)
    assert sum(v > 0 for v in trace(tab, "histogram", "rg2hist:model").y) >= 1
    assert len(trace(tab, "histogram", "rg2hist:reference").y) == 30
    n_beads = len(tab.rollout.atoms)
    assert len(trace(tab, "r_s", "rs:model").y) == n_beads - 1
    assert len(trace(tab, "r_s", "rs:reference").y) == n_beads - 1
    z = np.array(tab.figures["contacts"].data[0].z, dtype=float)
    assert z.shape == (n_beads, n_beads)
    assert np.all(np.isnan(np.diag(z))) and np.nanmax(z) <= 1.0
    beads = trace(tab, "beads", "beads:beads:model")
    assert len(beads.x) == n_beads
    np.testing.assert_allclose(beads.x, tab.rollout.frames_since(6)[0].positions[:, 0])
    assert tab.frame.max == 6 and tab.frame.value == 6
    tab.frame.value = 2  # scrub the animation
    assert "frame 2" in tab.figures["beads"].layout.title.text
    np.testing.assert_allclose(
        trace(tab, "beads", "beads:beads:model").x, tab.rollout.frames_since(2)[0].positions[:, 0]
    )
    assert "long MD" in tab.summary.value


def test_stop_ends_the_run_and_keeps_frames():
    tab = make_tab()
    tab.n_steps.value = 100000
    tab.run_button.click()
    deadline = time.monotonic() + TIMEOUT_S
    while (tab.rollout is None or tab.rollout.n_frames < 3) and time.monotonic() < deadline:
        time.sleep(0.01)
    tab.stop_button.click()
    assert tab.wait(TIMEOUT_S)
    assert tab.rollout.status == "cancelled" and tab.rollout.n_frames < 100001
    assert "Stopped after" in tab.message.value
    assert len(trace(tab, "rg2", "rg2:fine:model").x) == tab.rollout.n_frames


def test_diverged_rollout_shows_a_readable_message_and_keeps_frames():
    tab = make_tab(simulator_options={"min_distance": 100.0, "max_retries": 0})
    run(tab, 5)
    assert tab.rollout.status == "failed"
    assert "diverged at step 1" in tab.message.value and "(1 frame kept)" in tab.message.value
    assert "Traceback" not in tab.message.value
    assert len(trace(tab, "rg2", "rg2:fine:model").x) == 1
    assert not tab.run_button.disabled


def test_corrupt_checkpoint_shows_a_readable_error(tmp_path):
    shutil.copy(CHECKPOINT_DIR / f"{CHECKPOINT}.json", tmp_path)
    (tmp_path / f"{CHECKPOINT}.safetensors").write_bytes(b"garbage")
    tab = make_tab(checkpoint_dir=tmp_path)
    run(tab, 2)
    assert "sha256" in tab.message.value and "Traceback" not in tab.message.value
    assert tab.progress_info.value == "failed" and not tab.run_button.disabled


def test_explorer_holds_the_three_tabs():
    from widgets import Explorer

    explorer = Explorer(choices=[], flashmd_options={"poll_interval_s": 0.05})
    titles = [explorer.tabs.get_title(i) for i in range(3)]
    assert titles == ["LiFlow", "FlashMD", "CG polymers"]
    assert explorer.tabs.children[1] is explorer.flashmd.widget
    assert explorer.tabs.children[2] is explorer.cg.widget
    assert explorer.cg.polymer.value.startswith("test_II_")


def test_summary_reports_frames_beyond_full_extension():
    from widgets.family_runs import cg_summary

    rg2 = np.array([5.0, 5.2, 5.4, 5.1])
    fine = {"rg2_fine": rg2, "extension": np.array([0.5, 0.6, 0.55, 0.58])}
    assert "full extension" not in cg_summary(fine, None)
    stretched = {"rg2_fine": rg2, "extension": np.array([0.5, 1.2, 1.4, 0.9])}
    assert "50 % of frames stretched beyond full extension" in cg_summary(stretched, None)
    unknown = {"rg2_fine": rg2, "extension": np.full(4, np.nan)}  # a file without FENE R0
    assert "full extension" not in cg_summary(unknown, None)
