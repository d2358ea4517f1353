"""The notebook explorer in a real JupyterLab: ``jupyter lab`` on loopback, Debian Chromium.

A notebook with one cell (``from widgets import Explorer; explorer = Explorer()``) is
written to a temporary directory; ``jupyter lab`` is started there by ``subprocess`` on
127.0.0.1 and a free port (no token, no network: news and update checks are off, and
Jupyter's config, data, runtime, settings and workspace directories are temporary) and
stopped by its PID. Chromium is the system one (``/usr/bin/chromium``), driven through
Playwright. The test runs the cell and checks what JupyterLab draws: the ipywidgets (the
Run button), a plotly ``FigureWidget`` and the nglview 3.1.4 canvas, with no traceback
and no widget-manager error; then it sets a short rollout, presses Run in the page and
waits for the progress line to say ``done``.

Screenshots and the server log go to ``$ACCELMD_ARTIFACTS`` (default ``test-artifacts/``
at the repository root). Timeouts are generous: two CPU cores shared with other jobs,
and WebGL through SwiftShader. The kernel is the venv's Python, where the repository is
installed (editable), so the notebook needs no ``sys.path`` change.
"""

from __future__ import annotations

import io
import json
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
nbformat = pytest.importorskip("nbformat")
pytest.importorskip("jupyterlab")
Image = pytest.importorskip("PIL.Image")

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("ACCELMD_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = Path(os.environ.get("ACCELMD_ARTIFACTS", ROOT / "test-artifacts"))
SERVER_START_S = 180.0
PAGE_S = 120.0  # ms below are these × 1000
KERNEL_S = 180.0  # kernel start, then the cell (imports torch, builds three tabs)
RUN_S = 180.0  # a 3-step demo rollout pressed in the page
NOTEBOOK = "explorer.ipynb"
CELL = "from widgets import Explorer\n\nexplorer = Explorer()\nexplorer"
STEPS = 3
# Texts that JupyterLab's widget manager shows when a widget's model or view fails.
WIDGET_ERRORS = ("Error displaying widget", "Error creating widget", "Failed to load model class")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM}"),
]


def _write_notebook(directory: Path) -> Path:
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(CELL)]
    notebook.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
    }
    path = directory / NOTEBOOK
    nbformat.write(notebook, path)
    return path


def _stop(process: subprocess.Popen, base_url: str) -> None:
    """Ask the server to shut down (it stops its kernel), then SIGTERM/SIGKILL its PID."""
    if process.poll() is None:
        try:
            request = urllib.request.Request(f"{base_url}/api/shutdown", method="POST")
            urllib.request.urlopen(request, timeout=20).close()
            process.wait(timeout=40)
        except (OSError, subprocess.TimeoutExpired):
            pass
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)  # only the server this fixture started
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


@pytest.fixture(scope="module")
def lab(tmp_path_factory, free_port) -> Iterator[str]:
    """``jupyter lab`` on 127.0.0.1:<free port> serving a directory with the notebook.

    Yields the notebook's URL.
    """
    home = tmp_path_factory.mktemp("lab")
    notebooks = home / "notebooks"
    notebooks.mkdir()
    _write_notebook(notebooks)
    # No news toast and no update check (nothing may reach the network).
    settings = home / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    notification = {"fetchNews": "false", "checkForUpdates": False}
    (settings / "notification.jupyterlab-settings").write_text(json.dumps(notification))
    port = free_port()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log_path = ARTIFACTS / f"lab-server-{port}.log"
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "JUPYTER_CONFIG_DIR": str(home / "config"),
        "JUPYTER_DATA_DIR": str(home / "data"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"),
        "IPYTHONDIR": str(home / "ipython"),
    }
    command = [
        sys.executable, "-m", "jupyter", "lab", "--no-browser",
        "--ip", "127.0.0.1", "--port", str(port), "--ServerApp.port_retries=0",
        "--ServerApp.token=", "--ServerApp.password=", "--ServerApp.disable_check_xsrf=True",
        "--allow-root", f"--ServerApp.root_dir={notebooks}",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.expose_app_in_browser=True",  # window.jupyterapp: run cells by command
    ]  # fmt: skip
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, cwd=notebooks, env=env, stdout=log, stderr=log)
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"jupyter lab exited: {log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{base_url}/lab", timeout=30) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"jupyter lab not up after {SERVER_START_S} s")
            time.sleep(0.5)
        yield f"{base_url}/lab/tree/{NOTEBOOK}"
    finally:
        _stop(process, base_url)


# The open notebook's kernel, through the app JupyterLab exposes (expose_app_in_browser).
KERNEL_IDLE_JS = """() => {
    const app = window.jupyterapp;
    const panel = app && app.shell.currentWidget;
    const context = panel && panel.sessionContext;
    const kernel = context && context.session && context.session.kernel;
    return !!kernel && context.isReady && kernel.status === 'idle';
}"""
CELL_DONE_JS = """() => {
    const cell = document.querySelector('.jp-Notebook .jp-CodeCell');
    const prompt = cell && cell.querySelector('.jp-InputArea-prompt');
    return !!prompt && /\\[\\d+\\]/.test(prompt.textContent);
}"""


