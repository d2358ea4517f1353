"""A readable report (Markdown) of the bundled LiFlow checkpoints, from their model cards.

The cards (JSON, written by :mod:`explorer.liflow.bundle`) are the record; this turns
them into the tables a reader wants next to the weights: per checkpoint the training
data and time, the evaluation against the reference MD with the targets of the issue
(log10 MSD_Li MAE ≤ 0.3, Spearman ρ ≥ 0.8, RDF MAE ≤ 0.08, 100 % stable rollouts,
Ea inside the reference's 95 % CI), the Arrhenius activation energies, the held-out
evaluation of the multi-material checkpoint, the prior classifier's accuracies and the
knob study. Units: MSD in Å² (log10), RDF MAE as in eq. 18 (dimensionless: mean |Δg|
over 0.1-Å bins to 5 Å), its integral ∫|Δg| dr in Å, Ea in eV, times in s.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = ["TARGETS", "liflow_report", "metric_rows"]

#: (summary key, label, target text, passes?) of the per-material targets.
TARGETS: tuple[tuple[str, str, str, Any], ...] = (
    ("mae_log10_msd_li", "log10 MSD_Li MAE", "≤ 0.3", lambda v: v <= 0.3),
    ("spearman_li", "Spearman ρ (Li)", "≥ 0.8", lambda v: v >= 0.8),
    ("mae_log10_msd_frame", "log10 MSD_frame MAE", "—", None),
    (
        "rdf_mae",
        "RDF MAE (eq. 18: mean abs. error of g on 0.1-Å bins to 5 Å)",
        "≤ 0.08",
        lambda v: v <= 0.08,
    ),
    ("rdf_mae_floor", "RDF MAE of the reference at the rollout's frame times", "—", None),
    (
        "rdf_iae_A",
        "RDF integrated error ∫ abs(Δg) dr to half the cell width, Å (the RDF MAE before 2026-12)",
        "—",
        None,
    ),
    (
        "corrector_rdf_bias",
        "RDF MAE one correction (Corrector, then fine Corrector where bundled) adds to 200 "
        "reference MD frames",
        "—",
        None,
    ),
    ("overlap", "RDF overlap", "—", None),
    ("overlap_sampled", "RDF overlap, pairs with ≥ 5 distances per bin", "—", None),
    ("stable_fraction", "stable rollouts", "100 %", lambda v: v >= 1.0),
)

#: Flow modules of a bundle, in the order they run, as the report and a bundle card's
#: ``kind`` name them.
MODULE_LABELS = {
    "propagator": "propagator",
    "corrector": "corrector",
    "corrector_fine": "fine corrector",
}


def _fmt(value: Any, spec: str = ".3f") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return format(value, spec)


def _ci(fit: Mapping[str, Any] | None) -> str:
    if not fit:
        return "n/a"
    low, high = fit["Ea_ci95_eV"]
    return f"{fit['Ea_eV']:.3f} ({low:.3f}, {high:.3f})"


def metric_rows(summary: Mapping[str, Any]) -> list[tuple[str, str, str, str]]:
    """(metric, value, target, verdict) rows of an evaluation summary."""
    rows = []
    for key, label, target, passes in TARGETS:
        value = summary.get(key)
        shown = (
            _fmt(100 * value, ".0f") + " %"
            if key == "stable_fraction" and value is not None
            else _fmt(value)
        )
        verdict = ""
        if passes is not None and value is not None and math.isfinite(value):
            verdict = "meets" if passes(value) else "misses"
        rows.append((label, shown, target, verdict))
    return rows


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def _evaluation_section(title: str, evaluation: Mapping[str, Any]) -> list[str]:
    summary = evaluation.get("summary") or {}
    lines = [
        f"**{title}**: {len(evaluation.get('references', []))} reference trajectories × "
        f"{evaluation.get('seeds', '?')} seeds, {_fmt(evaluation.get('rollout_ps'), 'g')}-ps "
        "rollouts from each reference's first frame.",
        "",
        *_table(("metric", "value", "target", ""), metric_rows(summary)),
        "",
    ]
    arrhenius = summary.get("arrhenius") or {}
    if arrhenius:
        rows = [
            (
                material,
                _ci(fit.get("generated")),
                _ci(fit.get("reference")),
                {True: "yes", False: "no", None: "n/a"}[fit.get("Ea_in_ref_ci")],
            )
            for material, fit in arrhenius.items()
        ]
        header = ("material", "Ea LiFlow (eV, 95 % CI)", "Ea reference MD", "inside ref. CI")
        lines += [*_table(header, rows), ""]
    return lines


def _knob_section(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    table = [
        (
            _fmt(r["prior_scale_li"], "g"),
            _fmt(r["corrector_strength"], "g"),
            _fmt(r.get("mean_log10_msd_li")),
            _fmt(r.get("mae_log10_msd_li")),
            _fmt(r.get("rdf_mae")),
            _fmt(100 * r["stable_fraction"], ".0f") + " %"
            if r.get("stable_fraction") is not None
            else "n/a",
        )
        for r in rows
    ]
    header = ("Li prior scale", "Corrector", "mean log10 MSD_Li", "MAE", "RDF MAE", "stable")
    return ["**Knob study** (LGPS):", "", *_table(header, table), ""]


def _where(record: Mapping[str, Any] | None) -> str:
    """`` (on cuda, stopped at its 5-min limit)`` for modules not trained plainly on a CPU."""
    config = (record or {}).get("train_config") or {}
    notes = []
    if config.get("device") not in (None, "cpu", "auto"):
        notes.append(f"on {config['device']}")
    if (record or {}).get("stopped_at_time_limit"):
        notes.append(f"stopped at its {_fmt(config.get('max_wall_s', 0) / 60, 'g')}-min limit")
    return f" ({', '.join(notes)})" if notes else ""


def _checkpoint_section(card: Mapping[str, Any]) -> list[str]:
    name = card.get("name", "?")
    files = [f["name"] for f in card.get("training_files", [])]
    temps = card.get("training_temperatures_K", [])
    training = card.get("training", {})
    walls = {k: (v or {}).get("wall_time_s") for k, v in training.items()}
    steps = {k: (v or {}).get("steps") for k, v in training.items()}
    lines = [
        f"## {name}",
        "",
        f"Materials: {', '.join(card.get('materials', []))}; training temperatures "
        f"{', '.join(_fmt(t, 'g') for t in temps)} K; {len(files)} reference files "
        "(names and sha256 in the card). Command: `" + str(card.get("command", "?")) + "`.",
        "",
        "Training: "
        + "; ".join(
            f"{MODULE_LABELS[k]} {steps.get(k, '?')} steps in {_fmt(walls.get(k), '.0f')} s"
            + _where(training[k])
            for k in MODULE_LABELS
            if k in training
        )
        + f"; best Propagator validation loss {_fmt(card.get('best_val_loss'), '.4g')} Å².",
        "",
    ]
    selector = card.get("selector") or {}
    if selector:
        train_acc = selector.get("train_accuracy") or {}
        held = selector.get("heldout_accuracy") or {}
        start = selector.get("heldout_accuracy_start")
        text = (
            "Prior classifier accuracy (Li / frame): training "
            f"{_fmt(train_acc.get('li'), '.2f')} / {_fmt(train_acc.get('frame'), '.2f')}, "
            f"held out {_fmt(held.get('li'), '.2f')} / {_fmt(held.get('frame'), '.2f')}"
        )
        if start:
            text += (
                f" (held-out runs' catalogue start cells: {_fmt(start.get('li'), '.2f')} / "
                f"{_fmt(start.get('frame'), '.2f')})"
            )
        if "example_structures" in selector:
            text += f"; trained on {selector['example_structures']}"
        lines += [text + ".", ""]
    recommended = card.get("recommended_knobs") or {}
    if recommended:
        knobs = ", ".join(f"{k} = {v:g}" for k, v in recommended.items())
        lines += [
            f"Recommended knobs, the defaults of rollouts and the evaluations below: {knobs} "
            "(a prior scale of 1 is the trained prior).",
            "",
        ]
    below = card.get("full_corrector_flow_below_K")
    if below is not None:
        lines += [
            f"Below {below:g} K each Corrector integrates all N flow steps (⌈3N/10⌉ above; "
            "the evaluations below ran so).",
            "",
        ]
    if card.get("evaluation"):
        lines += _evaluation_section("Evaluation on the training materials", card["evaluation"])
    if card.get("evaluation_heldout"):
        lines += _evaluation_section(
            "Evaluation on held-out materials/temperatures", card["evaluation_heldout"]
        )
    if card.get("knob_study"):
        lines += _knob_section(card["knob_study"])
    if card.get("evaluation_wall_time_s") is not None:
        lines += [f"Evaluation wall time: {card['evaluation_wall_time_s']:.0f} s.", ""]
    if card.get("evaluation_command"):
        lines += [
            f"Evaluated again on {str(card.get('evaluation_date', '?'))[:10]}, same weights, "
            f"with `{card['evaluation_command']}`.",
            "",
        ]
    return lines


def liflow_report(cards: Iterable[Mapping[str, Any]]) -> str:
    """The Markdown report of the LiFlow checkpoints among ``cards`` (others skipped)."""
    chosen = [c for c in cards if c.get("family") == "liflow"]
    lines = [
        "# Bundled LiFlow checkpoints",
        "",
        "Generated from the model cards by `accelmd checkpoints --report`; every number is "
        "measured by `make train` against our CHGNet reference MD (`sample_data/reference/`).",
        "",
        "Modules marked *on cuda* were trained on a lent GPU machine with `accelmd train "
        "liflow --bundle NAME --modules-only --work-dir DIR --device cuda --max-minutes M` "
        "and the remaining settings of the command shown, then combined, evaluated and bundled "
        "on a CPU by that command (it finds the trained modules in `--work-dir`); `make "
        "train-gpu` runs both steps. On a CPU `make train` trains every bundle with the "
        "default 2,000 Propagator and 1,000 Corrector (and fine Corrector) steps instead. "
        "A command with `--reuse-modules NAME` started from the modules of the bundled "
        "checkpoint NAME and trained only what it lacked (the fine Corrector).",
        "",
    ]
    if not chosen:
        return "\n".join([*lines, "No LiFlow checkpoint is bundled.", ""])
    for card in chosen:
        lines += _checkpoint_section(card)
    return "\n".join(lines)
