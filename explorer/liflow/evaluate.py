"""LiFlow evaluation: generated vs reference trajectories (seed 001 §IV.6 and §II.4).

Per (material, T, seed) record, :func:`trajectory_metrics` compares one generated
trajectory with its reference:

* kinetics: log10 MSD(t_end) in Å² of Li and of the frame (all non-Li atoms
  together), with the single-origin MSD of a group G at the common end time
  t_end = min(span_gen, span_ref),  MSD_G(t_end) = 1/|G| Σ_{i∈G} |x_i(t_end) − x_i(0)|²;
* structure, after discarding the first 20 % of each trajectory: the total-RDF MAE of
  eq. 18, (1/r_max) ∫_0^{r_max} |g − g_ref| dr with r_max = 5 Å on 0.1-Å bins
  (dimensionless, the mean |Δg| over the bins: the LiFlow authors' evaluation, and the
  unit of the paper's 0.07–0.17 and of the 0.08 target), ``rdf_mae``; the same
  integral without the 1/r_max on the overlap grid, ``rdf_iae_A`` (Å; what this module
  reported as the RDF MAE before 2026-12, 4.8–5.5× ``rdf_mae`` on the bundled cells);
  and the minimum pair overlap score (seed 004 eq. 7) on that grid (common half-cell
  r_max, 0.05-Å bins);
* D_Li ± σ (Å²/ps) of both trajectories from the MSD slope (eq. 17).

The RDF MAE of a short rollout is not zero even for a perfect model: a rollout of
25 one-ps steps averages ~20 frames, the reference hundreds. :func:`rdf_sampling_floor`
measures that sampling floor: the RDF errors of the reference itself, read only at the
rollout's frame times, against the whole reference (LGPS, 50 atoms, 1-ps frames:
``rdf_mae`` 0.03–0.05, ``rdf_iae_A`` 0.21–0.27 Å). Records carry it as
``rdf_mae_floor`` and ``rdf_iae_floor_A``.

:func:`aggregate` turns the records into the paper's table: MAE and Spearman ρ
of log10 MSD across records, mean RDF MAE and overlap, the stable fraction, and
per material the Arrhenius Ea ± 95 % CI of generated and reference D(T).
:func:`evaluate` rolls out any :class:`~explorer.session.Simulator` from each
reference's first frame and does both.

An MSD of exactly 0 (an immobile group) has no logarithm: it is reported as NaN
and left out of the MAE and ρ, like every other non-finite metric.
"""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from explorer.analysis.diffusion import arrhenius_fit, diffusion_coefficient
from explorer.analysis.rdf import (
    DEFAULT_BIN_WIDTH,
    default_r_max,
    overlap_score,
    rdf,
    rdf_from_frames,
    rdf_iae,
    rdf_mae,
    sparse_pairs,
)
from explorer.errors import AnalysisError
from explorer.session import DONE, Rollout, Simulator
from explorer.trajectory import Trajectory

RDF_DISCARD_FRACTION = 0.2  # seed 001 §IV.6: 5 ps of 25 ps
MAX_RDF_FRAMES = 100  # frames averaged per RDF (strided); keeps evaluation cheap
#: RDF MAE grid of seed 001 §IV.6 (r_max = 5 Å) with the authors' 0.1-Å bins.
RDF_MAE_R_MAX_A = 5.0
RDF_MAE_BIN_A = 0.1
NAN = float("nan")


def end_msd(traj: Trajectory, group: np.ndarray, time_ps: float) -> float:
    """Single-origin MSD of atoms ``group`` at ``time_ps`` after frame 0, Å².

    MSD = 1/|G| Σ_i |x_i(t) − x_i(0)|², at the last frame with t − t_0 ≤ time_ps.
    NaN for an empty group.
    """
    if group.size == 0:
        return NAN
    elapsed = traj.times_ps - traj.times_ps[0]
    frame = int(np.searchsorted(elapsed, time_ps * (1 + 1e-9) + 1e-12, side="right")) - 1
    step = traj.positions[frame, group].astype(np.float64) - traj.positions[0, group]
    return float(np.mean(np.sum(step**2, axis=1)))


def log10_or_nan(value: float) -> float:
    """log10 of a positive number, NaN otherwise (MSD = 0 has no logarithm)."""
    return math.log10(value) if np.isfinite(value) and value > 0 else NAN


def li_diffusivity(traj: Trajectory) -> tuple[float, float]:
    """(D_Li, σ_D) in Å²/ps from eq. 17; NaN when the trajectory is too short or Li is still."""
    try:
        result = diffusion_coefficient(traj, "Li")
    except AnalysisError:
        return NAN, NAN
    return result.D_A2_ps, result.D_std_A2_ps


