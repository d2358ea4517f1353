"""Evaluation of the CG simulator on held-out class-II polymers (MSGN paper Table 2, Figs 4–5).

For every test polymer the learned simulator runs from the reference's first frame for the
reference's length; from the rollout, the long reference and a short reference of training
length (the "short MD" baseline: the first ``short_tau`` τ of the same reference) we compute

- ⟨R_g²⟩ (fine-level R_g² in σ²: the rollout's ``rg2_fine`` observable, i.e. CG R_g² plus
  the learned App. C offset), and across polymers r² and MAE against the long reference;
- the earth mover's distance between R_g² distributions (σ²);
- the R_g² relaxation time t_R (τ) of the 1/e crossing of the ACF, and its MAE;
- CG R(s) (σ) and CG contact maps (cutoff ``contact_cutoff`` σ), mean absolute errors.

One short run is a noisy baseline: the mean R_g² of a 1,000-τ stretch of a swollen test
chain varies by up to ±1 σ² from stretch to stretch. So ⟨R_g²⟩ and the R_g² distribution
are also taken over every non-overlapping window of ``short_tau`` in the long reference
(window 0 is the baseline above), and the summary gives the spread of the short-MD r²,
MAE and EMD over those windows and how often the model beats them.

All metrics are pure functions of trajectories (``explorer.analysis.polymer``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from explorer.analysis.polymer import (
    autocorrelation,
    contact_map,
    mean_internal_distance,
    radius_of_gyration_sq,
    relaxation_time,
    wasserstein_1d,
)
from explorer.cg.polymers import load_polymer
from explorer.errors import AnalysisError, ExplorerError

__all__ = ["EvalReport", "evaluate", "r2_score", "series_stats", "short_windows", "summarize"]


def r2_score(truth: np.ndarray, pred: np.ndarray) -> float:
    """Coefficient of determination 1 - Σ(y - ŷ)² / Σ(y - ȳ)²."""
    y, p = np.asarray(truth, float), np.asarray(pred, float)
    ss = float(((y - y.mean()) ** 2).sum())
    return float("nan") if ss == 0 else 1.0 - float(((y - p) ** 2).sum()) / ss


def series_stats(
    rg2: np.ndarray, cg_positions: np.ndarray, dt_tau: float, contact_cutoff: float
) -> dict[str, Any]:
    """⟨R_g²⟩, the samples, t_R, R(s) and contact map of one trajectory."""
    try:
        max_lag = max(2, rg2.size // 4)
        t_r = relaxation_time(autocorrelation(rg2, max_lag), dt_tau, method="crossing")
    except AnalysisError:
        t_r = float("nan")
    _, r_s = mean_internal_distance(cg_positions)
    return {
        "mean_rg2": float(rg2.mean()),
        "rg2": rg2,
        "t_relax_tau": t_r,
        "r_s": r_s,
        "contacts": contact_map(cg_positions, contact_cutoff),
    }


@dataclass
class EvalReport:
    """Per-polymer rows and summary metrics (model vs short MD, both against long MD)."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({"summary": self.summary, "polymers": self.rows}, indent=2)


