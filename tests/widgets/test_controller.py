"""The UI-free Run/Stop lifecycle (:mod:`widgets.controller`) without any widget library.

A recording front-end keeps every :class:`RunState` and :class:`Message` the controller
asks it to show; the random-walk simulator stands in for a model.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from explorer.errors import ExplorerError
from explorer.session import Frame, Rollout
from explorer.testing import BrownianSimulator
from widgets.app_sessions import RolloutSlots
from widgets.controller import (
    ALREADY_RUNNING,
    ERROR,
    FAILED_TEXT,
    FIRST_FRAME_POLL_S,
    INFO,
    LOADING,
    WARNING,
    Message,
    RolloutController,
    RunState,
    describe,
    finish_message,
    message_html,
    next_wait,
)

from .conftest import toy_atoms

TIMEOUT_S = 30.0


class Recorder(RolloutController):
    """A front-end that records what it is told to show; views are frame counts."""

    def __init__(self, builder: Callable[[], Rollout], slots: RolloutSlots | None = None):
        self._init_run(poll_interval_s=0.01, slots=slots)
        self.builder = builder
        self.states: list[RunState] = []
        self.messages: list[Message] = []
        self.views: list[int] = []
        self.fail_views = False

    def _render(self, state: RunState) -> None:
        self.states.append(state)

    def _show(self, message: Message) -> None:
        self.messages.append(message)

    def _make_builder(self) -> Callable[[], Rollout]:
        return self.builder

    def _compute(self, rollout: Rollout, new: list[Frame], first: bool) -> int:
        if self.fail_views:
            raise ValueError("no view today")
        return self._shown_frames

    def _apply_views(self, views: int) -> None:
        self.views.append(views)


def brownian(n_steps: int, delay_s: float = 0.0, fail_at_step: int | None = None):
    simulator = BrownianSimulator(delay_s=delay_s, fail_at_step=fail_at_step)
    return lambda: Rollout(simulator, toy_atoms(), n_steps)


def run(tab: Recorder) -> None:
    tab.start()
    assert tab.wait(TIMEOUT_S), "the run did not finish in time"


def wait_for_frames(tab: Recorder, n: int) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while (tab.rollout is None or tab.rollout.n_frames < n) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert tab.rollout is not None and tab.rollout.n_frames >= n


def test_a_run_goes_from_loading_to_done_with_every_frame_shown():
    tab = Recorder(brownian(5))
    run(tab)
    assert tab.messages[0] == Message()  # Run clears the last message
    assert tab.states[0] == RunState(running=True, fraction=0.0, text=LOADING, style="info")
    last = tab.states[-1]
    assert not last.running and last.style == "success" and last.fraction == 1.0
    assert last.text.startswith("done · 5/5 steps")
    assert tab.views[-1] == 6 == tab.rollout.n_frames
    assert tab.messages == [Message()]  # nothing to say about a finished run
    assert tab.timings["clicked"] <= tab.timings["first_frame"] <= tab.timings["figures"]
    assert tab.timings["first_frame"] <= tab.timings["first_step"]


def test_a_diverged_run_says_why_and_keeps_its_frames():
    tab = Recorder(brownian(20, fail_at_step=3))
    run(tab)
    assert tab.states[-1].style == "danger" and not tab.states[-1].running
    message = tab.messages[-1]
    assert message.severity == ERROR
    assert "toy divergence at step 3" in message.text and message.text.endswith("(3 frames kept)")


def test_stop_cancels_after_the_current_step_and_keeps_the_frames():
    tab = Recorder(brownian(2000, delay_s=0.01))
    tab.start()
    wait_for_frames(tab, 3)
    tab.start()  # a second Run while running is refused
    assert tab.messages[-1] == Message(ALREADY_RUNNING, INFO)
    tab.stop()
    assert tab.states[-1].text.startswith("stopping")
    assert tab.wait(TIMEOUT_S)
    assert tab.rollout.status == "cancelled" and tab.states[-1].style == "warning"
    steps = tab.rollout.n_frames - 1
    assert tab.messages[-1] == Message(f"Stopped after {steps} steps; the frames are kept.")


def test_a_rollout_that_cannot_be_built_fails_readably_and_stays_usable():
    def broken() -> Rollout:
        raise ExplorerError("checkpoint unreadable")

    tab = Recorder(broken)
    run(tab)
    assert tab.states[-1] == RunState(running=False, text=FAILED_TEXT, style="danger")
    assert tab.messages[-1] == Message("checkpoint unreadable", ERROR)
    assert tab.rollout is None
    tab.builder = brownian(2)
    run(tab)
    assert tab.rollout.status == "done" and tab.messages[-1] == Message()


def test_refused_inputs_start_nothing():
    tab = Recorder(brownian(2))
    tab._make_builder = lambda: (_ for _ in ()).throw(ExplorerError("choose a model first"))
    tab.start()
    assert not tab.running and tab.states == []
    assert tab.messages == [Message("choose a model first", ERROR)]


def test_a_failing_view_is_reported_while_the_rollout_goes_on():
    tab = Recorder(brownian(4))
    tab.fail_views = True
    run(tab)
    assert tab.rollout.status == "done" and tab.states[-1].style == "success"
    assert Message("updating the views: ValueError: no view today", ERROR) in tab.messages


def test_the_busy_cap_refuses_a_run_and_a_finished_run_gives_its_slot_back():
    slots = RolloutSlots(1)
    assert slots.try_acquire()
    tab = Recorder(brownian(2), slots=slots)
    tab.start()
    assert not tab.running and "server is busy" in tab.messages[-1].text
    slots.release()
    run(tab)
    assert tab.rollout.status == "done" and slots.in_use == 0


def test_close_stops_the_rollout_and_the_updates():
    slots = RolloutSlots(1)
    tab = Recorder(brownian(2000, delay_s=0.01), slots=slots)
    tab.start()
    wait_for_frames(tab, 2)
    tab.close()
    assert tab.wait(TIMEOUT_S)
    assert tab.rollout.status == "cancelled" and slots.in_use == 0
    assert all(state.running for state in tab.states)  # no finish drawn into a closed page


def test_pure_helpers():
    assert next_wait(True, 10.0, 1.0) == FIRST_FRAME_POLL_S
    assert next_wait(False, 0.01, 1.0) == 1.0
    assert next_wait(False, 0.5, 1.0) == pytest.approx(2.5)
    assert describe(ExplorerError("ours")) == "ours"
    assert describe(KeyError("x")) == "KeyError: 'x'"
    assert finish_message(None) is None
    renderers = {INFO: "i:{}".format, WARNING: "w:{}".format, ERROR: "e:{}".format}
    assert message_html(Message("careful", WARNING), renderers) == "w:careful"
    assert message_html(Message(), renderers) == ""


class SlowViews(Recorder):
    """Drawing the views costs ``draw_s``; records when each frame count was shown."""

    def __init__(self, builder: Callable[[], Rollout], draw_s: float):
        super().__init__(builder)
        self.draw_s = draw_s
        self.shown_at: dict[int, float] = {}

    def _compute(self, rollout: Rollout, new: list[Frame], first: bool) -> int:
        time.sleep(self.draw_s)
        self.shown_at.setdefault(self._shown_frames, time.perf_counter())
        return self._shown_frames


def test_the_first_step_is_not_held_back_by_the_cost_of_drawing_frame_0():
    # The throttle waits 5x the cost of the last update (here 5 x 0.3 s); the first
    # simulated frame must still follow its step at the fast poll, not 1.5 s later.
    step_s, draw_s = 0.1, 0.3
    tab = SlowViews(brownian(30, delay_s=step_s), draw_s=draw_s)
    tab.start()
    deadline = time.monotonic() + TIMEOUT_S
    while max(tab.shown_at, default=0) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    tab.stop()
    assert tab.wait(TIMEOUT_S)
    first_step_shown = min(t for n, t in tab.shown_at.items() if n >= 2)
    assert abs(tab.timings["first_step"] - first_step_shown) < 0.05
    elapsed = first_step_shown - tab.timings["clicked"]
    assert elapsed < 2 * draw_s + step_s + 0.5, tab.shown_at


class SlowApply(Recorder):
    """Like the Panel app, UI changes run on a UI thread of their own (here one worker),
    where applying the views costs ``apply_s``; records when they were applied."""

    def __init__(self, builder: Callable[[], Rollout], apply_s: float):
        super().__init__(builder)
        self.apply_s = apply_s
        self.applied_at: list[float] = []
        self.ui_thread = ThreadPoolExecutor(max_workers=1)

    def _post(self, fn: Callable[[], None]) -> None:
        self.ui_thread.submit(fn)

    def _apply_views(self, views: int) -> None:
        time.sleep(self.apply_s)
        self.applied_at.append(time.perf_counter())
        super()._apply_views(views)


def test_the_throttle_counts_the_ui_threads_share_of_an_update():
    # Computing the views is free here, applying them costs 0.1 s: updates must still be
    # spaced by about 5 x 0.1 s, not by the 0.01-s poll interval, and must not queue up
    # on the UI thread meanwhile.
    tab = SlowApply(brownian(4000, delay_s=0.005), apply_s=0.1)
    tab.start()
    deadline = time.monotonic() + TIMEOUT_S
    while len(tab.applied_at) < 8 and time.monotonic() < deadline:
        time.sleep(0.01)
    tab.stop()
    assert tab.wait(TIMEOUT_S)
    tab.ui_thread.shutdown()
    assert tab.views[-1] == tab.rollout.n_frames  # the last frames were still shown
    gaps = np.diff(tab.applied_at[2:8])  # after the fast polls for the first frames
    assert gaps.min() >= 0.4, gaps
