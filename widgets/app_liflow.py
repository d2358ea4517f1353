"""The LiFlow tab of the Panel app: Panel controls wired to one session's Rollout.

The same capabilities as the Jupyter tab (:mod:`widgets.liflow_tab`), built from the
same parts: structures from :mod:`explorer.materials` (uploads through
:func:`widgets.helpers.atoms_from_upload`, the CLI's loader), model choices and
Arrhenius replicas from :mod:`widgets.runs`, analysis from :mod:`widgets.live`, figures
from :mod:`widgets.figures`. This module only creates Panel widgets and connects them.

Threads (``UI-NOTES.md``): Run starts a *driver* thread that loads the model, starts
the Rollout (its own worker thread), polls ``frames_since`` and computes the analysis
and fresh figures off the server's event loop. Changes to Panel objects are then
handed to the session's document with ``doc.add_next_tick_callback`` (``doc`` captured
when the session built the tab), which runs them on the server thread under the
document lock. Built outside a server (tests, scripts), there is no document and
updates are applied at once under a lock. The driver waits ``max(poll, 5 × cost)``
between updates so that the analysis takes at most ~1/6 of a core.
"""

from __future__ import annotations

import functools
import html
import io
import logging
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import panel as pn
import plotly.graph_objects as go
from ase import Atoms