def _kept_rdf(traj: Trajectory, r_max: float, bin_width: float) -> Any:
    """RDF of ``traj`` after the 20 % induction period, at most MAX_RDF_FRAMES frames."""
    kept = traj.n_frames - int(np.floor(RDF_DISCARD_FRACTION * traj.n_frames))
    stride = max(1, math.ceil(kept / MAX_RDF_FRAMES))
    return rdf(traj, r_max, bin_width, RDF_DISCARD_FRACTION, frame_stride=stride)


def rdf_scores(generated: Trajectory, reference: Trajectory) -> dict[str, float]:
    """RDF agreement of ``generated`` with ``reference`` after a 20 % induction period.

    Keys: ``rdf_mae`` (eq. 18, dimensionless: mean |Δg| of the total RDFs on 0.1-Å
    bins over [0, 5 Å]); ``rdf_iae_A`` (∫|Δg| dr in Å on the overlap grid: common
    half-cell r_max, 0.05-Å bins); ``overlap`` (min pair overlap, seed 004 eq. 7) and
    ``overlap_sampled`` (the same over the pairs not ``sparse_pairs``: NaN if every
    pair is sparse), both on the overlap grid.
    """
    r_max = min(default_r_max(generated.cell), default_r_max(reference.cell))
    results = [_kept_rdf(t, r_max, DEFAULT_BIN_WIDTH) for t in (generated, reference)]
    scores = overlap_score(*results)
    if not scores:
        raise AnalysisError("the two RDF results share no element pair")
    sparse = sparse_pairs(*results)
    sampled = [v for k, v in scores.items() if k not in sparse]
    paper = [_kept_rdf(t, RDF_MAE_R_MAX_A, RDF_MAE_BIN_A) for t in (generated, reference)]
    return {
        "rdf_mae": rdf_mae(*paper),
        "rdf_iae_A": rdf_iae(*results),
        "overlap": min(scores.values()),
        "overlap_sampled": min(sampled, default=NAN),
    }


def rdf_sampling_floor(reference: Trajectory, frame_spacing_ps: float) -> dict[str, float]:
    """RDF errors of ``reference`` read every ``frame_spacing_ps`` against all of it.

    What a model that reproduced the reference exactly would score with rollout frames
    that far apart: the sampling part of the RDF errors (module docstring). Keys
    ``rdf_mae_floor`` (dimensionless) and ``rdf_iae_floor_A`` (Å), as in
    :func:`rdf_scores`; NaN when the spacing leaves fewer than 2 frames.
    """
    stride = max(1, round(frame_spacing_ps / reference.timestep_ps))
    sampled = reference[::stride]
    if sampled.n_frames < 2:
        return {"rdf_mae_floor": NAN, "rdf_iae_floor_A": NAN}
    scores = rdf_scores(sampled, reference)
    return {"rdf_mae_floor": scores["rdf_mae"], "rdf_iae_floor_A": scores["rdf_iae_A"]}


def corrector_rdf_bias(
    simulator: Any, reference: Trajectory, n_frames: int = 200, seed: int = 0
) -> float:
    """Total-RDF MAE (eq. 18, dimensionless, as in :func:`rdf_scores`) that one
    correction adds to reference frames.

    Up to ``n_frames`` evenly spaced frames after the 20 % induction period are each
    passed through ``simulator.correct`` (a :class:`~explorer.liflow.simulate.
    LiFlowSimulator` with a Corrector: its pass, then the fine Corrector's where the
    checkpoint has one) at the reference's temperature, and the RDF of
    the corrected frames is compared with the RDF of the same frames uncorrected. An
    ideal Corrector leaves an MD frame as it is and scores ~0; one trained on large
    noise also "denoises" clean frames (LGPS, σ_max 0.5 Å: P–S bonds 2.08 → 1.98 Å).

    Moving atoms at all re-bins distances, so the score has a noise floor that falls
    with the number of frames: Gaussian jitter of 0.01 / 0.05 Å on LGPS at 800 K (50
    atoms) scores 0.015 / 0.044 with 10 frames and 0.004 / 0.016 with 200, hence the
    default of 200 frames (about 30 s per 50-atom reference on one CPU core).
    """
    if n_frames < 1:
        raise ValueError(f"n_frames must be >= 1, got {n_frames}")
    first = int(np.floor(RDF_DISCARD_FRACTION * reference.n_frames))
    frames = np.unique(np.linspace(first, reference.n_frames - 1, n_frames).round().astype(int))
    temperature = float(reference.metadata["temperature_K"])
    corrected = np.stack(
        [
            simulator.correct(reference.to_atoms(int(k)), temperature, seed=seed + i).positions
            for i, k in enumerate(frames)
        ]
    )
    args = (reference.cell, reference.numbers, RDF_MAE_R_MAX_A, RDF_MAE_BIN_A)
    return rdf_mae(
        rdf_from_frames(corrected, *args),
        rdf_from_frames(reference.positions[frames].astype(np.float64), *args),
    )


