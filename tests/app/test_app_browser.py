"""The Panel app in a real browser: `panel serve` on loopback, Debian Chromium via Playwright.

The server is started by the fixture with ``subprocess`` on a free port and stopped by
its PID; Chromium is the system one (``/usr/bin/chromium``), never a downloaded build.
Screenshots go to ``$ACCELMD_ARTIFACTS`` (default ``test-artifacts/`` at the repository
root). Timeouts are generous: two CPU cores, shared with other jobs, and WebGL through
SwiftShader. The server runs the bundled LiFlow checkpoints (the demo model without them).
"""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("playwright.sync_api")  # the shared `browser` fixture drives it
Image = pytest.importorskip("PIL.Image")

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("ACCELMD_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = Path(os.environ.get("ACCELMD_ARTIFACTS", ROOT / "test-artifacts"))
SERVER_START_S = 180.0
PAGE_S = 90.0  # ms below are these × 1000
FRAMES_S = 150.0  # real LiFlow steps (~1 s each for 50 atoms on a busy CI core)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM}"),
]


class Server(str):
    """The app's URL (a str) with the server's log file as ``log``."""

    log: Path


@pytest.fixture(scope="module")
def server(free_port) -> Iterator[Server]:
    """``panel serve widgets/app.py`` on 127.0.0.1:<free port>; yields the app's URL."""
    port = free_port()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log_path = ARTIFACTS / f"app-server-{port}.log"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELMD_MAX_ROLLOUTS": "3"}
    command = [
        sys.executable, "-m", "panel", "serve", "widgets/app.py",
        "--address", "127.0.0.1", "--port", str(port),
        f"--allow-websocket-origin=127.0.0.1:{port}",
        "--check-unused-sessions", "1000", "--unused-session-lifetime", "1000",
    ]  # fmt: skip
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)
    url = Server(f"http://127.0.0.1:{port}/app")
    url.log = log_path
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"panel serve exited: {log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(url, timeout=30) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"panel serve not up after {SERVER_START_S} s")
            time.sleep(0.5)
        yield url
    finally:
        os.kill(process.pid, signal.SIGTERM)  # only the server this fixture started
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=20)
    text = without_closed_websocket_noise(log_path.read_text(errors="replace"))
    assert "Traceback" not in text, text[-3000:]


# asyncio's report of a Tornado write that lost the race with a closing browser tab
# ("Task exception was never retrieved ... WebSocketClosedError"): Bokeh's websocket
# writes are not ours to await, and the closed session is stopped right after.
_CLOSED_WEBSOCKET = re.compile(
    r"Task exception was never retrieved\n(?:.*\n)*?tornado\.websocket\.WebSocketClosedError\n"
)


def without_closed_websocket_noise(log: str) -> str:
    """The server log without those reports; any other traceback stays."""
    return _CLOSED_WEBSOCKET.sub("", log)


def test_only_the_closed_websocket_report_is_dropped_from_the_log():
    noise = (
        "Task exception was never retrieved\nfuture: <Task ...>\nTraceback (most recent "
        'call last):\n  File "x", line 1\ntornado.websocket.WebSocketClosedError\n'
    )
    ours = 'Traceback (most recent call last):\n  File "app.py"\nValueError: bug\n'
    assert without_closed_websocket_noise("a\n" + noise + "b\n") == "a\nb\n"
    assert "Traceback" in without_closed_websocket_noise(noise + ours)


@pytest.fixture
def pages(request) -> Iterator[list]:
    """Pages opened by a test; each is screenshotted at the end (pass or fail), then closed."""
    opened: list = []
    yield opened
    for i, page in enumerate(opened):
        try:
            page.screenshot(path=str(ARTIFACTS / f"{request.node.name}-{i}.png"), full_page=True)
        finally:
            page.context.close()


def open_page(browser, url: str, pages: list):
    """A fresh browser context (its own session) with the page ready to click."""
    context = browser.new_context(viewport={"width": 1400, "height": 1100})
    page = context.new_page()
    page.set_default_timeout(PAGE_S * 1000)
    started = time.perf_counter()
    page.goto(url)
    page.locator(".accelmd-run button").wait_for()
    page.locator(".accelmd-view3d .js-plotly-plot").wait_for()
    page.ready_s = time.perf_counter() - started
    pages.append(page)
    return page


def msd_state(page) -> dict:
    """Frames in the model's Li MSD trace and the MSD title, read from plotly's data."""
    return page.locator(".accelmd-msd .js-plotly-plot").evaluate(
        """el => {
            const li = (el.data || []).find(t => t.meta === 'msd:Li:model');
            const title = el.layout && el.layout.title;
            return {n: li && li.x ? li.x.length : 0,
                    title: title ? (title.text || title) : ''};
        }"""
    )


def view3d_frame(page) -> int:
    """The frame number in the 3-D view's title (``frame 12 of 40 · …``), -1 if none."""
    return page.locator(".accelmd-view3d .js-plotly-plot").evaluate(
        """el => {
            const title = el.layout && el.layout.title;
            const m = /frame (\\d+) of/.exec(title ? (title.text || title) : '');
            return m ? parseInt(m[1]) : -1;
        }"""
    )