from explorer.checkpoints import CHECKPOINT_DIR
from explorer.errors import ExplorerError
from explorer.materials import list_materials, load_material
from explorer.reference.dataset import REFERENCE_DIR
from explorer.session import CANCELLED, DONE, FAILED, Rollout
from widgets import figures
from widgets.app_sessions import SLOTS, RolloutSlots
from widgets.helpers import (
    MAX_UPLOAD_BYTES,
    UPLOAD_SUFFIXES,
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
from widgets.view3d import TrajectoryView3D

log = logging.getLogger("accelmd.app")

UPLOAD = "__upload__"
SINGLE, ARRHENIUS = "single temperature", "Arrhenius (several T)"
DEFAULT_MATERIAL = "LGPS"
#: Without a checkpoint temperature range: 800 K has a bundled LGPS reference MD, so the
#: first run already shows the dashed reference curves (900 K would have none).
DEFAULT_TEMPERATURE_K = 800.0
DEFAULT_STEPS = 50
FIRST_FRAME_POLL_S = 0.05  # s; poll fast until the first frame is on screen
FIGURES = ("msd", "rdf", "pmf", "arrhenius")
TRAJECTORY_FORMATS = {"H5MD (.h5)": ".h5", "extended XYZ (.extxyz)": ".extxyz"}


def _box(text: str, colour: str, css: str) -> str:
    return (
        f'<div class="{css}" style="border-left: 4px solid {colour}; padding: 4px 8px; '
        f'background: #fafafa">{text}</div>'
    )


def error_html(text: str) -> str:
    return _box(f"<b>Error</b>: {html.escape(text)}", "#d62728", "accelmd-error")


def info_html(text: str) -> str:
    return _box(html.escape(text), "#1f77b4", "accelmd-info")


def warning_html(lines: list[str]) -> str:
    if not lines:
        return ""
    items = "".join(f"<li>{html.escape(line)}</li>" for line in lines)
    return _box(f"<b>Warning</b><ul style='margin:0'>{items}</ul>", "#ff7f0e", "accelmd-warning")


def describe(exc: BaseException) -> str:
    """Ours as is; anything else with its type (a bug, also logged with its traceback)."""
    if isinstance(exc, ExplorerError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


class LiFlowApp:
    """Material, model, knobs, Run/Stop, live views and downloads for one browser session.

    Args:
        checkpoint_dir: where LiFlow checkpoint cards are listed.
        reference_dir: where reference MD files ``<material>_<T>K.h5`` are found.
        choices: model choices instead of listing ``checkpoint_dir`` (tests).
        slots: the server-wide cap on running rollouts.
        poll_interval_s: shortest time between figure updates, s.
        max_upload_bytes: upload size bound.

    Controls are attributes (``run_button``, ``temperature``, …) so tests can drive the
    tab from Python; ``layout`` is the Panel object.
    """

    def __init__(
        self,
        checkpoint_dir: Path = CHECKPOINT_DIR,
        reference_dir: Path = REFERENCE_DIR,
        choices: list[ModelChoice] | None = None,
        slots: RolloutSlots = SLOTS,
        poll_interval_s: float = 0.5,
        max_upload_bytes: int = MAX_UPLOAD_BYTES,
    ) -> None:
        self.reference_dir = Path(reference_dir)
        self.slots = slots
        self.poll_interval_s = poll_interval_s
        self.max_upload_bytes = max_upload_bytes
        self.rollout: Rollout | None = None
        self.analysis: LiveAnalysis | None = None
        self.timings: dict[str, float] = {}
        self._doc = pn.state.curdoc  # the session's document (None outside a server)
        self._apply_lock = threading.Lock()
        self._driver: threading.Thread | None = None
        self._closed = False
        self._temperatures: list[float] = []
        self._n_atoms = 0
        self._replica_offset = 0
        self._shown_frames = 0
        self._uploaded: Atoms | None = None
        self._base: Atoms | None = None
        self.atoms: Atoms | None = None

        self.message = pn.pane.HTML(
            "", css_classes=["accelmd-message"], sizing_mode="stretch_width"
        )
        self._build_material()
        self._build_model(checkpoint_dir, choices)
        self._build_knobs()
        self._build_run()
        self._build_views()
        self._build_downloads()
        self.layout = pn.Column(
            pn.Row(self.material_box, self.model_box, sizing_mode="stretch_width"),
            self.knob_box,
            self.run_box,
            self.message,
            self.summary,
            pn.Row(self.view3d.layout, self.views, sizing_mode="stretch_width"),
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

    def select_default_model(self) -> None:
        """The checkpoint trained on the current material (else a multi-material one)."""
        if self.atoms is not None:
            cards = [c.card for c in self.choices]
            self.model.value = default_card_index(cards, self.atoms.info.get("material"))

    def _on_model(self) -> None:
        self.model_info.object = f"<small>{html.escape(card_summary(self.choice.card))}</small>"
        temps = card_temperatures(self.choice.card)
        if temps:  # the middle training temperature: inside the range the model knows
            self.temperature.value = sorted(temps)[(len(temps) - 1) // 2]
        self._on_steps()
        self._update_warnings()

    def _run_temperatures(self) -> list[float]:
        if self.mode.value == ARRHENIUS:
            try:
                return parse_temperatures(self.temperatures.value)
            except ValueError:
                return []
        return [float(self.temperature.value)]

    def _update_warnings(self) -> None:
        if not hasattr(self, "mode"):
            return
        temps = self._run_temperatures()
        self.warnings.object = warning_html(model_warnings(self.choice.card, self.atoms, temps))
        material = self.atoms.info.get("material") if self.atoms is not None else None
        notes = [reference_note(material, t, self.reference_dir) for t in temps]
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
        self.run_button = pn.widgets.Button(
            label="▶ Run", color="success", width=100, css_classes=["accelmd-run"]
        )
        self.stop_button = pn.widgets.Button(
            label="■ Stop", color="danger", width=100, disabled=True,
            css_classes=["accelmd-stop"],
        )  # fmt: skip
        self.progress = pn.indicators.Progress(value=0, max=1000, width=240, bar_color="info")
        self.progress_info = pn.pane.Str("", css_classes=["accelmd-progress"])
        self.run_button.on_click(lambda _: self.start())
        self.stop_button.on_click(lambda _: self.stop())
        self.run_box = pn.Row(self.run_button, self.stop_button, self.progress, self.progress_info)

    @property
    def running(self) -> bool:
        return self._driver is not None and self._driver.is_alive()

    def start(self) -> None:
        """What Run does: check the inputs, take a server slot, drive a Rollout."""
        try:
            self._start()
        except Exception as exc:  # never a traceback in the page
            log.exception("Run failed before the rollout started")
            self._show_error(exc)

    def _start(self) -> None:
        if self.running:
            self.message.object = info_html("A rollout is already running; press Stop first.")
            return
        if self.atoms is None:
            self._show_error(ExplorerError("choose a material first"))
            return
        arrhenius = self.mode.value == ARRHENIUS
        try:
            temps = parse_temperatures(self.temperatures.value) if arrhenius else None
        except ValueError as exc:
            self._show_error(ExplorerError(str(exc)))
            return
        if not self.slots.try_acquire():
            log.warning("run refused: %d rollouts running (cap)", self.slots.limit)
            self.message.object = info_html(self.slots.busy_message())
            return
        knobs = self.knobs()
        self._temperatures = temps or [knobs["temperature_K"]]
        self.timings = {"clicked": time.perf_counter()}
        self.message.object = ""
        self.run_button.disabled, self.stop_button.disabled = True, False
        self.progress.param.update(value=0, bar_color="info")
        self.progress_info.object = "loading the model…"
        self._driver = threading.Thread(
            target=self._drive,
            args=(self.choice, self.atoms.copy(), knobs, temps, int(self.n_steps.value)),
            name="accelmd-app-driver",
            daemon=True,
        )
        self._driver.start()

    def stop(self) -> None:
        """What Stop does: the rollout ends after the step it is computing."""
        if self.rollout is not None and self.running:
            self.rollout.stop()
            self.progress_info.object = "stopping after the current step…"

    def close(self) -> None:
        """The browser tab was closed: stop the rollout; no more page updates."""
        self._closed = True
        log.info("session closed: stopping its rollout")
        if self.rollout is not None:
            self.rollout.stop()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the run and its last update are over; True if they are."""
        if self._driver is None:
            return True
        self._driver.join(timeout)
        return not self._driver.is_alive()

    def _drive(
        self,
        choice: ModelChoice,
        atoms: Atoms,
        knobs: dict[str, Any],
        temps: list[float] | None,
        n_steps: int,
    ) -> None:
        try:
            try:
                simulator, run_atoms, prepare_knobs = build_run(choice, atoms, knobs, temps)
                metadata = {
                    "producer": "widgets.app",
                    "model": choice.card.get("name"),
                    "material": atoms.info.get("material"),
                    "supercell": list(atoms.info.get("supercell", (1, 1, 1))),
                    "temperature_K": knobs["temperature_K"] if not temps else list(temps),
                }
                rollout = Rollout(simulator, run_atoms, n_steps, prepare_knobs, metadata=metadata)
            except Exception as exc:  # model loading / bad knobs: report, stay usable
                log.warning("rollout not started: %s", describe(exc))
                self._ui(functools.partial(self._finish_failed, exc))
                return
            self._n_atoms = len(atoms)
            display = self._display_temperature()
            self._replica_offset = self._temperatures.index(display) * len(atoms)
            self._shown_frames = 0
            self.analysis = None
            self.rollout = rollout
            self.view3d.start_run(atoms.numbers, atoms.cell[:])
            rollout.start()
            log.info("rollout started: %s", metadata)
            wait = FIRST_FRAME_POLL_S
            while True:
                finished = rollout.join(timeout=wait)
                started = time.perf_counter()
                self.refresh()
                cost = time.perf_counter() - started
                if finished or self._closed:
                    if self._closed:
                        rollout.join()
                    break
                first_pending = self._shown_frames == 0
                wait = FIRST_FRAME_POLL_S if first_pending else max(self.poll_interval_s, 5 * cost)
            log.info("rollout %s after %d frames", rollout.status, rollout.n_frames)
            self._ui(self._finish)
        except Exception as exc:  # a bug in the wiring: log it, tell the page briefly
            log.exception("driver failed")
            self._ui(functools.partial(self._finish_failed, exc))
        finally:
            self.slots.release()

    def _display_temperature(self) -> float:
        """The temperature whose replica the views show (Arrhenius: the chosen one)."""
        if len(self._temperatures) > 1 and self.replica.value in self._temperatures:
            return float(self.replica.value)
        return float(self._temperatures[-1])

    def refresh(self) -> None:
        """Pull new frames: the 3-D view and progress at once, then analysis and figures."""
        rollout = self.rollout
        if rollout is None or self._closed:
            return
        progress = rollout.progress()
        new = rollout.frames_since(self._shown_frames)
        if new:
            part = slice(self._replica_offset, self._replica_offset + self._n_atoms)
            self.view3d.add_frames([f.positions[part] for f in new], [f.time_ps for f in new])
            first = self._shown_frames == 0
            self._shown_frames += len(new)
            if first:  # show the first frame before the (slower) analysis
                self.timings.setdefault("first_frame", time.perf_counter())
                self._ui(lambda: self._apply(progress, {}, None))
        fresh, summary = ({}, None)
        if new or self.analysis is None:
            fresh, summary = self._analyse(rollout)
        self._ui(lambda: self._apply(progress, fresh, summary))

    def _analyse(self, rollout: Rollout) -> tuple[dict[str, go.Figure], str | None]:
        """Fresh figures and the D_Li line of the frames so far (driver thread)."""
        if rollout.n_frames == 0:
            return {}, None
        if self.analysis is None:  # loads the reference MD (cached per server)
            self.analysis = LiveAnalysis(
                self._display_temperature(),
                self.atoms.info.get("material") if self.atoms is not None else None,
                self.reference_dir,
                self.plane.value,
            )
        traj = rollout.trajectory()
        fresh: dict[str, go.Figure] = {}
        if len(self._temperatures) > 1:
            replicas = split_replicas(traj, self._temperatures)
            result = arrhenius_analysis(
                replicas, self._temperatures, self.analysis.material, self.reference_dir
            )
            fresh["arrhenius"] = result.figure()
            traj = replicas[self._temperatures.index(self._display_temperature())]
        else:
            traj.metadata["temperature_K"] = self._temperatures[0]
        self.analysis.update(traj, pmf=True)
        built = self.analysis.figures(log_msd=self.log_msd.value)
        fresh.update({name: built[name] for name in ("msd", "rdf", "pmf")})
        return fresh, self.analysis.summary()

    def _apply(self, progress: Any, fresh: dict[str, go.Figure], summary: str | None) -> None:
        """Copy progress, the newest 3-D frame and fresh figures into the page."""
        self.progress.value = int(1000 * progress.fraction)
        self.progress_info.object = progress_text(progress)
        self.view3d.show()
        for name, fig in fresh.items():
            figures.sync_figure(self.figures[name], fig)
            self.panes[name].param.trigger("object")
        if summary is not None:
            self.summary.object = f"<b>{html.escape(summary)}</b>"
        if self.analysis is not None and self.analysis.problems:
            self.message.object = warning_html(self.analysis.problems)
        if fresh and "figures" not in self.timings:
            self.timings["figures"] = time.perf_counter()

    def _finish(self) -> None:
        rollout = self.rollout
        self.run_button.disabled, self.stop_button.disabled = False, True
        status = rollout.status if rollout is not None else FAILED
        colour = {DONE: "success", CANCELLED: "warning"}.get(status, "danger")
        self.progress.bar_color = colour
        if rollout is not None:
            self.progress_info.object = progress_text(rollout.progress())
        if status == FAILED and rollout is not None and rollout.error is not None:
            kept = rollout.n_frames
            log.warning("rollout failed: %s", describe(rollout.error))
            self._show_error(rollout.error, f" ({kept} frame{'s' if kept != 1 else ''} kept)")
        elif status == CANCELLED and rollout is not None:
            self.message.object = info_html(
                f"Stopped after {max(0, rollout.n_frames - 1)} steps; the frames are kept."
            )
        self._update_downloads()

    def _finish_failed(self, exc: BaseException) -> None:
        self.run_button.disabled, self.stop_button.disabled = False, True
        self.progress.bar_color = "danger"
        self.progress_info.object = "failed"
        self._show_error(exc)

    def _show_error(self, exc: BaseException, suffix: str = "") -> None:
        self.message.object = error_html(describe(exc) + suffix)

    def _ui(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` where Panel objects may change: the session's thread, or here."""
        if self._closed:
            return
        doc = self._doc
        if doc is not None and doc.session_context is not None:
            try:
                doc.add_next_tick_callback(fn)
            except Exception:  # the session ended between the check and the call
                log.info("update dropped: the session is gone")
            return
        with self._apply_lock:
            fn()

    # -- views -------------------------------------------------------------------------
    def _build_views(self) -> None:
        self.view3d = TrajectoryView3D()
        self.figures: dict[str, go.Figure] = {
            "msd": figures.msd_figure(None),
            "rdf": figures.rdf_figure(None),
            "pmf": figures.pmf_figure(None),
            "arrhenius": figures.arrhenius_figure([]),
        }
        self.panes = {
            name: pn.pane.Plotly(
                fig, height=420, sizing_mode="stretch_width", link_figure=False,
                config={"displaylogo": False}, css_classes=[f"accelmd-{name}"],
            )
            for name, fig in self.figures.items()
        }  # fmt: skip
        self.summary = pn.pane.HTML("", css_classes=["accelmd-summary"])
        self.log_msd = pn.widgets.Checkbox(label="log-log axes", value=False)
        self.log_msd.param.watch(self._on_log, "value")
        self.plane = pn.widgets.Select(label="plane", options=["ab", "bc", "ac"], value="ab")
        self.plane.param.watch(lambda _: self._reanalyse(), "value")
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

    def _on_log(self, event: Any) -> None:
        fig = go.Figure(self.figures["msd"])
        figures.set_log_axes(fig, event.new)
        self._replace_figure("msd", fig)
        self._reanalyse()

    def _replace_figure(self, name: str, fig: go.Figure) -> None:
        """Show a new figure object: how layout changes (axis type, axis titles) reach the
        browser. The pane compares layouts against dicts that share nested objects with
        the figure, so an in-place edit of e.g. ``layout.xaxis.type`` can go unnoticed."""
        self.figures[name] = fig
        self.panes[name].object = fig

    def _on_temperatures_text(self) -> None:
        try:
            temps = parse_temperatures(self.temperatures.value)
        except ValueError:
            return
        self.replica.options = {f"{t:g}": t for t in temps}
        self.replica.value = temps[-1]

    def _reanalyse(self, new_analysis: bool = False) -> None:
        """Redo the figures after the plane, log axes or shown replica changed.

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
            fresh, summary = self._analyse(rollout)
        except ExplorerError as exc:
            self._show_error(exc)
            return
        for name, fig in fresh.items():
            self._replace_figure(name, fig)
        self._apply(rollout.progress(), {}, summary)

    # -- downloads ---------------------------------------------------------------------
    def _build_downloads(self) -> None:
        self.trajectory_format = pn.widgets.Select(
            label="trajectory format", options=TRAJECTORY_FORMATS, value=".h5", width=180
        )
        self.trajectory_download = pn.widgets.FileDownload(
            callback=self._trajectory_file, filename="liflow_rollout.h5",
            label="Download trajectory", color="primary", disabled=True, width=220,
            css_classes=["accelmd-download-trajectory"],
        )  # fmt: skip
        self.figures_download = pn.widgets.FileDownload(
            callback=self._figures_file, filename="liflow_figures.zip",
            label="Download figures (HTML, zip)", color="primary", disabled=True, width=260,
            css_classes=["accelmd-download-figures"],
        )  # fmt: skip
        self.trajectory_format.param.watch(lambda _: self._update_downloads(), "value")
        self.download_box = pn.Row(
            self.trajectory_format, self.trajectory_download, self.figures_download
        )

    def _update_downloads(self) -> None:
        has_frames = self.rollout is not None and self.rollout.n_frames > 0
        several = len(self._temperatures) > 1
        suffix = ".zip" if several else self.trajectory_format.value
        self.trajectory_download.param.update(
            filename=f"liflow_rollout{suffix}", disabled=not has_frames
        )
        self.figures_download.disabled = not has_frames

    def trajectory_bytes(self) -> bytes:
        """The frames so far as H5MD/extxyz bytes (a zip, one file per T, in Arrhenius mode)."""
        if self.rollout is None or self.rollout.n_frames == 0:
            raise ExplorerError("nothing to download: run a rollout first")
        traj, suffix = self.rollout.trajectory(), self.trajectory_format.value
        with tempfile.TemporaryDirectory(prefix="accelmd-download-") as tmp:
            if len(self._temperatures) > 1:
                parts = split_replicas(traj, self._temperatures)
                buffer = io.BytesIO()
                with zipfile.ZipFile(buffer, "w") as archive:
                    for part, t in zip(parts, self._temperatures, strict=True):
                        path = part.save(Path(tmp) / f"liflow_rollout_{t:g}K{suffix}")
                        archive.write(path, path.name)
                return buffer.getvalue()
            return traj.save(Path(tmp) / f"liflow_rollout{suffix}").read_bytes()

    def figures_bytes(self) -> bytes:
        """Every figure as self-contained HTML (plotly.js inside), zipped."""
        with tempfile.TemporaryDirectory(prefix="accelmd-figures-") as tmp:
            written, problems = figures.write_figures(self.figures, tmp, ("html",))
            if problems:
                raise ExplorerError("; ".join(problems))
            buffer = io.BytesIO()
            with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
                for path in written:
                    archive.write(path, path.name)
            return buffer.getvalue()

    def _trajectory_file(self) -> io.BytesIO:
        return self._download(self.trajectory_bytes)

    def _figures_file(self) -> io.BytesIO:
        return self._download(self.figures_bytes)

    def _download(self, make: Callable[[], bytes]) -> io.BytesIO:
        try:
            return io.BytesIO(make())
        except (ExplorerError, OSError) as exc:
            log.warning("download failed: %s", exc)
            self._show_error(exc)
            return io.BytesIO(b"")