def evaluate(
    simulator: Any,
    polymers: Sequence[str],
    *,
    seed: int = 0,
    refinement: int = 0,
    steps: int | None = None,
    short_tau: float = 1_000.0,
    contact_cutoff: float = 3.0,
    progress: bool = False,
) -> EvalReport:
    """Roll out every polymer and compare with its long reference and the short baseline."""
    from tqdm import tqdm

    from explorer.errors import SimulationDiverged

    if steps is not None and steps < 1:
        raise ExplorerError(f"a rollout needs at least 1 learned step, got {steps}")
    report = EvalReport()
    for name in tqdm(polymers, disable=not progress, desc="eval cg"):
        data = load_polymer(name, simulator.polymer_dir)
        if data.missing_frames:
            raise ExplorerError(
                f"reference {name} is incomplete: {len(data.positions)} of "
                f"{len(data.positions) + data.missing_frames} frames (still being generated, "
                "or cut short: resume its generator)"
            )
        cg = simulator.load(data)
        ref_dt = float(np.median(np.diff(data.times_tau)))
        length_tau = float(data.times_tau[-1] - data.times_tau[0])
        n_steps = steps if steps is not None else round(length_tau / simulator.dt_tau)
        atoms = simulator.polymer_atoms(name)
        state = simulator.prepare(atoms, polymer=name, refinement=refinement, seed=seed)
        xs, rg2s, extensions, diverged = [], [], [], ""
        try:
            for k in range(n_steps + 1):  # frame 0 is the start
                if k:
                    state = simulator.step(state)
                xs.append(state.x.double().numpy())
                observables = simulator.frame(state).observables
                rg2s.append(observables["rg2_fine"])
                extensions.append(observables.get("extension", float("nan")))
        except SimulationDiverged as exc:
            diverged = str(exc)
        model = series_stats(np.array(rg2s), np.array(xs), simulator.dt_tau, contact_cutoff)
        ref_rg2 = radius_of_gyration_sq(data.positions, data.polymer.masses)
        ref = series_stats(ref_rg2, cg.positions, ref_dt, contact_cutoff)
        n_short = max(3, round(short_tau / ref_dt) + 1)
        short = series_stats(ref_rg2[:n_short], cg.positions[:n_short], ref_dt, contact_cutoff)
        windows = short_windows(ref_rg2, n_short)
        row = {"polymer": data.polymer.name, "steps": len(xs) - 1, "diverged": diverged}
        ext = np.asarray(extensions, dtype=float)
        if np.isfinite(ext).all():  # frames no fine chain with FENE bonds could map to
            row["model_overstretched_fraction"] = float(np.mean(ext > 1.0))
            row["model_max_extension"] = float(ext.max())
        for key, stats in (("reference", ref), ("model", model), ("short_md", short)):
            row[f"{key}_mean_rg2"] = stats["mean_rg2"]
            row[f"{key}_t_relax_tau"] = stats["t_relax_tau"]
        for key, stats in (("model", model), ("short_md", short)):
            row[f"{key}_emd"] = wasserstein_1d(stats["rg2"], ref["rg2"])
            row[f"{key}_rs_mae"] = float(np.abs(stats["r_s"] - ref["r_s"]).mean())
            row[f"{key}_contact_mae"] = float(np.abs(stats["contacts"] - ref["contacts"]).mean())
        row["short_md_window_mean_rg2"] = [float(w.mean()) for w in windows]
        row["short_md_window_emd"] = [wasserstein_1d(w, ref["rg2"]) for w in windows]
        report.rows.append(row)
    report.summary = summarize(report.rows)
    return report


def short_windows(series: np.ndarray, n_frames: int) -> list[np.ndarray]:
    """Every non-overlapping window of ``n_frames`` frames (``n_frames`` - 1 intervals, the
    short-MD length) of a reference series; neighbours share their boundary frame, as a
    run of that length started from the previous one's last frame would."""
    if n_frames < 2:
        raise AnalysisError(f"a window needs at least 2 frames, got {n_frames}")
    step = n_frames - 1
    return [series[k : k + n_frames] for k in range(0, len(series) - step, step)]


