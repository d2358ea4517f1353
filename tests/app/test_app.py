"""The Panel app built in-process (no server, no browser) and driven through its widgets.

``create_app()`` is what ``panel serve widgets/app.py`` builds per session; here the
Run button's ``on_click`` handlers are triggered by bumping ``clicks``, as a click in the
page does. Outside a server there is no document, so updates apply at once.
"""

from __future__ import annotations

import io
import time
import zipfile

import numpy as np
import pytest

from explorer.h5md import read_h5md
from explorer.materials import STRUCTURES_DIR
from explorer.reference.dataset import REFERENCE_DIR
from explorer.trajectory import load_trajectory
from widgets.app import create_app
from widgets.app_liflow import ARRHENIUS, DEFAULT_MATERIAL, LiFlowApp
from widgets.app_sessions import MAX_ROLLOUTS_ENV, RolloutSlots, max_rollouts_from_env
from widgets.figures import LI_COLOUR
from widgets.runs import ModelChoice
from widgets.view3d import structure_figure

from .conftest import brownian_choice

TIMEOUT_S = 60.0


def make_app(tmp_path, choices=None, slots=None, **kw) -> LiFlowApp:
    """A LiFlow tab with a random-walk model; ``reference_dir`` empty unless given."""
    kw.setdefault("reference_dir", tmp_path)
    return LiFlowApp(
        choices=choices or [brownian_choice()],
        slots=slots or RolloutSlots(4),
        poll_interval_s=0.05,
        **kw,
    )


def click(button) -> None:
    button.clicks += 1


def run(app: LiFlowApp, n_steps: int) -> None:
    app.n_steps.value = n_steps
    click(app.run_button)
    assert app.wait(TIMEOUT_S), "the run did not finish in time"


def model_trace(app: LiFlowApp, figure: str, key: str):
    (found,) = [t for t in app.figures[figure].data if t.meta == key]
    return found


def wait_for_frames(app: LiFlowApp, n: int) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while (app.rollout is None or app.rollout.n_frames < n) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert app.rollout is not None and app.rollout.n_frames >= n


def test_page_opens_on_lgps_with_the_demo_model_and_a_visible_note(tmp_path):
    page = create_app(checkpoint_dir=tmp_path)  # no checkpoint there
    app = page.liflow
    assert app.material.value == DEFAULT_MATERIAL and len(app.atoms) == 50
    assert app.choice.is_demo and "NOT LiFlow" in app.model_note.object
    assert "demo" in app.model_info.object
    assert app.temperature.value == 800.0
    assert "LGPS_800K.h5" in app.reference_info.object  # the bundled reference matches
    assert app.view3d.n_frames == 1  # the structure is drawn before any run
    tabs = page[1]
    assert [name for name in tabs._names] == ["LiFlow", "FlashMD", "CG simulator"]
    assert not page._lazy["flashmd"].built and not page._lazy["cg"].built  # built on view
    flashmd, cg = page.flashmd, page.cg  # reaching them builds them
    assert tabs[1].objects[0] is flashmd.layout and tabs[2].objects[0] is cg.layout


def test_run_fills_progress_figures_view_and_summary(tmp_path):
    app = make_app(tmp_path)
    run(app, 12)
    assert app.rollout.status == "done" and app.rollout.n_frames == 13
    assert app.progress.value == 1000 and "12/12 steps" in app.progress_info.object
    li = model_trace(app, "msd", "msd:Li:model")
    np.testing.assert_allclose(li.x, np.arange(13.0))
    assert li.y[-1] > 0
    assert len(model_trace(app, "rdf", "rdf:total:model").y) > 10
    assert app.figures["pmf"].data[0].z is not None
    assert app.summary.object.startswith("<b>D_Li = ")
    assert app.view3d.n_frames == 13 and "frame 12 of 12" in app.view3d.figure.layout.title.text
    assert not app.run_button.disabled and app.stop_button.disabled
    assert not app.trajectory_download.disabled and not app.figures_download.disabled
    assert app.timings["first_frame"] - app.timings["clicked"] < 2.0