def trajectory_metrics(generated: Trajectory, reference: Trajectory) -> dict[str, float]:
    """Metrics of one generated trajectory against its reference (module docstring).

    Keys: ``time_ps`` (common end time), ``log10_msd_li``/``_ref``,
    ``log10_msd_frame``/``_ref`` (log10 Å²), ``rdf_mae`` (eq. 18, dimensionless),
    ``rdf_iae_A`` (Å), ``overlap``, ``overlap_sampled`` (:func:`rdf_scores`),
    ``D_li``/``D_li_std``/``D_li_ref``/``D_li_ref_std`` (Å²/ps).
    """
    if not np.array_equal(generated.numbers, reference.numbers):
        raise AnalysisError("generated and reference trajectories hold different atoms")
    time_ps = float(
        min(
            generated.times_ps[-1] - generated.times_ps[0],
            reference.times_ps[-1] - reference.times_ps[0],
        )
    )
    li = np.flatnonzero(reference.numbers == 3)
    frame = np.flatnonzero(reference.numbers != 3)
    out: dict[str, float] = {"time_ps": time_ps}
    for name, group in (("li", li), ("frame", frame)):
        out[f"log10_msd_{name}"] = log10_or_nan(end_msd(generated, group, time_ps))
        out[f"log10_msd_{name}_ref"] = log10_or_nan(end_msd(reference, group, time_ps))
    out.update(rdf_scores(generated, reference))
    out["D_li"], out["D_li_std"] = li_diffusivity(generated)
    out["D_li_ref"], out["D_li_ref_std"] = li_diffusivity(reference)
    return out


def _pairs(records: Sequence[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    """Finite (generated, reference) values of a metric across records."""
    gen = np.array([r.get(key, NAN) for r in records], dtype=float)
    ref = np.array([r.get(f"{key}_ref", NAN) for r in records], dtype=float)
    ok = np.isfinite(gen) & np.isfinite(ref)
    return gen[ok], ref[ok]


def spearman(gen: np.ndarray, ref: np.ndarray) -> float:
    """Spearman ρ of paired values; NaN with < 3 pairs or a constant side (undefined)."""
    if gen.size < 3 or np.ptp(gen) == 0 or np.ptp(ref) == 0:
        return NAN
    return float(stats.spearmanr(gen, ref).statistic)


def _finite_mean(values: list[float]) -> float:
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else NAN


def arrhenius_of(points: list[tuple[float, float, float]]) -> dict[str, Any] | None:
    """Weighted Arrhenius fit of (T, D, σ_D) points; None with < 2 temperatures."""
    good = [
        p
        for p in points
        if None not in p and all(np.isfinite(p)) and p[0] > 0 and p[1] > 0 and p[2] > 0
    ]
    if len({p[0] for p in good}) < 2:
        return None
    temps, d, sigma = (list(col) for col in zip(*good, strict=True))
    fit = arrhenius_fit(temps, d, sigma)
    return {
        "Ea_eV": fit.Ea_eV,
        "Ea_ci95_eV": [float(v) for v in fit.Ea_ci95_eV],
        "n_points": fit.n_points,
    }


def material_arrhenius(records: Sequence[dict]) -> dict[str, dict[str, Any]]:
    """Per material: Ea ± 95 % CI of generated (all seeds) and reference D(T), eV.

    The generated fit uses every seed's D as a point; the reference contributes
    one point per temperature. ``Ea_in_ref_ci`` tells whether the generated Ea
    lies inside the reference interval (None when either fit is missing).
    """
    out: dict[str, dict[str, Any]] = {}
    for material in dict.fromkeys(r["material"] for r in records):
        rows = [r for r in records if r["material"] == material]
        gen = [(r["temperature_K"], r.get("D_li", NAN), r.get("D_li_std", NAN)) for r in rows]
        ref_by_t = {
            r["temperature_K"]: (
                r["temperature_K"],
                r.get("D_li_ref", NAN),
                r.get("D_li_ref_std", NAN),
            )
            for r in rows
            if np.isfinite(r.get("D_li_ref", NAN))
        }
        fit_gen, fit_ref = arrhenius_of(gen), arrhenius_of(list(ref_by_t.values()))
        inside = None
        if fit_gen is not None and fit_ref is not None:
            low, high = fit_ref["Ea_ci95_eV"]
            inside = bool(low <= fit_gen["Ea_eV"] <= high)
        out[material] = {"generated": fit_gen, "reference": fit_ref, "Ea_in_ref_ci": inside}
    return out


def aggregate(records: Sequence[dict]) -> dict[str, Any]:
    """Summary over (material, T, seed) records (seed 001 Table of §II.3 and §II.4).

    ``mae_log10_msd_{li,frame}`` = mean |log10 MSD − log10 MSD_ref| over records with
    both finite; ``spearman_{li,frame}`` = Spearman ρ of the same pairs (NaN with fewer
    than 3 pairs, where a rank correlation is meaningless); ``rdf_mae``,
    ``rdf_mae_floor``, ``rdf_iae_A``, ``rdf_iae_floor_A``, ``overlap`` and
    ``overlap_sampled`` are means;
    ``stable_fraction`` = records with ``stable`` true / all records;
    ``arrhenius`` is :func:`material_arrhenius`.
    """
    summary: dict[str, Any] = {"n_records": len(records)}
    for name in ("li", "frame"):
        gen, ref = _pairs(records, f"log10_msd_{name}")
        summary[f"mae_log10_msd_{name}"] = float(np.mean(np.abs(gen - ref))) if gen.size else NAN
        summary[f"spearman_{name}"] = spearman(gen, ref)
    for key in ("rdf_mae", "rdf_mae_floor", "rdf_iae_A", "rdf_iae_floor_A"):
        summary[key] = _finite_mean([r.get(key, NAN) for r in records])
    for key in ("overlap", "overlap_sampled"):
        summary[key] = _finite_mean([r.get(key, NAN) for r in records])
    n_stable = sum(bool(r.get("stable", True)) for r in records)
    summary["stable_fraction"] = n_stable / len(records) if records else NAN
    summary["arrhenius"] = material_arrhenius(records) if records else {}
    return summary


@dataclass
class EvaluationReport:
    """Per-record metrics and their :func:`aggregate` summary."""

    records: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)

    def to_json(self, indent: int | None = 2) -> str:
        """JSON text (NaN written as null) for ``accelmd eval``."""
        return json.dumps(
            _jsonable({"records": self.records, "summary": self.summary}), indent=indent
        )


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float | np.floating):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer | np.bool_):
        return value.item()
    return value