def summarize(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Table 2 style metrics across polymers for the model and the short-MD baseline."""
    ref = np.array([r["reference_mean_rg2"] for r in rows])
    ref_t = np.array([r["reference_t_relax_tau"] for r in rows])
    out: dict[str, float] = {"n_polymers": float(len(rows))}
    for key in ("model", "short_md"):
        pred = np.array([r[f"{key}_mean_rg2"] for r in rows])
        t = np.array([r[f"{key}_t_relax_tau"] for r in rows])
        ok = np.isfinite(t) & np.isfinite(ref_t)
        out[f"{key}_r2"] = r2_score(ref, pred)
        out[f"{key}_mae"] = float(np.abs(ref - pred).mean())
        out[f"{key}_emd"] = float(np.mean([r[f"{key}_emd"] for r in rows]))
        out[f"{key}_t_relax_mae_tau"] = (
            float(np.abs(t - ref_t)[ok].mean()) if ok.any() else float("nan")
        )
        out[f"{key}_rs_mae"] = float(np.mean([r[f"{key}_rs_mae"] for r in rows]))
        out[f"{key}_contact_mae"] = float(np.mean([r[f"{key}_contact_mae"] for r in rows]))
    out["stable_fraction"] = float(np.mean([not r["diverged"] for r in rows]))
    stretched = [
        r["model_overstretched_fraction"] for r in rows if "model_overstretched_fraction" in r
    ]
    if stretched:  # mean over polymers of the fraction of frames beyond full extension
        out["model_overstretched_fraction"] = float(np.mean(stretched))
    out.update(_window_summary(rows, ref, out))
    return out


def _window_summary(
    rows: Sequence[dict[str, Any]], ref: np.ndarray, out: dict[str, float]
) -> dict[str, float]:
    """Short-MD r², MAE and EMD over the reference windows (:func:`short_windows`):
    median, min and max, and the fraction of windows the model beats; empty for rows
    without windows (reports written before they existed)."""
    if not all("short_md_window_mean_rg2" in r for r in rows):
        return {}
    counts = {len(r["short_md_window_mean_rg2"]) for r in rows}
    if len(counts) != 1 or 0 in counts:
        return {}  # references of different lengths: no common set of windows
    means = np.array([r["short_md_window_mean_rg2"] for r in rows])  # (polymers, windows)
    metrics = {
        "r2": np.array([r2_score(ref, means[:, w]) for w in range(means.shape[1])]),
        "mae": np.abs(means - ref[:, None]).mean(0),
        "emd": np.array([r["short_md_window_emd"] for r in rows]).mean(0),
    }
    summary = {"short_md_windows": float(means.shape[1])}
    for name, values in metrics.items():
        summary[f"short_md_{name}_median"] = float(np.median(values))
        summary[f"short_md_{name}_min"] = float(values.min())
        summary[f"short_md_{name}_max"] = float(values.max())
        model = out[f"model_{name}"]
        better = values < model if name == "r2" else values > model
        summary[f"model_beats_short_md_{name}_fraction"] = float(np.mean(better))
    return summary


def reference_observables(
    directory: Any = None, contact_cutoff: float = 3.0, bead_size: int = 4
) -> dict[str, Any]:
    """⟨R_g²⟩, its spread, t_R, and R(s) (fine beads) of every bundled polymer file.

    Stored as ``sample_data/polymers/reference_observables.json`` so that users can compare
    without reading the trajectories. Units: σ², τ, σ.
    """
    from pathlib import Path

    from explorer.cg.polymers import POLYMER_DIR

    directory = Path(directory) if directory is not None else POLYMER_DIR
    out: dict[str, Any] = {
        "units": {"rg2": "sigma^2", "t_relax": "tau", "r_s": "sigma"},
        "definitions": "MSGN paper App. B; t_relax at the 1/e crossing of the R_g² ACF",
        "polymers": {},
    }
    for path in sorted(directory.glob("*.h5")):
        data = load_polymer(path)
        dt = float(np.median(np.diff(data.times_tau)))
        rg2 = radius_of_gyration_sq(data.positions, data.polymer.masses)
        stats = series_stats(rg2, data.positions, dt, contact_cutoff)
        out["polymers"][data.polymer.name] = {
            "class": data.polymer.polymer_class,
            "n_beads": data.polymer.n_beads,
            "cu_sequence": list(data.polymer.cu_sequence),
            "length_tau": float(data.times_tau[-1] - data.times_tau[0]),
            "record_every_tau": dt,
            "mean_rg2": stats["mean_rg2"],
            "std_rg2": float(rg2.std()),
            "t_relax_tau": stats["t_relax_tau"],
            "mean_internal_distance": [round(float(r), 4) for r in stats["r_s"]],
        }
    return out
