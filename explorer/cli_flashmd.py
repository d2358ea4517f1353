"""``accelmd rollout | train | eval flashmd`` and ``accelmd flashmd-data``: FlashMD on the CLI.

Registered by :func:`explorer.cli_models.add_model_commands` next to LiFlow's commands
(``add_flashmd_rollout(families)`` etc. take the family sub-parsers of ``rollout``,
``train`` and ``eval``; :func:`add_flashmd_data` takes the top-level sub-parsers). Handlers
only build arguments for :mod:`explorer.flashmd` and return an exit code.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ase import Atoms

from explorer.errors import ExplorerError

__all__ = [
    "add_flashmd_data",
    "add_flashmd_eval",
    "add_flashmd_rollout",
    "add_flashmd_train",
    "flashmd_start_atoms",
]


def flashmd_start_atoms(system: str) -> Atoms:
    """Starting structure: ``argon`` / ``al110`` (the reference systems), an H5MD file
    (its first frame, with momenta when recorded), a structure file, or a catalogue name."""
    from ase import units

    from explorer.flashmd.systems import al110_slab, argon_liquid

    if system == "argon":
        return argon_liquid()
    if system == "al110":
        return al110_slab()
    path = Path(system)
    if path.suffix == ".h5" and path.exists():
        from explorer.h5md import read_h5md

        traj = read_h5md(path, frames=slice(0, 1))
        atoms = traj.to_atoms(0)
        if traj.momenta is not None:  # amu·Å/ps → ASE momentum units
            atoms.set_momenta(traj.momenta[0] / (1000.0 * units.fs))
        atoms.info["material"] = path.stem
        return atoms
    from explorer.reference.jobs import reference_atoms

    return reference_atoms(system)


# -- rollout flashmd ------------------------------------------------------------
def add_flashmd_rollout(families: argparse._SubParsersAction) -> None:
    p = families.add_parser("flashmd", help="FlashMD: one model call per stride (16–128 fs)")
    p.add_argument("--checkpoint", required=True, help="bundled name or a .json card")
    p.add_argument(
        "--system",
        "--material",
        dest="system",
        required=True,
        help="argon | al110 | an H5MD file (first frame + momenta) | structure file | catalogue",
    )
    p.add_argument("--steps", type=int, required=True, help="FlashMD strides")
    p.add_argument("--thermostat", choices=("none", "langevin", "bussi"), default="langevin")
    p.add_argument("--temperature", type=float, required=True, help="K")
    p.add_argument("--time-constant-fs", type=float, default=100.0, help="thermostat τ, fs")
    p.add_argument(
        "--energy-conservation",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="rescale momenta to conserve V + K (App C); default: the checkpoint card's "
        "recommendation, else on",
    )
    p.add_argument(
        "--random-rotation",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="random-rotation filter (App A.4; no effect on an equivariant model)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--out", required=True, help="output H5MD (positions + velocities per stride)")
    p.set_defaults(handler=_run_flashmd_rollout)


def _run_flashmd_rollout(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from explorer.flashmd.simulate import FlashMDSimulator
    from explorer.h5md import H5MDWriter
    from explorer.session import FAILED, Rollout

    atoms = flashmd_start_atoms(args.system)
    simulator = FlashMDSimulator.from_checkpoint(args.checkpoint, device=args.device)
    energy_conservation = args.energy_conservation
    if energy_conservation is None:
        energy_conservation = bool(simulator.recommended_knobs.get("energy_conservation", True))
    knobs = {
        "temperature_K": args.temperature,
        "thermostat": args.thermostat,
        "time_constant_fs": args.time_constant_fs,
        "energy_conservation": energy_conservation,
        "random_rotation": args.random_rotation,
        "seed": args.seed,
    }
    metadata = {
        "producer": "accelmd rollout flashmd",
        "checkpoint": simulator.name,
        "stride_fs": simulator.stride_fs,
        "material": atoms.info.get("material"),
        "temperature_K": args.temperature,
        "knobs": knobs,
    }
    # Our own writer (not Rollout's) so that velocities are stored with every frame.
    writer = H5MDWriter(args.out, atoms.numbers, atoms.cell[:], atoms.pbc, metadata)
    rollout = Rollout(simulator, atoms, args.steps, knobs, metadata=metadata)
    with tqdm(total=args.steps, desc="FlashMD", unit="stride", file=sys.stderr) as bar:

        def record(index: int, frame) -> None:
            writer.append(
                frame.positions,
                frame.time_ps,
                step=index,
                velocities=frame.velocities,
                energies=frame.observables,
            )
            if index:
                bar.update(1)

        rollout.subscribe(record)
        rollout.start()
        rollout.join()
    writer.update_metadata(status=rollout.status, error=str(rollout.error or ""))
    writer.close()
    if rollout.status == FAILED:
        error, kept = rollout.error, rollout.n_frames
        if isinstance(error, ExplorerError):
            raise type(error)(f"{error} ({kept} frames kept in {args.out})")
        raise ExplorerError(f"rollout failed: {error} ({kept} frames kept in {args.out})")
    print(f"{args.out}: {rollout.n_frames} frames, {rollout.progress().simulated_ps:g} ps")
    return 0


# -- train flashmd ----------------------------------------------------------------
def add_flashmd_train(families: argparse._SubParsersAction) -> None:
    p = families.add_parser("flashmd", help="train a FlashMD model for one stride")
    p.add_argument("--system", choices=("argon", "al110"), help="use the bundled trajectories")
    p.add_argument("--train", nargs="+", help="training H5MD files (NVE with momenta)")
    p.add_argument("--val", nargs="+", help="validation H5MD files (separate trajectories)")
    p.add_argument("--stride-fs", type=float, required=True, help="Δτ of the model, fs")
    p.add_argument("--energy-model", help="argon | al110 | emt | lj | ... (default: --system)")
    p.add_argument("--name", required=True, help="checkpoint name")
    p.add_argument("--out-dir", default="checkpoints", help="where to write the checkpoint")
    p.add_argument("--max-steps", type=int, default=2000)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--decay-every", type=int, default=1000, help="steps between lr halvings")
    p.add_argument("--patience", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--features", type=int, default=32)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--cutoff", type=float, default=6.0, help="Å")
    p.add_argument("--energy-structures", type=int, default=8)
    p.add_argument(
        "--free-flight-baseline",
        action="store_true",
        help="predict residuals to the free-particle step (MDNet style; smooth potentials)",
    )
    p.add_argument(
        "--ballistic-fractions",
        type=float,
        nargs="+",
        default=(),
        metavar="F",
        help="extra edge geometries at q + F·Δτ·p/m (e.g. 0.5 1)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from the saved state")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N | auto")
    p.add_argument(
        "--max-minutes", type=float, help="stop at the first validation after this many minutes"
    )
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(handler=_run_flashmd_train)


def _run_flashmd_train(args: argparse.Namespace) -> int:
    from explorer.flashmd.model import FlashMDConfig
    from explorer.flashmd.systems import system_files
    from explorer.flashmd.train import TrainConfig, train
    from explorer.h5md import read_h5md

    train_files = args.train or (system_files(args.system, "train") if args.system else None)
    val_files = args.val or (system_files(args.system, "val") if args.system else None)
    if not train_files or not val_files:
        raise ExplorerError("give --system, or both --train and --val H5MD files")
    energy_model = args.energy_model or args.system
    if energy_model is None:
        raise ExplorerError("give --energy-model (the reference calculator of the data)")
    elements = sorted({int(z) for f in train_files for z in read_h5md(f, slice(0, 1)).numbers})
    config = TrainConfig(
        model=FlashMDConfig(
            elements=tuple(elements),
            stride_fs=args.stride_fs,
            num_features=args.features,
            num_layers=args.layers,
            cutoff=args.cutoff,
            free_flight_baseline=args.free_flight_baseline,
            ballistic_fractions=tuple(args.ballistic_fractions),
        ),
        energy_model=energy_model,
        batch_size=args.batch_size,
        lr=args.lr,
        decay_every=args.decay_every,
        max_steps=args.max_steps,
        eval_every=args.eval_every,
        patience=args.patience,
        energy_structures=args.energy_structures,
        seed=args.seed,
        device=args.device,
        max_wall_s=None if args.max_minutes is None else 60.0 * args.max_minutes,
    )
    out_dir = Path(args.out_dir)
    state = out_dir / "training_state" / args.name
    result = train(
        train_files,
        val_files,
        config,
        out_name=args.name,
        out_dir=out_dir,
        card_extra={"command": "accelmd " + " ".join(sys.argv[1:]), "system": args.system},
        resume_from=state if args.resume and Path(f"{state}.json").exists() else None,
        progress=not args.no_progress,
        log=print if args.no_progress else None,
    )
    m = result.best_metrics
    print(
        f"{result.card_path}: val RMSE q {m['rmse_q']:.3g} Å, v {m['rmse_v']:.3g} Å/fs at step "
        f"{result.best_step} of {result.steps} ({result.wall_time_s:.0f} s)"
    )
    return 0


# -- eval flashmd -----------------------------------------------------------------
def add_flashmd_eval(families: argparse._SubParsersAction) -> None:
    p = families.add_parser("flashmd", help="FlashMD test-set errors and NVE/NVT rollouts")
    p.add_argument("--checkpoint", required=True, help="bundled name or a .json card")
    p.add_argument("--test", nargs="+", help="test H5MD files (default: the system's test set)")
    p.add_argument("--rollout-steps", type=int, default=100, help="strides per rollout check")
    p.add_argument(
        "--rollout-seeds",
        type=int,
        default=1,
        help="repeat the thermostatted rollouts with seeds 0 … N-1 (stability over seeds)",
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", action="store_true", help="print the full report as JSON")
    p.add_argument("--save", action="store_true", help="store the report in the model card")
    p.set_defaults(handler=_run_flashmd_eval)


def _run_flashmd_eval(args: argparse.Namespace) -> int:
    from explorer.checkpoints import read_card
    from explorer.flashmd.evaluate import evaluate_checkpoint, record_in_card
    from explorer.flashmd.systems import system_files

    card = read_card(args.checkpoint)
    tests = args.test or (system_files(card["system"], "test") if card.get("system") else None)
    if not tests:
        raise ExplorerError("give --test H5MD files (the card names no bundled system)")
    report = evaluate_checkpoint(
        args.checkpoint,
        tests,
        rollout_steps=args.rollout_steps,
        rollout_seeds=args.rollout_seeds,
        device=args.device,
    )
    if args.save:
        record_in_card(args.checkpoint, report)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    t = report["test"]
    print(
        f"{card['name']}: test RMSE q {t['rmse_q']:.3g} Å (VV at the same stride "
        f"{report['verlet_same_stride']['rmse_q']:.3g}), v {t['rmse_v']:.3g} Å/fs "
        f"(VV {report['verlet_same_stride']['rmse_v']:.3g})"
    )
    for key, value in report.get("rollouts", {}).items():
        print(f"  {key}: {json.dumps(value)}")
    return 0


# -- flashmd-data -----------------------------------------------------------------
def add_flashmd_data(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "flashmd-data", help="generate (or resume) the FlashMD reference trajectories"
    )
    p.add_argument("--system", choices=("argon", "al110", "all"), default="all")
    p.add_argument("--out-dir", help="default: sample_data/flashmd")
    p.add_argument("--progress", action="store_true")
    p.add_argument(
        "--runs",
        type=int,
        nargs="+",
        help="only these run indices of the system (to share the work between processes)",
    )
    p.set_defaults(handler=_run_flashmd_data)


def _run_flashmd_data(args: argparse.Namespace) -> int:
    from explorer.flashmd.systems import DATA_DIR, SYSTEMS, generate

    names = list(SYSTEMS) if args.system == "all" else [args.system]
    directory = Path(args.out_dir) if args.out_dir else DATA_DIR
    for name in names:
        generate(name, directory, progress=args.progress, log=print, runs=args.runs)
    return 0
