"""The Run/Stop lifecycle of a tab that shows one Rollout, shared by every front-end.

:class:`RolloutController` checks the inputs when Run is pressed, builds and starts a
:class:`~explorer.session.Rollout` from a *driver* thread, polls its frames, and decides
what the Run/Stop row shows (a :class:`RunState`: buttons, progress fraction and text,
bar colour) and which message the tab shows (a :class:`Message`: text and severity).
The Jupyter tabs (:class:`widgets.tab_run.RolloutTab`) and the Panel tabs
(:class:`widgets.app_run.PanelRolloutTab`) only render those plain values; the model
families fill in the hooks (build the Rollout, turn new frames into views).
No UI library is imported here.

Threads: the driver thread builds the Rollout (loading a model takes seconds), starts
it (its own worker thread) and polls ``frames_since``, so the kernel or the server never
blocks. After an update that took t seconds (computing the views on the driver
thread plus applying the previous ones on the UI thread) it waits at least
``max(poll_interval_s, 5 t)``, which bounds the live analysis to about 1/6 of a core.
It polls fast until the first simulated frame (after frame 0, the start) is shown, and
posts no new update while the UI thread is still applying the last one. Every change to the UI
goes through :meth:`RolloutController._post`: at once under a lock by default, on the
session's thread in the Panel app.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from explorer.errors import ExplorerError
from explorer.session import CANCELLED, DONE, FAILED, Frame, Progress, Rollout
from widgets.app_sessions import RolloutSlots
from widgets.helpers import progress_text

FIRST_FRAME_POLL_S = 0.05  # s; poll fast until the first simulated frame is on screen
#: Frames on screen once the first simulated one is: frame 0 is the starting structure.
FIRST_STEP_FRAMES = 2
UI_CATCH_UP_S = 10.0  # s; longest wait for the UI thread to apply an update
ALREADY_RUNNING = "A rollout is already running; press Stop first."
LOADING = "loading the model…"
STOPPING = "stopping after the current step…"
FAILED_TEXT = "failed"

#: Message severities.
INFO, WARNING, ERROR = "info", "warning", "error"
#: Progress bar colours (the names ipywidgets' ``bar_style`` and Panel's ``bar_color`` share).
RUNNING_STYLE = "info"
FINISH_STYLES = {DONE: "success", CANCELLED: "warning"}
FAILED_STYLE = "danger"

# Without a handler of its own a library logger prints warnings into the notebook.
logging.getLogger("accelmd.widgets").addHandler(logging.NullHandler())


@dataclass(frozen=True)
class Message:
    """The tab's message line: ``text`` (plain, not HTML) and ``severity``; empty clears it."""

    text: str = ""
    severity: str = INFO


@dataclass(frozen=True)
class RunState:
    """What the Run/Stop row shows.

    Attributes:
        running: Run disabled and Stop enabled (else the other way round).
        fraction: progress, 0 to 1.
        text: the progress line (plain text).
        style: bar colour: ``"info"`` (running), ``"success"``, ``"warning"``, ``"danger"``.
    """

    running: bool = False
    fraction: float = 0.0
    text: str = ""
    style: str = RUNNING_STYLE


