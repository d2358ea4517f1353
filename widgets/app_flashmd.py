"""The FlashMD tab of the Panel app, and the Run/Stop machinery shared with the CG tab.

The same knobs and live views as the Jupyter tab (:mod:`widgets.flashmd_tab`), built
from the same UI-free parts (:mod:`widgets.family_runs`: checkpoint lists, card
defaults, the Rollout builder, the reference trajectory, figures and summary line).
This module only creates Panel widgets and connects them.

Threads as in the LiFlow tab (:mod:`widgets.app_liflow`, ``UI-NOTES.md``): Run takes a
server slot (:data:`widgets.app_sessions.SLOTS`) and starts a *driver* thread that
builds and starts the Rollout, polls ``frames_since`` and builds fresh figures off the
event loop; changes to Panel objects go through ``doc.add_next_tick_callback`` (applied
at once under a lock outside a server). Figures are swapped whole (``link_figure=False``
panes). Closing the browser tab stops the rollout (:meth:`PanelRolloutTab.close`).
"""

from __future__ import annotations

import functools
import html
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import panel as pn
import plotly.graph_objects as go

from explorer.checkpoints import CHECKPOINT_DIR, card_headline
from explorer.errors import ExplorerError
from explorer.session import CANCELLED, DONE, FAILED, Frame, Progress, Rollout
from widgets import figures
from widgets.app_liflow import _box, describe, error_html, info_html, warning_html
from widgets.app_sessions import SLOTS, RolloutSlots
from widgets.family_runs import (
    DEFAULT_TEMPERATURES_K,
    FLASHMD_SYSTEMS,
    FRESH,
    SYSTEM_LABELS,
    TEST_FRAME,
    THERMOSTAT_OPTIONS,
    FlashMDReference,
    build_flashmd_rollout,
    flashmd_card_defaults,
    flashmd_cards,
    flashmd_checkpoint_options,
    flashmd_figures,
    flashmd_reference,
    flashmd_steps_text,
    flashmd_summary,
    flashmd_target_K,
    no_flashmd_checkpoint_text,
)
from widgets.helpers import progress_text
from widgets.view3d import TrajectoryView3D

log = logging.getLogger("accelmd.app")

FIRST_FRAME_POLL_S = 0.05  # s; poll fast until the first frame is on screen


def plotly_pane(fig: go.Figure, name: str, height: int = 400) -> pn.pane.Plotly:
    return pn.pane.Plotly(
        fig, height=height, sizing_mode="stretch_width", link_figure=False,
        config={"displaylogo": False}, css_classes=[f"accelmd-{name}"],
    )  # fmt: skip