def wait_for_view3d_frame(page, n: int) -> None:
    deadline = time.monotonic() + FRAMES_S
    while view3d_frame(page) < n:
        if time.monotonic() > deadline:
            pytest.fail(f"the 3-D view shows no frame >= {n} after {FRAMES_S} s")
        page.wait_for_timeout(50)


def wait_for_msd_points(page, n: int) -> dict:
    deadline = time.monotonic() + FRAMES_S
    while (state := msd_state(page))["n"] < n:
        if time.monotonic() > deadline:
            pytest.fail(f"MSD has {state['n']} points after {FRAMES_S} s (wanted {n})")
        page.wait_for_timeout(100)
    return state


def progress_text(page) -> str:
    """The progress line (a ``<pre>`` inside the pane's shadow root)."""
    return page.locator(".accelmd-progress pre").inner_text()


def set_number(page, css: str, value: float) -> None:
    box = page.locator(f"{css} input")
    box.fill(str(value))
    box.press("Enter")


def view3d_pixels(page, name: str) -> np.ndarray:
    png = page.locator(".accelmd-view3d").screenshot(path=str(ARTIFACTS / name))
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=float)


def test_run_draws_atoms_msd_then_stop(server, browser, pages):
    page = open_page(browser, server, pages)
    page.locator(".accelmd-material select").select_option(label="Li6PS5Cl (Li6PS5Cl)")
    set_number(page, ".accelmd-temperature", 600)
    set_number(page, ".accelmd-steps", 3000)  # long enough to press Stop mid-run
    page.get_by_text("reference MD overlay: Li6PS5Cl_600K.h5").wait_for()
    clicked = time.perf_counter()
    page.locator(".accelmd-run button").click()
    wait_for_view3d_frame(page, 1)  # the 3-D view shows streamed frames
    first_frame_s = time.perf_counter() - clicked
    state = wait_for_msd_points(page, 5)
    assert state["title"] == "MSD at 600 K"
    page.wait_for_timeout(1500)  # let WebGL finish drawing the newest frame
    pixels = view3d_pixels(page, "app-view3d.png")
    assert pixels.std() > 10.0, "the 3-D view looks blank"
    li_green = (np.abs(pixels - [0, 166, 90]).sum(axis=-1) < 60).sum()
    assert li_green > 50, "no Li-coloured pixels in the 3-D view"
    page.screenshot(path=str(ARTIFACTS / "app.png"), full_page=True)
    page.locator(".accelmd-stop button").click()
    page.get_by_text("Stopped after").wait_for()
    assert "cancelled" in progress_text(page)
    print(f"page ready {page.ready_s:.1f} s; first frame {first_frame_s:.2f} s after Run")


def test_malformed_upload_shows_the_error_in_the_page(server, browser, pages):
    page = open_page(browser, server, pages)
    page.locator(".accelmd-upload input[type=file]").set_input_files(
        {"name": "broken.cif", "mimeType": "text/plain", "buffer": b"data_x\nloop_\nnonsense\n"}
    )
    error = page.locator(".accelmd-error")
    error.wait_for()
    assert "broken.cif" in error.inner_text() and "cannot parse" in error.inner_text()
    assert "Traceback" not in page.content()
    page.screenshot(path=str(ARTIFACTS / "app-upload-error.png"))


def test_two_sessions_do_not_see_each_others_frames(server, browser, pages):
    first, second = open_page(browser, server, pages), open_page(browser, server, pages)
    set_number(first, ".accelmd-temperature", 600)
    set_number(first, ".accelmd-steps", 4)
    set_number(second, ".accelmd-temperature", 1000)
    set_number(second, ".accelmd-steps", 9)
    first.get_by_text("LGPS_600K.h5").wait_for()
    second.get_by_text("LGPS_1000K.h5").wait_for()
    first.locator(".accelmd-run button").click()
    second.locator(".accelmd-run button").click()
    for page in (first, second):
        page.get_by_text("done ·").wait_for(timeout=FRAMES_S * 1000)
    page_a, page_b = wait_for_msd_points(first, 5), wait_for_msd_points(second, 10)
    assert (page_a["n"], page_a["title"]) == (5, "MSD at 600 K")
    assert (page_b["n"], page_b["title"]) == (10, "MSD at 1000 K")
    wait_for_view3d_frame(first, 4)  # each 3-D view ends on its own last frame
    wait_for_view3d_frame(second, 9)
    assert view3d_frame(first) == 4 and view3d_frame(second) == 9
    assert "4/4 steps" in progress_text(first)
    assert "9/9 steps" in progress_text(second)


def test_closing_the_tab_cancels_its_rollout(server, browser, pages):
    page = open_page(browser, server, pages)
    set_number(page, ".accelmd-steps", 5000)
    before = server.log.read_text(errors="replace").count("rollout cancelled")
    page.locator(".accelmd-run button").click()
    wait_for_view3d_frame(page, 1)
    pages.remove(page)
    page.context.close()  # the tab goes away mid-run
    deadline = time.monotonic() + FRAMES_S
    while server.log.read_text(errors="replace").count("rollout cancelled") == before:
        if time.monotonic() > deadline:
            pytest.fail("the rollout of a closed tab was not cancelled")
        time.sleep(0.5)
