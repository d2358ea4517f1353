"""The LiFlow tab of the Panel app: Panel controls wired to one session's Rollout.

The same capabilities as the Jupyter tab (:mod:`widgets.liflow_tab`), built from the
same parts: structures from :mod:`explorer.materials` (uploads through
:func:`widgets.helpers.atoms_from_upload`, the CLI's loader), model choices and
Arrhenius replicas and the Rollout builder from :mod:`widgets.runs`
(:class:`~widgets.runs.LiFlowRun`), analysis from :mod:`widgets.live`, figures from
:mod:`widgets.figures`. This module only creates Panel widgets and connects them.

Threads (``UI-NOTES.md``): Run/Stop is :class:`widgets.app_run.PanelRolloutTab`. Run
takes a server slot and starts a *driver* thread that loads the model, starts the
Rollout (its own worker thread), polls ``frames_since`` and computes the analysis and
fresh figures off the server's event loop; the page gets them through
``doc.add_next_tick_callback``.
"""

from __future__ import annotations

import html
import logging
from pathlib import Path
from typing import Any

import panel as pn
import plotly.graph_objects as go
from ase import Atoms

from explorer.checkpoints import CHECKPOINT_DIR
from explorer.errors import ExplorerError
from explorer.materials import list_materials, load_material
from explorer.reference.dataset import REFERENCE_DIR
from explorer.session import Frame, Rollout
from explorer.trajectory import Trajectory
from widgets import figures
from widgets.app_downloads import PanelDownloads
from widgets.app_run import (
    PanelRolloutTab,
    deferred,
    info_html,
    plotly_pane,
    warning_html,
)
from widgets.app_sessions import SLOTS, RolloutSlots
from widgets.controller import error_message
from widgets.helpers import (
    MAX_UPLOAD_BYTES,
    UPLOAD_SUFFIXES,
    atoms_from_upload,
    card_summary,
    default_repeats,
    parse_temperatures,
    steps_label,
    structure_summary,
    with_repeats,
)
from widgets.runs import (
    ARRHENIUS,
    SINGLE,
    LiFlowRun,
    ModelChoice,
    demo_choice,
    liflow_choices,
    split_replicas,
)
from widgets.view3d import TrajectoryView3D

log = logging.getLogger("accelmd.app")

UPLOAD = "__upload__"
DEFAULT_MATERIAL = "LGPS"
#: Without a checkpoint temperature range: 800 K has a bundled LGPS reference MD, so the
#: first run already shows the dashed reference curves (900 K would have none).
DEFAULT_TEMPERATURE_K = 800.0
DEFAULT_STEPS = 50
#: The live figures, in the order of the views tabs.
FIGURES = ("msd", "rdf", "pmf", "arrhenius")


