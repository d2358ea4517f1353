"""The CG-polymer tab of the Jupyter explorer: learned CG steps of a single polymer chain.

Controls map to the knobs of :class:`~explorer.cg.simulate.CGSimulator` as
``accelmd rollout cg`` maps its options (:mod:`explorer.cli_cg`): the polymer (the
held-out class-II test polymers first), the refinement strength S (Score-GNN noise levels,
0 = off), Langevin steps per level, steps and seed. The run machinery (driver thread,
Run/Stop, progress, readable errors) is :class:`widgets.tab_run.RolloutTab`; what is not
about widgets is :class:`widgets.family_runs.CGRun`.

Live views compare the rollout with the polymer's own long reference MD (the bundled
``sample_data/polymers/<name>.h5``, coarse-grained with the checkpoint's METIS mapping):
R_g²(t) with the reference mean ± sd, the R_g² histogram, R(s) and the contact map, as
``accelmd eval cg`` does (fine-level R_g² from the ``rg2_fine`` observable, CG R(s) and
contacts), and the CG beads in 3-D with a frame slider and a Play button.
Units: σ and τ (reduced LJ units of the reference force field).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ipywidgets as w
import plotly.graph_objects as go

from explorer.checkpoints import CHECKPOINT_DIR, card_headline
from explorer.session import Frame, Rollout
from widgets import figures
from widgets.family_runs import (  # noqa: F401  (re-exported: the tab's public names)
    CONTACT_CUTOFF_SIGMA,
    CGRun,
    PolymerReference,
    build_cg_rollout,
    cg_beads_frame,
    cg_card_settings,
    cg_cards,
    cg_figures,
    cg_progress_text,
    cg_steps_text,
    cg_summary,
    no_cg_checkpoint_text,
    no_polymer_text,
    polymer_options,
    polymer_reference,
    polymer_summary,
)
from widgets.family_runs import DEFAULT_CG_CHECKPOINT as DEFAULT_CHECKPOINT
from widgets.family_runs import polymer_dir_default as _polymer_dir_default  # noqa: F401
from widgets.tab_run import RolloutTab, escape, note_html

_STYLE = {"description_width": "150px"}
_WIDE = w.Layout(width="460px")


class CGTab(CGRun, RolloutTab):
    """Polymer, refinement strength, steps, seed; Run/Stop; live R_g², R(s), contacts, beads.

    Args:
        checkpoint_dir: where CG checkpoints (``family: cg`` cards) are listed.
        polymer_dir: where polymer reference files ``<name>.h5`` are found.
        poll_interval_s: shortest time between figure updates, s.
        simulator_options: extra arguments of ``CGSimulator`` (``min_distance``,
            ``max_step``, ``max_retries``).

    Controls: ``polymer``, ``checkpoint``, ``refinement``, ``langevin_steps``, ``n_steps``,
    ``seed``, ``run_button``, ``stop_button``, ``frame`` (the bead view's frame) and
    ``play``; figures in ``figures`` (``rg2``, ``histogram``, ``r_s``, ``contacts``,
    ``beads``).
    """

    name = "cg"

    def __init__(
        self,
        checkpoint_dir: Path = CHECKPOINT_DIR,
        polymer_dir: Path | None = None,
        poll_interval_s: float = 1.0,
        simulator_options: dict[str, Any] | None = None,
    ) -> None:
        self._init_cg(checkpoint_dir, polymer_dir, simulator_options)
        self._build_run(poll_interval_s)
        self._build_controls()
        self._build_views()
        self.widget = self._page("CG polymers: learned coarse-grained steps")
        self._on_checkpoint(None)

    # -- controls --------------------------------------------------------------------
    def _build_controls(self) -> None:
        options = [(str(c.get("name")), i) for i, c in enumerate(self.cards)]
        names = [c.get("name") for c in self.cards]
        default = names.index(DEFAULT_CHECKPOINT) if DEFAULT_CHECKPOINT in names else 0
        self.checkpoint = w.Dropdown(
            options=options, value=default if options else None, description="checkpoint",
            style=_STYLE, layout=_WIDE,
        )  # fmt: skip
        self.card_info = w.HTML()
        self.polymer = w.Dropdown(options=[], description="polymer", style=_STYLE, layout=_WIDE)
        self.polymer_info = w.HTML()
        self.refinement = w.IntSlider(
            value=0, min=0, max=10, description="refinement strength", style=_STYLE,
            tooltip="Score-GNN refinement: number of noise levels (0 = off)",
        )  # fmt: skip
        self.langevin_steps = w.BoundedIntText(
            value=5, min=1, max=100, description="Langevin steps/level", style=_STYLE
        )
        self.n_steps = w.BoundedIntText(
            value=200, min=1, max=100000, description="steps", style=_STYLE
        )
        self.steps_info = w.HTML()
        self.seed = w.IntText(value=0, description="seed", style=_STYLE)
        self.checkpoint.observe(self._on_checkpoint, names="value")
        self.polymer.observe(self._on_polymer, names="value")
        self.n_steps.observe(self._on_steps, names="value")
        self.control_box = w.HBox(
            [
                w.VBox([self.checkpoint, self.card_info, self.polymer, self.polymer_info]),
                w.VBox(
                    [
                        self.refinement,
                        self.langevin_steps,
                        w.HBox([self.n_steps, self.steps_info]),
                        self.seed,
                    ]
                ),
            ]
        )

    def _on_checkpoint(self, _change: Any) -> None:
        card = self.card
        validation: tuple[str, ...] = ()
        if card is None:
            self.card_info.value = note_html(no_cg_checkpoint_text(self.checkpoint_dir))
        else:
            self.card_info.value = f"<small>{escape(card_headline(card))}</small>"
            self.refinement.max, self._dt_tau, validation = cg_card_settings(card)
        previous = self.polymer.value
        options = polymer_options(self.polymer_dir, validation)
        self.polymer.options = options
        values = [v for _, v in options]
        if options:
            self.polymer.value = previous if previous in values else values[0]
        else:
            self.polymer_info.value = note_html(no_polymer_text(self.polymer_dir))
        self._on_polymer(None)
        self._on_steps(None)

    def _on_polymer(self, _change: Any) -> None:
        name = self.polymer.value
        if name is None:
            return
        summary = self._reference_summary(name)
        self.polymer_info.value = f"<small>{escape(summary)}</small>" if summary else ""

    def _reference_summary(self, name: str) -> str:
        """From ``reference_observables.json`` when present (no file is coarse-grained)."""
        return polymer_summary(self.polymer_dir, name)

    def _on_steps(self, _change: Any) -> None:
        self.steps_info.value = cg_steps_text(self.n_steps.value, self._dt_tau)

    # -- run -------------------------------------------------------------------------
    def _on_new_run(self, rollout: Rollout) -> None:
        self._frames = []
        self.frame.value, self.frame.max, self.play.max = 0, 0, 0
        ref = self.reference
        figures.sync_figure(
            self.figures["beads"],
            figures.cg_beads_figure(rollout.atoms.positions, ref.bonds if ref else None),
        )

    def _compute(self, rollout: Rollout, new: list[Frame], first: bool) -> None:
        self._frames.extend(f.positions for f in new)
        traj = rollout.trajectory()
        for name, fig in self.build_figures(traj.times_ps, traj.energies, traj.positions).items():
            figures.sync_figure(self.figures[name], fig)
        last = len(self._frames) - 1
        self.frame.max = self.play.max = last
        shown = self.frame.value
        if self.follow.value or first:
            self.frame.value = last  # redraws through the slider's observer
        if self.frame.value == shown:
            self._show_frame(shown)
        self.summary.value = f"<b>{escape(self.summary_text(traj.energies))}</b>"

    # -- views -----------------------------------------------------------------------
    def _build_views(self) -> None:
        self.figures: dict[str, go.FigureWidget] = {
            "rg2": go.FigureWidget(figures.rg2_trace_figure(None, None)),
            "histogram": go.FigureWidget(figures.rg2_histogram_figure(None)),
            "r_s": go.FigureWidget(figures.internal_distance_figure(None)),
            "contacts": go.FigureWidget(figures.contact_map_figure(None)),
            "beads": go.FigureWidget(figures.cg_beads_figure(None)),
        }
        self.summary = w.HTML()
        self.frame = w.IntSlider(value=0, min=0, max=0, description="frame", continuous_update=True)
        self.play = w.Play(value=0, min=0, max=0, interval=150, description="play")
        w.jslink((self.play, "value"), (self.frame, "value"))
        self.follow = w.Checkbox(value=True, description="follow newest frame", indent=False)
        self.frame.observe(lambda change: self._show_frame(change["new"]), names="value")
        self.views = w.Tab(
            children=[
                w.VBox([self.figures["rg2"], self.figures["histogram"]]),
                self.figures["r_s"],
                self.figures["contacts"],
                w.VBox([w.HBox([self.play, self.frame, self.follow]), self.figures["beads"]]),
            ]
        )
        for i, title in enumerate(("R_g²", "R(s)", "contact map", "beads (3-D)")):
            self.views.set_title(i, title)

    def _show_frame(self, index: int) -> None:
        """Draw the CG beads of frame ``index`` of the current run."""
        if not 0 <= index < len(self._frames):
            return
        fresh = cg_beads_frame(self._frames[index], self.reference, index, self._dt_tau)
        figures.sync_figure(self.figures["beads"], fresh)
