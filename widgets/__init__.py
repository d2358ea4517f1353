"""User interfaces over ``explorer``: Jupyter widgets now, the Panel app next (issue 8).

``from widgets import Explorer`` gives the notebook explorer. Submodules:
``figures`` (pure plotly builders, shared with the Panel app and the tests),
``helpers``, ``runs`` and ``family_runs`` (pure logic behind the controls),
``controller`` (the Run/Stop lifecycle every tab shares, rendered by ``tab_run`` for
ipywidgets and ``app_run`` for Panel), ``live`` (analysis of a growing trajectory),
``viewer`` (nglview), ``liflow_tab`` and ``explorer`` (ipywidgets).
ipywidgets is imported only when ``Explorer`` or ``LiFlowTab`` is first used, so the
Panel app can import ``widgets.figures`` without it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Explorer", "LiFlowTab"]


def __getattr__(name: str) -> Any:
    if name == "Explorer":
        from widgets.notebook_explorer import Explorer

        return Explorer
    if name == "LiFlowTab":
        from widgets.liflow_tab import LiFlowTab

        return LiFlowTab
    raise AttributeError(f"module 'widgets' has no attribute {name!r}")
