"""The LiFlow tab of the Jupyter explorer: controls wired to a Rollout, figures to its frames.

Thin by design: structures come from :mod:`explorer.materials`, models from
:mod:`widgets.runs`, analysis and figures from :mod:`widgets.live` /
:mod:`widgets.figures`, and every decision worth testing (card summary, warnings,
matching reference, supercell) from :mod:`widgets.helpers`. This module only builds
ipywidgets and connects them.

What a run needs besides widgets (knobs, Rollout builder, analysis of the shown
replica) is :class:`widgets.runs.LiFlowRun`, shared with the Panel tab; Run/Stop,
the driver thread and the progress row are :class:`widgets.tab_run.RolloutTab`
(:mod:`widgets.controller`), shared with every tab.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ipywidgets as w
import plotly.graph_objects as go
from ase import Atoms

from explorer.checkpoints import CHECKPOINT_DIR
from explorer.errors import ExplorerError
from explorer.materials import list_materials, load_material, validate_structure
from explorer.reference.dataset import REFERENCE_DIR
from explorer.session import Frame, Rollout
from widgets import figures
from widgets.controller import describe, error_message
from widgets.helpers import (
    MAX_UPLOAD_BYTES,
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
from widgets.tab_run import (
    RolloutTab,
    error_html,
    escape,
    note_html,
    warning_html,
)
from widgets.viewer import TrajectoryViewer

UPLOAD, NOTEBOOK = "upload", "notebook"
DEFAULT_MATERIAL = "LGPS"
DEFAULT_TEMPERATURE_K = 800.0
_STYLE = {"description_width": "150px"}
_WIDE = w.Layout(width="420px")


class LiFlowTab(LiFlowRun, RolloutTab):
    """Material, model, knobs, Run/Stop, live views and export for LiFlow rollouts.

    Args:
        atoms: a structure from the notebook (selected by default when given).
        checkpoint_dir: where LiFlow checkpoints (``*.json`` cards) are listed.
        reference_dir: where reference MD files ``<material>_<T>K.h5`` are found.
        demo: offer the demo random-walk model; default only when there is no checkpoint.
        choices: model choices to offer instead of listing ``checkpoint_dir`` (tests).
        poll_interval_s: shortest time between figure updates, s (0.5 s: about one update
            per LiFlow step on LGPS, the rollout 1.14x its bare time in
            ``bench/ui_latency.py``; the throttle stretches it when updates get costly).
        max_upload_bytes: upload size bound.

    ``widget`` is the ipywidgets tree; the controls are attributes (``run_button``,
    ``temperature``, …) so code and tests can drive the tab without a browser.
    """

    name = "liflow"

    def __init__(
        self,
        atoms: Atoms | None = None,
        checkpoint_dir: Path = CHECKPOINT_DIR,
        reference_dir: Path = REFERENCE_DIR,
        demo: bool | None = None,
        choices: list[ModelChoice] | None = None,
        poll_interval_s: float = 0.5,
        max_upload_bytes: int = MAX_UPLOAD_BYTES,
    ) -> None:
        self._init_liflow(reference_dir)
        self.max_upload_bytes = max_upload_bytes
        self._notebook_atoms = atoms
        self._uploaded: Atoms | None = None
        self._base: Atoms | None = None
        self.atoms: Atoms | None = None
        self._setting_repeats = False

        self._build_run(poll_interval_s)
        self._build_material()
        self._build_model(checkpoint_dir, demo, choices)
        self._build_knobs()
        self._build_views()
        self._build_export()
        self.widget = w.VBox(
            [
                w.HTML("<h3 style='margin:4px 0'>LiFlow: Li diffusion by flow matching</h3>"),
                w.HBox([self.material_box, self.model_box]),
                self.knob_box,
                self.run_box,
                self.message,
                self.summary,
                self.views,
                self.export_box,
            ]
        )
        self._on_material(None)
        self._on_model(None)

    # -- material ----------------------------------------------------------------------
    def _build_material(self) -> None:
        options = [(f"{e.name} ({e.formula})", e.name) for e in list_materials()]
        if self._notebook_atoms is not None:
            options.insert(0, (f"from notebook: {self._notebook_atoms.get_chemical_formula()}",
                               NOTEBOOK))  # fmt: skip
        names = [value for _, value in options]
        default = NOTEBOOK if NOTEBOOK in names else DEFAULT_MATERIAL
        self.material = w.Dropdown(
            options=options,
            value=default if default in names else names[0],
            description="material",
            style=_STYLE,
            layout=_WIDE,
        )
        self.upload = w.FileUpload(accept="", multiple=False, description="upload structure")
        self.upload_note = w.HTML(
            f"<small>CIF, POSCAR/CONTCAR/.vasp or extxyz; at most "
            f"{self.max_upload_bytes / 1e6:g} MB</small>"
        )
        self.repeats = [
            w.BoundedIntText(value=1, min=1, max=8, layout=w.Layout(width="60px")) for _ in range(3)
        ]
        self.auto_supercell = w.Button(description="auto", tooltip="reference / ≥ 9 Å widths")
        self.structure_info = w.HTML()
        self.material.observe(self._on_material, names="value")
        self.upload.observe(self._on_upload, names="value")
        for box in self.repeats:
            box.observe(self._on_repeats, names="value")
        self.auto_supercell.on_click(lambda _: self._set_default_repeats())
        self.material_box = w.VBox(
            [
                self.material,
                w.HBox([self.upload, self.upload_note]),
                w.HBox(
                    [
                        w.Label("supercell", layout=w.Layout(width="150px")),
                        *self.repeats,
                        self.auto_supercell,
                    ]
                ),
                self.structure_info,
            ],
            layout=w.Layout(width="50%"),
        )

    def _on_material(self, _change: Any) -> None:
        key = self.material.value
        try:
            if key == NOTEBOOK:
                base = validate_structure(self._notebook_atoms.copy())
                base.info.setdefault("material", None)
            elif key == UPLOAD:
                base = self._uploaded
            else:
                base = load_material(key)
        except ExplorerError as exc:
            self._show_error(exc)
            return
        self._base = base
        self._set_default_repeats()

    def _on_upload(self, change: dict) -> None:
        files = change["new"]
        if not files:
            return
        item = files[0]
        name = item.get("name", "upload")
        try:
            atoms = atoms_from_upload(name, bytes(item["content"]), self.max_upload_bytes)
        except ExplorerError as exc:
            self._show_error(exc)
            return
        self._uploaded = atoms
        options = [o for o in self.material.options if o[1] != UPLOAD]
        self.material.options = [(f"uploaded: {name}", UPLOAD), *options]
        self.message.value = ""
        if self.material.value == UPLOAD:
            self._on_material(None)
        else:
            self.material.value = UPLOAD

    def load_upload(self, name: str, content: bytes) -> None:
        """Feed a file as if uploaded through the widget (scripts and tests)."""
        self._on_upload({"new": ({"name": name, "content": memoryview(content)},)})

    def _set_default_repeats(self) -> None:
        if self._base is None:
            return
        self._setting_repeats = True  # one update for three boxes, not three
        try:
            for box, n in zip(self.repeats, default_repeats(self._base), strict=True):
                box.value = int(n)
        finally:
            self._setting_repeats = False
        self._on_repeats(None)

    def _on_repeats(self, _change: Any) -> None:
        if self._base is None:
            return
        if self._setting_repeats:
            return
        self.atoms = with_repeats(self._base, [box.value for box in self.repeats])
        self.structure_info.value = f"<small>{escape(structure_summary(self.atoms))}</small>"
        if hasattr(self, "viewer") and not self.running:
            self.viewer.show_structure(self.atoms)
        self._update_warnings()

    # -- model -------------------------------------------------------------------------
    def _build_model(
        self, directory: Path, demo: bool | None, choices: list[ModelChoice] | None
    ) -> None:
        problem = ""
        if choices is None:
            try:
                choices = liflow_choices(directory)
            except ExplorerError as exc:
                choices, problem = [], f"cannot list checkpoints: {exc}"
            if not choices:
                problem = problem or (
                    f"No LiFlow checkpoint in {directory}. Train one with "
                    "<code>make train</code> or <code>accelmd train liflow</code>"
                    + (" (the demo model below only tries the interface)." if demo is not False
                       else ".")
                )  # fmt: skip
            if demo or (demo is None and not choices):
                choices = [*choices, demo_choice()]
        self.choices = choices
        self.model = w.Dropdown(
            options=[(c.label, i) for i, c in enumerate(choices)],
            value=0 if choices else None,
            description="model",
            style=_STYLE,
            layout=_WIDE,
        )
        self.model_info = w.HTML()
        self.model_problem = w.HTML(note_html(problem) if problem else "")
        self.warnings = w.HTML()
        self.reference_info = w.HTML()
        self.model.observe(self._on_model, names="value")
        self.model_box = w.VBox(
            [self.model, self.model_info, self.model_problem, self.warnings, self.reference_info],
            layout=w.Layout(width="50%"),
        )

    @property
    def choice(self) -> ModelChoice | None:
        return None if self.model.value is None else self.choices[self.model.value]

    def _on_model(self, _change: Any) -> None:
        choice = self.choice
        if choice is None:
            self.model_info.value = ""
            return
        self.model_info.value = f"<small>{escape(card_summary(choice.card))}</small>"
        temperature = self._card_temperature()
        if temperature is not None and hasattr(self, "temperature"):
            self.temperature.value = temperature
        self._apply_card_knobs()
        if hasattr(self, "n_steps"):
            self._on_steps(None)
        self._update_warnings()

    def _update_warnings(self, _change: Any = None) -> None:
        if not hasattr(self, "warnings") or self.choice is None:
            return
        warnings, notes = self._warnings_and_notes()
        self.warnings.value = warning_html(warnings)
        self.reference_info.value = f"<small>{'<br>'.join(map(escape, notes))}</small>"

    # -- knobs -------------------------------------------------------------------------
    def _build_knobs(self) -> None:
        self.temperature = w.BoundedFloatText(
            value=DEFAULT_TEMPERATURE_K, min=1, max=5000, step=50,
            description="temperature (K)", style=_STYLE,
        )  # fmt: skip
        self.prior_scale_li = w.FloatSlider(
            value=1.0, min=0.1, max=4.0, step=0.05, description="prior scale Li", style=_STYLE,
            tooltip="multiplies the Propagator prior variance of Li (1 = as trained)",
        )  # fmt: skip
        self.prior_scale_frame = w.FloatSlider(
            value=1.0, min=0.1, max=4.0, step=0.05, description="prior scale frame",
            style=_STYLE, tooltip="multiplies the prior variance of the frame atoms",
        )  # fmt: skip
        self.corrector_strength = w.FloatSlider(
            value=1.0, min=0.0, max=1.0, step=0.05, description="Corrector strength",
            style=_STYLE,
            tooltip="0: Propagator only; 1: full trained Corrector (and fine Corrector); "
            "in between each correction is scaled linearly",
        )  # fmt: skip
        self.flow_steps = w.IntSlider(
            value=10, min=1, max=50, description="flow steps", style=_STYLE,
            tooltip="Euler steps of the Propagator flow (the Correctors take 3 in 10 each)",
        )  # fmt: skip
        self.n_steps = w.BoundedIntText(
            value=20, min=1, max=10000, description="LiFlow steps", style=_STYLE
        )
        self.steps_ps = w.HTML()
        self.seed = w.IntText(value=0, description="seed", style=_STYLE)
        self.device = w.Dropdown(
            options=["auto", "cpu", "cuda"], value="auto", description="device", style=_STYLE
        )
        self.mode = w.ToggleButtons(options=[SINGLE, ARRHENIUS], value=SINGLE)
        self.temperatures = w.Text(
            value="600, 800, 1000", description="temperatures (K)", style=_STYLE
        )
        self.n_steps.observe(self._on_steps, names="value")
        for control in (self.temperature, self.mode, self.temperatures):
            control.observe(self._update_warnings, names="value")
        self._on_steps(None)
        self.knob_box = w.HBox(
            [
                w.VBox(
                    [
                        self.temperature,
                        self.prior_scale_li,
                        self.prior_scale_frame,
                        self.corrector_strength,
                    ]
                ),
                w.VBox(
                    [self.flow_steps, w.HBox([self.n_steps, self.steps_ps]), self.seed, self.device]
                ),
                w.VBox([self.mode, self.temperatures]),
            ]
        )

    def _on_steps(self, _change: Any) -> None:
        step_ps = self.choice.time_step_ps if self.choice is not None else 1.0
        self.steps_ps.value = steps_label(self.n_steps.value, step_ps)

    # -- run -------------------------------------------------------------------------
    def _on_new_run(self, rollout: Rollout) -> None:
        self.viewer.show_structure(self._start_replicas(rollout))

    def _compute(self, rollout: Rollout, new: list[Frame], first: bool) -> None:
        positions = [f.positions[: self._n_atoms] for f in new]
        if first:
            self.viewer.set_frames(positions)
        else:
            self.viewer.append_frames(positions)
        self._update_figures(rollout)

    def _update_figures(self, rollout: Rollout) -> None:
        for name, fig in self._analyse(rollout).items():
            figures.sync_figure(self.figures[name], fig)
        self.summary.value = f"<b>{escape(self.summary_line(rollout) or '')}</b>"
        if self.analysis.problems:
            self.message.value = warning_html(self.analysis.problems)

    def _show_error(self, exc: BaseException) -> None:
        self._show(error_message(exc))

    # -- views -------------------------------------------------------------------------
    def _build_views(self) -> None:
        self.viewer = TrajectoryViewer()
        self.figures: dict[str, go.FigureWidget] = {
            "msd": go.FigureWidget(figures.msd_figure(None)),
            "rdf": go.FigureWidget(figures.rdf_figure(None)),
            "pmf": go.FigureWidget(figures.pmf_figure(None)),
            "arrhenius": go.FigureWidget(figures.arrhenius_figure([])),
            "traces": go.FigureWidget(figures.li_traces_figure(None)),
        }
        self.summary = w.HTML()
        self.log_msd = w.Checkbox(value=False, description="log-log axes", indent=False)
        self.log_msd.observe(
            lambda change: figures.set_log_axes(self.figures["msd"], change["new"]), names="value"
        )
        self.show_traces = w.Checkbox(value=False, description="show Li paths", indent=False)
        self.show_traces.observe(self._on_traces, names="value")
        self.plane = w.Dropdown(options=["ab", "bc", "ac"], value="ab", description="plane")
        self.plane.observe(self._on_plane, names="value")
        self.replica = w.Dropdown(options=[], description="show T (K)")
        self.replica.observe(self._on_replica, names="value")
        self.temperatures.observe(self._on_temperatures_text, names="value")
        self._on_temperatures_text(None)
        traces = w.VBox([self.show_traces, self.figures["traces"]])
        self.views = w.Tab(
            children=[
                w.VBox([self.viewer.widget, traces]),
                w.VBox([self.log_msd, self.figures["msd"]]),
                self.figures["rdf"],
                w.VBox([self.plane, self.figures["pmf"]]),
                w.VBox([self.replica, self.figures["arrhenius"]]),
            ]
        )
        for i, title in enumerate(("3-D", "MSD", "RDF", "Li PMF", "Arrhenius")):
            self.views.set_title(i, title)
        if self.atoms is not None:
            self.viewer.show_structure(self.atoms)

    def _figures_shown(self) -> set[str]:
        shown = super()._figures_shown()  # every tab is kept current (cheap enough here)
        return shown | {"traces"} if self.show_traces.value else shown

    def _on_traces(self, change: dict) -> None:
        if change["new"] and self.analysis is not None and self.analysis.traj is not None:
            traces = figures.li_traces_figure(self.analysis.traj)
            figures.sync_figure(self.figures["traces"], traces)

    def _on_plane(self, change: dict) -> None:
        if self.analysis is None:
            return
        self.analysis.plane = change["new"]
        if self.analysis.traj is not None:
            self.analysis.update(self.analysis.traj)
            figures.sync_figure(self.figures["pmf"], figures.pmf_figure(self.analysis.pmf))

    def _on_temperatures_text(self, _change: Any) -> None:
        try:
            temps = parse_temperatures(self.temperatures.value)
        except ValueError:
            return
        self.replica.options = [(f"{t:g}", t) for t in temps]
        self.replica.value = temps[-1]

    def _on_replica(self, _change: Any) -> None:
        """Show another temperature of a finished or running Arrhenius run."""
        if self.rollout is None or len(self._temperatures) < 2:
            return
        if self.replica.value not in self._temperatures:
            return
        with self._refresh_lock:
            self.analysis = None  # the next update analyses the chosen replica
            if self.rollout.n_frames:
                self._update_figures(self.rollout)

    # -- export ------------------------------------------------------------------------
    def _build_export(self) -> None:
        self.export_format = w.Dropdown(
            options=[("H5MD (.h5)", ".h5"), ("extended XYZ (.extxyz)", ".extxyz")],
            value=".h5",
            description="trajectory",
        )
        self.export_path = w.Text(value="liflow_rollout", description="file stem")
        self.export_button = w.Button(description="save trajectory", icon="download")
        self.figures_dir = w.Text(value="liflow_figures", description="figure dir")
        self.figures_png = w.Checkbox(value=False, description="also PNG", indent=False)
        self.figures_button = w.Button(description="save figures", icon="download")
        self.export_info = w.HTML()
        self.export_button.on_click(lambda _: self.save_trajectory())
        self.figures_button.on_click(lambda _: self.save_figures())
        self.export_box = w.VBox(
            [
                w.HBox([self.export_format, self.export_path, self.export_button]),
                w.HBox([self.figures_dir, self.figures_png, self.figures_button]),
                self.export_info,
            ]
        )

    def save_trajectory(self) -> list[Path]:
        """Write the frames so far (one file per temperature in Arrhenius mode)."""
        if self.rollout is None or self.rollout.n_frames == 0:
            self.export_info.value = error_html("nothing to save: run a rollout first")
            return []
        traj = self.rollout.trajectory()
        stem, suffix = self.export_path.value.strip() or "liflow_rollout", self.export_format.value
        try:
            if len(self._temperatures) > 1:
                parts = split_replicas(traj, self._temperatures)
                paths = [
                    part.save(f"{stem}_{t:g}K{suffix}")
                    for part, t in zip(parts, self._temperatures, strict=True)
                ]
            else:
                paths = [traj.save(stem + suffix)]
        except (ExplorerError, OSError) as exc:
            self.export_info.value = error_html(describe(exc))
            return []
        self.export_info.value = "saved " + ", ".join(str(p) for p in paths)
        return paths

    def save_figures(self) -> list[Path]:
        """Write every figure as self-contained HTML (and PNG when kaleido can)."""
        formats = ("html", "png") if self.figures_png.value else ("html",)
        written, problems = figures.write_figures(self.figures, self.figures_dir.value, formats)
        text = f"saved {len(written)} files in {self.figures_dir.value}"
        if problems:
            text += "<br>" + escape("; ".join(problems))
        self.export_info.value = text
        return written
