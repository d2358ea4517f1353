"""The FlashMD and CG-polymer tabs of the Panel app, driven in-process through Python.

Built by ``create_app`` as a session would build them, outside a server (updates are
applied at once). Uses the bundled FlashMD / CG checkpoints and references (each family
skipped without them); rollouts are a few strides or CG steps, well under a second.
"""

from __future__ import annotations

import shutil
import time
import zipfile

import pytest

from explorer.checkpoints import CHECKPOINT_DIR
from widgets.app import create_app
from widgets.app_cg import CGApp
from widgets.app_flashmd import FlashMDApp
from widgets.app_sessions import RolloutSlots
from widgets.family_runs import polymer_dir_default, reference_path

TIMEOUT_S = 30.0  # generous: CI runs two xdist workers on two cores
ARGON = "flashmd_argon_128fs"
CG = "cg-polymers"

needs_flashmd = pytest.mark.skipif(
    not (CHECKPOINT_DIR / f"{ARGON}.json").exists() or reference_path("argon") is None,
    reason="bundled FlashMD checkpoint or reference trajectory missing",
)
needs_cg = pytest.mark.skipif(
    not (CHECKPOINT_DIR / f"{CG}.json").exists()
    or not list(polymer_dir_default().glob("test_II_*.h5")),
    reason="bundled CG checkpoint or polymer references missing",
)


def flashmd(**kw) -> FlashMDApp:
    return FlashMDApp(slots=kw.pop("slots", RolloutSlots(2)), poll_interval_s=0.05, **kw)


def cg(**kw) -> CGApp:
    return CGApp(slots=kw.pop("slots", RolloutSlots(2)), poll_interval_s=0.05, **kw)


def run(tab, n_steps: int) -> None:
    tab.n_steps.value = n_steps
    tab.run_button.clicks += 1  # what a click in the page does
    assert tab.wait(TIMEOUT_S), "the run did not finish in time"


def trace(tab, figure: str, key: str):
    (found,) = [t for t in tab.figures[figure].data if t.meta == key]
    return found


def wait_for_frames(tab, n: int) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while (tab.rollout is None or tab.rollout.n_frames < n) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert tab.rollout is not None and tab.rollout.n_frames >= n


def test_page_holds_the_three_tabs_sharing_the_slots(tmp_path):
    slots = RolloutSlots(3)
    page = create_app(checkpoint_dir=tmp_path, slots=slots)
    tabs = page[1]
    assert list(tabs._names) == ["LiFlow", "FlashMD", "CG simulator"]
    assert not page._lazy["flashmd"].built and not page._lazy["cg"].built  # built on view
    flashmd, cg = page.flashmd, page.cg  # reaching them builds them
    assert tabs[1].objects[0] is flashmd.layout and tabs[2].objects[0] is cg.layout
    assert page.flashmd.slots is slots and page.cg.slots is slots


def test_showing_a_tab_builds_it_once(tmp_path):
    page = create_app(checkpoint_dir=tmp_path, slots=RolloutSlots(1))
    tabs = page[1]
    assert "Loading" in tabs[1][0].object and not page._lazy["flashmd"].built
    tabs.active = 1
    assert page._lazy["flashmd"].built and not page._lazy["cg"].built
    built = page.flashmd
    tabs.active = 0
    tabs.active = 1
    assert page.flashmd is built and tabs[1].objects[0] is built.layout


@needs_flashmd
def test_flashmd_knobs_follow_the_system_and_the_card():
    tab = flashmd()
    assert tab.system.value == "argon" and tab.card["name"] == ARGON
    assert "stride 128 fs" in next(iter(tab.checkpoint.options))
    assert tab.energy_conservation.value is True  # no bundled card recommends it off
    assert tab.temperature.value == pytest.approx(94.4)
    assert "ps simulated" in tab.steps_info.object
    tab.system.value = "al110"
    assert all("al110" in label for label in tab.checkpoint.options)
    assert tab.energy_conservation.value is True and tab.temperature.value == 700.0


