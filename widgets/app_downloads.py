"""Trajectory and figure downloads of a Panel tab (shared by the LiFlow, FlashMD, CG tabs).

The tab provides ``rollout`` (an :class:`explorer.session.Rollout` or None), ``figures``
(name -> plotly figure), ``name`` (file stem) and ``_show(message)``. The trajectory is
written with :meth:`explorer.trajectory.Trajectory.save` (H5MD or extended XYZ, the
formats of the CLI); a tab that runs several structures at once (LiFlow's Arrhenius
mode) overrides :meth:`PanelDownloads.trajectory_parts` and gets a zip with one file
each. Figures are zipped as self-contained HTML (plotly.js inside, no network needed).
A download that cannot be made shows a message in the page and returns an empty file.
"""

from __future__ import annotations

import io
import logging
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import panel as pn

from explorer.errors import ExplorerError
from explorer.trajectory import Trajectory
from widgets import figures
from widgets.controller import error_message

log = logging.getLogger("accelmd.app")

TRAJECTORY_FORMATS = {"H5MD (.h5)": ".h5", "extended XYZ (.extxyz)": ".extxyz"}


class PanelDownloads:
    """Adds ``trajectory_format``, ``trajectory_download``, ``figures_download`` and
    ``download_box``; call :meth:`_build_downloads` while building the tab and
    :meth:`_update_downloads` when a run ends."""

    name: str

    def _build_downloads(self) -> None:
        css = f"accelmd-{self.name}-download" if self.name != "liflow" else "accelmd-download"
        self.trajectory_format = pn.widgets.Select(
            label="trajectory format", options=TRAJECTORY_FORMATS, value=".h5", width=180
        )
        self.trajectory_download = pn.widgets.FileDownload(
            callback=self._trajectory_file,
            filename=f"{self.name}_rollout.h5", label="Download trajectory", color="primary",
            disabled=True, width=220, css_classes=[f"{css}-trajectory"],
        )  # fmt: skip
        self.figures_download = pn.widgets.FileDownload(
            callback=self._figures_file,
            filename=f"{self.name}_figures.zip", label="Download figures (HTML, zip)",
            color="primary", disabled=True, width=260, css_classes=[f"{css}-figures"],
        )  # fmt: skip
        self.trajectory_format.param.watch(lambda _: self._update_downloads(), "value")
        self.download_box = pn.Row(
            self.trajectory_format, self.trajectory_download, self.figures_download
        )

    def _on_finished(self) -> None:
        self._update_downloads()

    def _has_frames(self) -> bool:
        rollout = getattr(self, "rollout", None)
        return rollout is not None and rollout.n_frames > 0

    def _update_downloads(self) -> None:
        """Enable the buttons once there are frames; name the file by format."""
        has_frames = self._has_frames()
        several = has_frames and self.n_trajectory_parts() > 1
        suffix = ".zip" if several else self.trajectory_format.value
        self.trajectory_download.param.update(
            filename=f"{self.name}_rollout{suffix}", disabled=not has_frames
        )
        self.figures_download.disabled = not has_frames

    def n_trajectory_parts(self) -> int:
        """How many files :meth:`trajectory_parts` gives (without building them)."""
        return 1

    def trajectory_parts(self) -> list[tuple[str, Trajectory]]:
        """(file stem, trajectory) per file to download; one by default."""
        return [(f"{self.name}_rollout", self.rollout.trajectory())]  # type: ignore[attr-defined]

    def trajectory_bytes(self) -> bytes:
        """The frames so far as H5MD/extxyz bytes (a zip when there are several parts)."""
        if not self._has_frames():
            raise ExplorerError("nothing to download: run a rollout first")
        parts, suffix = self.trajectory_parts(), self.trajectory_format.value
        with tempfile.TemporaryDirectory(prefix="accelmd-download-") as tmp:
            paths = [traj.save(Path(tmp) / f"{stem}{suffix}") for stem, traj in parts]
            if len(paths) == 1:
                return paths[0].read_bytes()
            buffer = io.BytesIO()
            with zipfile.ZipFile(buffer, "w") as archive:
                for path in paths:
                    archive.write(path, path.name)
            return buffer.getvalue()

    def figures_bytes(self) -> bytes:
        """Every figure of the tab as self-contained HTML, zipped."""
        with tempfile.TemporaryDirectory(prefix="accelmd-figures-") as tmp:
            written, problems = figures.write_figures(self.figures, tmp, ("html",))  # type: ignore[attr-defined]
            if problems:
                raise ExplorerError("; ".join(problems))
            buffer = io.BytesIO()
            with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
                for path in written:
                    archive.write(path, path.name)
            return buffer.getvalue()

    def _trajectory_file(self) -> io.BytesIO:
        return self._download(self.trajectory_bytes)

    def _figures_file(self) -> io.BytesIO:
        return self._download(self.figures_bytes)

    def _download(self, make: Callable[[], bytes]) -> io.BytesIO:
        try:
            return io.BytesIO(make())
        except (ExplorerError, OSError) as exc:
            log.warning("%s download failed: %s", self.name, exc)
            self._show(error_message(exc))  # type: ignore[attr-defined]
            return io.BytesIO(b"")
