"""The FlashMD tab of the Panel app.

The same knobs and live views as the Jupyter tab (:mod:`widgets.flashmd_tab`), built
from the same UI-free parts (:mod:`widgets.family_runs`: checkpoint lists, card
defaults, the Rollout builder, the reference trajectory, figures and summary line:
:class:`~widgets.family_runs.FlashMDRun`). This module only creates Panel widgets and
connects them.

Run/Stop as in every Panel tab (:class:`widgets.app_run.PanelRolloutTab`): Run takes a
server slot (:data:`widgets.app_sessions.SLOTS`) and a *driver* thread builds and polls
the Rollout and builds fresh figures off the event loop; the page gets them through
``doc.add_next_tick_callback``. Figures are swapped whole (``link_figure=False`` panes).
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import panel as pn
import plotly.graph_objects as go

from explorer.checkpoints import CHECKPOINT_DIR, card_headline
from explorer.session import Frame, Rollout
from widgets import figures
from widgets.app_downloads import PanelDownloads
from widgets.app_run import PanelRolloutTab, note_html, plotly_pane
from widgets.app_sessions import SLOTS, RolloutSlots
from widgets.family_runs import (
    DEFAULT_TEMPERATURES_K,
    FLASHMD_SYSTEMS,
    FRESH,
    SYSTEM_LABELS,
    TEST_FRAME,
    THERMOSTAT_OPTIONS,
    FlashMDRun,
    flashmd_checkpoint_options,
    flashmd_steps_text,
    no_flashmd_checkpoint_text,
)
from widgets.view3d import TrajectoryView3D


class FlashMDApp(FlashMDRun, PanelDownloads, PanelRolloutTab):
    """System, start, checkpoint (stride), thermostat and filters; Run/Stop; live views.

    Args:
        checkpoint_dir: where FlashMD checkpoints (``*.json`` cards) are listed.
        data_dir: where the reference trajectories ``<system>_test*.h5`` are found.
        slots: the server-wide cap on running rollouts.
        poll_interval_s: shortest time between figure updates, s.

    Controls are attributes (``system``, ``start_from``, ``checkpoint``, ``thermostat``,
    ``temperature``, ``time_constant``, ``energy_conservation``, ``random_rotation``,
    ``n_steps``, ``seed``, ``device``, ``run_button``, ``stop_button``); figures are in
    ``figures`` (``temperature``, ``energy``, ``rdf``, ``msd``); ``layout`` is the page.
    """

    name = "flashmd"
    css_prefix = "accelmd-flashmd-"
    producer = "widgets.app"

    def __init__(
        self,
        checkpoint_dir: Path = CHECKPOINT_DIR,
        data_dir: Path | None = None,
        slots: RolloutSlots = SLOTS,
        poll_interval_s: float = 0.5,
    ) -> None:
        self._init_flashmd(checkpoint_dir, data_dir)
        self._build_run(slots, poll_interval_s)
        self._build_controls()
        self._build_views()
        self._build_downloads()
        self.layout = self._page("FlashMD: one model call per long stride", "accelmd-flashmd")
        self._on_system()

    # -- controls --------------------------------------------------------------------
    def _build_controls(self) -> None:
        self.system = pn.widgets.Select(
            label="system", options={SYSTEM_LABELS[s]: s for s in FLASHMD_SYSTEMS},
            value="argon", width=300, css_classes=["accelmd-flashmd-system"],
        )  # fmt: skip
        self.start_from = pn.widgets.Select(
            label="start from",
            options={"test trajectory, frame 0 (with momenta)": TEST_FRAME,
                     "fresh structure, momenta at T": FRESH},
            value=TEST_FRAME, width=300,
        )  # fmt: skip
        self.start_info = pn.pane.HTML(
            "<small>test frame: equilibrated positions and momenta (the temperature sets the "
            "thermostat target only); fresh: momenta drawn at the temperature</small>"
        )
        self.checkpoint = pn.widgets.Select(
            label="checkpoint", options={}, value=None, width=300,
            css_classes=["accelmd-flashmd-checkpoint"],
        )  # fmt: skip
        self.card_info = pn.pane.HTML("", sizing_mode="stretch_width")
        self.thermostat = pn.widgets.Select(
            label="thermostat", options=dict(THERMOSTAT_OPTIONS), value="langevin", width=160
        )
        self.temperature = pn.widgets.FloatInput(
            label="temperature (K)", value=DEFAULT_TEMPERATURES_K["argon"], start=1, end=5000,
            step=10, width=160,
        )  # fmt: skip
        self.time_constant = pn.widgets.FloatInput(
            label="thermostat τ (fs)", value=100.0, start=1, end=100000, step=10, width=160
        )
        self.energy_conservation = pn.widgets.Checkbox(
            label="energy-conservation filter (App C)", value=True
        )
        self.random_rotation = pn.widgets.Checkbox(
            label="random-rotation filter (App A.4)", value=False
        )
        self.n_steps = pn.widgets.IntInput(
            label="strides", value=50, start=1, end=100000, width=150,
            css_classes=["accelmd-flashmd-steps"],
        )  # fmt: skip
        self.steps_info = pn.pane.HTML("")
        self.seed = pn.widgets.IntInput(label="seed", value=0, width=100)
        self.device = pn.widgets.Select(
            label="device", options=["cpu", "auto", "cuda"], value="cpu", width=100
        )
        self.system.param.watch(lambda _: self._on_system(), "value")
        self.checkpoint.param.watch(lambda _: self._on_checkpoint(), "value")
        self.n_steps.param.watch(lambda _: self._on_steps(), "value")
        self.control_box = pn.Row(
            pn.Column(self.system, self.start_from, self.start_info, self.checkpoint,
                      self.card_info),
            pn.Column(self.thermostat, self.temperature, self.time_constant,
                      self.energy_conservation, self.random_rotation),
            pn.Column(pn.Row(self.n_steps, self.steps_info), pn.Row(self.seed, self.device)),
            sizing_mode="stretch_width",
        )  # fmt: skip

    def _on_system(self) -> None:
        system = self.system.value
        options = flashmd_checkpoint_options(self.cards, system)
        self._setting_system = True  # one checkpoint update, not two
        try:
            self.checkpoint.options = dict(options)
            self.checkpoint.value = options[-1][1] if options else None
        finally:
            self._setting_system = False
        if not options:
            text = no_flashmd_checkpoint_text(system, self.checkpoint_dir)
            self.card_info.object = note_html(text)
        self.temperature.value = DEFAULT_TEMPERATURES_K.get(system, 300.0)
        self._on_checkpoint()

    def _on_checkpoint(self) -> None:
        if getattr(self, "_setting_system", False):
            return
        card = self.card
        if card is not None:
            self.card_info.object = f"<small>{html.escape(card_headline(card))}</small>"
            self._apply_card_defaults(card)
        self._on_steps()

    def _on_steps(self) -> None:
        text = flashmd_steps_text(self.n_steps.value, self.card)
        self.steps_info.object = f"<small>{text}</small>"

    # -- run -------------------------------------------------------------------------
    def _on_new_run(self, rollout: Rollout) -> None:
        self._load_reference(rollout)
        self.view3d.start_run(rollout.atoms.numbers, rollout.atoms.cell[:])

    def _compute(self, rollout: Rollout, new: list[Frame], first: bool) -> Any:
        self.view3d.add_frames([f.positions for f in new], [f.time_ps for f in new])
        traj = rollout.trajectory()
        return self.build_figures(traj), self.summary_text(traj)

    def _apply_views(self, views: Any) -> None:
        fresh, summary = views
        self.view3d.show()
        for name, fig in fresh.items():
            self._replace_figure(name, fig)
        self.summary.object = f"<b>{html.escape(summary)}</b>"

    # -- views -----------------------------------------------------------------------
    def _build_views(self) -> None:
        self.view3d = TrajectoryView3D()
        self.figures: dict[str, go.Figure] = {
            "temperature": figures.temperature_figure(None, None),
            "energy": figures.energy_figure(None, None),
            "rdf": figures.rdf_figure(None),
            "msd": figures.msd_figure(None),
        }
        self.panes = {
            name: plotly_pane(fig, f"flashmd-{name}") for name, fig in self.figures.items()
        }
        self.views = pn.Tabs(
            ("T and energy", pn.Column(self.panes["temperature"], self.panes["energy"])),
            ("RDF", self.panes["rdf"]),
            ("MSD", self.panes["msd"]),
            ("3-D", self.view3d.layout),
            sizing_mode="stretch_width",
            dynamic=True,
        )
