"""Cell geometry shared by the catalogue, the analysis and the neighbour lists."""

from __future__ import annotations

import numpy as np

from explorer.errors import ZeroVolumeCellError

MIN_VOLUME = 1e-6  # Å³; below this a cell is degenerate


def perpendicular_widths(cell: np.ndarray) -> np.ndarray:
    """Distances between opposite cell faces, h_i = V / |a_j × a_k|, in Å (shape (3,)).

    A sphere of radius r fits the periodic cell without touching its own image
    iff 2r ≤ min h_i; an axis needs ceil(r / h_i) images on each side to hold
    every neighbour within r.
    """
    cell = np.asarray(cell, dtype=np.float64).reshape(3, 3)
    volume = abs(float(np.linalg.det(cell)))
    if volume < MIN_VOLUME:
        raise ZeroVolumeCellError(f"cell {np.round(cell, 4).tolist()} has volume {volume:.3g} Å³")
    areas = np.linalg.norm(np.cross(cell[[1, 2, 0]], cell[[2, 0, 1]]), axis=1)
    return volume / areas
