"""``accelmd rollout | train | eval | select | checkpoints``: model families on the CLI.

Each family registers its own sub-subcommand (``accelmd rollout liflow ...``);
FlashMD and the CG simulator add theirs next to LiFlow's. Handlers only build
arguments for ``explorer`` functions.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from explorer.errors import ExplorerError


def add_model_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``rollout``, ``train``, ``eval``, ``select`` and ``checkpoints``."""
    from explorer.cli_cg import add_cg_eval, add_cg_rollout, add_cg_select, add_cg_train
    from explorer.cli_flashmd import add_flashmd_eval, add_flashmd_rollout, add_flashmd_train

    rollout = subparsers.add_parser("rollout", help="generate a trajectory with a model family")
    families = rollout.add_subparsers(dest="family", metavar="FAMILY", required=True)
    _add_liflow_rollout(families)
    add_flashmd_rollout(families)
    add_cg_rollout(families)
    train = subparsers.add_parser("train", help="train a model family on reference MD")
    families = train.add_subparsers(dest="family", metavar="FAMILY", required=True)
    _add_liflow_train(families)
    add_flashmd_train(families)
    add_cg_train(families)
    evaluate = subparsers.add_parser("eval", help="score a model family against reference MD")
    families = evaluate.add_subparsers(dest="family", metavar="FAMILY", required=True)
    _add_liflow_eval(families)
    add_flashmd_eval(families)
    add_cg_eval(families)
    select = subparsers.add_parser("select", help="choose among trained checkpoints")
    families = select.add_subparsers(dest="family", metavar="FAMILY", required=True)
    add_cg_select(families)
    listing = subparsers.add_parser("checkpoints", help="list bundled checkpoints")
    listing.add_argument("--json", action="store_true")
    listing.add_argument(
        "--report",
        metavar="FILE.md",
        help="write the Markdown report of the LiFlow checkpoints (evaluation tables) there",
    )
    listing.set_defaults(handler=_run_checkpoints)


