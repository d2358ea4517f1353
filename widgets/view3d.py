"""The app's 3-D trajectory view: plotly ``Scatter3d`` in a Panel pane, frames played back.

Why plotly and not nglview or 3Dmol.js (``UI-NOTES.md``, measured on this machine):

* nglview renders inside Panel only after three patches on other libraries' internals
  (JS served from a local copy, an injected ``buffers`` field, explicit sizes); an
  upgrade of Panel, ipywidgets_bokeh or nglview can silently blank it again.
* 3Dmol.js renders from an ``<iframe srcdoc=…>``, but no pip package here ships the
  JavaScript (``py3Dmol`` points at a CDN, and the app must work offline), so it would
  mean vendoring a 500 kB minified file and pushing frames into the iframe by hand.
* plotly.js already ships with Panel (the MSD/RDF/PMF panes load it), ``Scatter3d``
  renders in headless Chromium through SwiftShader WebGL, and updating whole trace
  arrays through the pane is the live path measured for the 2-D figures. The cost is
  looks (markers, not shaded spheres), which is acceptable for 50–200 atoms.

Frames are kept here as they arrive; a :class:`panel.widgets.Player` plays them back,
and while "follow" is on the newest frame is shown as soon as it arrives. Positions are
unwrapped in trajectories (ARCHITECTURE.md) and wrapped into the cell only for display.
The figure builder :func:`structure_figure` is pure (no Panel) and tested directly.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np
import panel as pn
import plotly.graph_objects as go
from ase.data import atomic_numbers, chemical_symbols, covalent_radii

from explorer.trajectory import wrap_positions
from widgets.figures import TEMPLATE, cell_edges, species_colour
from widgets.live import species_order

#: Marker size (px) per Å of covalent radius; Li is drawn larger to stand out.
_SIZE_PER_A = 7.0
_LI_SIZE = 9.0
#: The camera survives data updates as long as uirevision does not change.
_KEEP_CAMERA = "accelmd-view3d"


def structure_figure(
    positions: np.ndarray,
    numbers: Sequence[int],
    cell: np.ndarray,
    title: str = "",
) -> go.Figure:
    """Atoms (Å, wrapped into ``cell`` here) coloured by species, Li highlighted, plus cell.

    One ``Scatter3d`` trace per element (``meta`` ``"view3d:<symbol>:model"``) and one
    for the 12 cell edges, so a live figure keeps its traces while frames change and
    :func:`widgets.figures.sync_figure` can copy a rebuilt figure into it.
    """
    numbers = np.asarray(numbers)
    cell = np.asarray(cell, dtype=float)
    order, xyz = species_xyz(positions, numbers, cell)
    fig = go.Figure(
        layout=go.Layout(
            title=title,
            template=TEMPLATE,
            height=460,
            margin=dict(l=0, r=0, t=40, b=0),
            uirevision=_KEEP_CAMERA,
            legend=dict(itemsizing="constant"),
            scene=dict(
                aspectmode="data",
                xaxis=dict(visible=False),
                yaxis=dict(visible=False),
                zaxis=dict(visible=False),
            ),
        )
    )
    edges = cell_edges(cell)
    fig.add_trace(
        go.Scatter3d(
            x=edges[:, 0], y=edges[:, 1], z=edges[:, 2], mode="lines", name="cell",
            meta="view3d:cell:model", line=dict(color="#555555", width=3), hoverinfo="skip",
        )
    )  # fmt: skip
    for symbol, points in zip(order, xyz, strict=True):
        is_li = symbol == "Li"
        radius = float(covalent_radii[atomic_numbers[symbol]])
        fig.add_trace(
            go.Scatter3d(
                x=points[:, 0],
                y=points[:, 1],
                z=points[:, 2],
                mode="markers",
                name=f"{symbol} ({len(points)})",
                meta=f"view3d:{symbol}:model",
                marker=dict(
                    color=species_colour(symbol, order),
                    size=_LI_SIZE if is_li else max(3.0, _SIZE_PER_A * radius),
                    opacity=1.0 if is_li else 0.55,
                    line=dict(width=0),
                ),
                hovertemplate=f"{symbol} %{{x:.2f}}, %{{y:.2f}}, %{{z:.2f}} Å<extra></extra>",
            )
        )
    return fig


def species_xyz(
    positions: np.ndarray, numbers: Sequence[int], cell: np.ndarray
) -> tuple[list[str], list[np.ndarray]]:
    """Element symbols (Li first) and each one's positions wrapped into the cell, Å."""
    numbers = np.asarray(numbers)
    wrapped = wrap_positions(np.asarray(positions, dtype=float), np.asarray(cell, dtype=float))
    symbols = np.array([chemical_symbols[z] for z in numbers])
    order = species_order(symbols.tolist())
    return order, [wrapped[symbols == symbol] for symbol in order]