class PanelRolloutTab:
    """Run/Stop, progress, messages and the driver thread of a Panel tab with one Rollout.

    Subclasses build their controls and call :meth:`_build_run` first, then implement
    :meth:`_make_builder` (checks the inputs on the session's thread; returns a function
    that builds the Rollout in the driver thread; raises :class:`ExplorerError` to refuse),
    :meth:`_on_new_run` (driver thread, before the rollout starts), :meth:`_compute`
    (driver thread: new frames → whatever :meth:`_apply_views` shows) and
    :meth:`_apply_views` (session thread).
    """

    name = "rollout"

    def _build_run(self, slots: RolloutSlots, poll_interval_s: float) -> None:
        self.slots = slots
        self.poll_interval_s = poll_interval_s
        self.rollout: Rollout | None = None
        self.timings: dict[str, float] = {}
        self._doc = pn.state.curdoc  # the session's document (None outside a server)
        self._apply_lock = threading.Lock()
        self._driver: threading.Thread | None = None
        self._closed = False
        self._shown_frames = 0
        self.message = pn.pane.HTML(
            "", css_classes=[f"accelmd-{self.name}-message"], sizing_mode="stretch_width"
        )
        self.summary = pn.pane.HTML("", css_classes=[f"accelmd-{self.name}-summary"])
        self.run_button = pn.widgets.Button(
            label="▶ Run", color="success", width=100, css_classes=[f"accelmd-{self.name}-run"]
        )
        self.stop_button = pn.widgets.Button(
            label="■ Stop", color="danger", width=100, disabled=True,
            css_classes=[f"accelmd-{self.name}-stop"],
        )  # fmt: skip
        self.progress = pn.indicators.Progress(value=0, max=1000, width=240, bar_color="info")
        self.progress_info = pn.pane.Str("", css_classes=[f"accelmd-{self.name}-progress"])
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
            log.exception("%s: Run failed before the rollout started", self.name)
            self._show_error(exc)

    def _start(self) -> None:
        if self.running:
            self.message.object = info_html("A rollout is already running; press Stop first.")
            return
        try:
            builder = self._make_builder()
        except ExplorerError as exc:
            self._show_error(exc)
            return
        if not self.slots.try_acquire():
            log.warning("run refused: %d rollouts running (cap)", self.slots.limit)
            self.message.object = info_html(self.slots.busy_message())
            return
        self.timings = {"clicked": time.perf_counter()}
        self.message.object = ""
        self.run_button.disabled, self.stop_button.disabled = True, False
        self.progress.param.update(value=0, bar_color="info")
        self.progress_info.object = "loading the model…"
        self._driver = threading.Thread(
            target=self._drive, args=(builder,), name=f"accelmd-app-{self.name}", daemon=True
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
        if self.rollout is not None:
            log.info("session closed: stopping its %s rollout", self.name)
            self.rollout.stop()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the run and its last update are over; True if they are."""
        if self._driver is None:
            return True
        self._driver.join(timeout)
        return not self._driver.is_alive()

    def _drive(self, builder: Callable[[], Rollout]) -> None:
        try:
            try:
                rollout = builder()
                self._shown_frames = 0
                self._on_new_run(rollout)
            except Exception as exc:  # model loading / bad inputs: report, stay usable
                log.warning("%s rollout not started: %s", self.name, describe(exc))
                self._ui(functools.partial(self._finish_failed, exc))
                return
            if self._closed:
                return
            self.rollout = rollout
            rollout.start()
            log.info("%s rollout started: %s", self.name, rollout.metadata)
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
            log.info("%s rollout %s after %d frames", self.name, rollout.status, rollout.n_frames)
            self._ui(self._finish)
        except Exception as exc:  # a bug in the wiring: log it, tell the page briefly
            log.exception("%s driver failed", self.name)
            self._ui(functools.partial(self._finish_failed, exc))
        finally:
            self.slots.release()

    def refresh(self) -> None:
        """Pull new frames: progress, then fresh views computed here (driver thread)."""
        rollout = self.rollout
        if rollout is None or self._closed:
            return
        progress = rollout.progress()
        new = rollout.frames_since(self._shown_frames)
        views = None
        if new:
            first = self._shown_frames == 0
            if first:
                self.timings.setdefault("first_frame", time.perf_counter())
            self._shown_frames += len(new)
            try:
                views = self._compute(rollout, new, first)
            except Exception as exc:  # a view failed: say so, let the rollout go on
                log.warning("%s views not updated: %s", self.name, describe(exc))
                self._ui(functools.partial(self._show_error, exc, "", "updating the views: "))
        self._ui(lambda: self._apply(progress, views))

    def _apply(self, progress: Progress, views: Any) -> None:
        self.progress.value = int(1000 * progress.fraction)
        self.progress_info.object = self._progress_text(progress)
        if views is not None:
            self._apply_views(views)
            self.timings.setdefault("figures", time.perf_counter())

    def _progress_text(self, progress: Progress) -> str:
        return progress_text(progress)

    def _finish(self) -> None:
        rollout = self.rollout
        self.run_button.disabled, self.stop_button.disabled = False, True
        status = rollout.status if rollout is not None else FAILED
        self.progress.bar_color = {DONE: "success", CANCELLED: "warning"}.get(status, "danger")
        if rollout is not None:
            self.progress_info.object = self._progress_text(rollout.progress())
        if status == FAILED and rollout is not None and rollout.error is not None:
            kept = rollout.n_frames
            log.warning("%s rollout failed: %s", self.name, describe(rollout.error))
            self._show_error(rollout.error, f" ({kept} frame{'s' if kept != 1 else ''} kept)")
        elif status == CANCELLED and rollout is not None:
            self.message.object = info_html(
                f"Stopped after {max(0, rollout.n_frames - 1)} steps; the frames are kept."
            )

    def _finish_failed(self, exc: BaseException) -> None:
        self.run_button.disabled, self.stop_button.disabled = False, True
        self.progress.bar_color = "danger"
        self.progress_info.object = "failed"
        self._show_error(exc)

    def _show_error(self, exc: BaseException, suffix: str = "", prefix: str = "") -> None:
        self.message.object = error_html(prefix + describe(exc) + suffix)

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

    def _replace_figure(self, name: str, fig: go.Figure) -> None:
        """Show a new figure object (whole figures reach the browser reliably)."""
        self.figures[name] = fig
        self.panes[name].object = fig

    # -- to implement ----------------------------------------------------------------
    figures: dict[str, go.Figure]
    panes: dict[str, pn.pane.Plotly]

    def _make_builder(self) -> Callable[[], Rollout]:
        raise NotImplementedError

    def _on_new_run(self, rollout: Rollout) -> None:
        raise NotImplementedError

    def _compute(self, rollout: Rollout, new: list[Frame], first: bool) -> Any:
        raise NotImplementedError

    def _apply_views(self, views: Any) -> None:
        raise NotImplementedError


class FlashMDApp(PanelRolloutTab):
    """System, start, checkpoint (stride), thermostat and filters; Run/Stop; live views.

    Args:
        checkpoint_dir: where FlashMD checkpoints (``*.json`` cards) are listed.
        data_dir: where the reference trajectories ``<system>_test*.h5`` are found.
        slots: the server-wide cap on running rollouts.
        poll_interval_s: shortest time between figure updates, s.

    Controls are attributes (``system``, ``start_from``, ``checkpoint``, ``thermostat``,
    ``temperature``, ``time_constant``, ``energy_conservation``, ``random_rotation``,
    ``n_steps``, ``seed``, ``device``, ``run_button``, ``stop_button``); figures are in
    ``figures`` (``temperature``, ``energy``, ``rdf``, ``msd``); ``layout`` is the page.
    """

    name = "flashmd"

    def __init__(
        self,
        checkpoint_dir: Path = CHECKPOINT_DIR,
        data_dir: Path | None = None,
        slots: RolloutSlots = SLOTS,
        poll_interval_s: float = 0.5,
    ) -> None:
        self.checkpoint_dir = Path(checkpoint_dir)
        self.data_dir = Path(data_dir) if data_dir else None
        self.cards = flashmd_cards(self.checkpoint_dir)
        self.reference: FlashMDReference | None = None
        self.overlap: dict | None = None
        self._target_K: float | None = None
        self._run_system = "argon"
        self._build_run(slots, poll_interval_s)
        self._build_controls()
        self._build_views()
        self.layout = pn.Column(
            pn.pane.Markdown("### FlashMD: one model call per long stride"),
            self.control_box,
            self.run_box,
            self.message,
            self.summary,
            self.views,
            sizing_mode="stretch_width",
            css_classes=["accelmd-flashmd"],
        )
        self._on_system()

    # -- controls --------------------------------------------------------------------
    def _build_controls(self) -> None:
        self.system = pn.widgets.Select(
            label="system", options={SYSTEM_LABELS[s]: s for s in FLASHMD_SYSTEMS},
            value="argon", width=300, css_classes=["accelmd-flashmd-system"],
        )  # fmt: skip
        self.start_from = pn.widgets.Select(
            label="start from",
            options={"test trajectory, frame 0 (with momenta)": TEST_FRAME,
                     "fresh structure, momenta at T": FRESH},
            value=TEST_FRAME, width=300,
        )  # fmt: skip
        self.start_info = pn.pane.HTML(
            "<small>test frame: equilibrated positions and momenta (the temperature sets the "
            "thermostat target only); fresh: momenta drawn at the temperature</small>"
        )
        self.checkpoint = pn.widgets.Select(
            label="checkpoint", options={}, value=None, width=300,
            css_classes=["accelmd-flashmd-checkpoint"],
        )  # fmt: skip
        self.card_info = pn.pane.HTML("", sizing_mode="stretch_width")
        self.thermostat = pn.widgets.Select(
            label="thermostat", options=dict(THERMOSTAT_OPTIONS), value="langevin", width=160
        )
        self.temperature = pn.widgets.FloatInput(
            label="temperature (K)", value=DEFAULT_TEMPERATURES_K["argon"], start=1, end=5000,
            step=10, width=160,
        )  # fmt: skip
        self.time_constant = pn.widgets.FloatInput(
            label="thermostat τ (fs)", value=100.0, start=1, end=100000, step=10, width=160
        )
        self.energy_conservation = pn.widgets.Checkbox(
            label="energy-conservation filter (App C)", value=True
        )
        self.random_rotation = pn.widgets.Checkbox(
            label="random-rotation filter (App A.4)", value=False
        )
        self.n_steps = pn.widgets.IntInput(
            label="strides", value=50, start=1, end=100000, width=150,
            css_classes=["accelmd-flashmd-steps"],
        )  # fmt: skip
        self.steps_info = pn.pane.HTML("")
        self.seed = pn.widgets.IntInput(label="seed", value=0, width=100)
        self.device = pn.widgets.Select(
            label="device", options=["cpu", "auto", "cuda"], value="cpu", width=100
        )
        self.system.param.watch(lambda _: self._on_system(), "value")
        self.checkpoint.param.watch(lambda _: self._on_checkpoint(), "value")
        self.n_steps.param.watch(lambda _: self._on_steps(), "value")
        self.control_box = pn.Row(
            pn.Column(self.system, self.start_from, self.start_info, self.checkpoint,
                      self.card_info),
            pn.Column(self.thermostat, self.temperature, self.time_constant,
                      self.energy_conservation, self.random_rotation),
            pn.Column(pn.Row(self.n_steps, self.steps_info), pn.Row(self.seed, self.device)),
            sizing_mode="stretch_width",
        )  # fmt: skip

    @property
    def card(self) -> dict[str, Any] | None:
        index = self.checkpoint.value
        return None if index is None else self.cards[index]

    def _on_system(self) -> None:
        system = self.system.value
        options = flashmd_checkpoint_options(self.cards, system)
        self._setting_system = True  # one checkpoint update, not two
        try:
            self.checkpoint.options = dict(options)
            self.checkpoint.value = options[-1][1] if options else None
        finally:
            self._setting_system = False
        if not options:
            text = no_flashmd_checkpoint_text(system, self.checkpoint_dir)
            self.card_info.object = _box(text, "#1f77b4", "accelmd-info")
        self.temperature.value = DEFAULT_TEMPERATURES_K.get(system, 300.0)
        self._on_checkpoint()

    def _on_checkpoint(self) -> None:
        if getattr(self, "_setting_system", False):
            return
        card = self.card
        if card is not None:
            self.card_info.object = f"<small>{html.escape(card_headline(card))}</small>"
            defaults = flashmd_card_defaults(card)
            self.energy_conservation.value = defaults["energy_conservation"]
            self.random_rotation.value = defaults["random_rotation"]
            if "thermostat" in defaults:
                self.thermostat.value = defaults["thermostat"]
            if "temperature_K" in defaults:
                self.temperature.value = defaults["temperature_K"]
        self._on_steps()

    def _on_steps(self) -> None:
        text = flashmd_steps_text(self.n_steps.value, self.card)
        self.steps_info.object = f"<small>{text}</small>"

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
        knobs, n_steps, name = self.knobs(), int(self.n_steps.value), card.get("name")
        self._run_system = system
        return functools.partial(
            build_flashmd_rollout, name, system, start, device, knobs, n_steps,
            self.checkpoint_dir, self.data_dir, "widgets.app",
        )  # fmt: skip

    def _on_new_run(self, rollout: Rollout) -> None:
        self._target_K = flashmd_target_K(rollout.knobs)
        try:
            self.reference = flashmd_reference(self._run_system, self.data_dir)
        except (ExplorerError, OSError) as exc:  # a broken reference must not stop a run
            self.reference = None
            note = warning_html([f"reference trajectory unreadable: {exc}"])
            self._ui(lambda: setattr(self.message, "object", note))
        self.view3d.start_run(rollout.atoms.numbers, rollout.atoms.cell[:])

    def _compute(self, rollout: Rollout, new: list[Frame], first: bool) -> Any:
        self.view3d.add_frames([f.positions for f in new], [f.time_ps for f in new])
        traj = rollout.trajectory()
        fresh, self.overlap = flashmd_figures(traj, self.reference, self._target_K)
        return fresh, flashmd_summary(traj, self._target_K, self.overlap)

    def _apply_views(self, views: Any) -> None:
        fresh, summary = views
        self.view3d.show()
        for name, fig in fresh.items():
            self._replace_figure(name, fig)
        self.summary.object = f"<b>{html.escape(summary)}</b>"

    # -- views -----------------------------------------------------------------------
    def _build_views(self) -> None:
        self.view3d = TrajectoryView3D()
        self.figures: dict[str, go.Figure] = {
            "temperature": figures.temperature_figure(None, None),
            "energy": figures.energy_figure(None, None),
            "rdf": figures.rdf_figure(None),
            "msd": figures.msd_figure(None),
        }
        self.panes = {
            name: plotly_pane(fig, f"flashmd-{name}") for name, fig in self.figures.items()
        }
        self.views = pn.Tabs(
            ("T and energy", pn.Column(self.panes["temperature"], self.panes["energy"])),
            ("RDF", self.panes["rdf"]),
            ("MSD", self.panes["msd"]),
            ("3-D", self.view3d.layout),
            sizing_mode="stretch_width",
            dynamic=True,
        )
