"""One-call summary of a trajectory: MSD, D per species, RDF peaks (JSON-ready).

Used by ``accelmd analyze`` and the UIs' summary line. Units: Å², ps, Å²/ps
and cm²/s, Å.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from explorer.analysis.diffusion import diffusion_coefficient
from explorer.analysis.msd import msd
from explorer.analysis.rdf import RDFResult, rdf
from explorer.errors import ExplorerError
from explorer.trajectory import Trajectory


def analyze_summary(
    traj: Trajectory,
    species: Sequence[str] | None = None,
    fit_start_ps: float | None = None,
    fit_end_ps: float | None = None,
    rdf_rmax: float | None = None,
    rdf_bin: float = 0.05,
    discard_fraction: float = 0.2,
    rdf_max_frames: int = 200,
) -> dict[str, Any]:
    """MSD at the last lag, D per species and RDF peaks, as plain JSON-ready data.

    The MSD at the last lag has a single time origin: it is the LiFlow-style
    MSD(t_end) = ⟨|x(t_end) − x(0)|²⟩ over the atoms of a species (Å²). The
    RDF averages at most ``rdf_max_frames`` evenly spaced frames after the
    discarded induction period (neighbouring frames are strongly correlated).
    """
    names = list(species) if species else list(dict.fromkeys(traj.symbols))
    curves = msd(traj, species=names)
    diffusion: dict[str, Any] = {}
    for name in names:
        try:
            result = diffusion_coefficient(traj, name, start_ps=fit_start_ps, end_ps=fit_end_ps)
        except ExplorerError as exc:  # e.g. a frozen frame species: report why
            diffusion[name] = {"error": str(exc)}
            continue
        diffusion[name] = {
            "D_A2_ps": result.D_A2_ps,
            "D_std_A2_ps": result.D_std_A2_ps,
            "D_cm2_s": result.D_cm2_s,
            "D_std_cm2_s": result.D_std_cm2_s,
            "fit_start_ps": result.fit_start_ps,
            "fit_end_ps": result.fit_end_ps,
        }
    rdf_result = rdf(traj, r_max=rdf_rmax, bin_width=rdf_bin, discard_fraction=discard_fraction)
    return {
        "n_frames": traj.n_frames,
        "n_atoms": traj.n_atoms,
        "composition": dict(Counter(traj.symbols)),
        "time_span_ps": float(traj.times_ps[-1] - traj.times_ps[0]),
        "msd_last_time_ps": float(curves.times_ps[-1]),
        "msd_last_A2": {name: float(curves.msd[name][-1]) for name in names},
        "diffusion": diffusion,
        "rdf": rdf_summary(rdf_result),
    }


def rdf_summary(result: RDFResult) -> dict[str, Any]:
    def highest_peak(g: np.ndarray) -> dict[str, float | None]:
        if not np.any(g > 0):  # no pair within r_max
            return {"r_A": None, "g": 0.0}
        i = int(np.argmax(g))
        return {"r_A": float(result.r[i]), "g": float(g[i])}

    return {
        "r_max_A": float(result.r_max),
        "bin_width_A": float(result.bin_width),
        "n_frames_used": int(result.n_frames_used),
        "total_peak": highest_peak(result.total),
        "pair_peaks": {f"{a}-{b}": highest_peak(g) for (a, b), g in result.partials.items()},
    }
