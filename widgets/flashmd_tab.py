"""The FlashMD tab of the Jupyter explorer, and the run/stop machinery shared with the CG tab.

Same pattern as :mod:`widgets.liflow_tab`: ipywidgets controls map to the knobs of
:class:`~explorer.flashmd.simulate.FlashMDSimulator` exactly as ``accelmd rollout flashmd``
maps its options (:mod:`explorer.cli_flashmd`), a driver thread builds and polls a
:class:`~explorer.session.Rollout` through ``frames_since``, and figures come from the pure
builders of :mod:`widgets.figures`.

Start structure: by default the first frame (positions and momenta) of the system's
held-out test trajectory (``sample_data/flashmd/<system>_test*.h5``), which is what
``accelmd eval flashmd`` starts from and makes the RDF/MSD comparison with that trajectory
like for like; "fresh" builds the structure as the CLI does (argon: melted and cooled,
a few seconds; Al(110): the ideal slab) and draws Maxwell–Boltzmann momenta at the set
temperature.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ipywidgets as w
import numpy as np
import plotly.graph_objects as go
from ase import Atoms

from explorer.analysis.msd import MSDResult, msd
from explorer.analysis.rdf import RDFResult, overlap_score, rdf
from explorer.checkpoints import CHECKPOINT_DIR, card_headline, list_checkpoints
from explorer.errors import ExplorerError
from explorer.session import CANCELLED, DONE, FAILED, Frame, Progress, Rollout
from explorer.trajectory import Trajectory
from widgets import figures
from widgets.helpers import progress_text
from widgets.liflow_tab import _box, _describe, _error_html, _escape
from widgets.live import RDF_BIN_A, _or_none
from widgets.viewer import TrajectoryViewer

FLASHMD_SYSTEMS = ("argon", "al110")
SYSTEM_LABELS = {"argon": "liquid argon (256 Ar, LJ)", "al110": "Al(110) slab (240 Al, EMT)"}
TEST_FRAME, FRESH = "test", "fresh"
THERMOSTAT_OPTIONS = (("none (NVE)", "none"), ("Langevin", "langevin"), ("Bussi (SVR)", "bussi"))
DEFAULT_TEMPERATURES_K = {"argon": 94.4, "al110": 700.0}
FIRST_FRAME_POLL_S = 0.05
_STYLE = {"description_width": "150px"}
_WIDE = w.Layout(width="460px")


class RolloutTab:
    """Run/Stop, progress and the driver thread of a tab that shows one Rollout.

    Subclasses build their controls, then implement :meth:`_make_builder` (checks the
    inputs in the kernel thread and returns a function that builds the Rollout in the driver
    thread, or None after showing why not), :meth:`_on_new_run` (a Rollout is about to
    start) and :meth:`_on_frames` (new frames arrived; update views).
    """

    poll_interval_s: float

    def _build_run(self) -> None:
        self.rollout: Rollout | None = None
        self._driver: threading.Thread | None = None
        self._refresh_lock = threading.Lock()
        self._shown_frames = 0
        self.timings: dict[str, float] = {}
        self.message = w.HTML()
        self.run_button = w.Button(description="Run", button_style="success", icon="play")
        self.stop_button = w.Button(
            description="Stop", button_style="danger", icon="stop", disabled=True
        )
        self.progress = w.FloatProgress(value=0.0, min=0.0, max=1.0, description="progress")
        self.progress_info = w.HTML()
        self.run_button.on_click(lambda _: self.start())
        self.stop_button.on_click(lambda _: self.stop())
        self.run_box = w.HBox(
            [self.run_button, self.stop_button, self.progress, self.progress_info]
        )

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    @property
    def running(self) -> bool:
        return self._driver is not None and self._driver.is_alive()

    def start(self) -> None:
        """What Run does: check the inputs, then drive a Rollout from a background thread."""
        if self.running:
            self.message.value = _box("A rollout is already running; press Stop first.", "#1f77b4")
            return
        try:
            builder = self._make_builder()
        except ExplorerError as exc:
            self._show_error(exc)
            return
        self.message.value = ""
        self.timings = {"clicked": time.perf_counter()}
        self.run_button.disabled, self.stop_button.disabled = True, False
        self.progress.value, self.progress.bar_style = 0.0, "info"
        self.progress_info.value = "loading the model…"
        self._driver = threading.Thread(
            target=self._drive, args=(builder,), name=f"accelmd-{self._name}-tab", daemon=True
        )
        self._driver.start()

    def stop(self) -> None:
        """What Stop does: the rollout ends after the step it is computing."""
        if self.rollout is not None:
            self.rollout.stop()
            self.progress_info.value = "stopping after the current step…"

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the run (and its last figure update) is over; True if it is."""
        if self._driver is None:
            return True
        self._driver.join(timeout)
        return not self._driver.is_alive()

    def _drive(self, builder: Callable[[], Rollout]) -> None:
        try:
            rollout = builder()
            self._shown_frames = 0
            self._on_new_run(rollout)
        except Exception as exc:  # model loading / bad inputs: report, stay usable
            self._finish_failed(exc)
            return
        self.rollout = rollout
        rollout.start()
        wait = FIRST_FRAME_POLL_S
        while True:
            finished = rollout.join(timeout=wait)
            started = time.perf_counter()
            try:
                self.refresh()
            except Exception as exc:  # a view failed: say so, let the rollout go on
                self._show_error(exc, prefix="updating the views: ")
            cost = time.perf_counter() - started
            if finished:
                break
            first_pending = self._shown_frames == 0
            wait = FIRST_FRAME_POLL_S if first_pending else max(self.poll_interval_s, 5.0 * cost)
        self._finish()

    def refresh(self) -> None:
        """Pull new frames from the rollout into the progress bar and the views."""
        rollout = self.rollout
        if rollout is None:
            return
        with self._refresh_lock:
            progress = rollout.progress()
            self.progress.value = progress.fraction
            self.progress_info.value = _escape(self._progress_text(progress))
            new = rollout.frames_since(self._shown_frames)
            if not new:
                return
            if self._shown_frames == 0:
                self.timings.setdefault("first_frame", time.perf_counter())
            first = self._shown_frames == 0
            self._shown_frames += len(new)
            self._on_frames(rollout, new, first)

    def _progress_text(self, progress: Progress) -> str:
        return progress_text(progress)

    def _finish(self) -> None:
        rollout = self.rollout
        self.run_button.disabled, self.stop_button.disabled = False, True
        status = rollout.status if rollout is not None else FAILED
        self.progress.bar_style = {DONE: "success", CANCELLED: "warning"}.get(status, "danger")
        if status == FAILED and rollout is not None and rollout.error is not None:
            kept = rollout.n_frames
            self._show_error(
                rollout.error, suffix=f" ({kept} frame{'s' if kept != 1 else ''} kept)"
            )
        elif status == CANCELLED:
            self.message.value = _box(
                f"Stopped after {rollout.n_frames - 1} steps; the frames are kept.", "#1f77b4"
            )

    def _finish_failed(self, exc: BaseException) -> None:
        self.run_button.disabled, self.stop_button.disabled = False, True
        self.progress.bar_style = "danger"
        self.progress_info.value = "failed"
        self._show_error(exc)

    def _show_error(self, exc: BaseException, suffix: str = "", prefix: str = "") -> None:
        self.message.value = _error_html(prefix + _describe(exc) + suffix)

    # -- to implement ----------------------------------------------------------------
    _name = "rollout"

    def _make_builder(self) -> Callable[[], Rollout]:
        raise NotImplementedError

    def _on_new_run(self, rollout: Rollout) -> None:
        raise NotImplementedError

    def _on_frames(self, rollout: Rollout, new: list[Frame], first: bool) -> None:
        raise NotImplementedError