class LiFlowApp(LiFlowRun, PanelDownloads, PanelRolloutTab):
    """Material, model, knobs, Run/Stop, live views and downloads for one browser session.

    Args:
        checkpoint_dir: where LiFlow checkpoint cards are listed.
        reference_dir: where reference MD files ``<material>_<T>K.h5`` are found.
        choices: model choices instead of listing ``checkpoint_dir`` (tests).
        slots: the server-wide cap on running rollouts.
        poll_interval_s: shortest time between figure updates, s (2 s: each update
            also costs the browser a redraw of the 3-D view, on the same 2 cores in
            ``bench/app_latency.py``; 0.5 s measured 1.37x the bare rollout, 1 s
            1.27-1.33x, 2 s 1.14x, medians).
        max_upload_bytes: upload size bound.

    Controls are attributes (``run_button``, ``temperature``, …) so tests can drive the
    tab from Python; ``layout`` is the Panel object.
    """

    name = "liflow"
    producer = "widgets.app"

    def __init__(
        self,
        checkpoint_dir: Path = CHECKPOINT_DIR,
        reference_dir: Path = REFERENCE_DIR,
        choices: list[ModelChoice] | None = None,
        slots: RolloutSlots = SLOTS,
        poll_interval_s: float = 2.0,
        max_upload_bytes: int = MAX_UPLOAD_BYTES,
    ) -> None:
        self._init_liflow(reference_dir)
        self.max_upload_bytes = max_upload_bytes
        self._replica_offset = 0
        self._uploaded: Atoms | None = None
        self._base: Atoms | None = None
        self.atoms: Atoms | None = None

        self._build_run(slots, poll_interval_s)
        self._build_material()
        self._build_model(checkpoint_dir, choices)
        self._build_knobs()
        self._build_views()
        self._build_downloads()
        self.layout = pn.Column(
            pn.Row(self.material_box, self.model_box, sizing_mode="stretch_width"),
            self.knob_box,
            self.run_box,
            self.message,
            self.summary,
            deferred(pn.Row(self.view3d.layout, self.views, sizing_mode="stretch_width")),
            self.download_box,
            sizing_mode="stretch_width",
        )
        self._on_material()
        self._on_model()

    # -- material ----------------------------------------------------------------------
    def _build_material(self) -> None:
        options = {f"{e.name} ({e.formula})": e.name for e in list_materials()}
        default = DEFAULT_MATERIAL if DEFAULT_MATERIAL in options.values() else None
        self.material = pn.widgets.Select(
            label="material", options=options, value=default or next(iter(options.values())),
            width=300, css_classes=["accelmd-material"],
        )  # fmt: skip
        accept = ",".join(UPLOAD_SUFFIXES)
        self.upload = pn.widgets.FileInput(accept=accept, css_classes=["accelmd-upload"])
        self.upload_note = pn.pane.HTML(
            f"<small>upload a structure: CIF, POSCAR/CONTCAR/.vasp or extxyz; at most "
            f"{self.max_upload_bytes / 1e6:.1f} MB</small>"
        )
        self.repeats = [
            pn.widgets.IntInput(label=axis, value=1, start=1, end=8, width=60) for axis in "abc"
        ]
        self.structure_info = pn.pane.HTML("", sizing_mode="stretch_width")
        self.material.param.watch(lambda _: self._on_material(), "value")
        self.upload.param.watch(lambda _: self._on_upload(), "value")
        for box in self.repeats:
            box.param.watch(lambda _: self._on_repeats(), "value")
        self.material_box = pn.Column(
            self.material,
            self.upload,
            self.upload_note,
            pn.Row(pn.pane.HTML("supercell", width=70), *self.repeats),
            self.structure_info,
            sizing_mode="stretch_width",
        )

    def _on_material(self) -> None:
        try:
            if self.material.value == UPLOAD:
                base = self._uploaded
            else:
                base = load_material(self.material.value)
        except ExplorerError as exc:
            self._show_error(exc)
            return
        self._base = base
        self._setting_repeats = True  # one update for three boxes, not three
        try:
            for box, n in zip(self.repeats, default_repeats(base), strict=True):
                box.value = int(n)
        finally:
            self._setting_repeats = False
        self._on_repeats()
        if hasattr(self, "choices"):
            self.select_default_model()

    def _on_upload(self) -> None:
        content, name = self.upload.value, self.upload.filename or "upload"
        if not content:
            return
        try:
            atoms = atoms_from_upload(name, content, self.max_upload_bytes)
        except ExplorerError as exc:
            log.warning("upload %r rejected: %s", name, exc)
            self._show_error(exc)
            return
        self._uploaded = atoms
        options = {k: v for k, v in self.material.options.items() if v != UPLOAD}
        self.material.options = {f"uploaded: {name}": UPLOAD, **options}
        self.message.object = ""
        if self.material.value == UPLOAD:
            self._on_material()
        else:
            self.material.value = UPLOAD

    def load_upload(self, name: str, content: bytes) -> None:
        """Feed a file as if uploaded in the page (tests and scripts)."""
        self.upload.param.update(filename=name, value=content)

    def _on_repeats(self) -> None:
        if self._base is None or getattr(self, "_setting_repeats", False):
            return
        self.atoms = with_repeats(self._base, [box.value for box in self.repeats])
        self.structure_info.object = f"<small>{html.escape(structure_summary(self.atoms))}</small>"
        if hasattr(self, "view3d") and not self.running:
            self.view3d.set_structure(self.atoms.positions, self.atoms.numbers, self.atoms.cell[:])
            self.view3d.show()
        self._update_warnings()

    # -- model -------------------------------------------------------------------------
    def _build_model(self, directory: Path, choices: list[ModelChoice] | None) -> None:
        note = ""
        if choices is None:
            try:
                choices = liflow_choices(directory)
            except ExplorerError as exc:
                log.warning("cannot list checkpoints in %s: %s", directory, exc)
                choices = []
            if not choices:
                note = (
                    "No trained LiFlow checkpoint is bundled yet (make train builds them). "
                    "The demo model is selected: a Li random walk with an Arrhenius "
                    "diffusivity, NOT LiFlow, so that the interface can be tried."
                )
                choices = [demo_choice()]
        self.choices = choices
        self.model = pn.widgets.Select(
            label="model", options={c.label: i for i, c in enumerate(choices)}, value=0,
            width=340, css_classes=["accelmd-model"],
        )  # fmt: skip
        self.model_info = pn.pane.HTML("", sizing_mode="stretch_width")
        self.model_note = pn.pane.HTML(
            info_html(note) if note else "", css_classes=["accelmd-model-note"]
        )
        self.warnings = pn.pane.HTML("", sizing_mode="stretch_width")
        self.reference_info = pn.pane.HTML("", sizing_mode="stretch_width")
        self.model.param.watch(lambda _: self._on_model(), "value")
        self.model_box = pn.Column(
            self.model,
            self.model_info,
            self.model_note,
            self.warnings,
            self.reference_info,
            sizing_mode="stretch_width",
        )

    @property
    def choice(self) -> ModelChoice:
        return self.choices[self.model.value]

    def _on_model(self) -> None:
        self.model_info.object = f"<small>{html.escape(card_summary(self.choice.card))}</small>"
        temperature = self._card_temperature()
        if temperature is not None:
            self.temperature.value = temperature
        self._apply_card_knobs()
        self._on_steps()
        self._update_warnings()

    def _update_warnings(self) -> None:
        if not hasattr(self, "mode"):
            return
        warnings, notes = self._warnings_and_notes()
        self.warnings.object = warning_html(warnings)
        self.reference_info.object = f"<small>{'<br>'.join(map(html.escape, notes))}</small>"

    # -- knobs -------------------------------------------------------------------------
    def _build_knobs(self) -> None:
        self.temperature = pn.widgets.FloatInput(
            label="temperature (K)", value=DEFAULT_TEMPERATURE_K, start=1, end=5000, step=50,
            width=150, css_classes=["accelmd-temperature"],
        )  # fmt: skip
        self.prior_scale_li = pn.widgets.FloatSlider(
            label="prior scale Li", value=1.0, start=0.1, end=4.0, step=0.05, width=200
        )
        self.prior_scale_frame = pn.widgets.FloatSlider(
            label="prior scale frame", value=1.0, start=0.1, end=4.0, step=0.05, width=200
        )
        self.corrector_strength = pn.widgets.FloatSlider(
            label="Corrector strength", value=1.0, start=0.0, end=1.0, step=0.05, width=200
        )
        self.flow_steps = pn.widgets.IntSlider(
            label="flow steps", value=10, start=1, end=50, width=200
        )
        self.n_steps = pn.widgets.IntInput(
            label="duration (model steps)", value=DEFAULT_STEPS, start=1, end=10000, width=150,
            css_classes=["accelmd-steps"],
        )  # fmt: skip
        self.steps_ps = pn.pane.HTML("")
        self.seed = pn.widgets.IntInput(label="seed", value=0, width=100)
        self.device = pn.widgets.Select(
            label="device", options=["auto", "cpu", "cuda"], value="auto", width=100
        )
        self.mode = pn.widgets.RadioButtonGroup(
            options=[SINGLE, ARRHENIUS], value=SINGLE, css_classes=["accelmd-mode"]
        )
        self.temperatures = pn.widgets.TextInput(
            label="temperatures (K), Arrhenius mode", value="600, 800, 1000", width=240
        )
        self.n_steps.param.watch(lambda _: self._on_steps(), "value")
        for control in (self.temperature, self.mode, self.temperatures):
            control.param.watch(lambda _: self._update_warnings(), "value")
        self.knob_box = pn.Row(
            pn.Column(self.temperature, self.prior_scale_li, self.prior_scale_frame),
            pn.Column(self.corrector_strength, self.flow_steps),
            pn.Column(pn.Row(self.n_steps, self.steps_ps), pn.Row(self.seed, self.device)),
            pn.Column(self.mode, self.temperatures),
        )

    def _on_steps(self) -> None:
        self.steps_ps.object = (
            f"<small>{steps_label(self.n_steps.value, self.choice.time_step_ps)}</small>"
        )

    # -- run -------------------------------------------------------------------------
    def _on_new_run(self, rollout: Rollout) -> None:
        atoms = self._start_replicas(rollout)
        self._replica_offset = self._temperatures.index(self._display_temperature()) * len(atoms)
        self.view3d.start_run(atoms.numbers, atoms.cell[:])

    def _compute(self, rollout: Rollout, new: list[Frame], first: bool) -> Any:
        """The 3-D view at once, then fresh figures and the D_Li line (driver thread)."""
        part = slice(self._replica_offset, self._replica_offset + self._n_atoms)
        self.view3d.add_frames([f.positions[part] for f in new], [f.time_ps for f in new])
        if first:  # show the first frame before the (slower) analysis
            self._post(self.view3d.show)
            if len(new) == 1:
                # Only the start structure: its figures would be empty, yet applying and
                # sending them would hold back the first step's (measured: ~0.3 s).
                return None
        fresh = self._analyse(rollout)
        return {name: fresh[name] for name in self.figures if name in fresh}, self.summary_line(
            rollout
        )

    def _apply_views(self, views: Any) -> None:
        """Copy the newest 3-D frame, fresh figures and the D_Li line into the page."""
        fresh, summary = views
        self.view3d.show()
        for name, fig in fresh.items():
            figures.sync_figure(self.figures[name], fig)
            self.panes[name].param.trigger("object")
        self._show_summary(summary)

    def _show_summary(self, summary: str | None) -> None:
        if summary is not None:
            self.summary.object = f"<b>{html.escape(summary)}</b>"
        if self.analysis is not None and self.analysis.problems:
            self.message.object = warning_html(self.analysis.problems)

    def _figures_shown(self) -> set[str]:
        """Only the figure of the open views tab is rebuilt while a run goes on (the
        page shows one at a time; each costs the rollout CPU time, see README)."""
        return {FIGURES[self.views.active]}

    def _on_view_tab(self, _event: Any) -> None:
        """A views tab was opened: bring its figure up to date (a run's next update
        does that by itself)."""
        if not self.running:
            self._reanalyse()

    def _on_finished(self) -> None:
        rollout = self.rollout
        if rollout is not None and rollout.n_frames and not self._closed:
            # Updates rebuilt only the open tab's figure (and none for the start frame
            # alone): bring every figure to this run's end, for the other tabs and for
            # the figure download.
            try:
                fresh = self._analyse(rollout, names=set(FIGURES))
            except ExplorerError as exc:
                self._show_error(exc)
            else:
                self._apply_views(({n: fresh[n] for n in self.figures if n in fresh}, None))
        self._update_downloads()

    def _show_error(self, exc: BaseException) -> None:
        self._show(error_message(exc))

    # -- views -------------------------------------------------------------------------
    def _build_views(self) -> None:
        self.view3d = TrajectoryView3D()
        self.figures: dict[str, go.Figure] = {
            "msd": figures.msd_figure(None),
            "rdf": figures.rdf_figure(None),
            "pmf": figures.pmf_figure(None),
            "arrhenius": figures.arrhenius_figure([]),
        }
        self.panes = {name: plotly_pane(fig, name, 420) for name, fig in self.figures.items()}
        self.log_msd = pn.widgets.Checkbox(label="log-log axes", value=False)
        self.log_msd.param.watch(self._on_log, "value")
        self.plane = pn.widgets.Select(label="plane", options=["ab", "bc", "ac"], value="ab")
        self.plane.param.watch(lambda _: self._reanalyse(names={"pmf"}), "value")
        self.replica = pn.widgets.Select(label="show T (K)", options=[])
        self.replica.param.watch(lambda _: self._reanalyse(new_analysis=True), "value")
        self.temperatures.param.watch(lambda _: self._on_temperatures_text(), "value")
        self._on_temperatures_text()
        self.views = pn.Tabs(
            ("MSD", pn.Column(self.log_msd, self.panes["msd"])),
            ("RDF", self.panes["rdf"]),
            ("Li PMF", pn.Column(self.plane, self.panes["pmf"])),
            ("Arrhenius", pn.Column(self.replica, self.panes["arrhenius"])),
            sizing_mode="stretch_width",
            dynamic=True,  # render a plot when its tab is opened: a faster first page
        )
        self.views.param.watch(self._on_view_tab, "active")

    def _on_log(self, event: Any) -> None:
        fig = go.Figure(self.figures["msd"])
        figures.set_log_axes(fig, event.new)
        self._replace_figure("msd", fig)
        self._reanalyse(names={"msd"})

    def _on_temperatures_text(self) -> None:
        try:
            temps = parse_temperatures(self.temperatures.value)
        except ValueError:
            return
        self.replica.options = {f"{t:g}": t for t in temps}
        self.replica.value = temps[-1]

    def _reanalyse(self, new_analysis: bool = False, names: set[str] | None = None) -> None:
        """Redo the figures (``names``, default: the open tab's) after the plane, log
        axes, shown replica or open tab changed.

        While a run goes on, the next update of the driver picks the change up.
        """
        if self.analysis is not None:
            self.analysis.plane = self.plane.value
        rollout = self.rollout
        if rollout is None or self.running or rollout.n_frames == 0:
            return
        if new_analysis and len(self._temperatures) < 2:
            return
        if new_analysis:
            self.analysis = None
        try:
            fresh = self._analyse(rollout, names, full=True)  # whole figures, swapped in
        except ExplorerError as exc:
            self._show_error(exc)
            return
        for name, fig in fresh.items():
            if name in self.figures:
                self._replace_figure(name, fig)
        self._show_summary(self.summary_line(rollout))

    # -- downloads ---------------------------------------------------------------------
    def n_trajectory_parts(self) -> int:
        return max(1, len(self._temperatures))

    def trajectory_parts(self) -> list[tuple[str, Trajectory]]:
        """One file per temperature in Arrhenius mode (the replicas split apart)."""
        traj = self.rollout.trajectory()  # type: ignore[union-attr]
        if len(self._temperatures) > 1:
            parts = split_replicas(traj, self._temperatures)
            return [
                (f"liflow_rollout_{t:g}K", part)
                for part, t in zip(parts, self._temperatures, strict=True)
            ]
        return [("liflow_rollout", traj)]
