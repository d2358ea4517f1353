"""The FlashMD tab driven through its Python API, as a user would click it.

Uses the bundled FlashMD checkpoints and reference trajectories (skipped without them);
rollouts are a few strides (well under a second each on one CPU core).
"""

from __future__ import annotations

import shutil
import time

import numpy as np
import pytest

from explorer.checkpoints import CHECKPOINT_DIR, card_headline, read_card
from widgets.family_runs import flashmd_card_defaults
from widgets.flashmd_tab import FlashMDTab, reference_path

TIMEOUT_S = 30.0
ARGON = "flashmd_argon_128fs"

pytestmark = pytest.mark.skipif(
    not (CHECKPOINT_DIR / f"{ARGON}.json").exists() or reference_path("argon") is None,
    reason="bundled FlashMD checkpoint or reference trajectory missing",
)


def make_tab(**kw) -> FlashMDTab:
    return FlashMDTab(poll_interval_s=0.05, **kw)


def run(tab: FlashMDTab, n_steps: int) -> None:
    tab.n_steps.value = n_steps
    tab.run_button.click()
    assert tab.wait(TIMEOUT_S), "the run did not finish in time"


def trace(tab: FlashMDTab, figure: str, key: str):
    (found,) = [t for t in tab.figures[figure].data if t.meta == key]
    return found


def test_knob_defaults_follow_the_system_and_the_card():
    tab = make_tab()
    assert tab.system.value == "argon"
    assert tab.card["name"] == ARGON and "stride 128 fs" in tab.checkpoint.label
    assert card_headline(read_card(ARGON))[:30] in tab.card_info.value
    # no card recommends otherwise: the filter is on, random rotation off (equivariant model)
    assert tab.energy_conservation.value is True and tab.random_rotation.value is False
    assert tab.temperature.value == pytest.approx(94.4)
    tab.system.value = "al110"
    strides = [label for label, _ in tab.checkpoint.options]
    assert len(strides) >= 1 and all("al110" in s for s in strides)
    assert tab.energy_conservation.value is True
    assert tab.temperature.value == pytest.approx(700.0)
    assert "strides" in tab.n_steps.description and "ps simulated" in tab.steps_info.value


def test_card_recommendations_override_the_knob_defaults():
    assert flashmd_card_defaults({}) == {"energy_conservation": True, "random_rotation": False}
    card = {"recommended_knobs": {"energy_conservation": False, "thermostat": "bussi",
                                  "temperature_K": 300, "random_rotation": True}}  # fmt: skip
    expected = {"energy_conservation": False, "random_rotation": True, "thermostat": "bussi",
                "temperature_K": 300.0}  # fmt: skip
    assert flashmd_card_defaults(card) == expected
    # an unknown thermostat name is ignored rather than put into the dropdown
    assert "thermostat" not in flashmd_card_defaults({"recommended_knobs": {"thermostat": "x"}})


def test_run_fills_temperature_energy_rdf_msd_and_viewer():
    tab = make_tab()
    tab.thermostat.value = "langevin"
    tab.seed.value = 1
    run(tab, 3)
    assert tab.rollout.status == "done" and tab.rollout.n_frames == 4
    assert tab.rollout.knobs["energy_conservation"] is True
    assert tab.progress.value == 1.0 and "3/3 steps" in tab.progress_info.value
    temperature = trace(tab, "temperature", "temperature:T:model")
    np.testing.assert_allclose(temperature.x, 0.128 * np.arange(4), atol=1e-9)
    assert all(50 < t < 200 for t in temperature.y)
    assert list(trace(tab, "temperature", "temperature:target:reference").y) == [94.4, 94.4]
    total = trace(tab, "energy", "energy:total_energy:model")
    assert len(total.y) == 4 and total.y[0] == 0.0
    assert len(trace(tab, "rdf", "rdf:total:model").y) > 50
    assert len(trace(tab, "rdf", "rdf:total:reference").y) > 50
    assert "overlap" in tab.figures["rdf"].layout.title.text
    assert len(trace(tab, "msd", "msd:Ar:model").x) == 4
    assert len(trace(tab, "msd", "msd:Ar:reference").x) > 4
    assert "RDF overlap with the test trajectory" in tab.summary.value
    if tab.viewer.available:
        assert tab.viewer.n_frames == 4
    assert not tab.run_button.disabled and tab.stop_button.disabled


def test_slab_run_explains_the_missing_rdf():
    tab = make_tab()
    tab.system.value = "al110"
    tab.thermostat.value = "bussi"
    run(tab, 2)
    assert tab.rollout.status == "done", tab.message.value
    assert len(trace(tab, "msd", "msd:Al:model").x) == 3
    notes = [a.text for a in tab.figures["rdf"].layout.annotations]
    assert any("not periodic" in n for n in notes)
    assert len(trace(tab, "rdf", "rdf:total:model").x) == 0


def test_stop_ends_the_run_and_keeps_frames():
    tab = make_tab()
    tab.n_steps.value = 5000
    tab.run_button.click()
    deadline = time.monotonic() + TIMEOUT_S
    while (tab.rollout is None or tab.rollout.n_frames < 2) and time.monotonic() < deadline:
        time.sleep(0.02)
    tab.run_button.click()  # a second Run while running is refused
    assert "already running" in tab.message.value
    tab.stop_button.click()
    assert tab.wait(TIMEOUT_S)
    assert tab.rollout.status == "cancelled"
    assert tab.rollout.n_frames < 5001
    assert "Stopped after" in tab.message.value
    assert len(trace(tab, "temperature", "temperature:T:model").x) == tab.rollout.n_frames


def test_corrupt_checkpoint_shows_a_readable_error_and_stays_usable(tmp_path):
    shutil.copy(CHECKPOINT_DIR / f"{ARGON}.json", tmp_path)
    weights = tmp_path / f"{ARGON}.safetensors"
    weights.write_bytes(b"not safetensors")
    tab = make_tab(checkpoint_dir=tmp_path)
    assert tab.card["name"] == ARGON
    run(tab, 2)
    assert "Error" in tab.message.value and "sha256" in tab.message.value
    assert "Traceback" not in tab.message.value
    assert not tab.run_button.disabled and tab.progress.bar_style == "danger"
    shutil.copy(CHECKPOINT_DIR / f"{ARGON}.safetensors", weights)  # fixed: runs again
    run(tab, 1)
    assert tab.rollout.status == "done" and tab.message.value == ""


def test_no_checkpoint_for_the_system_says_so(tmp_path):
    tab = make_tab(checkpoint_dir=tmp_path)
    assert tab.checkpoint.value is None and "No FlashMD checkpoint" in tab.card_info.value
    tab.run_button.click()
    assert "no FlashMD checkpoint" in tab.message.value and not tab.running
