"""The LiFlow tab of the Jupyter explorer: controls wired to a Rollout, figures to its frames.

Thin by design: structures come from :mod:`explorer.materials`, models from
:mod:`widgets.runs`, analysis and figures from :mod:`widgets.live` /
:mod:`widgets.figures`, and every decision worth testing (card summary, warnings,
matching reference, supercell) from :mod:`widgets.helpers`. This module only builds
ipywidgets and connects them.

Threads: pressing Run starts a *driver* thread that loads the model, starts the
:class:`~explorer.session.Rollout` (its own worker thread) and polls
``frames_since`` to update the figures, so the kernel never blocks. Figure updates are
throttled: after an update that took t seconds the driver waits at least
``max(poll_interval_s, 5 t)``, which bounds the analysis to ≤ 1/6 of one core.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import ipywidgets as w
import plotly.graph_objects as go
from ase import Atoms

from explorer.checkpoints import CHECKPOINT_DIR
from explorer.errors import ExplorerError
from explorer.materials import list_materials, load_material, validate_structure
from explorer.reference.dataset import REFERENCE_DIR
from explorer.session import CANCELLED, DONE, FAILED, Rollout
from widgets import figures
from widgets.helpers import (
    MAX_UPLOAD_BYTES,
    atoms_from_upload,
    card_summary,
    card_temperatures,
    default_card_index,
    default_repeats,
    model_warnings,
    parse_temperatures,
    progress_text,
    reference_note,
    steps_label,
    structure_summary,
    with_repeats,
)
from widgets.live import LiveAnalysis, arrhenius_analysis
from widgets.runs import ModelChoice, build_run, demo_choice, liflow_choices, split_replicas
from widgets.viewer import TrajectoryViewer

UPLOAD, NOTEBOOK = "upload", "notebook"
SINGLE, ARRHENIUS = "single temperature", "Arrhenius (several T)"
DEFAULT_MATERIAL = "LGPS"
DEFAULT_TEMPERATURE_K = 800.0
FIRST_FRAME_POLL_S = 0.05  # s; how often to look for the first frame of a run
_STYLE = {"description_width": "150px"}
_WIDE = w.Layout(width="420px")


def _box(text: str, colour: str) -> str:
    return (
        f'<div style="border-left: 4px solid {colour}; padding: 4px 8px; '
        f'background: #fafafa">{text}</div>'
    )


def _error_html(text: str) -> str:
    return _box(f"<b>Error</b>: {_escape(text)}", "#d62728")


def _warning_html(lines: list[str]) -> str:
    items = "".join(f"<li>{_escape(line)}</li>" for line in lines)
    return _box(f"<b>Warning</b><ul style='margin:0'>{items}</ul>", "#ff7f0e") if lines else ""


def _escape(text: str) -> str:
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _describe(exc: BaseException) -> str:
    """A readable message: ours as is, anything else with its type (it is a bug)."""
    if isinstance(exc, ExplorerError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


class LiFlowTab:
    """Material, model, knobs, Run/Stop, live views and export for LiFlow rollouts.

    Args:
        atoms: a structure from the notebook (selected by default when given).
        checkpoint_dir: where LiFlow checkpoints (``*.json`` cards) are listed.
        reference_dir: where reference MD files ``<material>_<T>K.h5`` are found.
        demo: offer the demo random-walk model; default only when there is no checkpoint.
        choices: model choices to offer instead of listing ``checkpoint_dir`` (tests).
        poll_interval_s: shortest time between figure updates, s (1 s kept the rollout
            within 5 % of its bare speed in ``bench/ui_latency.py``).
        max_upload_bytes: upload size bound.

    ``widget`` is the ipywidgets tree; the controls are attributes (``run_button``,
    ``temperature``, …) so code and tests can drive the tab without a browser.
    """

    def __init__(
        self,
        atoms: Atoms | None = None,
        checkpoint_dir: Path = CHECKPOINT_DIR,
        reference_dir: Path = REFERENCE_DIR,
        demo: bool | None = None,
        choices: list[ModelChoice] | None = None,
        poll_interval_s: float = 1.0,
        max_upload_bytes: int = MAX_UPLOAD_BYTES,
    ) -> None:
        self.reference_dir = Path(reference_dir)
        self.poll_interval_s = poll_interval_s
        self.max_upload_bytes = max_upload_bytes
        self.rollout: Rollout | None = None
        self.analysis: LiveAnalysis | None = None
        self.timings: dict[str, float] = {}
        self._driver: threading.Thread | None = None
        self._refresh_lock = threading.Lock()
        self._shown_frames = 0
        self._temperatures: list[float] = []
        self._notebook_atoms = atoms
        self._uploaded: Atoms | None = None
        self._base: Atoms | None = None
        self.atoms: Atoms | None = None
        self._setting_repeats = False
        self._n_atoms = 0

        self.message = w.HTML()
        self._build_material()
        self._build_model(checkpoint_dir, demo, choices)
        self._build_knobs()
        self._build_run()
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

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

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
        self.structure_info.value = f"<small>{_escape(structure_summary(self.atoms))}</small>"
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
        self.model_problem = w.HTML(_box(problem, "#1f77b4") if problem else "")
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
        self.model_info.value = f"<small>{_escape(card_summary(choice.card))}</small>"
        temps = card_temperatures(choice.card)
        if temps and hasattr(self, "temperature"):
            self.temperature.value = sorted(temps)[(len(temps) - 1) // 2]
        if hasattr(self, "n_steps"):
            self._on_steps(None)
        self._update_warnings()

    def select_default_model(self) -> None:
        """The checkpoint trained on the current material (else a multi-material one)."""
        if self.choices and self.atoms is not None:
            cards = [c.card for c in self.choices]
            self.model.value = default_card_index(cards, self.atoms.info.get("material"))

    def _run_temperatures(self) -> list[float]:
        if getattr(self, "mode", None) is not None and self.mode.value == ARRHENIUS:
            try:
                return parse_temperatures(self.temperatures.value)
            except ValueError:
                return []
        return [float(self.temperature.value)] if hasattr(self, "temperature") else []

    def _update_warnings(self, _change: Any = None) -> None:
        if not hasattr(self, "warnings") or self.choice is None:
            return
        temps = self._run_temperatures()
        self.warnings.value = _warning_html(model_warnings(self.choice.card, self.atoms, temps))
        material = self.atoms.info.get("material") if self.atoms is not None else None
        notes = [reference_note(material, t, self.reference_dir) for t in temps]
        self.reference_info.value = f"<small>{'<br>'.join(map(_escape, notes))}</small>"

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
            style=_STYLE, tooltip="0: Propagator only; 1: full trained Corrector",
        )  # fmt: skip
        self.flow_steps = w.IntSlider(
            value=10, min=1, max=50, description="flow steps", style=_STYLE,
            tooltip="Euler steps per flow integration",
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

    def knobs(self) -> dict[str, Any]:
        """The knob values as ``LiFlowSimulator.prepare`` names them (K, ints, floats)."""
        return {
            "temperature_K": float(self.temperature.value),
            "prior_scale_li": float(self.prior_scale_li.value),
            "prior_scale_frame": float(self.prior_scale_frame.value),
            "corrector_strength": float(self.corrector_strength.value),
            "flow_steps": int(self.flow_steps.value),
            "seed": int(self.seed.value),
            "device": self.device.value,
        }

    # -- run / stop --------------------------------------------------------------------
    def _build_run(self) -> None:
        self.run_button = w.Button(description="Run", button_style="success", icon="play")
        self.stop_button = w.Button(
            description="Stop", button_style="danger", icon="stop", disabled=True
        )
        self.progress = w.FloatProgress(value=0.0, min=0.0, max=1.0, description="progress")
        self.progress_info = w.HTML()
        self.run_button.on_click(lambda _: self.start())
        self.stop_button.on_click(lambda _: self.stop())
        self.run_box = w.HBox(
            [self.run_button, self.stop_button, self.progress, self.progress_info]
        )

    @property
    def running(self) -> bool:
        return self._driver is not None and self._driver.is_alive()

    def start(self) -> None:
        """What Run does: check the inputs, then drive a Rollout from a background thread."""
        if self.running:
            self.message.value = _box("A rollout is already running; press Stop first.", "#1f77b4")
            return
        choice = self.choice
        if choice is None or self.atoms is None:
            self._show_error(ExplorerError("choose a material and a model first"))
            return
        arrhenius = self.mode.value == ARRHENIUS
        try:
            temps = parse_temperatures(self.temperatures.value) if arrhenius else None
        except ValueError as exc:
            self._show_error(ExplorerError(str(exc)))
            return
        knobs = self.knobs()
        self._temperatures = temps or [knobs["temperature_K"]]
        self.message.value = ""
        self.timings = {"clicked": time.perf_counter()}
        self.run_button.disabled, self.stop_button.disabled = True, False
        self.progress.value, self.progress.bar_style = 0.0, "info"
        self.progress_info.value = "loading the model…"
        self._driver = threading.Thread(
            target=self._drive,
            args=(choice, self.atoms.copy(), knobs, temps),
            name="accelmd-liflow-tab",
            daemon=True,
        )
        self._driver.start()

    def stop(self) -> None:
        """What Stop does: the rollout ends after the step it is computing."""
        if self.rollout is not None:
            self.rollout.stop()
            self.progress_info.value = "stopping after the current step…"

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the run (and its last figure update) is over; True if it is."""
        if self._driver is None:
            return True
        self._driver.join(timeout)
        return not self._driver.is_alive()

    def _drive(
        self, choice: ModelChoice, atoms: Atoms, knobs: dict, temps: list[float] | None
    ) -> None:
        try:
            simulator, run_atoms, prepare_knobs = build_run(choice, atoms, knobs, temps)
            metadata = {
                "producer": "widgets.LiFlowTab",
                "model": choice.card.get("name"),
                "material": atoms.info.get("material"),
                "supercell": list(atoms.info.get("supercell", (1, 1, 1))),
                "temperature_K": knobs["temperature_K"] if not temps else list(temps),
            }
            rollout = Rollout(simulator, run_atoms, int(self.n_steps.value), prepare_knobs,
                              metadata=metadata)  # fmt: skip
        except Exception as exc:  # model loading / bad knobs: report, stay usable
            self._finish_failed(exc)
            return
        self._n_atoms = len(atoms)
        self._shown_frames = 0
        self.analysis = self._new_analysis(atoms)
        self.rollout = rollout
        self.viewer.show_structure(atoms)
        rollout.start()
        wait = FIRST_FRAME_POLL_S
        while True:
            finished = rollout.join(timeout=wait)
            started = time.perf_counter()
            self.refresh()
            cost = time.perf_counter() - started
            if finished:
                break
            # Poll fast until the first frame is on screen, then throttle.
            first_pending = self._shown_frames == 0
            wait = FIRST_FRAME_POLL_S if first_pending else max(self.poll_interval_s, 5.0 * cost)
        self._finish()

    def _new_analysis(self, atoms: Atoms) -> LiveAnalysis:
        temperature = self._display_temperature()
        return LiveAnalysis(
            temperature, atoms.info.get("material"), self.reference_dir, self.plane.value
        )

    def _display_temperature(self) -> float:
        """The temperature whose replica the MSD/RDF/PMF views show (Arrhenius: chosen)."""
        if len(self._temperatures) > 1 and self.replica.value in self._temperatures:
            return float(self.replica.value)
        return float(self._temperatures[-1])

    def refresh(self) -> None:
        """Pull new frames from the rollout into the progress bar, 3-D view and figures."""
        rollout = self.rollout
        if rollout is None:
            return
        with self._refresh_lock:
            progress = rollout.progress()
            self.progress.value = progress.fraction
            self.progress_info.value = _escape(progress_text(progress))
            new = rollout.frames_since(self._shown_frames)
            if not new:
                return
            if self._shown_frames == 0:
                self.timings.setdefault("first_frame", time.perf_counter())
            self._shown_frames += len(new)
            positions = [f.positions[: self._n_atoms] for f in new]
            if self._shown_frames == len(new):  # the first frames of this run
                self.viewer.set_frames(positions)
            else:
                self.viewer.append_frames(positions)
            self._update_figures(rollout)

    def _update_figures(self, rollout: Rollout) -> None:
        traj = rollout.trajectory()
        if len(self._temperatures) > 1:
            replicas = split_replicas(traj, self._temperatures)
            result = arrhenius_analysis(
                replicas, self._temperatures, self.analysis.material, self.reference_dir
            )
            figures.sync_figure(self.figures["arrhenius"], result.figure())
            traj = replicas[self._temperatures.index(self._display_temperature())]
        else:
            traj.metadata["temperature_K"] = self._temperatures[0]
        analysis = self.analysis
        analysis.update(traj, pmf=True)
        fresh = analysis.figures(log_msd=self.log_msd.value)
        for name, fig in fresh.items():
            if name == "traces" and not self.show_traces.value:
                continue
            figures.sync_figure(self.figures[name], fig)
        self.summary.value = f"<b>{_escape(analysis.summary())}</b>"
        if analysis.problems:
            self.message.value = _warning_html(analysis.problems)

    def _finish(self) -> None:
        rollout = self.rollout
        self.run_button.disabled, self.stop_button.disabled = False, True
        status = rollout.status if rollout is not None else FAILED
        self.progress.bar_style = {DONE: "success", CANCELLED: "warning"}.get(status, "danger")
        if status == FAILED and rollout is not None and rollout.error is not None:
            kept = rollout.n_frames
            self._show_error(
                rollout.error, suffix=f" ({kept} frame{'s' if kept != 1 else ''} kept)"
            )
        elif status == CANCELLED:
            self.message.value = _box(
                f"Stopped after {rollout.n_frames - 1} steps; the frames are kept.", "#1f77b4"
            )

    def _finish_failed(self, exc: BaseException) -> None:
        self.run_button.disabled, self.stop_button.disabled = False, True
        self.progress.bar_style = "danger"
        self.progress_info.value = "failed"
        self._show_error(exc)

    def _show_error(self, exc: BaseException, suffix: str = "") -> None:
        self.message.value = _error_html(_describe(exc) + suffix)

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
        self.analysis = self._new_analysis(self.rollout.atoms[: self._n_atoms])
        if self.rollout.n_frames:
            with self._refresh_lock:
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
            self.export_info.value = _error_html("nothing to save: run a rollout first")
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
            self.export_info.value = _error_html(_describe(exc))
            return []
        self.export_info.value = "saved " + ", ".join(str(p) for p in paths)
        return paths

    def save_figures(self) -> list[Path]:
        """Write every figure as self-contained HTML (and PNG when kaleido can)."""
        formats = ("html", "png") if self.figures_png.value else ("html",)
        written, problems = figures.write_figures(self.figures, self.figures_dir.value, formats)
        text = f"saved {len(written)} files in {self.figures_dir.value}"
        if problems:
            text += "<br>" + _escape("; ".join(problems))
        self.export_info.value = text
        return written
