"""The explorer as a Panel web app: ``panel serve widgets/app.py`` (``make app``).

``panel serve`` runs this file once per browser session; :func:`create_app` builds
that session's page, with its own :class:`~widgets.app_liflow.LiFlowApp` and so its
own Rollout (two sessions never see each other's frames). Closing the tab ends the
session, and ``pn.state.on_session_destroyed`` stops its rollouts. The FlashMD
(:mod:`widgets.app_flashmd`) and CG-polymer (:mod:`widgets.app_cg`) tabs are built the
same way, each with its own Rollout, all under the same server-wide slots. A server-wide cap
on concurrent rollouts (``ACCELMD_MAX_ROLLOUTS``, default 2) lives in
:mod:`widgets.app_sessions`.

Serve on loopback unless you mean otherwise::

    panel serve widgets/app.py --address 127.0.0.1 --port 5006 \\
        --allow-websocket-origin=127.0.0.1:5006
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import panel as pn

from explorer.checkpoints import CHECKPOINT_DIR
from explorer.materials import load_material
from explorer.reference.dataset import REFERENCE_DIR
from widgets.app_cg import CGApp
from widgets.app_flashmd import FlashMDApp
from widgets.app_liflow import DEFAULT_MATERIAL, DEFAULT_TEMPERATURE_K, LiFlowApp
from widgets.app_sessions import SLOTS
from widgets.helpers import default_card_index, matching_reference
from widgets.live import reference_analysis
from widgets.runs import liflow_choices

log = logging.getLogger("accelmd.app")

TITLE = "accelmd explorer"
INTRO = (
    "Pick a material and a model, set the knobs, press **Run**: the trajectory, the mean "
    "squared displacement, the radial distribution function and the Li potential of mean "
    "force build up as frames arrive, next to reference MD (dashed) where one is bundled."
)


def _serve_css_locally() -> None:
    """Make Panel link its stylesheets from this server, not from its CDN (offline use).

    Panel 1.9 picks local or CDN URLs for a model's stylesheets from the document's
    ``dist_url`` template variable, which it sets only after the script has built the
    page; models created before that or later (every live update) got CDN URLs, which
    fail without network (measured: default.css, button.css, … unreachable). Setting the
    variable first, to what Panel itself would use, keeps every stylesheet local.
    """
    doc = pn.state.curdoc
    if doc is None or doc.session_context is None:
        return
    from panel.io.resources import get_dist_path

    doc._template_variables.setdefault("dist_url", get_dist_path())


class LazyTab:
    """A tab whose app is built the first time it is shown (or asked for).

    Building the FlashMD and CG tabs (their plotly figures above all) is most of the
    time a new session spends before its page can be sent, and most visitors start in
    the LiFlow tab; so those two are built on first view. ``container`` is what the tab
    holds: a note until then, the app's layout after.
    """

    def __init__(self, build: Callable[[], Any], what: str) -> None:
        self._build = build
        self._app: Any = None
        self._lock = threading.Lock()
        self.container = pn.Column(
            pn.pane.Markdown(f"*Loading the {what} tab…*"), sizing_mode="stretch_width"
        )

    @property
    def built(self) -> bool:
        return self._app is not None

    def get(self) -> Any:
        """The tab's app, built now if it was not yet."""
        with self._lock:
            if self._app is None:
                self._app = self._build()
                self.container.objects = [self._app.layout]
        return self._app

    def close(self) -> None:
        if self._app is not None:
            self._app.close()


class ExplorerPage(pn.Column):
    """The page of one session; ``liflow``, ``flashmd`` and ``cg`` are its tab apps
    (the last two built on first access, see :class:`LazyTab`)."""

    @property
    def flashmd(self) -> FlashMDApp:
        return self._lazy["flashmd"].get()

    @property
    def cg(self) -> CGApp:
        return self._lazy["cg"].get()


