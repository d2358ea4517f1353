"""The CG-polymer tab of the Panel app: learned CG steps of a single polymer chain.

The same knobs and live views as the Jupyter tab (:mod:`widgets.cg_tab`): checkpoint,
polymer (held-out class-II test polymers first), refinement strength S, Langevin steps
per level, steps and seed; R_g²(t) with the long reference MD's mean ± sd, the R_g²
histogram, R(s), the contact map and the CG beads in 3-D with a frame slider, a player
and "follow newest frame". The logic is :mod:`widgets.family_runs` (:class:`CGRun`); the
Run/Stop machinery (driver thread, server slot, ``doc.add_next_tick_callback`` updates,
stop on session end) is :class:`widgets.app_run.PanelRolloutTab`. Units: σ and τ.
"""

from __future__ import annotations

import functools
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
    CGRun,
    cg_beads_frame,
    cg_card_settings,
    cg_steps_text,
    default_cg_index,
    no_cg_checkpoint_text,
    no_polymer_text,
    polymer_options,
    polymer_summary,
)


class CGApp(CGRun, PanelDownloads, PanelRolloutTab):
    """Checkpoint, polymer, refinement, steps, seed; Run/Stop; live R_g², R(s), contacts,
    beads.

    Args:
        checkpoint_dir: where CG checkpoints (``family: cg`` cards) are listed.
        polymer_dir: where polymer reference files ``<name>.h5`` are found.
        slots: the server-wide cap on running rollouts.
        poll_interval_s: shortest time between figure updates, s.
        simulator_options: extra arguments of ``CGSimulator`` (``min_distance``,
            ``max_step``, ``max_retries``).

    Controls: ``checkpoint``, ``polymer``, ``refinement``, ``langevin_steps``,
    ``n_steps``, ``seed``, ``run_button``, ``stop_button``, ``frame``, ``play``,
    ``follow``; figures in ``figures`` (``rg2``, ``histogram``, ``r_s``, ``contacts``,
    ``beads``); ``layout`` is the page.
    """

    name = "cg"
    css_prefix = "accelmd-cg-"
    producer = "widgets.app"

    def __init__(
        self,
        checkpoint_dir: Path = CHECKPOINT_DIR,
        polymer_dir: Path | None = None,
        slots: RolloutSlots = SLOTS,
        poll_interval_s: float = 0.5,
        simulator_options: dict[str, Any] | None = None,
    ) -> None:
        self._init_cg(checkpoint_dir, polymer_dir, simulator_options)
        self._build_run(slots, poll_interval_s)
        self._build_controls()
        self._build_views()
        self._build_downloads()
        self.layout = self._page("CG polymers: learned coarse-grained steps", "accelmd-cg")
        self._on_checkpoint()

    # -- controls --------------------------------------------------------------------
    def _build_controls(self) -> None:
        self.checkpoint = pn.widgets.Select(
            label="checkpoint", options={str(c.get("name")): i for i, c in enumerate(self.cards)},
            value=default_cg_index(self.cards), width=300, css_classes=["accelmd-cg-checkpoint"],
        )  # fmt: skip
        self.card_info = pn.pane.HTML("", sizing_mode="stretch_width")
        self.polymer = pn.widgets.Select(
            label="polymer", options={}, value=None, width=340,
            css_classes=["accelmd-cg-polymer"],
        )  # fmt: skip
        self.polymer_info = pn.pane.HTML("", sizing_mode="stretch_width")
        self.refinement = pn.widgets.IntSlider(
            label="refinement strength (Score-GNN noise levels, 0 = off)", value=0, start=0,
            end=10, width=300,
        )  # fmt: skip
        self.langevin_steps = pn.widgets.IntInput(
            label="Langevin steps/level", value=5, start=1, end=100, width=150
        )
        self.n_steps = pn.widgets.IntInput(
            label="steps", value=200, start=1, end=100000, width=150,
            css_classes=["accelmd-cg-steps"],
        )  # fmt: skip
        self.steps_info = pn.pane.HTML("")
        self.seed = pn.widgets.IntInput(label="seed", value=0, width=100)
        self.checkpoint.param.watch(lambda _: self._on_checkpoint(), "value")
        self.polymer.param.watch(lambda _: self._on_polymer(), "value")
        self.n_steps.param.watch(lambda _: self._on_steps(), "value")
        self.control_box = pn.Row(
            pn.Column(self.checkpoint, self.card_info, self.polymer, self.polymer_info),
            pn.Column(self.refinement, self.langevin_steps,
                      pn.Row(self.n_steps, self.steps_info), self.seed),
            sizing_mode="stretch_width",
        )  # fmt: skip

    def _on_checkpoint(self) -> None:
        card = self.card
        validation: tuple[str, ...] = ()
        if card is None:
            self.card_info.object = note_html(no_cg_checkpoint_text(self.checkpoint_dir))
        else:
            self.card_info.object = f"<small>{html.escape(card_headline(card))}</small>"
            end, self._dt_tau, validation = cg_card_settings(card)
            self.refinement.param.update(end=max(end, 1), value=min(self.refinement.value, end))
        previous = self.polymer.value
        options = polymer_options(self.polymer_dir, validation)
        values = [v for _, v in options]
        self._setting_polymers = True
        try:
            self.polymer.options = dict(options)
            self.polymer.value = (previous if previous in values else values[0]) if values else None
        finally:
            self._setting_polymers = False
        if not options:
            self.polymer_info.object = note_html(no_polymer_text(self.polymer_dir))
        self._on_polymer()
        self._on_steps()

    def _on_polymer(self) -> None:
        if getattr(self, "_setting_polymers", False) or self.polymer.value is None:
            return
        summary = polymer_summary(self.polymer_dir, self.polymer.value)
        self.polymer_info.object = f"<small>{html.escape(summary)}</small>" if summary else ""

    def _on_steps(self) -> None:
        self.steps_info.object = f"<small>{cg_steps_text(self.n_steps.value, self._dt_tau)}</small>"

    # -- run -------------------------------------------------------------------------
    def _on_new_run(self, rollout: Rollout) -> None:
        self._frames = []
        ref = self.reference
        beads = figures.cg_beads_figure(rollout.atoms.positions, ref.bonds if ref else None)
        self._post(functools.partial(self._reset_beads, beads))

    def _reset_beads(self, beads: go.Figure) -> None:
        self._moving_slider = True
        try:
            self.frame.param.update(value=0, end=1)
            self.play.param.update(value=0, end=1)
        finally:
            self._moving_slider = False
        self._replace_figure("beads", beads)

    def _compute(self, rollout: Rollout, new: list[Frame], first: bool) -> Any:
        self._frames.extend(f.positions for f in new)
        traj = rollout.trajectory()
        fresh = self.build_figures(traj.times_ps, traj.energies, traj.positions)
        return fresh, self.summary_text(traj.energies), len(self._frames) - 1, first

    def _apply_views(self, views: Any) -> None:
        fresh, summary, last, first = views
        for name, fig in fresh.items():
            self._replace_figure(name, fig)
        self._moving_slider = True
        try:
            self.frame.end = self.play.end = max(last, 1)
            if self.follow.value or first:
                self.frame.value = last
        finally:
            self._moving_slider = False
        self._show_frame(self.frame.value)
        self.summary.object = f"<b>{html.escape(summary)}</b>" if summary else ""

    # -- views -----------------------------------------------------------------------
    def _build_views(self) -> None:
        self.figures: dict[str, go.Figure] = {
            "rg2": figures.rg2_trace_figure(None, None),
            "histogram": figures.rg2_histogram_figure(None),
            "r_s": figures.internal_distance_figure(None),
            "contacts": figures.contact_map_figure(None),
            "beads": figures.cg_beads_figure(None),
        }
        self.panes = {name: plotly_pane(fig, f"cg-{name}") for name, fig in self.figures.items()}
        self.frame = pn.widgets.IntSlider(label="frame", value=0, start=0, end=1, width=300)
        self.play = pn.widgets.Player(
            value=0, start=0, end=1, interval=150, loop_policy="once", width=300,
            show_loop_controls=False, show_value=False,
        )  # fmt: skip
        self.follow = pn.widgets.Checkbox(label="follow newest frame", value=True)
        self.play.link(self.frame, value="value", bidirectional=True)
        self.frame.param.watch(self._on_frame, "value")
        self.views = pn.Tabs(
            ("R_g²", pn.Column(self.panes["rg2"], self.panes["histogram"])),
            ("R(s)", self.panes["r_s"]),
            ("contact map", self.panes["contacts"]),
            ("beads (3-D)", pn.Column(pn.Row(self.play, self.frame, self.follow),
                                      self.panes["beads"])),
            sizing_mode="stretch_width",
            dynamic=True,
        )  # fmt: skip

    def _on_frame(self, event: Any) -> None:
        if getattr(self, "_moving_slider", False):
            return
        self.follow.value = event.new >= len(self._frames) - 1
        self._show_frame(event.new)

    def _show_frame(self, index: int) -> None:
        """Draw the CG beads of frame ``index`` of the current run."""
        if not 0 <= index < len(self._frames):
            return
        fig = cg_beads_frame(self._frames[index], self.reference, index, self._dt_tau)
        self._replace_figure("beads", fig)
