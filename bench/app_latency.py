"""Latency of the Panel web app (``widgets/app.py``) in a real browser (not a test).

Starts ``panel serve widgets/app.py`` on 127.0.0.1 (a free port unless ``--port``),
drives Debian Chromium (``/usr/bin/chromium``, headless) through Playwright, and prints:

1. server start: process launched → ``GET /app`` answers HTTP 200, s (that first request
   already builds one session's page on the server);
2. page ready: fresh browser context → ``page.goto`` → the Run button visible and
   enabled, s, for ``--repeats`` fresh contexts, each and the median (target < 5 s;
   the first session of a server is often slower: imports and caches warm up), and
   until the MSD plot and the 3-D view are drawn: the LiFlow tab sends its plots after
   the page has loaded (``widgets.app_run.deferred``), so they come later;
3. first frame: Run pressed on the default material and model → the progress line shows
   step 1 done (``running · 1/50 steps · …``) or the MSD plot has model data, s
   (target < 2 s); that run is then stopped;
4. UI overhead: a ``--steps`` rollout run through the page (Run → progress says
   ``done · N/N steps``) against the same rollout (default material, model and knobs of
   a fresh page) run bare in this process with ``Rollout(...).run()``, ``--pairs``
   times alternated, each ratio page/bare and their median (target ≤ 1.2). The model
   the page used is printed; the demo random-walk model's steps are mostly sleep, so
   its ratio says little about CPU contention.

The server's output goes to an anonymous temporary file (its tail is shown if it fails);
nothing is written unless ``--screenshot PATH`` is given. The server is stopped by PID.

    OMP_NUM_THREADS=1 .venv/bin/python bench/app_latency.py [--steps 20] [--repeats 3] [--pairs 3]
        [--port PORT] [--timeout 180] [--screenshot PATH]
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from playwright.sync_api import Browser, Page, expect, sync_playwright

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
VIEWPORT = {"width": 1400, "height": 1100}
POLL_MS = 50

# CSS classes of the LiFlow tab (widgets/app_liflow.py, widgets/app_run.py).
RUN = ".accelmd-run button"
STOP = ".accelmd-stop button"
PROGRESS = ".accelmd-progress pre"  # a <pre> in the Str pane's shadow root
STEPS = ".accelmd-steps input"
MODEL = ".accelmd-model select"
MSD_PLOT = ".accelmd-msd .js-plotly-plot"
VIEW3D_PLOT = ".accelmd-view3d .js-plotly-plot"

#: ``running · 12/50 steps · 12 ps simulated · wall 3.4 s · ETA …`` (widgets.helpers).
PROGRESS_RE = re.compile(r"^(\w+) · (\d+)/(\d+) steps")
WALL_RE = re.compile(r"wall (?:(\d+) min )?([\d.]+) s")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tail(log: IO[bytes], n: int = 3000) -> str:
    log.seek(0)
    return log.read().decode(errors="replace")[-n:]


@contextmanager
def panel_server(port: int, timeout_s: float):
    """Yield (url, log file, start seconds) of ``panel serve widgets/app.py`` on loopback."""
    command = [
        sys.executable, "-m", "panel", "serve", "widgets/app.py",
        "--address", "127.0.0.1", "--port", str(port),
        f"--allow-websocket-origin=127.0.0.1:{port}",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    url = f"http://127.0.0.1:{port}/app"
    with tempfile.TemporaryFile() as log:
        started = time.perf_counter()
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"panel serve exited:\n{tail(log)}")
                try:
                    with urllib.request.urlopen(url, timeout=timeout_s) as response:
                        if response.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"panel serve not up after {timeout_s:g} s:\n{tail(log)}")
                time.sleep(0.2)
            yield url, log, time.perf_counter() - started
        finally:
            os.kill(process.pid, signal.SIGTERM)  # only the server started here
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=20)


def open_ready_page(browser: Browser, url: str, timeout_s: float) -> tuple[Page, float, float]:
    """A fresh context (its own session) → the page; seconds until Run is clickable and
    until the MSD plot and the 3-D view are drawn (they load after the controls)."""
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(timeout_s * 1000)
    started = time.perf_counter()
    page.goto(url)
    run = page.locator(RUN)
    run.wait_for(state="visible")
    expect(run).to_be_enabled(timeout=timeout_s * 1000)
    ready = time.perf_counter() - started
    page.locator(VIEW3D_PLOT).wait_for()
    page.locator(MSD_PLOT).wait_for()
    return page, ready, time.perf_counter() - started


def progress(page: Page) -> str:
    return page.locator(PROGRESS).inner_text()


def msd_points(page: Page) -> int:
    """Points in the model's Li MSD trace (plotly's data in the page)."""
    return page.locator(MSD_PLOT).evaluate(
        """el => {
            const li = (el.data || []).find(t => t.meta === 'msd:Li:model');
            return li && li.x ? li.x.length : 0;
        }"""
    )


def steps_done(text: str) -> tuple[str, int, int] | None:
    """(status, steps done, steps) from the progress line, None before the first update."""
    match = PROGRESS_RE.match(text)
    return (match[1], int(match[2]), int(match[3])) if match else None


def wall_seconds(text: str) -> float | None:
    """The rollout's own wall time from the progress line (``wall 1 min 02 s``, ``3.4 s``)."""
    match = WALL_RE.search(text)
    if not match:
        return None
    return 60 * int(match[1] or 0) + float(match[2])