class TrajectoryView3D:
    """A plotly 3-D pane plus a frame player; frames may be appended from any thread.

    Only :meth:`show` touches the pane (call it on the session's thread: the app
    schedules it with ``doc.add_next_tick_callback``); :meth:`set_structure`,
    :meth:`add_frames` just store data under a lock.
    """

    def __init__(self, height: int = 460) -> None:
        self._lock = threading.Lock()
        self._frames: list[np.ndarray] = []
        self._times: list[float] = []
        self._numbers = np.zeros(0, dtype=int)
        self._cell = np.eye(3)
        self._shown_cell: np.ndarray | None = None
        self.figure = go.Figure(structure_figure(np.zeros((0, 3)), [], np.eye(3)))
        self.pane = pn.pane.Plotly(
            self.figure,
            height=height,
            sizing_mode="stretch_width",
            config={"displaylogo": False, "responsive": True},
            link_figure=False,  # we replace whole arrays, then trigger (UI-NOTES.md)
            css_classes=["accelmd-view3d"],
        )
        self.player = pn.widgets.Player(
            start=0, end=0, value=0, interval=200, loop_policy="once", width=360,
            show_loop_controls=False, visible_buttons=["first", "previous", "pause", "play",
                                                       "next", "last"],
        )  # fmt: skip
        self.follow = pn.widgets.Checkbox(label="follow the newest frame", value=True)
        self.player.param.watch(self._on_player, "value")
        self.layout = pn.Column(
            self.pane,
            pn.Row(self.player, self.follow),
            sizing_mode="stretch_width",
        )

    @property
    def n_frames(self) -> int:
        with self._lock:
            return len(self._frames)

    def set_structure(
        self, positions: np.ndarray, numbers: Sequence[int], cell: np.ndarray
    ) -> None:
        """Forget the frames; the structure becomes frame 0 (what a new material shows)."""
        with self._lock:
            self._numbers = np.asarray(numbers).copy()
            self._cell = np.asarray(cell, dtype=float).copy()
            self._frames = [np.asarray(positions, dtype=float).copy()]
            self._times = [0.0]

    def start_run(self, numbers: Sequence[int], cell: np.ndarray) -> None:
        """Forget the frames: a rollout of these atoms is about to stream its own frame 0."""
        with self._lock:
            self._numbers = np.asarray(numbers).copy()
            self._cell = np.asarray(cell, dtype=float).copy()
            self._frames, self._times = [], []

    def add_frames(self, positions: Sequence[np.ndarray], times_ps: Sequence[float]) -> None:
        """Append frames (unwrapped Å) of the current structure."""
        with self._lock:
            self._frames.extend(np.asarray(p, dtype=float) for p in positions)
            self._times.extend(float(t) for t in times_ps)

    def show(self, index: int | None = None) -> None:
        """Draw frame ``index`` (default: newest if following, else the player's frame)."""
        with self._lock:
            n = len(self._frames)
            if n == 0:
                return
            if index is None:
                index = n - 1 if self.follow.value else min(self.player.value, n - 1)
            index = int(np.clip(index, 0, n - 1))
            positions, time_ps = self._frames[index], self._times[index]
            numbers, cell = self._numbers, self._cell
        title = f"frame {index} of {n - 1} · t = {time_ps:g} ps"
        order, xyz = species_xyz(positions, numbers, cell)
        metas = ["view3d:cell:model", *(f"view3d:{s}:model" for s in order)]
        same_cell = self._shown_cell is not None and np.array_equal(self._shown_cell, cell)
        if metas != [t.meta for t in self.figure.data] or not same_cell:
            # other atoms or cell: a new figure (a new camera is fine then)
            self.figure = structure_figure(positions, numbers, cell, title=title)
            self._shown_cell = cell
            self.pane.object = self.figure
        else:  # the same atoms moved: replace the arrays only (cheap; keeps the camera)
            with self.figure.batch_update():
                for trace, points in zip(self.figure.data[1:], xyz, strict=True):
                    # Whole new arrays, never in-place edits (UI-NOTES.md). Arrays, as when
                    # the figure was built, so that the pane keeps sending them as its data
                    # sources; a new title object, not an edit of the one the pane holds.
                    trace.x, trace.y, trace.z = (np.array(points[:, k]) for k in range(3))
                self.figure.layout.title = dict(text=title)
            self.pane.param.trigger("object")
        self._showing = index
        self.player.param.update(end=max(n - 1, 1), value=index)

    def _on_player(self, event: object) -> None:
        if getattr(self, "_showing", None) == self.player.value:
            return  # our own update of the player, not the user's
        self.follow.value = self.player.value >= self.n_frames - 1
        self.show(self.player.value)