def test_reference_overlay_and_overlap_score_for_lgps():
    app = LiFlowApp(choices=[brownian_choice()], slots=RolloutSlots(1), poll_interval_s=0.05)
    assert app.material.value == "LGPS" and app.temperature.value == 800.0
    run(app, 8)
    reference = model_trace(app, "msd", "msd:Li:reference")
    assert len(reference.x) > 10
    assert "overlap with reference MD" in app.figures["rdf"].layout.title.text
    assert "reference MD:" in app.summary.object


def test_a_run_that_fails_at_its_first_step_replaces_the_last_runs_figures(tmp_path):
    # Updates skip the figures of the start frame alone; a run that ends there must
    # still clear the figures of the run before it.
    failing = brownian_choice(fail_at_step=1)
    failing = ModelChoice("fails at once", failing.card, factory=failing.factory)
    app = make_app(tmp_path, [brownian_choice(), failing])
    run(app, 6)
    assert len(model_trace(app, "msd", "msd:Li:model").x) == 7
    app.model.value = 1
    run(app, 6)
    assert app.rollout.status == "failed" and app.rollout.n_frames == 1
    assert len(model_trace(app, "msd", "msd:Li:model").x) == 0


def test_stop_ends_the_run_and_run_twice_is_refused(tmp_path):
    app = make_app(tmp_path, [brownian_choice(delay_s=0.05)])
    app.n_steps.value = 2000
    click(app.run_button)
    wait_for_frames(app, 3)
    first = app.rollout
    click(app.run_button)  # pressing Run twice must not start a second run
    assert "already running" in app.message.object and app.rollout is first
    click(app.stop_button)
    assert app.wait(TIMEOUT_S)
    assert app.rollout.status == "cancelled" and "Stopped after" in app.message.object
    assert len(model_trace(app, "msd", "msd:Li:model").x) == app.rollout.n_frames


def test_diverged_rollout_shows_message_keeps_frames_and_stays_usable(tmp_path):
    app = make_app(tmp_path, [brownian_choice(fail_at_step=5)])
    run(app, 20)
    assert app.rollout.status == "failed"
    assert "toy divergence at step 5" in app.message.object
    assert "(5 frames kept)" in app.message.object and "Traceback" not in app.message.object
    assert not app.run_button.disabled
    run(app, 3)  # still usable: a shorter run ends before the toy divergence
    assert app.rollout.status == "done" and app.rollout.n_frames == 4


def test_busy_cap_refuses_a_third_rollout_with_a_clear_message(tmp_path):
    slots = RolloutSlots(2)
    apps = [make_app(tmp_path, [brownian_choice(delay_s=0.05)], slots=slots) for _ in range(3)]
    for app in apps[:2]:
        app.n_steps.value = 2000
        click(app.run_button)
    wait_for_frames(apps[0], 2)
    assert slots.in_use == 2
    click(apps[2].run_button)
    assert "server is busy" in apps[2].message.object and apps[2].rollout is None
    assert MAX_ROLLOUTS_ENV in apps[2].message.object
    click(apps[0].stop_button)
    assert apps[0].wait(TIMEOUT_S)
    assert slots.in_use == 1  # the slot came back when the run ended
    run(apps[2], 3)
    assert apps[2].rollout.status == "done"
    click(apps[1].stop_button)
    assert apps[1].wait(TIMEOUT_S) and slots.in_use == 0


def test_max_rollouts_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv(MAX_ROLLOUTS_ENV, "5")
    assert max_rollouts_from_env() == 5
    monkeypatch.setenv(MAX_ROLLOUTS_ENV, "many")
    assert max_rollouts_from_env() == 2


def test_two_sessions_have_their_own_rollouts_and_frames(tmp_path):
    # Their own cap: a rollout another test left winding down must not hold a slot here.
    slots = RolloutSlots(2)
    first = create_app(reference_dir=tmp_path, slots=slots)
    second = create_app(reference_dir=tmp_path, slots=slots)
    a, b = first.liflow, second.liflow
    a.choices[0].delay_s = b.choices[0].delay_s = 0.0  # separate choice objects per session
    assert a.choices[0] is not b.choices[0]
    a.temperature.value, b.temperature.value = 600.0, 1000.0
    a.n_steps.value, b.n_steps.value = 6, 15
    click(a.run_button)
    click(b.run_button)
    assert a.wait(TIMEOUT_S) and b.wait(TIMEOUT_S)
    assert a.rollout is not b.rollout
    assert (a.rollout.n_frames, b.rollout.n_frames) == (7, 16)
    assert len(model_trace(a, "msd", "msd:Li:model").x) == 7
    assert len(model_trace(b, "msd", "msd:Li:model").x) == 16
    assert a.figures["msd"].layout.title.text == "MSD at 600 K"
    assert b.figures["msd"].layout.title.text == "MSD at 1000 K"
    assert a.view3d.n_frames == 7 and b.view3d.n_frames == 16