# -- rollout liflow -----------------------------------------------------------
def _add_liflow_rollout(families: argparse._SubParsersAction) -> None:
    p = families.add_parser("liflow", help="LiFlow: flow-matching steps of 1 ps")
    p.add_argument("--checkpoint", help="bundled name or a .json card (default: best bundled)")
    p.add_argument("--material", required=True, help="catalogue name/formula or structure file")
    p.add_argument("--temperature", type=float, required=True, help="K")
    p.add_argument("--steps", type=int, required=True, help="LiFlow steps (1 ps each)")
    p.add_argument("--out", required=True, help="output H5MD file (one frame per step)")
    p.add_argument("--supercell", type=int, nargs=3, metavar="N", help="explicit repeats")
    p.add_argument("--min-width", type=float, default=9.0, help="supercell rule, Å")
    p.add_argument(
        "--prior-scale-li",
        type=float,
        help="× trained Li prior σ² (default: the card's recommended_knobs, else 1)",
    )
    p.add_argument(
        "--prior-scale-frame",
        type=float,
        help="× trained frame prior σ² (default: the card's recommended_knobs, else 1)",
    )
    p.add_argument(
        "--corrector-strength",
        type=float,
        default=1.0,
        help="0 (off) … 1 (full: Corrector, then fine Corrector where bundled, every step)",
    )
    p.add_argument(
        "--flow-steps",
        type=int,
        help="Propagator Euler steps N (default: the card's recommended_knobs, else 10; "
        "Corrector and fine Corrector: ⌈3N/10⌉ each; a lone Corrector ⌈N/2⌉)",
    )
    _add_corrector_schedule(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.set_defaults(handler=_run_liflow_rollout)


def _run_liflow_rollout(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from explorer.liflow.simulate import RECOMMENDABLE_KNOBS, LiFlowSimulator
    from explorer.reference.jobs import reference_atoms
    from explorer.session import FAILED, Rollout

    atoms = reference_atoms(
        args.material,
        repeats=tuple(args.supercell) if args.supercell else None,
        min_width=args.min_width,
    )
    name = args.checkpoint or _default_liflow_checkpoint(atoms.info.get("material"))
    simulator = LiFlowSimulator.from_checkpoint(name, device=args.device)
    knobs = {
        "temperature_K": args.temperature,
        "prior_scale_li": args.prior_scale_li,
        "prior_scale_frame": args.prior_scale_frame,
        "corrector_strength": args.corrector_strength,
        "flow_steps": args.flow_steps,
        "corrector_start": args.corrector_start,
        "corrector_every": args.corrector_every,
        "seed": args.seed,
        "device": args.device,
    }
    metadata = {
        "producer": "accelmd rollout liflow",
        "checkpoint": name,
        "material": atoms.info.get("material"),
        "supercell": list(atoms.info.get("supercell", (1, 1, 1))),
        "temperature_K": args.temperature,
        # Which adaptive-prior scales (small/large) the classifier chose, for the record.
        "prior_choice": simulator.prior_choices([atoms], [args.temperature])[0],
        # The knob values in effect, the card's recommendations filled in.
        "knobs_in_effect": {
            name: simulator.knob_default(name, knobs[name]) for name in RECOMMENDABLE_KNOBS
        },
    }
    rollout = Rollout(simulator, atoms, args.steps, knobs, out_path=args.out, metadata=metadata)
    with tqdm(total=args.steps, desc="LiFlow", unit="step", file=sys.stderr) as bar:
        rollout.subscribe(lambda index, frame: index and bar.update(1))
        rollout.start()
        rollout.join()
    if rollout.status == FAILED:
        error = rollout.error
        kept = rollout.n_frames
        if isinstance(error, ExplorerError):
            raise type(error)(f"{error} ({kept} frames kept in {args.out})")
        raise ExplorerError(f"rollout failed: {error} ({kept} frames kept in {args.out})")
    print(f"{args.out}: {rollout.n_frames} frames, {rollout.progress().simulated_ps:g} ps")
    return 0


def _default_liflow_checkpoint(material: str | None) -> str:
    """The bundled LiFlow checkpoint trained on ``material``, else the multi-material one."""
    from explorer.checkpoints import list_checkpoints

    cards = [c for c in list_checkpoints() if c.get("family") == "liflow"]
    for card in cards:
        if material and material in card.get("materials", []):
            return card["name"]
    for card in cards:
        if len(card.get("materials", [])) > 1:
            return card["name"]
    raise ExplorerError(
        "no bundled LiFlow checkpoint fits this material; pass --checkpoint NAME or FILE.json "
        "(train one with `accelmd train liflow`)"
    )


def _add_corrector_schedule(p: argparse.ArgumentParser) -> None:
    """The Corrector schedule options shared by ``rollout`` and ``eval``."""
    p.add_argument(
        "--corrector-start",
        choices=("sample", "mean"),
        default="sample",
        help="Correctors' flows from a prior draw (paper) or its mean (authors' test script)",
    )
    p.add_argument(
        "--corrector-every", type=int, default=1, help="run the Correctors every K steps"
    )


# -- eval liflow --------------------------------------------------------------
def _add_liflow_eval(families: argparse._SubParsersAction) -> None:
    p = families.add_parser("liflow", help="LiFlow rollouts from reference first frames")
    p.add_argument("--checkpoint", required=True, help="bundled name or a .json card")
    p.add_argument(
        "--references",
        nargs="+",
        help="reference H5MD files (default: the bundled ones of the checkpoint's materials)",
    )
    p.add_argument("--seeds", type=int, default=3, help="rollouts per reference")
    p.add_argument("--steps", type=int, help="LiFlow steps (default: the reference length)")
    p.add_argument("--corrector-strength", type=float, default=1.0)
    p.add_argument("--flow-steps", type=int, help="default: the card's recommended_knobs, else 10")
    _add_corrector_schedule(p)
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true", help="print the full report as JSON")
    p.add_argument(
        "--write-card",
        action="store_true",
        help="bundled checkpoint: redo its model card's evaluation (held-out set and knob "
        "study too) with the card's settings; other options are ignored",
    )
    p.set_defaults(handler=_run_liflow_eval)


def _run_liflow_eval(args: argparse.Namespace) -> int:
    from explorer.h5md import read_h5md
    from explorer.liflow.evaluate import evaluate
    from explorer.liflow.simulate import LiFlowSimulator

    if args.write_card:
        from explorer.liflow.bundle import reevaluate_bundle

        reevaluate_bundle(args.checkpoint)
        return 0
    simulator = LiFlowSimulator.from_checkpoint(args.checkpoint, device=args.device)
    paths = args.references or _bundled_references(simulator.name, args.checkpoint)
    references = [read_h5md(path) for path in paths]
    knobs = {
        "corrector_strength": args.corrector_strength,
        "flow_steps": args.flow_steps,
        "corrector_start": args.corrector_start,
        "corrector_every": args.corrector_every,
        "device": args.device,
    }
    report = evaluate(
        simulator, references, knobs, n_seeds=args.seeds, steps=args.steps,
        step_ps=simulator.time_step_ps,
    )  # fmt: skip
    if args.json:
        print(report.to_json())
        return 0
    summary = report.summary
    print(
        f"{len(report.records)} rollouts: log10 MSD_Li MAE {summary['mae_log10_msd_li']:.3f}, "
        f"Spearman {summary['spearman_li']:.3f}; RDF MAE {summary['rdf_mae']:.3f}; "
        f"stable {100 * summary['stable_fraction']:.0f} %"
    )
    return 0


def _bundled_references(name: str, checkpoint: str) -> list[Path]:
    """Reference files of the checkpoint's training materials, at every temperature."""
    from explorer.checkpoints import read_card
    from explorer.reference.dataset import available_references, reference_path

    materials = read_card(checkpoint).get("materials", [])
    found = available_references()
    paths = [
        reference_path(material, temperature)
        for material in materials
        for temperature in found.get(material, [])
    ]
    if not paths:
        raise ExplorerError(
            f"no bundled reference trajectories for {name} (materials {materials}); "
            "pass --references FILES"
        )
    return [p for p in paths if p is not None]


# -- train liflow -------------------------------------------------------------
def _add_liflow_train(families: argparse._SubParsersAction) -> None:
    p = families.add_parser(
        "liflow",
        help="train a LiFlow Propagator or Corrector, or build the bundled checkpoints",
        description="Either --data FILES --name NAME (one module), or --bundle NAMES|all "
        "(Propagator + Corrector + prior classifier on the reference dataset, combined, "
        "evaluated; what `make train` runs). Unset numbers take the mode's defaults.",
    )
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--data", nargs="+", help="reference H5MD files")
    mode.add_argument(
        "--bundle", nargs="+", metavar="NAME", help="bundled checkpoint(s) to build, or 'all'"
    )
    p.add_argument("--kind", choices=("propagator", "corrector"), default="propagator")
    p.add_argument("--name", help="checkpoint name (with --data)")
    p.add_argument("--out-dir", help="where to write (default: checkpoints | sample_data/…)")
    p.add_argument("--max-steps", type=int, help="(Propagator) optimizer steps at most")
    p.add_argument("--corrector-steps", type=int, help="--bundle: Corrector steps at most")
    p.add_argument(
        "--corrector-noise",
        type=float,
        help="the Corrector's maximum training noise σ_max in Å (noise σ ~ U(0, σ_max]; "
        "default 0.1 with --data, 0.5 with --bundle)",
    )
    p.add_argument(
        "--fine-corrector-noise",
        type=float,
        help="--bundle: σ_max in Å of the fine Corrector run after the Corrector (default "
        "0.2; 0 = none)",
    )
    p.add_argument(
        "--li-label-threshold",
        type=float,
        help="--bundle: Li MSD(t_end)/t_end in Å²/ps from which a reference run gets the "
        "large Li prior (default 1.0; liflow_Li3InCl6 is built with 0.15)",
    )
    p.add_argument(
        "--recommended-prior-scale-li",
        type=float,
        help="--bundle: the Li prior-scale knob's default recorded in the card "
        "(recommended_knobs) and used by its evaluation (default 1 = the trained prior; "
        "liflow_Li3InCl6 is built with 1.25)",
    )
    p.add_argument(
        "--recommended-prior-scale-frame",
        type=float,
        help="--bundle: the same for the frame prior scale (liflow_Li3PS4-beta: 0.7)",
    )
    p.add_argument(
        "--full-corrector-flow-below-K",
        type=float,
        metavar="K",
        help="--bundle: structures below this temperature get the Propagator's N Euler "
        "steps in each Corrector instead of ⌈3N/10⌉ (recorded in the card; "
        "liflow_Li3InCl6 is built with 900)",
    )
    p.add_argument("--eval-every", type=int)
    p.add_argument("--patience", type=int)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--features", type=int, default=64, help="model width F")
    p.add_argument("--layers", type=int, default=3, help="message-passing layers")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--resume", action="store_true", help="continue from the saved state")
    p.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="train through torch.compile (default: on for --bundle, off for --data)",
    )
    p.add_argument(
        "--modules-only",
        action="store_true",
        help="--bundle: train the Propagator and Corrector into the work dir and stop "
        "(no classifier, combination or evaluation), e.g. on a GPU machine",
    )
    p.add_argument("--work-dir", help="--bundle: where modules and their states are kept")
    p.add_argument(
        "--reuse-propagator",
        metavar="CHECKPOINT",
        help="--bundle NAME: start from this bundled checkpoint's Propagator (copied into "
        "the work dir; reused if the settings match its training, e.g. to retrain only "
        "the Corrector with another --corrector-noise)",
    )
    p.add_argument(
        "--reuse-modules",
        metavar="CHECKPOINT",
        help="--bundle NAME: as --reuse-propagator, with the Corrector too (e.g. to add a "
        "fine Corrector to a bundled checkpoint without retraining the others)",
    )
    p.add_argument(
        "--max-minutes",
        type=float,
        help="--bundle: stop each module at its first validation after this many minutes",
    )
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(handler=_run_liflow_train)


def _run_liflow_train(args: argparse.Namespace) -> int:
    if args.corrector_noise is not None and not args.corrector_noise > 0:
        raise ExplorerError(f"--corrector-noise must be > 0 Å, got {args.corrector_noise}")
    if args.bundle:
        return _run_liflow_bundle(args)
    from explorer.liflow.model import FlowModelConfig
    from explorer.liflow.train import TrainConfig, corrector_noise_fields, train

    if not args.name:
        raise ExplorerError("--data needs --name (the checkpoint name)")
    out_dir = Path(args.out_dir or "checkpoints")
    state = out_dir / f"{args.name}.state.pt"
    config = TrainConfig(
        kind=args.kind,
        model=FlowModelConfig(num_features=args.features, num_layers=args.layers),
        batch_size=args.batch_size,
        lr=args.lr,
        max_steps=args.max_steps or 125_000,
        eval_every=args.eval_every or 1_250,
        patience=args.patience or 10,
        seed=args.seed,
        device=args.device,
        compile=bool(args.compile),
        **({} if args.corrector_noise is None else corrector_noise_fields(args.corrector_noise)),
    )
    result = train(
        args.data,
        config,
        out_name=args.name,
        out_dir=out_dir,
        card_extra={"command": "accelmd " + " ".join(sys.argv[1:]), **_data_summary(args.data)},
        resume_from=state if args.resume and state.exists() else None,
        progress=not args.no_progress,
    )
    print(
        f"{result.card_path}: best validation loss {result.best_val_loss:.4g} Å² at step "
        f"{result.best_step} of {result.steps} ({result.wall_time_s:.0f} s)"
    )
    return 0


def _run_liflow_bundle(args: argparse.Namespace) -> int:
    from explorer.checkpoints import CHECKPOINT_DIR
    from explorer.liflow.bundle import (
        WORK_DIR,
        BundleSettings,
        build_bundles,
        reuse_modules,
        reuse_propagator,
    )

    defaults = BundleSettings()
    settings = BundleSettings(
        features=args.features,
        layers=args.layers,
        propagator_steps=args.max_steps or defaults.propagator_steps,
        corrector_steps=args.corrector_steps or defaults.corrector_steps,
        corrector_noise_A=args.corrector_noise or defaults.corrector_noise_A,
        fine_corrector_noise_A=_fine_noise(
            args.fine_corrector_noise, defaults.fine_corrector_noise_A
        ),
        eval_every=args.eval_every or defaults.eval_every,
        patience=args.patience or defaults.patience,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        device=args.device,
        compile=defaults.compile if args.compile is None else args.compile,
        max_wall_s=None if args.max_minutes is None else 60.0 * args.max_minutes,
        li_label_threshold_A2_ps=_positive(
            "--li-label-threshold", args.li_label_threshold, defaults.li_label_threshold_A2_ps
        ),
        recommended_prior_scale_li=_positive(
            "--recommended-prior-scale-li",
            args.recommended_prior_scale_li,
            defaults.recommended_prior_scale_li,
        ),
        recommended_prior_scale_frame=_positive(
            "--recommended-prior-scale-frame",
            args.recommended_prior_scale_frame,
            defaults.recommended_prior_scale_frame,
        ),
        full_corrector_flow_below_K=None
        if args.full_corrector_flow_below_K is None
        else _positive("--full-corrector-flow-below-K", args.full_corrector_flow_below_K, 1.0),
    )
    names = None if args.bundle == ["all"] else args.bundle
    out_dir = Path(args.out_dir) if args.out_dir else CHECKPOINT_DIR
    work_dir = Path(args.work_dir) if args.work_dir else WORK_DIR
    if args.reuse_propagator and args.reuse_modules:
        raise ExplorerError("give --reuse-propagator or --reuse-modules, not both")
    if args.reuse_propagator or args.reuse_modules:
        flag = "--reuse-propagator" if args.reuse_propagator else "--reuse-modules"
        if names is None or len(names) != 1:
            raise ExplorerError(f"{flag} needs exactly one --bundle NAME")
        if args.reuse_propagator:
            reuse_propagator(args.reuse_propagator, names[0], work_dir)
        else:
            reuse_modules(args.reuse_modules, names[0], work_dir)
    paths = build_bundles(
        names,
        settings,
        out_dir=out_dir,
        work_dir=work_dir,
        progress=not args.no_progress,
        modules_only=args.modules_only,
    )
    for path in paths:
        print(f"{path}: {'modules trained' if args.modules_only else 'built'}")
    return 0


def _positive(flag: str, value: float | None, default: float) -> float:
    """An option that must be a finite number > 0; unset → ``default``."""
    if value is None:
        return default
    if not (math.isfinite(value) and value > 0):
        raise ExplorerError(f"{flag} must be a number > 0, got {value}")
    return value


def _fine_noise(value: float | None, default: float | None) -> float | None:
    """--fine-corrector-noise: unset → ``default``, 0 → no fine Corrector, < 0 refused."""
    if value is None:
        return default
    if value < 0:
        raise ExplorerError(f"--fine-corrector-noise must be >= 0 Å, got {value}")
    return value or None


def _data_summary(paths: list[str]) -> dict[str, list]:
    """Materials and temperatures of the training files, for the model card."""
    from explorer.h5md import read_h5md

    materials, temperatures = [], []
    for path in paths:
        meta = read_h5md(path, frames=slice(0, 1)).metadata
        materials.append(str(meta.get("material") or Path(path).stem.rpartition("_")[0]))
        if meta.get("temperature_K") is not None:
            temperatures.append(float(meta["temperature_K"]))
    return {
        "materials": sorted(set(materials)),
        "training_temperatures_K": sorted(set(temperatures)),
    }


# -- checkpoints ----------------------------------------------------------------
def _run_checkpoints(args: argparse.Namespace) -> int:
    from explorer.checkpoints import card_headline, list_checkpoints

    cards = list_checkpoints()
    if args.report:
        from explorer.liflow.report import liflow_report

        Path(args.report).write_text(liflow_report(cards))
        print(
            f"{args.report}: {sum(c.get('family') == 'liflow' for c in cards)} LiFlow checkpoints"
        )
        return 0
    if args.json:
        print(json.dumps(cards, indent=2))
        return 0
    if not cards:
        print("no bundled checkpoints yet (train one with `accelmd train liflow`)")
    for card in cards:
        print(card_headline(card))
    return 0
