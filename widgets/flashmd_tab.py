"""The FlashMD tab of the Jupyter explorer, and the run/stop machinery shared with the CG tab.

Same pattern as :mod:`widgets.liflow_tab`: ipywidgets controls map to the knobs of
:class:`~explorer.flashmd.simulate.FlashMDSimulator` exactly as ``accelmd rollout flashmd``
maps its options (:mod:`explorer.cli_flashmd`), a driver thread builds and polls a
:class:`~explorer.session.Rollout` through ``frames_since``, and figures come from the pure
builders of :mod:`widgets.figures`.

Start structure: by default the first frame (positions and momenta) of the system's
held-out test trajectory (``sample_data/flashmd/<system>_test*.h5``), which is what
``accelmd eval flashmd`` starts from and makes the RDF/MSD comparison with that trajectory
like for like; "fresh" builds the structure as the CLI does (argon: melted and cooled,
a few seconds; Al(110): the ideal slab) and draws Maxwell–Boltzmann momenta at the set
temperature.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ipywidgets as w
import plotly.graph_objects as go

from explorer.checkpoints import CHECKPOINT_DIR, card_headline
from explorer.errors import ExplorerError
from explorer.session import CANCELLED, DONE, FAILED, Frame, Progress, Rollout
from explorer.trajectory import Trajectory
from widgets import figures
from widgets.family_runs import (  # noqa: F401  (re-exported: the tab's public names)
    DEFAULT_TEMPERATURES_K,
    FLASHMD_SYSTEMS,
    FRESH,
    SYSTEM_LABELS,
    TEST_FRAME,
    THERMOSTAT_OPTIONS,
    FlashMDReference,
    _card_system,
    _stride,
    build_flashmd_rollout,
    flashmd_card_defaults,
    flashmd_cards,
    flashmd_checkpoint_options,
    flashmd_figures,
    flashmd_reference,
    flashmd_start,
    flashmd_steps_text,
    flashmd_summary,
    flashmd_target_K,
    no_flashmd_checkpoint_text,
    reference_path,
)
from widgets.helpers import progress_text
from widgets.liflow_tab import _box, _describe, _error_html, _escape
from widgets.viewer import TrajectoryViewer

FIRST_FRAME_POLL_S = 0.05
_STYLE = {"description_width": "150px"}
_WIDE = w.Layout(width="460px")


class RolloutTab:
    """Run/Stop, progress and the driver thread of a tab that shows one Rollout.

    Subclasses build their controls, then implement :meth:`_make_builder` (checks the
    inputs in the kernel thread and returns a function that builds the Rollout in the driver
    thread, or None after showing why not), :meth:`_on_new_run` (a Rollout is about to
    start) and :meth:`_on_frames` (new frames arrived; update views).
    """

    poll_interval_s: float

    def _build_run(self) -> None:
        self.rollout: Rollout | None = None
        self._driver: threading.Thread | None = None
        self._refresh_lock = threading.Lock()
        self._shown_frames = 0
        self.timings: dict[str, float] = {}
        self.message = w.HTML()
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

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    @property
    def running(self) -> bool:
        return self._driver is not None and self._driver.is_alive()

    def start(self) -> None:
        """What Run does: check the inputs, then drive a Rollout from a background thread."""
        if self.running:
            self.message.value = _box("A rollout is already running; press Stop first.", "#1f77b4")
            return
        try:
            builder = self._make_builder()
        except ExplorerError as exc:
            self._show_error(exc)
            return
        self.message.value = ""
        self.timings = {"clicked": time.perf_counter()}
        self.run_button.disabled, self.stop_button.disabled = True, False
        self.progress.value, self.progress.bar_style = 0.0, "info"
        self.progress_info.value = "loading the model…"
        self._driver = threading.Thread(
            target=self._drive, args=(builder,), name=f"accelmd-{self._name}-tab", daemon=True
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

    def _drive(self, builder: Callable[[], Rollout]) -> None:
        try:
            rollout = builder()
            self._shown_frames = 0
            self._on_new_run(rollout)
        except Exception as exc:  # model loading / bad inputs: report, stay usable
            self._finish_failed(exc)
            return
        self.rollout = rollout
        rollout.start()
        wait = FIRST_FRAME_POLL_S
        while True:
            finished = rollout.join(timeout=wait)
            started = time.perf_counter()
            try:
                self.refresh()
            except Exception as exc:  # a view failed: say so, let the rollout go on
                self._show_error(exc, prefix="updating the views: ")
            cost = time.perf_counter() - started
            if finished:
                break
            first_pending = self._shown_frames == 0
            wait = FIRST_FRAME_POLL_S if first_pending else max(self.poll_interval_s, 5.0 * cost)
        self._finish()

    def refresh(self) -> None:
        """Pull new frames from the rollout into the progress bar and the views."""
        rollout = self.rollout
        if rollout is None:
            return
        with self._refresh_lock:
            progress = rollout.progress()
            self.progress.value = progress.fraction
            self.progress_info.value = _escape(self._progress_text(progress))
            new = rollout.frames_since(self._shown_frames)
            if not new:
                return
            if self._shown_frames == 0:
                self.timings.setdefault("first_frame", time.perf_counter())
            first = self._shown_frames == 0
            self._shown_frames += len(new)
            self._on_frames(rollout, new, first)

    def _progress_text(self, progress: Progress) -> str:
        return progress_text(progress)

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

    def _show_error(self, exc: BaseException, suffix: str = "", prefix: str = "") -> None:
        self.message.value = _error_html(prefix + _describe(exc) + suffix)

    # -- to implement ----------------------------------------------------------------
    _name = "rollout"

    def _make_builder(self) -> Callable[[], Rollout]:
        raise NotImplementedError

    def _on_new_run(self, rollout: Rollout) -> None:
        raise NotImplementedError

    def _on_frames(self, rollout: Rollout, new: list[Frame], first: bool) -> None:
        raise NotImplementedError


class FlashMDTab(RolloutTab):
    """System, checkpoint (stride), thermostat and filters, Run/Stop, live views.

    Args:
        checkpoint_dir: where FlashMD checkpoints (``*.json`` cards) are listed.
        data_dir: where the reference trajectories ``<system>_test*.h5`` are found.
        poll_interval_s: shortest time between figure updates, s.

    ``widget`` is the ipywidgets tree; the controls are attributes (``system``,
    ``checkpoint``, ``thermostat``, ``temperature``, ``energy_conservation``,
    ``random_rotation``, ``n_steps``, ``seed``, ``run_button``, ``stop_button``) and the
    figures are in ``figures`` (``temperature``, ``energy``, ``rdf``, ``msd``).
    """

    _name = "flashmd"

    def __init__(
        self,
        checkpoint_dir: Path = CHECKPOINT_DIR,
        data_dir: Path | None = None,
        poll_interval_s: float = 1.0,
    ) -> None:
        self.checkpoint_dir = Path(checkpoint_dir)
        self.data_dir = Path(data_dir) if data_dir else None
        self.poll_interval_s = poll_interval_s
        self.cards = flashmd_cards(self.checkpoint_dir)
        self.reference: FlashMDReference | None = None
        self._n_atoms = 0
        self._target_K: float | None = None
        self._run_system = "argon"
        self.overlap: dict | None = None
        self._build_run()
        self._build_controls()
        self._build_views()
        self.widget = w.VBox(
            [
                w.HTML("<h3 style='margin:4px 0'>FlashMD: one model call per long stride</h3>"),
                self.control_box,
                self.run_box,
                self.message,
                self.summary,
                self.views,
            ]
        )
        self._on_system(None)

    # -- controls --------------------------------------------------------------------
    def _build_controls(self) -> None:
        self.system = w.Dropdown(
            options=[(SYSTEM_LABELS[s], s) for s in FLASHMD_SYSTEMS], value="argon",
            description="system", style=_STYLE, layout=_WIDE,
        )  # fmt: skip
        self.start_from = w.Dropdown(
            options=[("test trajectory, frame 0 (with momenta)", TEST_FRAME),
                     ("fresh structure, momenta at T", FRESH)],
            value=TEST_FRAME, description="start from", style=_STYLE, layout=_WIDE,
        )  # fmt: skip
        self.start_info = w.HTML(
            "<small>test frame: equilibrated positions and momenta (the temperature sets the "
            "thermostat target only); fresh: momenta drawn at the temperature</small>"
        )
        self.checkpoint = w.Dropdown(
            options=[], description="checkpoint", style=_STYLE, layout=_WIDE
        )
        self.card_info = w.HTML()
        self.thermostat = w.Dropdown(
            options=THERMOSTAT_OPTIONS, value="langevin", description="thermostat", style=_STYLE
        )
        self.temperature = w.BoundedFloatText(
            value=DEFAULT_TEMPERATURES_K["argon"], min=1, max=5000, step=10,
            description="temperature (K)", style=_STYLE,
        )  # fmt: skip
        self.time_constant = w.BoundedFloatText(
            value=100.0, min=1, max=100000, step=10, description="thermostat τ (fs)", style=_STYLE
        )
        self.energy_conservation = w.Checkbox(
            value=True, description="energy-conservation filter (App C)", indent=False
        )
        self.random_rotation = w.Checkbox(
            value=False, description="random-rotation filter (App A.4)", indent=False
        )
        self.n_steps = w.BoundedIntText(
            value=50, min=1, max=100000, description="strides", style=_STYLE
        )
        self.steps_info = w.HTML()
        self.seed = w.IntText(value=0, description="seed", style=_STYLE)
        self.device = w.Dropdown(
            options=["cpu", "auto", "cuda"], value="cpu", description="device", style=_STYLE
        )
        self.system.observe(self._on_system, names="value")
        self.checkpoint.observe(self._on_checkpoint, names="value")
        self.n_steps.observe(self._on_steps, names="value")
        self.control_box = w.HBox(
            [
                w.VBox(
                    [
                        self.system,
                        self.start_from,
                        self.start_info,
                        self.checkpoint,
                        self.card_info,
                    ]
                ),
                w.VBox(
                    [
                        self.thermostat,
                        self.temperature,
                        self.time_constant,
                        self.energy_conservation,
                        self.random_rotation,
                    ]
                ),
                w.VBox([w.HBox([self.n_steps, self.steps_info]), self.seed, self.device]),
            ]
        )

    @property
    def card(self) -> dict[str, Any] | None:
        index = self.checkpoint.value
        return None if index is None else self.cards[index]

    def _on_system(self, _change: Any) -> None:
        system = self.system.value
        options = flashmd_checkpoint_options(self.cards, system)
        self.checkpoint.options = options
        self.checkpoint.value = options[-1][1] if options else None
        if not options:
            self.card_info.value = _box(
                no_flashmd_checkpoint_text(system, self.checkpoint_dir), "#1f77b4"
            )
        self.temperature.value = DEFAULT_TEMPERATURES_K.get(system, 300.0)
        self._on_checkpoint(None)

    def _on_checkpoint(self, _change: Any) -> None:
        card = self.card
        if card is None:
            self._on_steps(None)
            return
        self.card_info.value = f"<small>{_escape(card_headline(card))}</small>"
        defaults = flashmd_card_defaults(card)
        self.energy_conservation.value = defaults["energy_conservation"]
        self.random_rotation.value = defaults["random_rotation"]
        if "thermostat" in defaults:
            self.thermostat.value = defaults["thermostat"]
        if "temperature_K" in defaults:
            self.temperature.value = defaults["temperature_K"]
        self._on_steps(None)

    def _on_steps(self, _change: Any) -> None:
        self.steps_info.value = flashmd_steps_text(self.n_steps.value, self.card)

    def knobs(self) -> dict[str, Any]:
        """The knob values as ``FlashMDSimulator.prepare`` names them."""
        return {
            "temperature_K": float(self.temperature.value),
            "thermostat": self.thermostat.value,
            "time_constant_fs": float(self.time_constant.value),
            "energy_conservation": bool(self.energy_conservation.value),
            "random_rotation": bool(self.random_rotation.value),
            "seed": int(self.seed.value),
        }

    # -- run -------------------------------------------------------------------------
    def _make_builder(self) -> Callable[[], Rollout]:
        card = self.card
        if card is None:
            raise ExplorerError(f"no FlashMD checkpoint for {self.system.value}")
        system, start, device = self.system.value, self.start_from.value, self.device.value
        knobs, n_steps = self.knobs(), int(self.n_steps.value)
        name = card.get("name")
        self._run_system = system

        def build() -> Rollout:
            return build_flashmd_rollout(
                name, system, start, device, knobs, n_steps, self.checkpoint_dir, self.data_dir
            )

        return build

    def _on_new_run(self, rollout: Rollout) -> None:
        self._n_atoms = len(rollout.atoms)
        self._target_K = flashmd_target_K(rollout.knobs)
        try:
            self.reference = flashmd_reference(self._run_system, self.data_dir)
        except (ExplorerError, OSError) as exc:  # a broken reference must not stop a run
            self.reference = None
            self.message.value = _box(f"reference trajectory unreadable: {exc}", "#ff7f0e")
        self.viewer.show_structure(rollout.atoms)

    def _on_frames(self, rollout: Rollout, new: list[Frame], first: bool) -> None:
        positions = [f.positions for f in new]
        if first:
            self.viewer.set_frames(positions)
        else:
            self.viewer.append_frames(positions)
        traj = rollout.trajectory()
        fresh = self.build_figures(traj)
        for name, fig in fresh.items():
            figures.sync_figure(self.figures[name], fig)
        self.summary.value = f"<b>{_escape(self.summary_text(traj))}</b>"

    def build_figures(self, traj: Trajectory) -> dict[str, go.Figure]:
        """Fresh temperature, energy, RDF and MSD figures of a FlashMD trajectory."""
        out, self.overlap = flashmd_figures(traj, self.reference, self._target_K)
        return out

    def summary_text(self, traj: Trajectory) -> str:
        """Mean temperature, total-energy drift and the RDF overlap, one line."""
        return flashmd_summary(traj, self._target_K, self.overlap)

    # -- views -----------------------------------------------------------------------
    def _build_views(self) -> None:
        self.viewer = TrajectoryViewer()
        self.figures: dict[str, go.FigureWidget] = {
            "temperature": go.FigureWidget(figures.temperature_figure(None, None)),
            "energy": go.FigureWidget(figures.energy_figure(None, None)),
            "rdf": go.FigureWidget(figures.rdf_figure(None)),
            "msd": go.FigureWidget(figures.msd_figure(None)),
        }
        self.summary = w.HTML()
        self.views = w.Tab(
            children=[
                w.VBox([self.figures["temperature"], self.figures["energy"]]),
                self.figures["rdf"],
                self.figures["msd"],
                self.viewer.widget,
            ]
        )
        for i, title in enumerate(("T and energy", "RDF", "MSD", "3-D")):
            self.views.set_title(i, title)
