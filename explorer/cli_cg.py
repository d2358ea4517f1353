"""``accelmd rollout | train | eval | select cg`` and the polymer dataset: the CG family on the CLI.

The lead's ``cli_models.add_model_commands`` calls :func:`add_cg_rollout`,
:func:`add_cg_train`, :func:`add_cg_eval` and :func:`add_cg_select` with the family
sub-parsers; ``make data`` calls :func:`generate_polymer_data` and ``make
cg-selection-data`` :func:`generate_selection_data` (or ``accelmd data --cg`` through
:func:`add_cg_data_arguments` / :func:`run_cg_data`). Handlers only build arguments for
``explorer.cg`` functions and return an exit code.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from math import isnan, nan
from pathlib import Path
from typing import TYPE_CHECKING

from explorer.errors import ExplorerError

if TYPE_CHECKING:
    from explorer.cg.data import CGPolymer

__all__ = [
    "add_cg_data_arguments",
    "add_cg_eval",
    "add_cg_rollout",
    "add_cg_select",
    "add_cg_train",
    "generate_polymer_data",
    "generate_selection_data",
    "run_cg_data",
]

DEFAULT_CHECKPOINT = "cg-polymers"
# Where ``make cg-selection-data`` puts the selection chains' long references (not bundled).
SELECTION_DIR = Path(__file__).resolve().parents[1] / "build" / "cg_selection"


# -- rollout cg ---------------------------------------------------------------
def add_cg_rollout(families: argparse._SubParsersAction) -> None:
    p = families.add_parser("cg", help="CG simulator: learned steps of Δt (2 τ) on CG beads")
    p.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT, help="bundled name or .json")
    p.add_argument("--polymer", required=True, help="bundled polymer name or its .h5 file")
    p.add_argument("--steps", type=int, required=True, help="learned steps (Δt each)")
    p.add_argument("--out", required=True, help="output H5MD file of CG bead positions (σ, τ)")
    p.add_argument(
        "--refinement", "--refinement-strength", dest="refinement", type=int, default=0,
        help="Score-GNN refinement: number of noise levels (0 = off)",
    )  # fmt: skip
    p.add_argument("--langevin-steps", type=int, default=5, help="Langevin steps per level")
    p.add_argument("--start-frame", type=int, default=0, help="reference frame to start from")
    p.add_argument("--polymer-dir", help="where polymer names are found (default: bundled)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(handler=_run_cg_rollout)


def _run_cg_rollout(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from explorer.cg.simulate import CGSimulator
    from explorer.session import FAILED, Rollout

    simulator = CGSimulator.from_checkpoint(args.checkpoint, **_polymer_dir(args))
    atoms = simulator.polymer_atoms(args.polymer, start_frame=args.start_frame)
    knobs = {
        "polymer": args.polymer,
        "refinement": args.refinement,
        "langevin_steps": args.langevin_steps,
        "seed": args.seed,
    }
    cg = simulator.load(args.polymer)
    metadata = {
        "producer": "accelmd rollout cg",
        "checkpoint": simulator.name,
        "polymer": args.polymer,
        "dt_tau": simulator.dt_tau,
        "length_unit": "sigma",
        "time_unit": "tau",
        "note": "positions are CG bead centres of mass in σ, times in τ (H5MD labels Å/ps)",
        "cg_masses": cg.cg_masses.tolist(),
        "cg_groups": cg.groups.tolist(),
    }
    rollout = Rollout(simulator, atoms, args.steps, knobs, out_path=args.out, metadata=metadata)
    extensions: list[float] = []
    with tqdm(total=args.steps, desc="CG", unit="step", file=sys.stderr) as bar:
        rollout.subscribe(lambda index, frame: index and bar.update(1))
        rollout.subscribe(
            lambda index, frame: extensions.append(frame.observables.get("extension", nan))
        )
        rollout.start()
        rollout.join()
    if Path(args.out).exists():
        annotate_rollout_file(Path(args.out), cg)
    warning = overextension_warning(extensions)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    if rollout.status == FAILED:
        error = rollout.error
        kept = rollout.n_frames
        if isinstance(error, ExplorerError):
            raise type(error)(f"{error} ({kept} frames kept in {args.out})")
        raise ExplorerError(f"rollout failed: {error} ({kept} frames kept in {args.out})")
    print(f"{args.out}: {rollout.n_frames} frames, {rollout.progress().simulated_ps:g} τ")
    return 0


def overextension_warning(extensions: Sequence[float]) -> str:
    """An empty string, or a sentence on the frames whose CG beads are farther apart than a
    fully extended fine chain allows (``extension`` > 1 in the frames of
    :class:`~explorer.cg.simulate.CGSimulator`). No configuration of the reference model
    maps to them, so there the rollout has left the physical region (the reference MD
    stays below 0.6)."""
    known = [e for e in extensions if not isnan(e)]  # NaN: the file gave no FENE bound
    over = [e for e in known if e > 1.0]
    if not over:
        return ""
    return (
        f"{len(over)} of {len(known)} frames ({100 * len(over) / len(known):.1f} %) put two CG "
        f"beads farther apart than a fully extended chain allows (largest extension "
        f"{max(over):.2f}); no fine configuration maps to them"
    )


def _polymer_dir(args: argparse.Namespace) -> dict[str, Path]:
    return {"polymer_dir": Path(args.polymer_dir)} if args.polymer_dir else {}


def annotate_rollout_file(path: Path, cg: CGPolymer) -> None:
    """Store the CG masses, CG bonds and σ² units in a rollout file (after the writer)."""
    import h5py
    import numpy as np

    with h5py.File(path, "r+", locking=False) as f:
        f["particles/all/mass"][...] = np.asarray(cg.cg_masses, dtype=np.float64)
        f["particles/all/mass"].attrs["unit"] = "bead mass"
        bonds = np.argwhere(np.triu(np.asarray(cg.bond_matrix)))
        if "connectivity/all_bonds" not in f:
            f.create_dataset("connectivity/all_bonds", data=bonds.astype(np.int32))
        for name in ("rg2_cg", "rg2_fine"):
            if f"observables/{name}/value" in f:
                f[f"observables/{name}/value"].attrs["unit"] = "sigma^2"


# -- train cg -----------------------------------------------------------------
def add_cg_train(families: argparse._SubParsersAction) -> None:
    p = families.add_parser("cg", help="train the CG simulator end to end on class-I polymers")
    p.add_argument("--data", nargs="+", help="polymer H5MD files (default: bundled train_I_*)")
    p.add_argument("--name", default=DEFAULT_CHECKPOINT, help="checkpoint name")
    p.add_argument("--out-dir", help="checkpoint directory (default: sample_data/checkpoints)")
    p.add_argument("--bead-size", type=int, default=4, help="fine beads per CG bead (METIS)")
    p.add_argument(
        "--frame-stride", type=int, default=1, help="model Δt in frames of the training files"
    )
    # Defaults: the recipe of the bundled cg-polymers checkpoint (the paper's loss and
    # Gaussian; about 3 min on one busy CPU core).
    p.add_argument("--max-steps", type=int, default=1_500)
    p.add_argument("--eval-every", type=int, default=150)
    p.add_argument("--patience", type=int, default=5)
    p.add_argument("--batch-polymers", type=int, default=3, help="polymers per batch")
    p.add_argument("--samples-per-polymer", type=int, default=8, help="frames per polymer")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--hidden", type=int, default=48, help="Dynamics GNN width")
    p.add_argument("--layers", type=int, default=3, help="message-passing layers")
    p.add_argument("--history", type=int, default=3, help="k history velocities")
    p.add_argument("--validation", type=int, default=2, help="polymers held out (the last N)")
    p.add_argument(
        "--correlated-noise",
        action="store_true",
        help="one Gaussian correlated over the chain's beads instead of the paper's per-bead one",
    )
    p.add_argument(
        "--rg-step-weight",
        type=float,
        default=0.0,
        help="weight of the one-step R_g² consistency loss (0 = the paper's loss)",
    )
    p.add_argument(
        "--rollout-validation-steps",
        type=int,
        default=0,
        help="select weights by N-step rollouts of the validation polymers (0 = by NLL)",
    )
    p.add_argument(
        "--ema",
        type=float,
        default=0.0,
        metavar="DECAY",
        help="validate, select and save an exponential moving average of the weights with "
        "this decay per step, e.g. 0.99 (0 = off)",
    )
    p.add_argument(
        "--equilibrium-loss",
        nargs=2,
        type=float,
        default=(0.0, 10),
        metavar=("W", "K"),
        help="weight W of the R_g² drift over K-step differentiable rollouts from the "
        "training frames (0 = off)",
    )
    p.add_argument(
        "--input-noise",
        type=float,
        default=0.0,
        help="σ of the GNS-style training noise on input positions (0 = off)",
    )
    p.add_argument(
        "--wall",
        type=float,
        nargs=2,
        metavar=("K", "R0"),
        default=(0.0, 1.2),
        help="repulsive prior k/2 (r0 - r)^2 between CG beads without a CG bond, k in ε/σ², "
        "r0 in σ, added to the learned mean acceleration (k = 0: none, the paper's model)",
    )
    p.add_argument(
        "--stretch",
        type=float,
        nargs=2,
        metavar=("K", "F"),
        default=(0.0, 0.6),
        help="prior k/2 (r - F L)^2 for r > F L pulling together CG beads farther apart than "
        "a fraction F of their full-extension bound L (from the files' FENE R0), k in "
        "ε/σ², added to the learned mean acceleration (k = 0: none)",
    )
    p.add_argument(
        "--pick-by-frames",
        action="store_true",
        help="draw training polymers in proportion to their frames instead of equally "
        "(for files of different lengths, e.g. relaxation runs)",
    )
    p.add_argument(
        "--variance-steps",
        type=int,
        default=0,
        metavar="N",
        help="end with N steps refitting the Gaussian's variance with its mean frozen, on a "
        "separate log-variance head (0 = off, the paper's)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from the saved state")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(handler=_run_cg_train)


def _run_cg_train(args: argparse.Namespace) -> int:
    from explorer.cg.model import ModelConfig
    from explorer.cg.polymers import POLYMER_DIR
    from explorer.cg.train import TrainConfig, train
    from explorer.checkpoints import CHECKPOINT_DIR

    paths = args.data or [str(p) for p in sorted(POLYMER_DIR.glob("train_I_*.h5"))]
    if not paths:
        raise ExplorerError("no training polymers; run `accelmd data --cg` first or pass --data")
    out_dir = Path(args.out_dir) if args.out_dir else CHECKPOINT_DIR
    state = out_dir / f"{args.name}.state.pt"
    config = TrainConfig(
        model=ModelConfig(
            hidden=args.hidden,
            layers=args.layers,
            history=args.history,
            correlated_noise=args.correlated_noise,
            wall_k=args.wall[0],
            wall_r0=args.wall[1],
            stretch_k=args.stretch[0],
            stretch_fraction=args.stretch[1],
        ),
        bead_size=args.bead_size,
        frame_stride=args.frame_stride,
        rg_step_weight=args.rg_step_weight,
        rollout_validation_steps=args.rollout_validation_steps,
        input_noise=args.input_noise,
        ema_decay=args.ema,
        equilibrium_weight=args.equilibrium_loss[0],
        equilibrium_steps=int(args.equilibrium_loss[1]),
        pick_by_frames=args.pick_by_frames,
        variance_steps=args.variance_steps,
        max_steps=args.max_steps,
        eval_every=args.eval_every,
        patience=args.patience,
        lr=args.lr,
        lr_final=args.lr / 10,
        n_validation=args.validation,
        n_polymers=args.batch_polymers,
        samples_per_polymer=args.samples_per_polymer,
        seed=args.seed,
    )
    result = train(
        paths,
        config,
        out_name=args.name,
        out_dir=out_dir,
        resume_from=state if args.resume and state.exists() else None,
        progress=not args.no_progress,
        card_extra={
            "command": "accelmd " + " ".join(sys.argv[1:]),
            **_kept_notes(out_dir, args.name),
        },
    )
    what = "rollout ⟨R_g²⟩ error" if args.rollout_validation_steps else "validation NLL"
    print(
        f"{result.card_path}: best {what} {result.best_val:.4g} at step "
        f"{result.best_step} of {result.steps} ({result.wall_time_s:.0f} s)"
    )
    return 0


# Records of experiments with other recipes: they stay true whatever the new weights are,
# while evaluations and benches describe the weights they were measured on and go.
KEPT_CARD_NOTES = ("variants_tried", "variants_tried_note")


def _kept_notes(out_dir: Path, name: str) -> dict:
    """The :data:`KEPT_CARD_NOTES` of the card that a training run is about to replace."""
    from explorer.checkpoints import CheckpointError, read_card

    if not (out_dir / f"{name}.json").exists():
        return {}
    try:
        old = read_card(name, out_dir)
    except CheckpointError:
        return {}  # an unreadable card has nothing worth keeping; training replaces it
    return {key: old[key] for key in KEPT_CARD_NOTES if key in old}


# -- select cg ----------------------------------------------------------------
def add_cg_select(families: argparse._SubParsersAction) -> None:
    p = families.add_parser(
        "cg", help="rank CG checkpoints by long rollouts of class-I selection chains"
    )
    p.add_argument("--candidates", nargs="+", required=True, help="bundled names or .json cards")
    p.add_argument(
        "--polymers", nargs="+", help="selection polymers (default: every sel_I_* found)"
    )
    p.add_argument(
        "--polymer-dir",
        default=str(SELECTION_DIR),
        help="where the selection polymers are (default: build/cg_selection, made by "
        "`make cg-selection-data`)",
    )
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="rollout seeds")
    p.add_argument("--steps", type=int, help="learned steps (default: the reference length)")
    p.add_argument("--install", metavar="NAME", help="copy the best candidate to NAME")
    p.add_argument("--out-dir", help="where NAME goes (default: sample_data/checkpoints)")
    p.add_argument("--json", action="store_true", help="print the ranking as JSON")
    p.set_defaults(handler=_run_cg_select)


def _run_cg_select(args: argparse.Namespace) -> int:
    from explorer.cg.selection import rank_checkpoints
    from explorer.checkpoints import CHECKPOINT_DIR, copy_checkpoint

    polymer_dir = Path(args.polymer_dir)
    polymers = args.polymers or [p.stem for p in sorted(polymer_dir.glob("sel_I_*.h5"))]
    if not polymers:
        raise ExplorerError(
            f"no selection polymers (sel_I_*.h5) in {polymer_dir}; run `make cg-selection-data`"
        )
    ranking = rank_checkpoints(
        args.candidates, polymers, polymer_dir, seeds=args.seeds, steps=args.steps,
        progress=not args.json,
    )  # fmt: skip
    record = {
        "protocol": (
            f"one rollout per seed {list(args.seeds)} of each class-I selection chain "
            f"({', '.join(polymers)}) for "
            + (f"{args.steps} steps" if args.steps else "its reference's length")
            + "; ranked by the MAE of per-chain <Rg²> (fine, σ², mean over seeds) "
            "against the long references, stable candidates first"
        ),
        "candidates": [score.to_dict() for score in ranking],
    }
    if args.install:
        out_dir = Path(args.out_dir) if args.out_dir else CHECKPOINT_DIR
        updates = {"selection": record, **_kept_notes(out_dir, args.install)}
        card = copy_checkpoint(ranking[0].source, args.install, out_dir, updates)
        record["installed"] = str(card)
    if args.json:
        print(json.dumps(record, indent=2))
        return 0
    for score in ranking:
        print(
            f"{score.name}: <Rg²> MAE {score.mae:.3f} σ², r² {score.r2:.3f}, mean relative "
            f"error {100 * score.mean_relative_error:.1f} %, stable "
            f"{100 * score.stable_fraction:.0f} %"
        )
    if args.install:
        print(f"{record['installed']}: {ranking[0].name}")
    return 0


# -- eval cg ------------------------------------------------------------------
def add_cg_eval(families: argparse._SubParsersAction) -> None:
    p = families.add_parser("cg", help="CG simulator vs long and short MD on class-II polymers")
    p.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT)
    p.add_argument("--polymers", nargs="+", help="test polymers (default: bundled test_II_*)")
    p.add_argument("--steps", type=int, help="learned steps (default: the reference length)")
    p.add_argument("--refinement", type=int, default=0)
    p.add_argument("--polymer-dir", help="where polymer names are found (default: bundled)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--write-card", action="store_true", help="store the summary in the card")
    p.add_argument("--json", action="store_true", help="print the full report as JSON")
    p.set_defaults(handler=_run_cg_eval)


def _run_cg_eval(args: argparse.Namespace) -> int:
    from explorer.cg.evaluate import evaluate
    from explorer.cg.simulate import CGSimulator

    simulator = CGSimulator.from_checkpoint(args.checkpoint, **_polymer_dir(args))
    polymers = args.polymers or [p.stem for p in sorted(simulator.polymer_dir.glob("test_II_*.h5"))]
    if not polymers:
        raise ExplorerError("no class-II test polymers; run `accelmd data --cg` first")
    report = evaluate(
        simulator, polymers, seed=args.seed, refinement=args.refinement, steps=args.steps,
        progress=not args.json,
    )  # fmt: skip
    if args.write_card:
        write_metrics_to_card(args.checkpoint, report.summary, report.rows)
    if args.json:
        print(report.to_json())
        return 0
    s = report.summary
    print(
        f"{len(report.rows)} polymers: <Rg²> r² {s['model_r2']:.3f} (short MD "
        f"{s['short_md_r2']:.3f}), MAE {s['model_mae']:.3g} ({s['short_md_mae']:.3g}) σ², "
        f"EMD {s['model_emd']:.3g} ({s['short_md_emd']:.3g}) σ², t_R MAE "
        f"{s['model_t_relax_mae_tau']:.3g} τ; stable {100 * s['stable_fraction']:.0f} %"
    )
    if "short_md_windows" in s:
        beats = "/".join(
            f"{100 * s[f'model_beats_short_md_{m}_fraction']:.0f}" for m in ("r2", "mae", "emd")
        )
        print(
            f"short MD over all {s['short_md_windows']:.0f} windows of that length in the "
            f"references: r² median {s['short_md_r2_median']:.3f} ({s['short_md_r2_min']:.3f}"
            f"–{s['short_md_r2_max']:.3f}), MAE median {s['short_md_mae_median']:.3g} σ², EMD "
            f"median {s['short_md_emd_median']:.3g} σ²; the model beats {beats} % of them "
            "(r²/MAE/EMD)"
        )
    return 0


def write_metrics_to_card(checkpoint: str, summary: dict, rows: list[dict] | None = None) -> Path:
    """Add ``validation_metrics`` (and the per-polymer ``validation_per_polymer`` rows they
    summarise) to a card without touching the weights (sha256 checked, unchanged)."""
    from explorer.checkpoints import update_card

    updates: dict = {"validation_metrics": summary}
    if rows is not None:
        updates["validation_per_polymer"] = rows
    return update_card(checkpoint, updates)


# -- data ---------------------------------------------------------------------
def generate_polymer_data(progress: bool = True, directory: Path | None = None) -> list[Path]:
    """Generate (or resume) the bundled polymer dataset (``make data``)."""
    from explorer.cg.evaluate import reference_observables
    from explorer.cg.polymers import POLYMER_DIR, generate_dataset

    directory = Path(directory) if directory else POLYMER_DIR
    paths = generate_dataset(directory, progress=progress)
    summary = directory / "reference_observables.json"
    summary.write_text(json.dumps(reference_observables(directory), indent=1) + "\n")
    return [*paths, summary]


def generate_selection_data(progress: bool = True, directory: Path = SELECTION_DIR) -> list[Path]:
    """Generate (or resume) the selection chains' long references for ``accelmd select cg``."""
    from explorer.cg.polymers import generate_dataset, selection_plan

    return generate_dataset(Path(directory), plan=selection_plan(), progress=progress)


def add_cg_data_arguments(parser: argparse.ArgumentParser) -> None:
    """``--cg`` for ``accelmd data``: generate the polymer dataset instead."""
    parser.add_argument(
        "--cg", action="store_true", help="generate the CG polymer dataset (sample_data/polymers)"
    )


def run_cg_data(args: argparse.Namespace) -> int:
    for path in generate_polymer_data(progress=not getattr(args, "no_progress", False)):
        print(f"{path}: done")
    return 0
