"""The nglview wrapper: frames adaptor, growing trajectory, graceful degradation."""

from __future__ import annotations

import numpy as np
import pytest

from widgets import viewer

from .conftest import toy_atoms


def test_adaptor_serves_wrapped_or_unwrapped_frames():
    atoms = toy_atoms()
    adaptor = viewer.FramesAdaptor(atoms, wrap=True)
    moved = atoms.positions + np.array([8.5, 0.0, -0.5])  # one cell over, and a bit
    adaptor.extend([moved])
    assert adaptor.n_frames == 2
    wrapped = adaptor.get_coordinates(1)
    assert wrapped.dtype == np.float32 and np.all((wrapped >= 0) & (wrapped < 8.0 + 1e-4))
    adaptor.wrap = False
    np.testing.assert_allclose(adaptor.get_coordinates(1), moved, atol=1e-5)
    pdb = adaptor.get_structure_string()
    assert pdb.startswith("CRYST1") and " LI" in pdb.upper()


@pytest.mark.skipif(not viewer.TrajectoryViewer().available, reason="nglview not importable")
def test_viewer_follows_appended_frames():
    view = viewer.TrajectoryViewer()
    atoms = toy_atoms()
    view.show_structure(atoms)
    view.set_frames([atoms.positions])
    view.append_frames([atoms.positions + 0.1, atoms.positions + 0.2])
    assert view.n_frames == 3 and view.view.max_frame == 2 and view.view.frame == 2
    view.wrap.value = False  # toggling re-sends the frame; must not raise
    assert view.adaptor.wrap is False


def test_missing_nglview_leaves_a_message(monkeypatch):
    monkeypatch.setattr(viewer, "nglview", None)
    monkeypatch.setattr(viewer, "_NGLVIEW_ERROR", "ModuleNotFoundError: No module named 'x'")
    view = viewer.TrajectoryViewer()
    assert "3-D view unavailable" in view.message.value
    view.show_structure(toy_atoms())  # still accepts frames, draws nothing
    view.append_frames([toy_atoms().positions])
    assert view.n_frames == 2 and view.view is None
