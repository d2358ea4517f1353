"""The LiFlow tab driven through its Python API, as a user would click it."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest

from explorer.h5md import read_h5md
from explorer.reference.dataset import REFERENCE_DIR, available_references
from explorer.trajectory import load_trajectory
from widgets.liflow_tab import ARRHENIUS, LiFlowTab

from .conftest import brownian_choice, tiny_liflow_choice, toy_atoms

TIMEOUT_S = 30.0


def make_tab(choices, atoms=None, **kw) -> LiFlowTab:
    atoms = toy_atoms() if atoms is None else atoms
    return LiFlowTab(atoms=atoms, choices=choices, poll_interval_s=0.05, **kw)


def run(tab: LiFlowTab, n_steps: int) -> None:
    tab.n_steps.value = n_steps
    tab.run_button.click()
    assert tab.wait(TIMEOUT_S), "the run did not finish in time"


def trace(tab: LiFlowTab, figure: str, key: str):
    (found,) = [t for t in tab.figures[figure].data if t.meta == key]
    return found


def test_run_fills_progress_figures_and_viewer(tmp_path):
    tab = make_tab([brownian_choice()], reference_dir=tmp_path)
    assert tab.material.value == "notebook" and len(tab.atoms) == 96  # 2×2×2 of 12 atoms
    run(tab, 12)
    assert tab.rollout.status == "done" and tab.rollout.n_frames == 13
    assert tab.progress.value == 1.0 and "12/12 steps" in tab.progress_info.value
    li = trace(tab, "msd", "msd:Li:model")
    np.testing.assert_allclose(li.x, np.arange(13.0))
    assert li.y[-1] > 0
    assert len(trace(tab, "rdf", "rdf:total:model").y) > 10
    assert tab.summary.value.startswith("<b>D_Li = ")
    assert tab.figures["pmf"].data[0].z is not None
    if tab.viewer.available:
        assert tab.viewer.n_frames == 13 and tab.viewer.view.max_frame == 12
    assert not tab.run_button.disabled and tab.stop_button.disabled
    assert tab.timings["first_frame"] - tab.timings["clicked"] < 5.0


def test_stop_ends_the_run_within_a_step_and_keeps_frames():
    tab = make_tab([brownian_choice(delay_s=0.05)])
    tab.n_steps.value = 1000
    tab.run_button.click()
    deadline = time.monotonic() + TIMEOUT_S
    while (tab.rollout is None or tab.rollout.n_frames < 3) and time.monotonic() < deadline:
        time.sleep(0.02)
    tab.run_button.click()  # pressing Run twice must not start a second run
    assert "already running" in tab.message.value
    tab.stop_button.click()
    stopped_at = time.perf_counter()
    assert tab.wait(TIMEOUT_S)
    assert tab.rollout.status == "cancelled"
    assert tab.rollout.progress().wall_s < 1000 * 0.05
    assert tab.rollout._finished_at - stopped_at < 0.5  # one 0.05 s step plus slack
    assert "Stopped after" in tab.message.value
    assert len(trace(tab, "msd", "msd:Li:model").x) == tab.rollout.n_frames


def test_diverged_rollout_shows_message_keeps_frames_and_stays_usable():
    tab = make_tab([brownian_choice(fail_at_step=5)])
    run(tab, 20)
    assert tab.rollout.status == "failed"
    assert "toy divergence at step 5" in tab.message.value
    assert "(5 frames kept)" in tab.message.value and "Traceback" not in tab.message.value
    assert len(trace(tab, "msd", "msd:Li:model").x) == 5
    assert not tab.run_button.disabled
    tab.choices[0] = brownian_choice()  # the user fixes the cause and runs again
    run(tab, 3)
    assert tab.rollout.status == "done"


def test_bad_upload_shows_error_and_keeps_the_material():
    tab = make_tab([brownian_choice()])
    before = tab.atoms
    tab.load_upload("broken.cif", b"data_x\n_cell_length_a 3\nloop_\nnonsense\n")
    assert "Error" in tab.message.value and "broken.cif" in tab.message.value
    assert tab.atoms is before and tab.material.value == "notebook"
    tab.load_upload("huge.cif", b"x" * (tab.max_upload_bytes + 1))
    assert "over the upload limit" in tab.message.value


def test_good_upload_becomes_the_material():
    tab = make_tab([brownian_choice()])
    buffer = io.StringIO()
    toy_atoms().repeat((1, 1, 2)).write(buffer, format="extxyz")
    tab.load_upload("mine.extxyz", buffer.getvalue().encode())
    assert tab.material.value == "upload" and tab.message.value == ""
    assert [box.value for box in tab.repeats] == [2, 2, 1]  # c is already 16 Å ≥ 9 Å
    assert "Li64 S32 · 96 atoms" in tab.structure_info.value


def test_liflow_rollout_and_unknown_element_message():
    tab = make_tab([tiny_liflow_choice()])
    for box in tab.repeats:
        box.value = 1
    tab.temperature.value = 800.0
    tab.flow_steps.value = 2
    run(tab, 3)
    assert tab.rollout.status == "done" and tab.rollout.n_frames == 4
    assert tab.rollout.knobs["flow_steps"] == 2

    no_sulfur = make_tab([tiny_liflow_choice(elements=(3, 8))])
    assert "S are not in the vocabulary" in no_sulfur.warnings.value
    run(no_sulfur, 2)
    assert no_sulfur.rollout.status == "failed"
    assert "not in the vocabulary of LiFlow checkpoint" in no_sulfur.message.value


def test_temperature_outside_training_is_a_visible_warning():
    tab = make_tab([tiny_liflow_choice()])
    tab.temperature.value = 1500.0
    assert "1500 K outside the training range 600–1000 K" in tab.warnings.value
    tab.temperature.value = 800.0
    assert tab.warnings.value == ""


def test_arrhenius_mode_runs_replicas_and_fits_ea():
    tab = make_tab([brownian_choice()])
    for box in tab.repeats:
        box.value = 1
    tab.mode.value = ARRHENIUS
    tab.temperatures.value = "600, 800, 1000"
    run(tab, 30)
    assert tab.rollout.trajectory().n_atoms == 3 * 12
    points = trace(tab, "arrhenius", "arrhenius:points:model")
    np.testing.assert_allclose(points.x, [1000 / 600, 1000 / 800, 1000 / 1000])
    assert "Ea = " in tab.figures["arrhenius"].layout.title.text
    tab.replica.value = 600.0  # the live views switch to another temperature
    assert "600 K" in tab.figures["msd"].layout.title.text


def test_arrhenius_mode_batches_liflow_replicas():
    tab = make_tab([tiny_liflow_choice()])
    for box in tab.repeats:
        box.value = 1
    tab.flow_steps.value = 1
    tab.mode.value = ARRHENIUS
    tab.temperatures.value = "700, 900"
    run(tab, 2)
    assert tab.rollout.status == "done"
    assert tab.rollout.trajectory().positions.shape == (3, 24, 3)


@pytest.mark.skipif("LGPS" not in available_references(), reason="no bundled LGPS reference")
def test_reference_md_overlay_for_a_catalogue_material():
    temperature = available_references()["LGPS"][0]
    tab = LiFlowTab(choices=[brownian_choice()], poll_interval_s=0.05)
    assert tab.material.value == "LGPS" and len(tab.atoms) == 50
    tab.temperature.value = temperature
    assert f"LGPS_{temperature:g}K.h5" in tab.reference_info.value
    run(tab, 8)
    reference = read_h5md(REFERENCE_DIR / f"LGPS_{temperature:g}K.h5")
    assert len(trace(tab, "msd", "msd:Li:reference").x) == reference.n_frames
    assert "overlap with reference MD: min" in tab.figures["rdf"].layout.title.text
    assert "reference MD:" in tab.summary.value


def test_export_trajectory_and_figures(tmp_path):
    tab = make_tab([brownian_choice()])
    tab.save_trajectory()
    assert "nothing to save" in tab.export_info.value
    run(tab, 5)
    for suffix in (".h5", ".extxyz"):
        tab.export_format.value = suffix
        tab.export_path.value = str(tmp_path / "run")
        tab.export_button.click()
        saved = load_trajectory(tmp_path / f"run{suffix}", timestep_ps=1.0)
        assert saved.n_frames == 6 and saved.n_atoms == len(tab.atoms)
    tab.figures_dir.value = str(tmp_path / "figs")
    tab.figures_button.click()
    assert (tmp_path / "figs" / "msd.html").exists() and (tmp_path / "figs" / "rdf.html").exists()


def test_explorer_is_one_widget_with_the_liflow_tab():
    from widgets import Explorer

    explorer = Explorer(atoms=toy_atoms(), choices=[brownian_choice()])
    assert explorer.children == (explorer.tabs,)
    assert explorer.tabs.get_title(0) == "LiFlow"
    assert explorer.liflow.widget in explorer.tabs.children


def test_no_checkpoint_says_so_and_offers_the_demo(tmp_path):
    tab = LiFlowTab(atoms=toy_atoms(), checkpoint_dir=tmp_path)
    assert "No LiFlow checkpoint" in tab.model_problem.value
    assert [c.label for c in tab.choices] == ["demo: Li random walk (not a trained model)"]
    assert "NOT LiFlow" in tab.model_info.value


@pytest.mark.slow
def test_trained_checkpoint_is_listed_summarised_and_runs(tmp_path):
    import contextlib

    from explorer.cli import main
    from explorer.testing import brownian_trajectory

    traj = brownian_trajectory(0.2, n_atoms=8, n_frames=300, dt_ps=0.02, frame_atoms=4, seed=0)
    traj.metadata.update(material="toy", temperature_K=800.0)
    data = traj.save(tmp_path / "toy_800K.h5")
    args = ["train", "liflow", "--data", str(data), "--name", "tiny", "--out-dir",
            str(tmp_path), "--max-steps", "2", "--eval-every", "2", "--features", "8",
            "--layers", "1", "--batch-size", "2", "--no-progress"]  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(args) == 0
    tab = LiFlowTab(atoms=toy_atoms("toy"), checkpoint_dir=tmp_path, poll_interval_s=0.05)
    assert [c.label for c in tab.choices] == ["tiny"]
    assert "tiny: trained on toy at 800 K" in tab.model_info.value
    assert tab.temperature.value == 800.0  # the checkpoint's training temperature
    for box in tab.repeats:
        box.value = 1
    tab.flow_steps.value = 2
    run(tab, 2)
    assert tab.rollout.status == "done" and tab.rollout.n_frames == 3


def test_summary_names_the_adaptive_prior_the_run_uses():
    tab = make_tab([tiny_liflow_choice(prior_kind="adaptive")])
    tab.flow_steps.value = 1
    run(tab, 2)
    assert tab.rollout.metadata["prior_choice"] == {"li": True, "frame": False}
    assert tab.rollout.metadata["prior_choice_source"] == "card"
    saved = tab.rollout.trajectory().metadata  # what downloads and save_trajectory write
    assert saved["prior_choice"] == {"li": True, "frame": False}
    assert "prior: Li large, frame small (card)" in tab.summary.value
    assert tab.summary.value.startswith("<b>D_Li")
    # other priors have no small/large choice to report
    plain = make_tab([tiny_liflow_choice()])
    plain.flow_steps.value = 1
    run(plain, 2)
    assert "prior_choice" not in plain.rollout.metadata
    assert "prior:" not in plain.summary.value


def test_summary_shows_the_shown_replicas_classifier_choice():
    from widgets.runs import ModelChoice

    tiny = tiny_liflow_choice(prior_kind="adaptive")

    def build(device: str):
        simulator = tiny.factory(device)
        # a classifier that says "large Li" above 800 K (the real one needs CHGNet)
        simulator.selector = object()
        simulator.prior_choices = lambda atoms_list, temps: [
            {"li": t > 800, "frame": False} for t in temps
        ]
        return simulator

    tab = make_tab([ModelChoice("chooser", tiny.card, factory=build)])
    tab.flow_steps.value = 1
    tab.mode.value = ARRHENIUS
    tab.temperatures.value = "700, 900"
    run(tab, 2)
    assert tab.rollout.status == "done"
    assert tab.rollout.metadata["prior_choice"] == [
        {"li": False, "frame": False},
        {"li": True, "frame": False},
    ]
    assert "prior: Li large, frame small (classifier)" in tab.summary.value  # 900 K shown
    tab.replica.value = 700.0
    assert "prior: Li small, frame small (classifier)" in tab.summary.value


def test_picking_a_model_sets_the_knobs_it_recommends_and_resets_the_others():
    plain = tiny_liflow_choice()
    card = {**plain.card, "name": "tuned", "recommended_knobs": {"prior_scale_frame": 0.7}}
    tab = make_tab([plain, type(plain)("tuned", card, factory=plain.factory)])
    assert (tab.prior_scale_li.value, tab.prior_scale_frame.value) == (1.0, 1.0)
    tab.model.value = 1
    assert tab.prior_scale_frame.value == 0.7 and tab.prior_scale_li.value == 1.0
    assert tab.knobs()["prior_scale_frame"] == 0.7 and tab.flow_steps.value == 10
    tab.model.value = 0
    assert tab.prior_scale_frame.value == 1.0