# -- FlashMD reference data --------------------------------------------------------------


@dataclass(frozen=True)
class FlashMDReference:
    """The held-out test trajectory of a system, its MSD and (periodic cells) RDF."""

    path: Path
    traj: Trajectory
    temperature_K: float | None
    msd: MSDResult | None
    rdf: RDFResult | None


@functools.lru_cache(maxsize=8)
def _reference_cached(path: str, mtime_ns: int) -> FlashMDReference:
    from explorer.h5md import read_h5md

    traj = read_h5md(path)
    temperature = traj.metadata.get("temperature_K")
    periodic = bool(np.all(traj.pbc))
    return FlashMDReference(
        path=Path(path),
        traj=traj,
        temperature_K=float(temperature) if temperature is not None else None,
        msd=_or_none(msd, traj),
        rdf=_or_none(rdf, traj, bin_width=RDF_BIN_A, discard_fraction=0.0) if periodic else None,
    )


def reference_path(system: str, data_dir: Path | None = None) -> Path | None:
    """The first held-out test trajectory of a FlashMD system, or None."""
    from explorer.flashmd.systems import DATA_DIR, system_files

    files = system_files(system, "test", Path(data_dir) if data_dir else DATA_DIR)
    return files[0] if files else None


def flashmd_reference(system: str, data_dir: Path | None = None) -> FlashMDReference | None:
    """The analysed test trajectory of ``system`` (cached per file version), or None."""
    path = reference_path(system, data_dir)
    if path is None:
        return None
    return _reference_cached(str(path), path.stat().st_mtime_ns)