def stderr_text(page) -> str:
    """Everything the cell wrote to stderr (tracebacks land here too)."""
    blocks = page.locator(
        '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'
    ).all_inner_texts()
    return "\n".join(blocks)


def assert_no_errors(page, console: list[str]) -> None:
    stderr = stderr_text(page)
    assert "Traceback" not in stderr, stderr
    outputs = "\n".join(page.locator(".jp-OutputArea").all_inner_texts())
    for text in WIDGET_ERRORS:
        assert text not in outputs, f"{text!r} in the output: {outputs[-2000:]}"
    assert not [line for line in console if "Failed to load model class" in line], console


def green_pixels(locator, name: str) -> tuple[int, float]:
    """Li-green pixels in an element's screenshot (Li are drawn #00c060) and its contrast."""
    png = locator.screenshot(path=str(ARTIFACTS / name))
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=float)
    r, g, b = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    green = (g > 90) & (g > r + 50) & (g > b + 20)
    return int(green.sum()), float(pixels.std())


def canvas_size(locator) -> tuple[float, float]:
    box = locator.bounding_box()
    return (0.0, 0.0) if box is None else (box["width"], box["height"])


def test_explorer_renders_and_runs_in_jupyterlab(lab, browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1100})
    page = context.new_page()
    page.set_default_timeout(PAGE_S * 1000)
    console: list[str] = []
    page.on("console", lambda msg: console.append(f"{msg.type}: {msg.text}"))
    page.on("pageerror", lambda exc: console.append(f"pageerror: {exc}"))
    timings: dict[str, float] = {}
    started = time.perf_counter()
    try:
        page.goto(lab)
        page.locator(".jp-Notebook .jp-CodeCell").first.wait_for()
        page.wait_for_function(KERNEL_IDLE_JS, timeout=KERNEL_S * 1000, polling=500)
        timings["kernel idle"] = time.perf_counter() - started
        page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
        page.wait_for_function(CELL_DONE_JS, timeout=KERNEL_S * 1000, polling=500)
        timings["cell done"] = time.perf_counter() - started
        output = page.locator(".jp-Notebook .jp-CodeCell .jp-OutputArea").first

        # ipywidgets: the LiFlow tab's Run button (the other tabs' buttons are hidden).
        # (Its accessible name starts with the icon font's glyph, so match the text.)
        run = output.locator("button", has_text=re.compile(r"^\s*Run\s*$")).filter(visible=True)
        run.wait_for(state="visible")
        assert "Run" in run.inner_text()
        # plotly FigureWidget (through anywidget): at least one graph drawn.
        graph = output.locator(".js-plotly-plot .main-svg").filter(visible=True).first
        graph.wait_for(state="visible")
        assert min(canvas_size(graph)) > 50, canvas_size(graph)
        # nglview 3.1.4: its stage is a WebGL canvas in a jQuery-UI resizable div.
        canvas = output.locator(".ui-resizable canvas").filter(visible=True).first
        canvas.wait_for(state="visible")
        assert min(canvas_size(canvas)) > 50, canvas_size(canvas)
        page.wait_for_timeout(3000)  # let WebGL draw the structure
        green, contrast = green_pixels(canvas, "lab-explorer-3d.png")
        assert green > 200 and contrast > 10.0, f"3-D view blank? {green} px, std {contrast}"
        timings["widgets drawn"] = time.perf_counter() - started
        page.wait_for_timeout(2000)  # let late widget errors show up
        assert_no_errors(page, console)
        page.screenshot(path=str(ARTIFACTS / "lab-explorer-rendered.png"))

        # A short rollout pressed in the page (default model: the demo random walk
        # without a LiFlow checkpoint, else the first checkpoint).
        steps = output.locator(".widget-text:has(label:text-is('LiFlow steps')) input")
        steps.fill(str(STEPS))
        steps.press("Enter")
        page.wait_for_timeout(500)  # the new value reaches the kernel
        clicked = time.perf_counter()
        run.click()
        done = output.get_by_text(re.compile(rf"done · {STEPS}/{STEPS} steps"))
        done.wait_for(timeout=RUN_S * 1000)
        timings["run done after click"] = time.perf_counter() - clicked
        # The run starts a fresh nglview stage (show_structure) and streams frames to it.
        canvas.wait_for(state="visible")
        assert min(canvas_size(canvas)) > 50, canvas_size(canvas)
        page.wait_for_timeout(3000)
        green, contrast = green_pixels(canvas, "lab-explorer-3d-run.png")
        assert green > 200 and contrast > 10.0, f"3-D view blank? {green} px, std {contrast}"
        assert_no_errors(page, console)
    finally:
        try:
            page.screenshot(path=str(ARTIFACTS / "lab-explorer.png"))
            (ARTIFACTS / "lab-explorer-console.log").write_text("\n".join(console) + "\n")
        finally:
            context.close()
        print("; ".join(f"{name} {seconds:.1f} s" for name, seconds in timings.items()))
