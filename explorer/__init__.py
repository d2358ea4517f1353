"""accelmd-explorer: the science behind the explorer.

This package never imports a UI library (``widgets``, panel, ipywidgets,
nglview, plotly); the ``widgets`` package builds on it.
"""

from explorer.errors import ExplorerError

__all__ = ["ExplorerError", "__version__"]
__version__ = "0.1.0"