def default_knobs_for(simulator: Simulator) -> Callable[[Trajectory], dict[str, Any]]:
    """Pass the reference's ``temperature_K`` only when ``simulator.prepare`` accepts it."""
    params = inspect.signature(simulator.prepare).parameters
    takes_t = "temperature_K" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())

    def knobs_for(reference: Trajectory) -> dict[str, Any]:
        temperature = reference.metadata.get("temperature_K")
        return {"temperature_K": temperature} if takes_t and temperature is not None else {}

    return knobs_for


def evaluate(
    simulator: Simulator,
    references: Sequence[Trajectory],
    knobs: dict[str, Any] | None = None,
    n_seeds: int = 3,
    steps: int | None = None,
    step_ps: float = 1.0,
    knobs_for: Callable[[Trajectory], dict[str, Any]] | None = None,
) -> EvaluationReport:
    """Roll out ``simulator`` from each reference's first frame and compare (module docstring).

    Each reference (metadata ``material``, ``temperature_K``) is run with seeds
    0..n_seeds−1 for ``steps`` steps, default round(span_ref / step_ps), where
    ``step_ps`` is the simulator's step length in ps. Knobs are
    ``{**knobs, **knobs_for(reference), "seed": s}``; ``knobs_for`` defaults to
    :func:`default_knobs_for`. A failed rollout is unstable; its metrics use the
    frames it kept when there are ≥ 2, otherwise they are left out (NaN).
    """
    knobs_for = knobs_for or default_knobs_for(simulator)
    records = []
    for index, reference in enumerate(references):
        span = float(reference.times_ps[-1] - reference.times_ps[0])
        n_steps = steps if steps is not None else max(1, round(span / step_ps))
        base = {**(knobs or {}), **knobs_for(reference)}
        floor = rdf_sampling_floor(reference, step_ps)
        for seed in range(n_seeds):
            rollout = Rollout(simulator, reference.to_atoms(0), n_steps, {**base, "seed": seed})
            rollout.start()
            rollout.join()
            record: dict[str, Any] = {
                "material": str(reference.metadata.get("material", f"reference_{index}")),
                "temperature_K": reference.metadata.get("temperature_K"),
                "seed": seed,
                "status": rollout.status,
                "stable": rollout.status == DONE,
                "error": str(rollout.error or ""),
                "n_frames": rollout.n_frames,
            }
            if rollout.n_frames >= 2:
                record.update(trajectory_metrics(rollout.trajectory(), reference))
                record.update(floor)
            records.append(record)
    return EvaluationReport(records=records, summary=aggregate(records))
