"""3-D trajectory view in JupyterLab with nglview 3.1.4; every nglview quirk lives here.

Facts this module relies on (``UI-NOTES.md``; nglview 3.1.4, JupyterLab 4.6):

* nglview 4.0 does not render in JupyterLab 4.6; 3.1.4 does. 3.1.4 imports
  ``pkg_resources`` (setuptools < 81). Any import failure leaves a message in place
  of the view instead of an exception.
* nglview reads frames through an adaptor with three members, ``get_structure_string()``
  (PDB text with CRYST1, which the ``unitcell`` representation needs),
  ``get_coordinates(i)`` and ``n_frames`` (STYLE.md §10). :class:`FramesAdaptor` serves
  them from a list that grows while a rollout runs, so no file is written per frame.
* nglview counts frames once, in ``add_trajectory``; after appending we set
  ``max_frame`` ourselves (what its private ``_update_max_frame`` does) and re-send the
  shown frame by setting ``frame`` (coordinates are only sent on frame changes).
* Positions are unwrapped (ARCHITECTURE.md); wrapping is for display only.
"""

from __future__ import annotations

import io
import threading
import uuid
from typing import Any

import ipywidgets as w
import numpy as np
from ase import Atoms

from explorer.trajectory import wrap_positions

#: Li drawn large and in one bright colour; the frame as small ball-and-stick.
LI_COLOUR = "#00c060"
# Fractions of the van der Waals radii: Li stands out by colour and size, while the frame
# (S, P, Ge, Cl, …) stays visible between the Li spheres instead of hidden behind them.
LI_RADIUS_SCALE = 0.45
FRAME_RADIUS_SCALE = 0.3

try:  # the viewer is optional: figures and controls work without it
    import nglview

    _NGLVIEW_ERROR = ""
except Exception as exc:  # ImportError, or pkg_resources missing (setuptools >= 81)
    nglview = None
    _NGLVIEW_ERROR = f"{type(exc).__name__}: {exc}"


def nglview_problem() -> str:
    """Why nglview cannot be used here ('' when it can)."""
    return _NGLVIEW_ERROR


def _pdb_text(atoms: Atoms) -> str:
    buffer = io.StringIO()
    atoms.write(buffer, format="proteindatabank")
    return buffer.getvalue()


class FramesAdaptor:
    """nglview's trajectory protocol over a growing list of unwrapped frames (Å).

    ``wrap`` switches what :meth:`get_coordinates` returns: positions wrapped into the
    cell (atoms stay inside the drawn cell) or unwrapped (Li paths stay continuous).
    Appending from another thread is safe (a lock guards the list).
    """

    def __init__(self, atoms: Atoms, wrap: bool = True) -> None:
        self.id = str(uuid.uuid4())  # nglview identifies components by this
        self.ext = "pdb"
        self.params: dict[str, Any] = {}
        self.shown = True
        self.atoms = atoms.copy()
        self.wrap = wrap
        self._frames: list[np.ndarray] = [atoms.positions.astype(np.float32)]
        self._lock = threading.Lock()

    @property
    def n_frames(self) -> int:
        with self._lock:
            return len(self._frames)

    def replace(self, frames: list[np.ndarray]) -> None:
        """Start over from these frames (a new run)."""
        with self._lock:
            self._frames = [np.asarray(f, dtype=np.float32) for f in frames] or self._frames[:1]

    def extend(self, frames: list[np.ndarray]) -> None:
        with self._lock:
            self._frames.extend(np.asarray(f, dtype=np.float32) for f in frames)

    def get_coordinates(self, index: int) -> np.ndarray:
        with self._lock:
            positions = self._frames[index]
        if self.wrap:
            positions = wrap_positions(positions, self.atoms.cell[:], self.atoms.pbc)
        return np.ascontiguousarray(positions, dtype=np.float32)

    def get_structure_string(self) -> str:
        atoms = self.atoms.copy()
        atoms.positions = self.get_coordinates(0)
        return _pdb_text(atoms)


class TrajectoryViewer:
    """An nglview widget (or a message) showing a structure and its growing trajectory.

    ``widget`` is what to display. :meth:`show_structure` starts over with a structure,
    :meth:`set_frames` / :meth:`append_frames` feed frames (Å, unwrapped), and the
    wrapped/unwrapped toggle re-sends the current frame. ``follow`` jumps to the newest
    frame as frames arrive.
    """

    def __init__(self, height: str = "400px") -> None:
        self.height = height
        self.adaptor: FramesAdaptor | None = None
        self.view: Any = None
        self.follow = w.Checkbox(value=True, description="follow newest frame", indent=False)
        self.wrap = w.ToggleButtons(
            options=[("wrapped", True), ("unwrapped", False)],
            value=True,
            description="positions",
            tooltip="wrapped: atoms inside the cell; unwrapped: continuous Li paths",
        )
        self.wrap.observe(self._on_wrap, names="value")
        self.message = w.HTML()
        self.holder = w.Box(layout=w.Layout(width="100%"))
        self.widget = w.VBox([w.HBox([self.wrap, self.follow]), self.holder, self.message])
        if nglview is None:
            self.message.value = (
                "<b>3-D view unavailable</b>: nglview could not be imported "
                f"({_NGLVIEW_ERROR}). Install <code>nglview==3.1.4</code> and "
                "<code>setuptools&lt;81</code>; the plots below still work."
            )

    @property
    def available(self) -> bool:
        return nglview is not None

    @property
    def n_frames(self) -> int:
        return 0 if self.adaptor is None else self.adaptor.n_frames

    def show_structure(self, atoms: Atoms) -> None:
        """A fresh view of ``atoms``: Li highlighted, the cell drawn."""
        self.adaptor = FramesAdaptor(atoms, wrap=self.wrap.value)
        if nglview is None:
            return
        try:
            view = nglview.NGLWidget()
            view.add_trajectory(self.adaptor)
            view.clear_representations()
            view.add_spacefill(selection="not _Li", radiusScale=FRAME_RADIUS_SCALE)
            view.add_spacefill(selection="_Li", color=LI_COLOUR, radiusScale=LI_RADIUS_SCALE)
            view.add_unitcell()
            view.layout = w.Layout(width="100%", height=self.height)
            view.camera = "orthographic"
        except Exception as exc:  # nglview internals changed: keep the rest of the UI
            self.message.value = f"<b>3-D view failed</b>: {type(exc).__name__}: {exc}"
            self.view = None
            return
        self.view = view
        self.holder.children = [view]

    def set_frames(self, frames: list[np.ndarray]) -> None:
        """Replace all frames (a new run starting from frame 0)."""
        if self.adaptor is not None:
            self.adaptor.replace(frames)
            self._refresh(jump=True)

    def append_frames(self, frames: list[np.ndarray]) -> None:
        """Add frames as they arrive from the rollout."""
        if self.adaptor is not None and frames:
            self.adaptor.extend(frames)
            self._refresh(jump=self.follow.value)

    def _refresh(self, jump: bool) -> None:
        if self.view is None or self.adaptor is None:
            return
        last = self.adaptor.n_frames - 1
        self.view.max_frame = last
        if jump:
            self._send_frame(last)

    def _send_frame(self, index: int) -> None:
        # Setting ``frame`` sends coordinates only when the value changes.
        if self.view.frame == index:
            self.view._set_coordinates(index)
        else:
            self.view.frame = index

    def _on_wrap(self, change: dict) -> None:
        if self.adaptor is None:
            return
        self.adaptor.wrap = bool(change["new"])
        if self.view is not None:
            self._send_frame(self.view.frame)