def describe(exc: BaseException) -> str:
    """A readable message: ours as is, anything else with its type (it is a bug)."""
    if isinstance(exc, ExplorerError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def error_message(exc: BaseException, prefix: str = "", suffix: str = "") -> Message:
    return Message(prefix + describe(exc) + suffix, ERROR)


def frames_kept(n_frames: int) -> str:
    """`` (5 frames kept)``: what a failed run still offers."""
    return f" ({n_frames} frame{'s' if n_frames != 1 else ''} kept)"


def finish_style(status: str) -> str:
    """The bar colour of a run that ended with ``status``."""
    return FINISH_STYLES.get(status, FAILED_STYLE)


def finish_message(rollout: Rollout | None) -> Message | None:
    """What to say when a run ends: the error (frames kept), the stop, or nothing."""
    if rollout is None:
        return None
    if rollout.status == FAILED and rollout.error is not None:
        return error_message(rollout.error, suffix=frames_kept(rollout.n_frames))
    if rollout.status == CANCELLED:
        steps = max(0, rollout.n_frames - 1)
        return Message(f"Stopped after {steps} steps; the frames are kept.", INFO)
    return None


def message_html(message: Message, renderers: dict[str, Callable[[str], str]]) -> str:
    """A message as HTML through the front-end's ``renderers`` per severity ("" clears)."""
    return renderers[message.severity](message.text) if message.text else ""


def next_wait(first_pending: bool, cost_s: float, poll_interval_s: float) -> float:
    """Seconds until the next poll: fast until the first frame is shown, then throttled."""
    if first_pending:
        return FIRST_FRAME_POLL_S
    return max(poll_interval_s, 5.0 * cost_s)


class RolloutController:
    """Run, Stop, close and the driver thread of a tab that shows one Rollout.

    Call :meth:`_init_run` before anything shows a message. Front-ends implement
    :meth:`_render` and :meth:`_show` (and may replace :meth:`_post`); model families
    implement :meth:`_make_builder` (UI thread: check the inputs, return a function that
    builds the Rollout in the driver thread; raise :class:`ExplorerError` to refuse),
    :meth:`_on_new_run` (driver thread, before the rollout starts), :meth:`_compute`
    (driver thread: new frames → views) and, where views must be shown on the UI
    thread, :meth:`_apply_views`.

    Attributes:
        rollout: the current (or last) Rollout.
        timings: ``perf_counter`` times of ``clicked``, ``first_frame`` (the start
            structure shown), ``first_step`` (views of the first simulated frame computed) and
            ``figures`` (the first views applied).
        run_state: what the Run/Stop row shows now.
        slots: the server-wide cap on running rollouts (None: no cap).
    """

    name = "rollout"
    _log = logging.getLogger("accelmd.widgets")

    def _init_run(self, poll_interval_s: float, slots: RolloutSlots | None = None) -> None:
        self.poll_interval_s = poll_interval_s
        self.slots = slots
        self.rollout: Rollout | None = None
        self.timings: dict[str, float] = {}
        self.run_state = RunState()
        self._driver: threading.Thread | None = None
        self._closed = False
        self._shown_frames = 0
        self._apply_cost_s = 0.0  # s, the UI thread's share of the last update
        self._ui_idle = threading.Event()  # set: no posted update waits to be applied
        self._ui_idle.set()
        self._posted_at = 0.0
        self._refresh_lock = threading.Lock()
        self._apply_lock = threading.Lock()

    @property
    def running(self) -> bool:
        return self._driver is not None and self._driver.is_alive()

    # -- what the buttons do ---------------------------------------------------------
    def start(self) -> None:
        """What Run does: check the inputs, take a slot (if capped), drive a Rollout."""
        try:
            self._start()
        except Exception as exc:  # never a traceback in the page
            self._log.exception("%s: Run failed before the rollout started", self.name)
            self._show(error_message(exc))

    def _start(self) -> None:
        if self.running:
            self._show(Message(ALREADY_RUNNING))
            return
        try:
            builder = self._make_builder()
        except ExplorerError as exc:
            self._show(error_message(exc))
            return
        if self.slots is not None and not self.slots.try_acquire():
            self._log.warning("run refused: %d rollouts running (cap)", self.slots.limit)
            self._show(Message(self.slots.busy_message()))
            return
        self.timings = {"clicked": time.perf_counter()}
        self._show(Message())
        self._set_state(RunState(running=True, text=LOADING))
        self._driver = threading.Thread(
            target=self._drive, args=(builder,), name=f"accelmd-{self.name}", daemon=True
        )
        self._driver.start()

    def stop(self) -> None:
        """What Stop does: the rollout ends after the step it is computing."""
        if self.rollout is not None and self.running:
            self.rollout.stop()
            self._set_state(replace(self.run_state, text=STOPPING))

    def close(self) -> None:
        """The page was closed: stop the rollout; no more UI updates."""
        self._closed = True
        if self.rollout is not None:
            self._log.info("session closed: stopping its %s rollout", self.name)
            self.rollout.stop()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the run and its last update are over; True if they are."""
        if self._driver is None:
            return True
        self._driver.join(timeout)
        return not self._driver.is_alive()

    # -- the driver thread -----------------------------------------------------------
    def _drive(self, builder: Callable[[], Rollout]) -> None:
        try:
            try:
                rollout = builder()
                self._shown_frames = 0
                self._on_new_run(rollout)
            except Exception as exc:  # model loading / bad inputs: report, stay usable
                self._log.warning("%s rollout not started: %s", self.name, describe(exc))
                self._post(functools.partial(self._fail, exc))
                return
            if self._closed:
                return
            self.rollout = rollout
            rollout.start()
            self._log.info("%s rollout started: %s", self.name, rollout.metadata)
            self._poll(rollout)
            self._log.info("%s rollout %s, %d frames", self.name, rollout.status, rollout.n_frames)
            self._post(self._finish)
        except Exception as exc:  # a bug in the wiring: log it, tell the page briefly
            self._log.exception("%s driver failed", self.name)
            self._post(functools.partial(self._fail, exc))
        finally:
            if self.slots is not None:
                self.slots.release()

    def _poll(self, rollout: Rollout) -> None:
        wait = FIRST_FRAME_POLL_S
        while True:
            finished = rollout.join(timeout=wait)
            if self._closed:
                rollout.join()  # stopped by close(): ends after its current step
                return
            if not finished and self._ui_busy():
                wait = FIRST_FRAME_POLL_S  # the last update is still being applied
                continue
            if finished:  # the last frames, after the UI has caught up
                self._ui_idle.wait(UI_CATCH_UP_S)
            started = time.perf_counter()
            self.refresh()
            # Both halves of an update compete with the rollout for the CPU (and the
            # GIL): computing the views here and applying them on the UI thread.
            cost = time.perf_counter() - started + self._apply_cost_s
            if finished:
                return
            # Frame 0 (the start) arrives at once; the throttle would then hold back the
            # first step's frame by 5x the cost of drawing frame 0 (measured: seconds).
            first_pending = self._shown_frames < FIRST_STEP_FRAMES
            wait = next_wait(first_pending, cost, self.poll_interval_s)

    def _ui_busy(self) -> bool:
        """Whether the UI thread has not yet applied the last posted update. New frames
        wait for it rather than queue behind it (a slow page would otherwise fall
        further and further behind); after ``UI_CATCH_UP_S`` it no longer counts."""
        waited = time.perf_counter() - self._posted_at
        return not self._ui_idle.is_set() and waited < UI_CATCH_UP_S

    def refresh(self) -> None:
        """Pull new frames from the rollout into the progress row and the views."""
        rollout = self.rollout
        if rollout is None or self._closed:
            return
        with self._refresh_lock:
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
                    self._log.warning("%s views not updated: %s", self.name, describe(exc))
                    message = error_message(exc, prefix="updating the views: ")
                    self._post(functools.partial(self._show, message))
                if self._shown_frames >= FIRST_STEP_FRAMES:  # views of a simulated frame
                    self.timings.setdefault("first_step", time.perf_counter())
            state = replace(
                self.run_state, fraction=progress.fraction, text=self._progress_text(progress)
            )
            self._ui_idle.clear()
            self._posted_at = time.perf_counter()
            self._post(functools.partial(self._update, state, views))

    def _update(self, state: RunState, views: Any) -> None:
        try:
            self._set_state(state)
            if views is not None:
                started = time.perf_counter()
                self._apply_views(views)
                self._apply_cost_s = time.perf_counter() - started
                self.timings.setdefault("figures", time.perf_counter())
        finally:
            self._ui_idle.set()

    def _finish(self) -> None:
        rollout = self.rollout
        status = rollout.status if rollout is not None else FAILED
        text = self.run_state.text if rollout is None else self._progress_text(rollout.progress())
        self._set_state(
            replace(self.run_state, running=False, text=text, style=finish_style(status))
        )
        message = finish_message(rollout)
        if message is not None:
            if message.severity == ERROR:
                self._log.warning("%s rollout failed: %s", self.name, message.text)
            self._show(message)
        self._on_finished()

    def _fail(self, exc: BaseException) -> None:
        """The run never started (or the driver broke): say why, stay usable."""
        self._set_state(
            replace(self.run_state, running=False, text=FAILED_TEXT, style=FAILED_STYLE)
        )
        self._show(error_message(exc))

    def _set_state(self, state: RunState) -> None:
        self.run_state = state
        self._render(state)

    def _post(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` where the UI may change; here at once, one update at a time."""
        if self._closed:
            return
        with self._apply_lock:
            fn()

    def _progress_text(self, progress: Progress) -> str:
        return progress_text(progress)

    # -- to implement ----------------------------------------------------------------
    def _render(self, state: RunState) -> None:
        raise NotImplementedError

    def _show(self, message: Message) -> None:
        raise NotImplementedError

    def _make_builder(self) -> Callable[[], Rollout]:
        raise NotImplementedError

    def _on_new_run(self, rollout: Rollout) -> None:
        """Driver thread, before the rollout starts: reset the views."""

    def _compute(self, rollout: Rollout, new: list[Frame], first: bool) -> Any:
        """Driver thread: new frames arrived; return views for :meth:`_apply_views`."""
        raise NotImplementedError

    def _apply_views(self, views: Any) -> None:
        """UI thread: show what :meth:`_compute` returned (not None)."""

    def _on_finished(self) -> None:
        """UI thread: the run is over (downloads, …)."""