def test_closing_the_session_stops_its_rollout(tmp_path):
    app = make_app(tmp_path, [brownian_choice(delay_s=0.05)])
    app.n_steps.value = 2000
    click(app.run_button)
    wait_for_frames(app, 2)
    app.close()
    assert app.wait(TIMEOUT_S) and app.rollout.status == "cancelled"


def test_bad_uploads_show_errors_and_keep_the_material(tmp_path):
    app = make_app(tmp_path)
    app.load_upload("broken.cif", b"data_x\n_cell_length_a 3\nloop_\nnonsense\n")
    assert "Error" in app.message.object and "broken.cif" in app.message.object
    assert app.material.value == DEFAULT_MATERIAL
    app.load_upload("huge.cif", b"x" * (app.max_upload_bytes + 1))
    assert "over the upload limit" in app.message.object
    app.load_upload("notes.txt", b"hello")
    assert "unsupported file type" in app.message.object


def test_good_upload_becomes_the_material_and_runs(tmp_path):
    app = make_app(tmp_path)
    app.load_upload("mine.cif", (STRUCTURES_DIR / "Li3N.cif").read_bytes())
    assert app.material.value == "__upload__" and app.message.object == ""
    assert "uploaded: mine.cif" in app.material.options
    assert app.atoms.info["source"] == "mine.cif" and "Li" in app.atoms.get_chemical_symbols()
    assert "no reference MD" in app.reference_info.object
    run(app, 4)
    assert app.rollout.status == "done"


def test_arrhenius_mode_runs_replicas_and_downloads_one_file_per_temperature(tmp_path):
    app = make_app(tmp_path)
    app.mode.value = ARRHENIUS
    app.temperatures.value = "600, 800, 1000"
    run(app, 30)
    (points,) = [t for t in app.figures["arrhenius"].data if t.meta == "arrhenius:points:model"]
    assert len(points.x) == 3
    assert "Ea =" in app.figures["arrhenius"].layout.title.text
    assert app.figures["msd"].layout.title.text == "MSD at 1000 K"
    assert app.trajectory_download.filename == "liflow_rollout.zip"
    with zipfile.ZipFile(io.BytesIO(app.trajectory_bytes())) as archive:
        assert sorted(archive.namelist()) == [f"liflow_rollout_{t}K.h5" for t in (1000, 600, 800)]
    app.replica.value = 600.0  # show another temperature of the finished run
    assert app.figures["msd"].layout.title.text == "MSD at 600 K"


@pytest.mark.parametrize("suffix", [".h5", ".extxyz"])
def test_trajectory_and_figure_downloads(tmp_path, suffix):
    app = make_app(tmp_path)
    run(app, 5)
    app.trajectory_format.value = suffix
    assert app.trajectory_download.filename == f"liflow_rollout{suffix}"
    path = tmp_path / f"download{suffix}"
    path.write_bytes(app._trajectory_file().getvalue())
    traj = read_h5md(path) if suffix == ".h5" else load_trajectory(path)
    assert traj.n_frames == 6 and traj.n_atoms == len(app.atoms)
    with zipfile.ZipFile(app._figures_file()) as archive:
        names = sorted(archive.namelist())
        assert names == ["arrhenius.html", "msd.html", "pmf.html", "rdf.html"]
        assert b"plotly" in archive.read("msd.html")


def test_download_before_any_run_is_a_message_not_a_crash(tmp_path):
    app = make_app(tmp_path)
    assert app.trajectory_download.disabled
    assert app._trajectory_file().getvalue() == b""
    assert "run a rollout first" in app.message.object


