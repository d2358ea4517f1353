"""The ``accelmd`` command line.

Subcommands: ``materials`` (the bundled catalogue) and ``analyze`` (MSD, D and
RDF summary of a trajectory file). Later families add ``reference``,
``rollout``, ``train``, ``eval``, ``bench`` and ``app``, each registered by one
``_add_*`` function below. The CLI only builds arguments for ``explorer``
functions; user errors (:class:`ExplorerError`) print one line and exit 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from explorer import __version__
from explorer.cli_cg import add_cg_data_arguments, run_cg_data
from explorer.cli_flashmd import add_flashmd_data
from explorer.cli_models import add_model_commands
from explorer.errors import ExplorerError

EXIT_USER_ERROR = 2


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``accelmd`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help()
        return EXIT_USER_ERROR
    try:
        return int(args.handler(args) or 0)
    except ExplorerError as exc:
        print(f"accelmd {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="accelmd",
        description="Explore ML-accelerated molecular dynamics next to reference MD.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_materials(subparsers)
    _add_analyze(subparsers)
    _add_reference(subparsers)
    _add_data(subparsers)
    add_model_commands(subparsers)
    add_flashmd_data(subparsers)
    return parser


# -- materials ---------------------------------------------------------------
def _add_materials(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("materials", help="list the bundled Li-conductor catalogue")
    p.add_argument("--json", action="store_true", help="print the catalogue as JSON")
    p.set_defaults(handler=_run_materials)


def _run_materials(args: argparse.Namespace) -> int:
    from explorer.materials import list_materials

    entries = list_materials()
    if args.json:
        print(json.dumps([_entry_dict(e) for e in entries], indent=2))
        return 0
    rows = [
        (e.name, e.formula, e.space_group_symbol, str(e.n_atoms), e.provenance) for e in entries
    ]
    header = ("name", "formula", "space group", "atoms", "coordinates")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    for row in [header, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)]
        print("  ".join([*cells, row[-1]]))
    return 0


def _entry_dict(entry: Any) -> dict[str, Any]:
    from dataclasses import asdict

    data = asdict(entry)
    data["path"] = str(entry.path)
    data["provenance"] = entry.provenance
    return data


# -- analyze -----------------------------------------------------------------
def _add_analyze(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "analyze", help="MSD, self-diffusivity and RDF summary of a trajectory file"
    )
    p.add_argument("file", help="trajectory: H5MD (.h5/.h5md) or a multi-frame file ASE reads")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--species", nargs="+", help="elements to analyse (default: all)")
    p.add_argument("--fit-start-ps", type=float, help="start of the D fit window (ps)")
    p.add_argument("--fit-end-ps", type=float, help="end of the D fit window (ps)")
    p.add_argument("--rdf-rmax", type=float, help="RDF range, Å (default: half the cell width)")
    p.add_argument("--rdf-bin", type=float, default=0.05, help="RDF bin width, Å")
    p.add_argument(
        "--discard-fraction",
        type=float,
        default=0.2,
        help="fraction of frames discarded before averaging the RDF (induction period)",
    )
    p.add_argument(
        "--rdf-frames", type=int, default=200, help="at most this many frames in the RDF"
    )
    p.add_argument("--timestep-ps", type=float, help="frame spacing for files without times")
    p.set_defaults(handler=_run_analyze)


def _run_analyze(args: argparse.Namespace) -> int:
    from explorer.analysis.summary import analyze_summary
    from explorer.trajectory import load_trajectory

    traj = load_trajectory(args.file, timestep_ps=args.timestep_ps)
    summary = analyze_summary(
        traj,
        species=args.species,
        fit_start_ps=args.fit_start_ps,
        fit_end_ps=args.fit_end_ps,
        rdf_rmax=args.rdf_rmax,
        rdf_bin=args.rdf_bin,
        discard_fraction=args.discard_fraction,
        rdf_max_frames=args.rdf_frames,
    )
    summary = {"file": str(args.file), **summary}
    if args.json:
        print(json.dumps(summary, indent=2, default=_json_default))
    else:
        print(_format_summary(summary))
    return 0


# -- reference ---------------------------------------------------------------
def _add_reference(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "reference", help="run reference MLIP MD of one material into an H5MD file"
    )
    p.add_argument("--material", required=True, help="catalogue name/formula or a structure file")
    p.add_argument("--temperature", type=float, required=True, help="K")
    p.add_argument("--ps", type=float, default=25.0, help="production length, ps")
    p.add_argument("--equilibration-ps", type=float, default=2.0, help="unrecorded, ps")
    p.add_argument("--timestep-fs", type=float, default=2.0, help="integration step, fs")
    p.add_argument("--every", type=int, default=10, help="steps between recorded frames")
    p.add_argument("--ensemble", choices=("nvt", "nve", "langevin"), default="nvt")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mlip", default="chgnet", help="chgnet | mace | emt | lj | sevenn")
    p.add_argument("--model", help="model file or name for the MLIP (e.g. a MACE model)")
    p.add_argument("--allow-download", action="store_true", help="let MACE fetch its weights")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--min-width", type=float, default=9.0, help="supercell rule, Å")
    p.add_argument("--supercell", type=int, nargs=3, metavar="N", help="explicit repeats")
    p.add_argument("--out", required=True, help="output H5MD file")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="continue an existing file")
    mode.add_argument("--overwrite", action="store_true", help="start the file afresh")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=_run_reference)


def _run_reference(args: argparse.Namespace) -> int:
    from pathlib import Path

    from explorer.reference.jobs import run_reference

    out = Path(args.out)
    if out.exists() and not (args.resume or args.overwrite):
        print(
            f"accelmd reference: error: {out} exists; pass --resume to continue it "
            "or --overwrite to start again",
            file=sys.stderr,
        )
        return EXIT_USER_ERROR
    result = run_reference(
        args.material,
        args.temperature,
        out,
        production_ps=args.ps,
        timestep_fs=args.timestep_fs,
        every=args.every,
        equilibration_ps=args.equilibration_ps,
        ensemble=args.ensemble,
        seed=args.seed,
        mlip=args.mlip,
        model=args.model,
        device=args.device,
        allow_download=args.allow_download,
        repeats=tuple(args.supercell) if args.supercell else None,
        min_width=args.min_width,
        resume=not args.overwrite,
        progress=not args.no_progress,
    )
    print(
        f"{result.path}: {result.status}, {result.n_frames} frames, "
        f"{result.simulated_ps:.3g} ps, {result.wall_time_s:.0f} s"
        + (" (resumed)" if result.resumed else "")
    )
    return 0


# -- data --------------------------------------------------------------------
def _add_data(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "data", help="generate (resume, extend) the bundled LiFlow reference dataset"
    )
    p.add_argument("--only", help="only files whose name contains this, e.g. LGPS")
    p.add_argument("--ps", type=float, help="production length, ps (default: the plan's)")
    p.add_argument("--device", default="auto")
    p.add_argument("--list", action="store_true", help="print the plan and exit")
    p.add_argument("--card", action="store_true", help="only (re)write the dataset card")
    add_cg_data_arguments(p)
    p.set_defaults(handler=_run_data)


def _run_data(args: argparse.Namespace) -> int:
    from explorer.reference import dataset

    if args.cg:
        return run_cg_data(args)
    if args.list:
        for run in dataset.REFERENCE_RUNS:
            print(f"{run.filename:28s} {run.split:8s} supercell {run.repeats}  {run.note}")
        return 0
    if args.card:
        from explorer.reference.card import write_card

        print(write_card())
        return 0
    dataset.generate_dataset(
        only=args.only,
        production_ps=args.ps or dataset.PRODUCTION_PS,
        device=args.device,
    )
    return 0


def _format_summary(summary: dict[str, Any]) -> str:
    lines = [
        f"{summary['file']}: {summary['n_frames']} frames, {summary['n_atoms']} atoms "
        f"{summary['composition']}, {summary['time_span_ps']:.3g} ps",
        f"MSD at {summary['msd_last_time_ps']:.3g} ps (Å²): "
        + ", ".join(f"{k} {v:.4g}" for k, v in summary["msd_last_A2"].items()),
    ]
    for name, d in summary["diffusion"].items():
        if "error" in d:
            lines.append(f"D_{name}: n/a ({d['error']})")
        else:
            lines.append(
                f"D_{name} = {d['D_cm2_s']:.3e} ± {d['D_std_cm2_s']:.1e} cm²/s "
                f"(fit {d['fit_start_ps']:.3g}–{d['fit_end_ps']:.3g} ps)"
            )
    rdf = summary["rdf"]
    lines.append(
        f"RDF to {rdf['r_max_A']:.3g} Å over {rdf['n_frames_used']} frames; highest peaks: "
        + ", ".join(
            f"{k} {v['r_A']:.2f} Å" for k, v in rdf["pair_peaks"].items() if v["r_A"] is not None
        )
    )
    return "\n".join(lines)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


if __name__ == "__main__":
    raise SystemExit(main())