@functools.lru_cache(maxsize=4)
def _fresh_atoms(system: str) -> Atoms:
    from explorer.cli_flashmd import flashmd_start_atoms

    return flashmd_start_atoms(system)


def flashmd_start(system: str, start: str, data_dir: Path | None = None) -> Atoms:
    """The start structure: test-trajectory frame 0 with momenta, or a fresh build."""
    if start == TEST_FRAME:
        path = reference_path(system, data_dir)
        if path is None:
            raise ExplorerError(
                f"no test trajectory of {system} in {data_dir or 'sample_data/flashmd'}; "
                "choose the fresh start or run `accelmd flashmd-data`"
            )
        from explorer.cli_flashmd import flashmd_start_atoms

        return flashmd_start_atoms(str(path))
    return _fresh_atoms(system).copy()


def flashmd_cards(directory: Path = CHECKPOINT_DIR) -> list[dict[str, Any]]:
    """Model cards of the FlashMD checkpoints in ``directory`` (unreadable ones skipped)."""
    try:
        cards = list_checkpoints(Path(directory))
    except ExplorerError:
        return []
    return [c for c in cards if c.get("family") == "flashmd"]


def _card_system(card: dict[str, Any]) -> str | None:
    system = card.get("system")
    if system is None and card.get("materials"):
        system = card["materials"][0]
    return system


def _stride(card: dict[str, Any]) -> float:
    return float(card.get("stride_fs") or card.get("model", {}).get("stride_fs") or 0.0)