def poll(page: Page, timeout_s: float, what: str, check) -> Any:
    """Call ``check()`` every ``POLL_MS`` until it returns something truthy."""
    deadline = time.monotonic() + timeout_s
    while not (result := check()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {what} after {timeout_s:g} s (progress: {progress(page)!r})")
        page.wait_for_timeout(POLL_MS)
    return result


def first_frame(page: Page, timeout_s: float) -> tuple[float, str]:
    """Press Run; seconds until step 1 is done (progress line) or the MSD has model data."""

    def seen() -> str | None:
        state = steps_done(progress(page))
        if state is not None and state[1] >= 1:
            return "progress line"
        if msd_points(page) >= 2:  # frame 0 alone is MSD = 0
            return "MSD plot"
        return None

    clicked = time.perf_counter()
    page.locator(RUN).click()
    how = poll(page, timeout_s, "first frame", seen)
    return time.perf_counter() - clicked, how


def stop_run(page: Page, timeout_s: float) -> None:
    """Press Stop (if the run is still going) and wait until the page says it ended."""
    stop = page.locator(STOP)
    if stop.is_enabled():
        stop.click()

    def ended() -> bool:
        state = steps_done(progress(page))
        return state is not None and state[0] != "running" and page.locator(RUN).is_enabled()

    poll(page, timeout_s, "end of the run", ended)


def page_rollout(
    page: Page, n_steps: int, time_step_ps: float, timeout_s: float
) -> tuple[float, str]:
    """Set the steps, press Run; seconds until the progress line says ``done · N/N``."""
    box = page.locator(STEPS)
    box.fill(str(n_steps))
    box.press("Enter")
    page.get_by_text(f"= {n_steps * time_step_ps:g} ps simulated").wait_for()
    before = progress(page)

    def done() -> str | None:
        text = progress(page)
        state = steps_done(text)
        if text != before and state is not None and state[0] == "done" and state[1] == n_steps:
            return text
        return None

    clicked = time.perf_counter()
    page.locator(RUN).click()
    text = poll(page, timeout_s, f"'done · {n_steps}/{n_steps}'", done)
    return time.perf_counter() - clicked, text


def bare_rollout() -> tuple[Callable[[int], float], str, bool]:
    """(time an ``n``-step rollout, model label, is demo): the default page's rollout run
    with no UI, in this process (model loaded and warmed up once)."""
    from explorer.session import Rollout
    from widgets.app_liflow import LiFlowApp
    from widgets.runs import build_run

    app = LiFlowApp(slots=None)  # outside a server: no document, the page's defaults
    if app.mode.value != "single temperature":
        raise RuntimeError(f"unexpected default mode {app.mode.value!r}")
    simulator, atoms, knobs = build_run(app.choice, app.atoms, app.knobs())
    Rollout(simulator, atoms, 1, knobs).run()  # warm-up: model loaded, caches filled

    def timed(n_steps: int) -> float:
        started = time.perf_counter()
        Rollout(simulator, atoms, n_steps, knobs).run()
        return time.perf_counter() - started

    return timed, app.choice.label, app.choice.is_demo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="steps of the timed rollout")
    parser.add_argument("--port", type=int, default=None, help="server port (default: free)")
    parser.add_argument("--repeats", type=int, default=3, help="fresh contexts for page ready")
    parser.add_argument("--pairs", type=int, default=3, help="page/bare rollout pairs")
    parser.add_argument("--timeout", type=float, default=180.0, help="limit of each wait, s")
    parser.add_argument("--screenshot", type=Path, default=None, help="full-page PNG at the end")
    args = parser.parse_args()
    if args.steps < 1 or args.repeats < 1 or args.pairs < 1:
        parser.error("--steps, --repeats and --pairs must be >= 1")

    bare, bare_model, is_demo = bare_rollout()
    time_step_ps = 1.0
    if not is_demo:
        from widgets.runs import liflow_choices

        by_label = {c.label: c.time_step_ps for c in liflow_choices()}
        time_step_ps = by_label.get(bare_model, 1.0)

    port = args.port or free_port()
    with panel_server(port, args.timeout) as (url, log, start_s):
        print(f"server: {url}")
        print(f"server start (launch → HTTP 200): {start_s:.2f} s")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                ready, drawn = [], []
                page = None
                for i in range(args.repeats):
                    if page is not None:
                        page.context.close()
                    page, seconds, plotted = open_ready_page(browser, url, args.timeout)
                    ready.append(seconds)
                    drawn.append(plotted)
                    print(
                        f"page ready, context {i + 1}: {seconds:.2f} s (plots drawn "
                        f"{plotted:.2f} s)"
                    )
                print(
                    f"page ready median of {len(ready)}: {statistics.median(ready):.2f} s "
                    "(target < 5 s; the first session of a server may be slower); MSD plot "
                    f"and 3-D view drawn: median {statistics.median(drawn):.2f} s"
                )
                assert page is not None
                model = page.locator(MODEL).evaluate("el => el.options[el.selectedIndex].text")
                material = page.locator(".accelmd-material select").evaluate(
                    "el => el.options[el.selectedIndex].text"
                )
                print(f"page model: {model!r}; material: {material!r}")
                if model != bare_model:
                    print(f"WARNING: the bare rollout used {bare_model!r}")

                first_s, how = first_frame(page, args.timeout)
                print(f"first frame after Run: {first_s:.2f} s, seen in the {how} (target < 2 s)")
                stop_run(page, args.timeout)

                ratios, walls = [], []
                for _ in range(args.pairs):  # alternated: load drifts move single runs
                    page_s, text = page_rollout(page, args.steps, time_step_ps, args.timeout)
                    bare_s = bare(args.steps)
                    ratios.append(page_s / bare_s)
                    server_wall = wall_seconds(text)
                    if server_wall is not None:
                        walls.append(server_wall / bare_s)
                    print(
                        f"{args.steps} steps ({material}): page (Run → done) {page_s:.2f} s "
                        f"[{text}], bare {bare_s:.2f} s, ratio {page_s / bare_s:.2f}"
                    )
                print(
                    f"page/bare ratio median of {len(ratios)}: {statistics.median(ratios):.2f} "
                    "(target ≤ 1.20)"
                    + (
                        f"; rollout wall shown by the page / bare: median "
                        f"{statistics.median(walls):.2f}"
                        if walls
                        else ""
                    )
                )
                if is_demo or model.startswith("demo"):
                    print(
                        "  note: the demo random-walk model's steps are mostly sleep "
                        "(0.05 s each), so this ratio says little about CPU contention"
                    )
                if args.screenshot is not None:
                    page.screenshot(path=str(args.screenshot), full_page=True)
                    print(f"screenshot: {args.screenshot}")
            finally:
                browser.close()
        if "Traceback" in tail(log, 10**7):
            print(f"WARNING: the server log has a traceback:\n{tail(log)}")


if __name__ == "__main__":
    main()