def create_app(
    *,
    flashmd_options: dict[str, Any] | None = None,
    cg_options: dict[str, Any] | None = None,
    **liflow_kwargs: Any,
) -> ExplorerPage:
    """One session's page: title, the LiFlow, FlashMD and CG-polymer tabs.

    ``liflow_kwargs`` go to :class:`LiFlowApp` (tests pass model choices and slots),
    ``flashmd_options`` to :class:`FlashMDApp` and ``cg_options`` to :class:`CGApp`;
    the three share the ``slots`` given to LiFlow unless told otherwise. The tab objects
    are reachable as ``page.liflow``, ``page.flashmd`` and ``page.cg``; the FlashMD and
    CG tabs are built when first shown or first reached that way.
    """
    _serve_css_locally()
    slots = liflow_kwargs.get("slots", SLOTS)
    liflow = LiFlowApp(**liflow_kwargs)
    lazy = {
        "flashmd": LazyTab(
            lambda: FlashMDApp(**{"slots": slots, **(flashmd_options or {})}), "FlashMD"
        ),
        "cg": LazyTab(lambda: CGApp(**{"slots": slots, **(cg_options or {})}), "CG simulator"),
    }
    tabs = pn.Tabs(
        ("LiFlow", liflow.layout),
        ("FlashMD", lazy["flashmd"].container),
        ("CG simulator", lazy["cg"].container),
        sizing_mode="stretch_width",
        dynamic=True,
        css_classes=["accelmd-tabs"],
    )
    by_index = {1: lazy["flashmd"], 2: lazy["cg"]}
    tabs.param.watch(lambda event: by_index[event.new].get() if event.new in by_index else None,
                     "active")  # fmt: skip
    page = ExplorerPage(
        pn.pane.Markdown(f"# {TITLE}\n{INTRO}"),
        tabs,
        sizing_mode="stretch_width",
        css_classes=["accelmd-app"],
    )
    page.liflow = liflow  # type: ignore[attr-defined]  # handles for tests and scripts
    page._lazy = lazy  # type: ignore[attr-defined]
    if pn.state.curdoc is not None and pn.state.curdoc.session_context is not None:
        # A bound method, not a module-level function: bokeh clears this script's module
        # globals when the session ends, before the callback runs.
        closers = (liflow.close, lazy["flashmd"].close, lazy["cg"].close)
        pn.state.on_session_destroyed(lambda _context: [close() for close in closers])
    return page


def warm_reference_cache(
    material: str = DEFAULT_MATERIAL, reference_dir: Path = REFERENCE_DIR
) -> None:
    """Analyse the default reference MD in the background, once per server process.

    The first Run then finds the reference MSD/RDF ready instead of computing them
    while the user waits for the first figures.
    """
    path = matching_reference(material, DEFAULT_TEMPERATURE_K, reference_dir)

    def work() -> None:
        try:
            reference_analysis(path)
        except Exception as exc:  # only a cache: the run reports real problems later
            log.warning("could not pre-analyse %s: %s", path, exc)

    if path is not None:
        threading.Thread(target=work, name="accelmd-warm-reference", daemon=True).start()


def warm_default_model(
    material: str = DEFAULT_MATERIAL, checkpoint_dir: Path = CHECKPOINT_DIR
) -> threading.Thread | None:
    """Load the default LiFlow checkpoint and CHGNet in the background, once per server.

    The first Run otherwise spends seconds loading the weights and the CHGNet model the
    prior classifier reads its features from (measured: first frame 5.5 s after Run on
    a cold server). Sessions then find both in the process-wide caches
    (:func:`widgets.runs.shared_liflow_simulator`, :func:`explorer.liflow.classifier.
    load_chgnet`). Returns the thread (None without a LiFlow checkpoint).
    """
    choices = liflow_choices(checkpoint_dir)
    if not choices:
        return None
    choice = choices[default_card_index([c.card for c in choices], material)]

    def work() -> None:
        try:
            simulator = choice.simulator("auto")
            simulator.prior_choices([load_material(material)], [DEFAULT_TEMPERATURE_K])
        except Exception as exc:  # only a cache: the run reports real problems later
            log.warning("could not pre-load %s: %s", choice.label, exc)

    thread = threading.Thread(target=work, name="accelmd-warm-model", daemon=True)
    thread.start()
    return thread


if pn.state.served or __name__.startswith("bokeh_app"):
    pn.extension("plotly", sizing_mode="stretch_width", notifications=False)
    log.setLevel(logging.INFO)  # runs, stops, refusals and errors go to the server log
    if not getattr(pn.state, "_accelmd_warmed", False):
        pn.state._accelmd_warmed = True  # the script runs per session; warm once
        warm_reference_cache()
        warm_default_model()
    create_app().servable(title=TITLE)