class FlashMDTab(RolloutTab):
    """System, checkpoint (stride), thermostat and filters, Run/Stop, live views.

    Args:
        checkpoint_dir: where FlashMD checkpoints (``*.json`` cards) are listed.
        data_dir: where the reference trajectories ``<system>_test*.h5`` are found.
        poll_interval_s: shortest time between figure updates, s.

    ``widget`` is the ipywidgets tree; the controls are attributes (``system``,
    ``checkpoint``, ``thermostat``, ``temperature``, ``energy_conservation``,
    ``random_rotation``, ``n_steps``, ``seed``, ``run_button``, ``stop_button``) and the
    figures are in ``figures`` (``temperature``, ``energy``, ``rdf``, ``msd``).
    """

    _name = "flashmd"

    def __init__(
        self,
        checkpoint_dir: Path = CHECKPOINT_DIR,
        data_dir: Path | None = None,
        poll_interval_s: float = 1.0,
    ) -> None:
        self.checkpoint_dir = Path(checkpoint_dir)
        self.data_dir = Path(data_dir) if data_dir else None
        self.poll_interval_s = poll_interval_s
        self.cards = flashmd_cards(self.checkpoint_dir)
        self.reference: FlashMDReference | None = None
        self._n_atoms = 0
        self._target_K: float | None = None
        self._run_system = "argon"
        self.overlap: dict | None = None
        self._build_run()
        self._build_controls()
        self._build_views()
        self.widget = w.VBox(
            [
                w.HTML("<h3 style='margin:4px 0'>FlashMD: one model call per long stride</h3>"),
                self.control_box,
                self.run_box,
                self.message,
                self.summary,
                self.views,
            ]
        )
        self._on_system(None)

    # -- controls --------------------------------------------------------------------
    def _build_controls(self) -> None:
        self.system = w.Dropdown(
            options=[(SYSTEM_LABELS[s], s) for s in FLASHMD_SYSTEMS], value="argon",
            description="system", style=_STYLE, layout=_WIDE,
        )  # fmt: skip
        self.start_from = w.Dropdown(
            options=[("test trajectory, frame 0 (with momenta)", TEST_FRAME),
                     ("fresh structure, momenta at T", FRESH)],
            value=TEST_FRAME, description="start from", style=_STYLE, layout=_WIDE,
        )  # fmt: skip
        self.start_info = w.HTML(
            "<small>test frame: equilibrated positions and momenta (the temperature sets the "
            "thermostat target only); fresh: momenta drawn at the temperature</small>"
        )
        self.checkpoint = w.Dropdown(
            options=[], description="checkpoint", style=_STYLE, layout=_WIDE
        )
        self.card_info = w.HTML()
        self.thermostat = w.Dropdown(
            options=THERMOSTAT_OPTIONS, value="langevin", description="thermostat", style=_STYLE
        )
        self.temperature = w.BoundedFloatText(
            value=DEFAULT_TEMPERATURES_K["argon"], min=1, max=5000, step=10,
            description="temperature (K)", style=_STYLE,
        )  # fmt: skip
        self.time_constant = w.BoundedFloatText(
            value=100.0, min=1, max=100000, step=10, description="thermostat τ (fs)", style=_STYLE
        )
        self.energy_conservation = w.Checkbox(
            value=True, description="energy-conservation filter (App C)", indent=False
        )
        self.random_rotation = w.Checkbox(
            value=False, description="random-rotation filter (App A.4)", indent=False
        )
        self.n_steps = w.BoundedIntText(
            value=50, min=1, max=100000, description="strides", style=_STYLE
        )
        self.steps_info = w.HTML()
        self.seed = w.IntText(value=0, description="seed", style=_STYLE)
        self.device = w.Dropdown(
            options=["cpu", "auto", "cuda"], value="cpu", description="device", style=_STYLE
        )
        self.system.observe(self._on_system, names="value")
        self.checkpoint.observe(self._on_checkpoint, names="value")
        self.n_steps.observe(self._on_steps, names="value")
        self.control_box = w.HBox(
            [
                w.VBox(
                    [
                        self.system,
                        self.start_from,
                        self.start_info,
                        self.checkpoint,
                        self.card_info,
                    ]
                ),
                w.VBox(
                    [
                        self.thermostat,
                        self.temperature,
                        self.time_constant,
                        self.energy_conservation,
                        self.random_rotation,
                    ]
                ),
                w.VBox([w.HBox([self.n_steps, self.steps_info]), self.seed, self.device]),
            ]
        )

    @property
    def card(self) -> dict[str, Any] | None:
        index = self.checkpoint.value
        return None if index is None else self.cards[index]

    def _on_system(self, _change: Any) -> None:
        system = self.system.value
        options = [
            (f"{c.get('name')} (stride {_stride(c):g} fs)", i)
            for i, c in enumerate(self.cards)
            if _card_system(c) == system
        ]
        options.sort(key=lambda o: _stride(self.cards[o[1]]))
        self.checkpoint.options = options
        self.checkpoint.value = options[-1][1] if options else None
        if not options:
            self.card_info.value = _box(
                f"No FlashMD checkpoint for {system} in {self.checkpoint_dir}; train one with "
                f"<code>accelmd train flashmd --system {system}</code>.",
                "#1f77b4",
            )
        self.temperature.value = DEFAULT_TEMPERATURES_K.get(system, 300.0)
        self._on_checkpoint(None)

    def _on_checkpoint(self, _change: Any) -> None:
        card = self.card
        if card is None:
            self._on_steps(None)
            return
        self.card_info.value = f"<small>{_escape(card_headline(card))}</small>"
        knobs = card.get("recommended_knobs") or {}
        self.energy_conservation.value = bool(knobs.get("energy_conservation", True))
        self.random_rotation.value = bool(knobs.get("random_rotation", False))
        if knobs.get("thermostat") in dict(THERMOSTAT_OPTIONS).values():
            self.thermostat.value = knobs["thermostat"]
        if knobs.get("temperature_K"):
            self.temperature.value = float(knobs["temperature_K"])
        self._on_steps(None)

    def _on_steps(self, _change: Any) -> None:
        stride = _stride(self.card) if self.card is not None else 0.0
        self.steps_info.value = f"= {self.n_steps.value * stride / 1000:g} ps simulated"

    def knobs(self) -> dict[str, Any]:
        """The knob values as ``FlashMDSimulator.prepare`` names them."""
        return {
            "temperature_K": float(self.temperature.value),
            "thermostat": self.thermostat.value,
            "time_constant_fs": float(self.time_constant.value),
            "energy_conservation": bool(self.energy_conservation.value),
            "random_rotation": bool(self.random_rotation.value),
            "seed": int(self.seed.value),
        }

    # -- run -------------------------------------------------------------------------
    def _make_builder(self) -> Callable[[], Rollout]:
        card = self.card
        if card is None:
            raise ExplorerError(f"no FlashMD checkpoint for {self.system.value}")
        system, start, device = self.system.value, self.start_from.value, self.device.value
        knobs, n_steps = self.knobs(), int(self.n_steps.value)
        name = card.get("name")
        self._run_system = system

        def build() -> Rollout:
            from explorer.flashmd.simulate import FlashMDSimulator

            simulator = FlashMDSimulator.from_checkpoint(
                name, device=device, directory=self.checkpoint_dir
            )
            atoms = flashmd_start(system, start, self.data_dir)
            metadata = {
                "producer": "widgets.FlashMDTab",
                "checkpoint": simulator.name,
                "stride_fs": simulator.stride_fs,
                "material": atoms.info.get("material"),
                "temperature_K": knobs["temperature_K"],
            }
            return Rollout(simulator, atoms, n_steps, knobs, metadata=metadata)

        return build

    def _on_new_run(self, rollout: Rollout) -> None:
        self._n_atoms = len(rollout.atoms)
        thermostat = rollout.knobs.get("thermostat", "none")
        self._target_K = rollout.knobs["temperature_K"] if thermostat != "none" else None
        try:
            self.reference = flashmd_reference(self._run_system, self.data_dir)
        except (ExplorerError, OSError) as exc:  # a broken reference must not stop a run
            self.reference = None
            self.message.value = _box(f"reference trajectory unreadable: {exc}", "#ff7f0e")
        self.viewer.show_structure(rollout.atoms)

    def _on_frames(self, rollout: Rollout, new: list[Frame], first: bool) -> None:
        positions = [f.positions for f in new]
        if first:
            self.viewer.set_frames(positions)
        else:
            self.viewer.append_frames(positions)
        traj = rollout.trajectory()
        fresh = self.build_figures(traj)
        for name, fig in fresh.items():
            figures.sync_figure(self.figures[name], fig)
        self.summary.value = f"<b>{_escape(self.summary_text(traj))}</b>"

    def build_figures(self, traj: Trajectory) -> dict[str, go.Figure]:
        """Fresh temperature, energy, RDF and MSD figures of a FlashMD trajectory."""
        ref = self.reference
        temperature = traj.energies.get("temperature")
        out = {
            "temperature": figures.temperature_figure(traj.times_ps, temperature, self._target_K),
            "energy": figures.energy_figure(traj.times_ps, traj.energies, traj.n_atoms),
        }
        model_msd = _or_none(msd, traj) if traj.n_frames >= 2 else None
        out["msd"] = figures.msd_figure(
            model_msd,
            ref.msd if ref else None,
            species=sorted(set(traj.symbols)),
            title="MSD (reference: held-out test trajectory, dashed)",
        )
        if np.all(traj.pbc):
            model_rdf = _or_none(rdf, traj, bin_width=RDF_BIN_A)
            self.overlap = None
            if model_rdf is not None and ref is not None and ref.rdf is not None:
                self.overlap = _or_none(overlap_score, model_rdf, ref.rdf)
            out["rdf"] = figures.rdf_figure(model_rdf, ref.rdf if ref else None, self.overlap)
        else:
            self.overlap = None
            fig = figures.rdf_figure(None)
            fig.layout.annotations = []
            out["rdf"] = figures._empty_note(
                fig, "no RDF: the cell is not periodic in every direction (a slab); see the MSD"
            )
        return out

    def summary_text(self, traj: Trajectory) -> str:
        """Mean temperature, total-energy drift and the RDF overlap, one line."""
        parts = [f"{traj.n_frames - 1} strides, {float(traj.times_ps[-1]):g} ps"]
        temperature = traj.energies.get("temperature")
        if temperature is not None and temperature.size > 1:
            parts.append(f"⟨T⟩ = {float(np.mean(temperature[1:])):.1f} K")
        total = traj.energies.get("total_energy")
        nve = self._target_K is None
        if nve and total is not None and total.size > 2 and np.all(np.isfinite(total)):
            slope = np.polyfit(traj.times_ps, total, 1)[0]
            parts.append(f"NVE energy drift {slope / traj.n_atoms * 1e3:.3g} meV/atom/ps")
        if self.overlap:
            parts.append(f"RDF overlap with the test trajectory {min(self.overlap.values()):.3f}")
        return "; ".join(parts)

    # -- views -----------------------------------------------------------------------
    def _build_views(self) -> None:
        self.viewer = TrajectoryViewer()
        self.figures: dict[str, go.FigureWidget] = {
            "temperature": go.FigureWidget(figures.temperature_figure(None, None)),
            "energy": go.FigureWidget(figures.energy_figure(None, None)),
            "rdf": go.FigureWidget(figures.rdf_figure(None)),
            "msd": go.FigureWidget(figures.msd_figure(None)),
        }
        self.summary = w.HTML()
        self.views = w.Tab(
            children=[
                w.VBox([self.figures["temperature"], self.figures["energy"]]),
                self.figures["rdf"],
                self.figures["msd"],
                self.viewer.widget,
            ]
        )
        for i, title in enumerate(("T and energy", "RDF", "MSD", "3-D")):
            self.views.set_title(i, title)
