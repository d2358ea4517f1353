"""The FlashMD tab of the Jupyter explorer.

Same pattern as :mod:`widgets.liflow_tab`: ipywidgets controls map to the knobs of
:class:`~explorer.flashmd.simulate.FlashMDSimulator` exactly as ``accelmd rollout flashmd``
maps its options (:mod:`explorer.cli_flashmd`), the Run/Stop machinery is
:class:`widgets.tab_run.RolloutTab` (:mod:`widgets.controller`), and figures come from
the pure builders of :mod:`widgets.family_runs` / :mod:`widgets.figures`.

Start structure: by default the first frame (positions and momenta) of the system's
held-out test trajectory (``sample_data/flashmd/<system>_test*.h5``), which is what
``accelmd eval flashmd`` starts from and makes the RDF/MSD comparison with that trajectory
like for like; "fresh" builds the structure as the CLI does (argon: melted and cooled,
a few seconds; Al(110): the ideal slab) and draws Maxwell–Boltzmann momenta at the set
temperature.
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
    DEFAULT_TEMPERATURES_K,
    FLASHMD_SYSTEMS,
    FRESH,
    SYSTEM_LABELS,
    TEST_FRAME,
    THERMOSTAT_OPTIONS,
    FlashMDReference,
    FlashMDRun,
    _card_system,
    _stride,
    build_flashmd_rollout,
    flashmd_card_defaults,
    flashmd_cards,
    flashmd_checkpoint_options,
    flashmd_figures,
    flashmd_reference,
    flashmd_start,
    flashmd_steps_text,
    flashmd_summary,
    flashmd_target_K,
    no_flashmd_checkpoint_text,
    reference_path,
)
from widgets.tab_run import RolloutTab, escape, note_html
from widgets.viewer import TrajectoryViewer

_STYLE = {"description_width": "150px"}
_WIDE = w.Layout(width="460px")


class FlashMDTab(FlashMDRun, RolloutTab):
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

    name = "flashmd"

    def __init__(
        self,
        checkpoint_dir: Path = CHECKPOINT_DIR,
        data_dir: Path | None = None,
        poll_interval_s: float = 1.0,
    ) -> None:
        self._init_flashmd(checkpoint_dir, data_dir)
        self._build_run(poll_interval_s)
        self._build_controls()
        self._build_views()
        self.widget = self._page("FlashMD: one model call per long stride")
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

    def _on_system(self, _change: Any) -> None:
        system = self.system.value
        options = flashmd_checkpoint_options(self.cards, system)
        self.checkpoint.options = options
        self.checkpoint.value = options[-1][1] if options else None
        if not options:
            text = no_flashmd_checkpoint_text(system, self.checkpoint_dir)
            self.card_info.value = note_html(text)
        self.temperature.value = DEFAULT_TEMPERATURES_K.get(system, 300.0)
        self._on_checkpoint(None)

    def _on_checkpoint(self, _change: Any) -> None:
        card = self.card
        if card is not None:
            self.card_info.value = f"<small>{escape(card_headline(card))}</small>"
            self._apply_card_defaults(card)
        self._on_steps(None)

    def _on_steps(self, _change: Any) -> None:
        self.steps_info.value = flashmd_steps_text(self.n_steps.value, self.card)

    # -- run -------------------------------------------------------------------------
    def _on_new_run(self, rollout: Rollout) -> None:
        self._load_reference(rollout)
        self.viewer.show_structure(rollout.atoms)

    def _compute(self, rollout: Rollout, new: list[Frame], first: bool) -> None:
        positions = [f.positions for f in new]
        if first:
            self.viewer.set_frames(positions)
        else:
            self.viewer.append_frames(positions)
        traj = rollout.trajectory()
        for name, fig in self.build_figures(traj).items():
            figures.sync_figure(self.figures[name], fig)
        self.summary.value = f"<b>{escape(self.summary_text(traj))}</b>"

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