def test_structure_figure_colours_species_draws_the_cell_and_wraps():
    cell = np.eye(3) * 5.0
    positions = np.array([[1.0, 1.0, 1.0], [6.0, -1.0, 2.0], [2.5, 2.5, 2.5]])
    fig = structure_figure(positions, [3, 3, 16], cell)
    by_meta = {t.meta: t for t in fig.data}
    assert set(by_meta) == {"view3d:cell:model", "view3d:Li:model", "view3d:S:model"}
    assert len(by_meta["view3d:cell:model"].x) == 36  # 12 edges, NaN-separated
    li = by_meta["view3d:Li:model"]
    assert li.marker.color == LI_COLOUR and li.marker.size > by_meta["view3d:S:model"].marker.size
    xyz = np.column_stack([li.x, li.y, li.z])
    assert np.all((xyz >= 0) & (xyz < 5.0))  # wrapped for display
    np.testing.assert_allclose(xyz[1], [1.0, 4.0, 2.0])


def test_reference_cache_is_warmed_for_the_default_material():
    from widgets.app import warm_reference_cache
    from widgets.live import _reference_cached

    warm_reference_cache(reference_dir=REFERENCE_DIR)
    deadline = time.monotonic() + TIMEOUT_S
    while _reference_cached.cache_info().currsize == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _reference_cached.cache_info().currsize >= 1


def test_default_model_and_chgnet_are_preloaded_for_the_first_run(tmp_path):
    from explorer.checkpoints import CHECKPOINT_DIR
    from explorer.liflow import classifier
    from widgets.app import warm_default_model
    from widgets.runs import liflow_choices, shared_liflow_simulator

    assert warm_default_model(checkpoint_dir=tmp_path) is None  # nothing to load
    if not (CHECKPOINT_DIR / "liflow_LGPS.json").exists():
        pytest.skip("no bundled LGPS checkpoint")
    shared_liflow_simulator.cache_clear()
    thread = warm_default_model()
    thread.join(timeout=120)
    assert not thread.is_alive() and classifier._CHGNET is not None
    assert shared_liflow_simulator.cache_info().currsize == 1
    (lgps,) = [c for c in liflow_choices() if c.label == "liflow_LGPS"]
    lgps.simulator("auto")  # what a session's first Run asks for: served from the cache
    assert shared_liflow_simulator.cache_info().hits >= 1


def test_log_axes_and_pmf_plane_replace_the_shown_figures(tmp_path):
    app = make_app(tmp_path)
    run(app, 10)
    app.log_msd.value = True
    assert app.figures["msd"].layout.xaxis.type == "log"
    assert app.panes["msd"].object is app.figures["msd"]  # a new object: the page redraws
    assert 0.0 not in model_trace(app, "msd", "msd:Li:model").x  # lag 0 left out on log axes
    app.plane.value = "bc"
    assert app.figures["pmf"].layout.xaxis.title.text == "along b (Å)"
    assert app.panes["pmf"].object is app.figures["pmf"]


def test_only_the_open_views_tab_is_rebuilt_while_running_and_all_at_the_end(tmp_path):
    app = make_app(tmp_path)
    assert app._figures_shown() == {"msd"}
    app.views.active = 1
    assert app._figures_shown() == {"rdf"}
    run(app, 6)
    # The run ended with every figure current (other tabs, figure download).
    assert len(model_trace(app, "msd", "msd:Li:model").x) == 7
    assert app.figures["pmf"].layout.title.text.endswith("(7 frames)")
    before = app.figures["pmf"]
    app.views.active = 2  # opening a tab after the run redraws its figure
    assert app.figures["pmf"] is not before and app.panes["pmf"].object is app.figures["pmf"]


def test_picking_a_model_sets_the_knobs_its_card_recommends(tmp_path):
    plain = brownian_choice()
    card = {**plain.card, "name": "tuned", "recommended_knobs": {"prior_scale_frame": 0.7}}
    app = make_app(tmp_path, [plain, ModelChoice("tuned", card, factory=plain.factory)])
    assert app.prior_scale_frame.value == 1.0
    app.model.value = 1
    assert app.prior_scale_frame.value == 0.7 and app.knobs()["prior_scale_frame"] == 0.7
    app.model.value = 0
    assert app.prior_scale_frame.value == 1.0 and app.prior_scale_li.value == 1.0