@needs_flashmd
def test_flashmd_run_fills_temperature_energy_rdf_msd_and_3d():
    slots = RolloutSlots(1)
    tab = flashmd(slots=slots)
    tab.thermostat.value = "langevin"
    tab.seed.value = 1
    run(tab, 3)
    assert tab.rollout.status == "done" and tab.rollout.n_frames == 4, tab.message.object
    assert tab.progress.value == 1000 and "3/3 steps" in tab.progress_info.object
    assert len(trace(tab, "temperature", "temperature:T:model").y) == 4
    assert len(trace(tab, "energy", "energy:total_energy:model").y) == 4
    assert len(trace(tab, "rdf", "rdf:total:model").y) > 50
    assert len(trace(tab, "rdf", "rdf:total:reference").y) > 50
    assert len(trace(tab, "msd", "msd:Ar:model").x) == 4
    assert tab.panes["rdf"].object is tab.figures["rdf"]  # whole figures swapped in
    assert "RDF overlap with the test trajectory" in tab.summary.object
    assert tab.view3d.n_frames == 4
    assert not tab.run_button.disabled and tab.stop_button.disabled
    assert slots.in_use == 0  # the slot is given back


@needs_flashmd
def test_flashmd_stop_keeps_frames_and_second_run_is_refused():
    tab = flashmd()
    tab.n_steps.value = 5000
    tab.run_button.clicks += 1
    wait_for_frames(tab, 2)
    tab.run_button.clicks += 1
    assert "already running" in tab.message.object
    tab.stop_button.clicks += 1
    assert tab.wait(TIMEOUT_S)
    assert tab.rollout.status == "cancelled" and tab.rollout.n_frames < 5001
    assert "Stopped after" in tab.message.object
    assert len(trace(tab, "temperature", "temperature:T:model").x) == tab.rollout.n_frames


@needs_flashmd
def test_flashmd_corrupt_checkpoint_shows_a_readable_error(tmp_path):
    shutil.copy(CHECKPOINT_DIR / f"{ARGON}.json", tmp_path)
    (tmp_path / f"{ARGON}.safetensors").write_bytes(b"not safetensors")
    slots = RolloutSlots(1)
    tab = flashmd(checkpoint_dir=tmp_path, slots=slots)
    run(tab, 2)
    assert "Error" in tab.message.object and "sha256" in tab.message.object
    assert "Traceback" not in tab.message.object
    assert tab.progress_info.object == "failed" and tab.progress.bar_color == "danger"
    assert not tab.run_button.disabled and slots.in_use == 0


def test_flashmd_without_checkpoint_says_so(tmp_path):
    tab = flashmd(checkpoint_dir=tmp_path)
    assert tab.checkpoint.value is None and "No FlashMD checkpoint" in tab.card_info.object
    tab.run_button.clicks += 1
    assert "no FlashMD checkpoint" in tab.message.object and not tab.running


@needs_flashmd
def test_busy_server_refuses_a_run():
    slots = RolloutSlots(1)
    assert slots.try_acquire()  # another session holds the only slot
    tab = flashmd(slots=slots)
    tab.run_button.clicks += 1
    assert "server is busy" in tab.message.object and not tab.running
    slots.release()


@needs_cg
def test_cg_run_fills_rg2_histogram_rs_contacts_and_beads():
    tab = cg()
    assert tab.polymer.value.startswith("test_II_") and tab.card["name"] == CG
    assert "beads" in tab.polymer_info.object and "τ simulated" in tab.steps_info.object
    tab.polymer.value = "test_II_001"
    tab.refinement.value = 1
    tab.langevin_steps.value = 2
    run(tab, 6)
    assert tab.rollout.status == "done", tab.message.object
    assert "6/6 steps" in tab.progress_info.object and "τ simulated" in tab.progress_info.object
    assert len(trace(tab, "rg2", "rg2:fine:model").x) == 7
    assert any(t.x is not None and len(t.x) > 0 for t in tab.figures["histogram"].data)
    assert any(t.x is not None and len(t.x) > 0 for t in tab.figures["r_s"].data)
    assert tab.figures["contacts"].data and tab.figures["beads"].data
    assert tab.frame.value == 6 and "frame 6" in tab.figures["beads"].layout.title.text
    assert "long MD" in tab.summary.object
    tab.frame.value = 2  # the user picks a frame: shown, and following stops
    assert "frame 2" in tab.figures["beads"].layout.title.text and not tab.follow.value


