"""``widgets.Explorer()``: the whole explorer in one notebook cell.

One tab per model family: LiFlow (:mod:`widgets.liflow_tab`), FlashMD
(:mod:`widgets.flashmd_tab`) and the CG polymer simulator (:mod:`widgets.cg_tab`). Building
the tabs reads model cards only; models are loaded when Run is pressed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ipywidgets as w
from ase import Atoms

from explorer.checkpoints import CHECKPOINT_DIR
from explorer.reference.dataset import REFERENCE_DIR
from widgets.cg_tab import CGTab
from widgets.flashmd_tab import FlashMDTab
from widgets.liflow_tab import LiFlowTab


class Explorer(w.VBox):
    """The explorer widget: a tab per model family.

    ``liflow``, ``flashmd`` and ``cg`` hold the three tabs (:class:`LiFlowTab`,
    :class:`FlashMDTab`, :class:`CGTab`), each drivable from code.

    Args:
        atoms: a structure from the notebook, offered (and selected) in the LiFlow tab.
        checkpoint_dir: where checkpoints are listed (default: the bundled ones).
        reference_dir: where LiFlow reference MD trajectories are found.
        demo: offer the LiFlow demo random-walk model (default: only without a checkpoint).
        flashmd_options: passed to :class:`~widgets.flashmd_tab.FlashMDTab`.
        cg_options: passed to :class:`~widgets.cg_tab.CGTab`.
        **liflow_options: passed to :class:`~widgets.liflow_tab.LiFlowTab`.
    """

    def __init__(
        self,
        atoms: Atoms | None = None,
        checkpoint_dir: Path = CHECKPOINT_DIR,
        reference_dir: Path = REFERENCE_DIR,
        demo: bool | None = None,
        flashmd_options: dict[str, Any] | None = None,
        cg_options: dict[str, Any] | None = None,
        **liflow_options: object,
    ) -> None:
        self.liflow = LiFlowTab(
            atoms=atoms,
            checkpoint_dir=checkpoint_dir,
            reference_dir=reference_dir,
            demo=demo,
            **liflow_options,
        )
        self.flashmd = FlashMDTab(**{"checkpoint_dir": checkpoint_dir, **(flashmd_options or {})})
        self.cg = CGTab(**{"checkpoint_dir": checkpoint_dir, **(cg_options or {})})
        tabs = w.Tab(children=[self.liflow.widget, self.flashmd.widget, self.cg.widget])
        for i, title in enumerate(("LiFlow", "FlashMD", "CG polymers")):
            tabs.set_title(i, title)
        self.tabs = tabs
        super().__init__([tabs])