@needs_cg
def test_cg_stop_keeps_frames():
    tab = cg()
    tab.n_steps.value = 100000
    tab.run_button.clicks += 1
    wait_for_frames(tab, 3)
    tab.stop_button.clicks += 1
    assert tab.wait(TIMEOUT_S)
    assert tab.rollout.status == "cancelled" and "Stopped after" in tab.message.object
    assert len(trace(tab, "rg2", "rg2:fine:model").x) == tab.rollout.n_frames


@needs_cg
def test_cg_diverged_rollout_shows_a_readable_message_and_keeps_frames():
    tab = cg(simulator_options={"min_distance": 100.0, "max_retries": 0})
    run(tab, 5)
    assert tab.rollout.status == "failed"
    assert "diverged at step 1" in tab.message.object
    assert "(1 frame kept)" in tab.message.object and "Traceback" not in tab.message.object
    assert len(trace(tab, "rg2", "rg2:fine:model").x) == 1
    assert not tab.run_button.disabled


@needs_cg
def test_closing_the_session_stops_the_rollout():
    slots = RolloutSlots(1)
    tab = cg(slots=slots)
    tab.n_steps.value = 100000
    tab.run_button.clicks += 1
    wait_for_frames(tab, 2)
    tab.close()
    assert tab.wait(TIMEOUT_S)
    assert tab.rollout.status == "cancelled" and slots.in_use == 0


def test_cg_without_checkpoint_says_so(tmp_path):
    tab = cg(checkpoint_dir=tmp_path)
    assert tab.checkpoint.value is None and "No CG checkpoint" in tab.card_info.object
    tab.run_button.clicks += 1
    assert "no CG checkpoint" in tab.message.object and not tab.running


def check_downloads(tab, tmp_path, figure_names: list[str]) -> None:
    """Trajectory (H5MD and extxyz) and figure downloads hold the rollout's frames."""
    from explorer.h5md import read_h5md
    from explorer.trajectory import load_trajectory

    for suffix, reader in ((".h5", read_h5md), (".extxyz", load_trajectory)):
        tab.trajectory_format.value = suffix
        assert tab.trajectory_download.filename == f"{tab.name}_rollout{suffix}"
        path = tmp_path / f"download{suffix}"
        path.write_bytes(tab._trajectory_file().getvalue())
        traj = reader(path)
        assert traj.n_frames == tab.rollout.n_frames
        assert traj.n_atoms == tab.rollout.trajectory().n_atoms
    with zipfile.ZipFile(tab._figures_file()) as archive:
        assert sorted(archive.namelist()) == sorted(f"{n}.html" for n in figure_names)


def test_downloads_before_a_run_are_disabled_and_say_why():
    for tab in (flashmd(), cg()):
        assert tab.trajectory_download.disabled and tab.figures_download.disabled
        assert tab._trajectory_file().getvalue() == b""
        assert "run a rollout first" in tab.message.object


@needs_flashmd
def test_flashmd_trajectory_and_figure_downloads(tmp_path):
    tab = flashmd()
    run(tab, 3)
    assert not tab.trajectory_download.disabled and not tab.figures_download.disabled
    check_downloads(tab, tmp_path, list(tab.figures))


@needs_cg
def test_cg_trajectory_and_figure_downloads(tmp_path):
    tab = cg()
    tab.langevin_steps.value = 2
    run(tab, 3)
    assert not tab.trajectory_download.disabled
    check_downloads(tab, tmp_path, list(tab.figures))
