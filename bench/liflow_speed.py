"""Speed of LiFlow rollouts against reference MLIP MD on this machine (not a test).

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python bench/liflow_speed.py [--material LGPS]
        [--supercell 2 2 1] [--steps 5] [--flow-steps 10] [--md-steps 10]
        [--temperature 900] [--batch-steps 2] [--checkpoint NAME] [--no-md] [--compile]
        [--rounds 3]

Prints, for one cell (LGPS 2×2×1 = 200 atoms by default):

* seconds per LiFlow step (one step = ``time_step_ps``, 1 ps) for Propagator + Corrector
  (+ the fine Corrector where the checkpoint has one), for a checkpoint with a fine
  Corrector also without it, and for the Propagator alone (Corrector strength 0, so
  neither Corrector runs), and the seconds per simulated ns (= s/step × steps per ns);
* the same simulated time with reference MD (CHGNet NVT, 2 fs): a short run of
  ``--md-steps`` timed steps after 2 untimed ones (``bench/reference_md.py``), extrapolated
  linearly to 1 ps (500 steps) and 1 ns (500 000 steps);
* the median cost of the steps that needed no re-sample (a re-sample re-draws the
  Propagator's flow for a structure with a close contact, so the mean depends on how
  often the trajectory draws one), and the speed-up at that cost;
* the speed-up, CHGNet seconds per ns / LiFlow seconds per ns (target >= 1000×; the LiFlow
  paper reports about 400× against its MLIP on GPU);
* interleaved rounds (``--rounds``, default 3): each round times ``--steps`` LiFlow steps
  (Propagator + Corrector) and then ``--md-steps`` CHGNet steps, continuing one rollout and
  one MD run; the speed-up of every round and their median. The machine's speed drifts
  (a shared virtual CPU: ±10–30 % between runs minutes apart), and a ratio of two
  measurements taken seconds apart cancels most of it; the target is judged on the median;
* batched throughput: one ``prepare_batch`` of 4 copies of the cell at 600/800/1000/1200 K
  stepped ``--batch-steps`` times, against 4 sequential single rollouts of as many steps
  (target >= 2×). On the CPU the batch's networks run over groups of structures of at
  most ``LiFlowSimulator.cpu_group_atoms`` atoms (printed; one graph on a GPU).

``--compile`` evaluates the networks through ``torch.compile`` (inductor); the compile
time is spent in the untimed warm-up step and printed separately.

Timing does not depend on the weights, so without ``--checkpoint`` the Propagator and
Corrector are paper-size :class:`FlowModel` s (64 features, 20 RBF, 3 layers) with seeded
random initialisation. For those the clash check (``min_distance_A``) is switched off
(set to 1e-3 Å): an untrained model can put atoms close together and trigger re-samples
that a trained model would not, which is not representative of the cost of a step. The
remaining divergence checks still run and are part of the timed step; re-samples during
the timed steps are counted and printed.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
import warnings
from collections.abc import Sequence
from typing import Any

import torch
from ase import Atoms, units
from reference_md import (  # bench/ (this script's folder) is on sys.path
    measure_reference_md,
    reference_md_run,
)

from explorer.device import resolve_device
from explorer.errors import SimulationDiverged
from explorer.liflow.model import FlowModel, FlowModelConfig
from explorer.liflow.simulate import LiFlowSimulator, LiFlowState
from explorer.materials import load_material, perpendicular_widths, supercell_repeats

BATCH_TEMPERATURES_K = (600.0, 800.0, 1000.0, 1200.0)
MD_WARMUP = 2
NO_CLASH_CHECK_A = 1e-3  # min_distance_A for random weights: effectively no clash check


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def build_simulator(
    checkpoint: str | None, device: str, seed: int, compile: bool = False
) -> tuple[LiFlowSimulator, str]:
    """The simulator and a line describing its weights and clash check."""
    if checkpoint:
        sim = LiFlowSimulator.from_checkpoint(checkpoint, device=device, compile=compile)
        return sim, (
            f"weights: checkpoint {sim.name!r}; clash check on "
            f"(min_distance_A = {sim.min_distance_A:g} Å)"
        )
    torch.manual_seed(seed)
    config = FlowModelConfig()  # paper defaults: 64 features, 20 RBF, 3 layers
    propagator, corrector = FlowModel(config), FlowModel(config)
    sim = LiFlowSimulator(propagator, corrector, min_distance_A=NO_CLASH_CHECK_A, compile=compile)
    n_params = sum(p.numel() for p in propagator.parameters())
    return sim, (
        f"weights: random init (seed {seed}), paper size ({config.num_features} features, "
        f"{config.num_rbf} RBF, {config.num_layers} layers, cutoff {config.cutoff:g} Å, "
        f"{n_params} parameters per module); clash check OFF (min_distance_A = "
        f"{NO_CLASH_CHECK_A:g} Å) because untrained models may trigger unrepresentative "
        "re-samples"
    )


def time_steps(
    sim: LiFlowSimulator, state: LiFlowState, steps: int, device: str
) -> tuple[float, int, int, list[float], LiFlowState]:
    """(seconds, re-samples, steps done, seconds of each step without a re-sample, the
    last state) for up to ``steps`` steps from ``state``. A divergence ends the run and is
    not timed: the Propagator alone is unstable (LiFlow Exp 2), and its steps until then
    still time the network."""
    retries, done, clean = 0, 0, []
    _sync(device)
    start = end = time.perf_counter()
    try:
        for _ in range(steps):
            state = sim.step(state)
            retries += state.retries
            done += 1
            _sync(device)  # the step's checks synchronise anyway
            now = time.perf_counter()
            if state.retries == 0:
                clean.append(now - end)
            end = now
    except SimulationDiverged as exc:
        print(f"  (stopped after {done} timed steps, the failed one not counted: {exc})")
    return end - start, retries, done, clean, state


def time_liflow(
    sim: LiFlowSimulator,
    atoms: Atoms,
    temperature_K: float,
    corrector_strength: float,
    steps: int,
    flow_steps: int,
    device: str,
) -> tuple[float, int, float, float]:
    """Mean seconds per step over ``steps`` steps after one untimed warm-up step, the
    re-samples, the warm-up's seconds (where ``torch.compile`` compiles) and the median
    seconds of the steps without a re-sample (NaN if none)."""
    state = sim.prepare(
        atoms,
        temperature_K,
        corrector_strength=corrector_strength,
        flow_steps=flow_steps,
        device=device,
    )
    start = time.perf_counter()
    state = sim.step(state)  # warm-up: allocator, graph code paths, compiling
    warmup = time.perf_counter() - start
    seconds, retries, done, clean, _ = time_steps(sim, state, steps, device)
    if done == 0:
        raise SimulationDiverged("no timed step completed", reason="", step=1, time_ps=0.0)
    return seconds / done, retries, warmup, statistics.median(clean) if clean else math.nan


def time_batched(
    sim: LiFlowSimulator,
    atoms: Atoms,
    temperatures_K: Sequence[float],
    steps: int,
    flow_steps: int,
    device: str,
) -> tuple[float, float, int]:
    """Seconds (prepare + steps) for one batched rollout and for len(T) sequential ones."""
    kw = dict(flow_steps=flow_steps, device=device)
    # Warm-up of the batched code path (batch vectors, per-structure cells).
    sim.step(sim.prepare_batch([atoms] * len(temperatures_K), temperatures_K, **kw))
    _sync(device)
    start = time.perf_counter()
    state = sim.prepare_batch([atoms] * len(temperatures_K), temperatures_K, **kw)
    retries = _all_steps(sim, state, steps, device)
    batched = time.perf_counter() - start
    sequential = 0.0
    for temperature in temperatures_K:
        start = time.perf_counter()
        retries += _all_steps(sim, sim.prepare(atoms, temperature, **kw), steps, device)
        sequential += time.perf_counter() - start
    return batched, sequential, retries


def _all_steps(sim: LiFlowSimulator, state: LiFlowState, steps: int, device: str) -> int:
    """Re-samples of ``steps`` steps; a divergence voids the comparison (raised)."""
    _, retries, done, _, _ = time_steps(sim, state, steps, device)
    if done < steps:
        raise SimulationDiverged(f"diverged after {done} of {steps} steps", step=done + 1)
    return retries


def interleaved_speedups(
    sim: LiFlowSimulator,
    atoms: Atoms,
    temperature_K: float,
    flow_steps: int,
    device: str,
    dyn: Any,
    rounds: int,
    steps: int,
    md_steps: int,
) -> list[float]:
    """Speed-up (reference MD s per simulated ns / LiFlow s per simulated ns) of each of
    ``rounds`` rounds, each timing ``steps`` LiFlow steps then ``md_steps`` steps of the
    MD integrator ``dyn`` (both continue from the previous round). A divergence ends the
    rounds (:func:`time_steps`)."""
    state = sim.prepare(atoms, temperature_K, flow_steps=flow_steps, device=device)
    state = sim.step(state)  # compiled already; warms this rollout's first step
    md_ps_per_step = dyn.dt / (1000.0 * units.fs)
    ratios = []
    for _ in range(rounds):
        seconds, _, done, _, state = time_steps(sim, state, steps, device)
        if done < steps:
            break
        liflow_s_per_ps = seconds / (done * sim.time_step_ps)
        start = time.perf_counter()
        dyn.run(md_steps)
        md_s_per_ps = (time.perf_counter() - start) / (md_steps * md_ps_per_step)
        ratios.append(md_s_per_ps / liflow_s_per_ps)
        print(
            f"  round {len(ratios)}: LiFlow {liflow_s_per_ps * sim.time_step_ps:.4f} s/step, "
            f"MD {md_s_per_ps * md_ps_per_step:.4f} s/step, speed-up {ratios[-1]:.4g}x"
        )
    return ratios


def md_min_width(cell, repeats: Sequence[int]) -> float | None:
    """A ``min_width`` for which ``make_supercell`` repeats the cell exactly ``repeats``."""
    widths = perpendicular_widths(cell)
    lo = max((n - 1) * w for n, w in zip(repeats, widths, strict=True))
    hi = min(n * w for n, w in zip(repeats, widths, strict=True))
    if not lo < hi:
        return None
    width = 0.5 * (lo + hi)
    return width if tuple(supercell_repeats(cell, width)) == tuple(repeats) else None


def _chgnet_available() -> bool:
    try:
        import chgnet  # noqa: F401
        import pymatgen  # noqa: F401
    except ImportError:
        return False
    return True


def hms(seconds: float) -> str:
    return f"{seconds:.4g} s = {seconds / 3600:.4g} h = {seconds / 86400:.4g} days"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--material", default="LGPS")
    parser.add_argument("--supercell", type=int, nargs=3, default=[2, 2, 1], metavar="N")
    parser.add_argument("--steps", type=int, default=5, help="timed LiFlow steps (+1 warm-up)")
    parser.add_argument("--flow-steps", type=int, default=10, help="Euler steps per flow")
    parser.add_argument("--md-steps", type=int, default=10, help=f"timed MD steps (+{MD_WARMUP})")
    parser.add_argument("--md-timestep-fs", type=float, default=2.0)
    parser.add_argument("--calculator", default="chgnet")
    parser.add_argument("--temperature", type=float, default=900.0, help="K")
    parser.add_argument("--batch-steps", type=int, default=2, help="steps per batched rollout")
    parser.add_argument("--checkpoint", default=None, help="LiFlow checkpoint (default: random)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-md", action="store_true", help="skip the reference MD run")
    parser.add_argument("--compile", action="store_true", help="run LiFlow via torch.compile")
    parser.add_argument(
        "--rounds", type=int, default=3, help="interleaved LiFlow/MD timing rounds (0: none)"
    )
    parser.add_argument(
        "--min-distance",
        type=float,
        help="clash check, Å (default: the checkpoint's): large supercells draw a close "
        "pair somewhere almost every step, and a timing run should not stop on one",
    )
    args = parser.parse_args()
    if min(args.steps, args.md_steps, args.batch_steps, args.flow_steps) < 1:
        parser.error("--steps, --md-steps, --batch-steps and --flow-steps must be >= 1")
    if args.rounds < 0:
        parser.error("--rounds must be >= 0")
    warnings.filterwarnings("ignore", category=UserWarning, module=r"chgnet\.")

    device = resolve_device(args.device)
    unit = load_material(args.material)
    repeats = tuple(args.supercell)
    atoms = unit.repeat(repeats)
    print(
        f"torch {torch.__version__}: {torch.get_num_threads()} threads "
        f"(OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}), device {device}"
    )
    print(
        f"cell: {args.material} {'x'.join(map(str, repeats))} supercell of the "
        f"{len(unit)}-atom catalogue cell = {len(atoms)} atoms ({atoms.get_chemical_formula()})"
    )

    sim, weights = build_simulator(args.checkpoint, device, args.seed, args.compile)
    if args.min_distance is not None:
        sim.min_distance_A = args.min_distance
        weights += f"; clash check set to {args.min_distance:g} Å (--min-distance)"
    print(weights)
    if sim.selector is not None and not _chgnet_available():
        # The classifier runs once per rollout, in prepare (untimed): dropping it where
        # CHGNet is not installed (e.g. a GPU machine) leaves the timed steps unchanged.
        sim.selector = None
        print("  prior classifier skipped (CHGNet not installed): the card's fixed choice")
    steps_per_ns = 1000.0 / sim.time_step_ps
    print(
        f"LiFlow: {args.temperature:g} K, {args.flow_steps} flow steps per module, "
        f"{sim.time_step_ps:g} ps per step, {args.steps} timed steps after 1 warm-up"
    )
    pc_step, pc_retries, pc_warmup, pc_clean = time_liflow(
        sim, atoms, args.temperature, 1.0, args.steps, args.flow_steps, device
    )
    p_step, p_retries, _, _ = time_liflow(
        sim, atoms, args.temperature, 0.0, args.steps, args.flow_steps, device
    )
    fine = sim.fine_corrector
    if fine is not None:  # the same rollout without the fine Corrector's flow
        sim.fine_corrector = None
        try:
            nf_step, nf_retries, _, _ = time_liflow(
                sim, atoms, args.temperature, 1.0, args.steps, args.flow_steps, device
            )
        finally:
            sim.fine_corrector = fine
    mode = "torch.compile" if args.compile else "eager"
    print(f"  {mode}; first (warm-up) step {pc_warmup:.1f} s, not timed")
    pc_ns, p_ns = pc_step * steps_per_ns, p_step * steps_per_ns
    print(
        f"  Propagator+Corrector: {pc_step:.4f} s/step, {pc_ns:.4g} s per simulated ns "
        f"({pc_ns / 3600:.3g} h; re-samples in timed steps: {pc_retries})"
    )
    if fine is not None:
        print(
            f"    (with the fine Corrector; without it {nf_step:.4f} s/step, "
            f"{nf_step * steps_per_ns:.4g} s per simulated ns; re-samples: {nf_retries})"
        )
    print(
        f"  Propagator only     : {p_step:.4f} s/step, {p_ns:.4g} s per simulated ns "
        f"({p_ns / 3600:.3g} h; re-samples in timed steps: {p_retries})"
    )
    print(
        f"  Propagator+Corrector steps without a re-sample: median {pc_clean:.4f} s "
        "(re-samples, i.e. the model's close contacts, make up the rest of the mean)"
    )

    if args.no_md:
        print("reference MD: skipped (--no-md)")
    else:
        width = md_min_width(unit.cell[:], repeats)
        scaled = width is None
        if scaled:  # no single min_width gives these repeats: time a larger cell, scale per atom
            widths = perpendicular_widths(unit.cell[:])
            width = max(n * w for n, w in zip(repeats, widths, strict=True))
        cost = measure_reference_md(
            args.material,
            min_width=width,
            calculator=args.calculator,
            device=args.device,
            timestep_fs=args.md_timestep_fs,
            steps=args.md_steps,
            warmup=MD_WARMUP,
            temperature_K=args.temperature,
        )
        md_step = 1.0 / cost.steps_per_second
        print(
            f"reference MD: {cost.calculator} NVT (Nosé–Hoover chain) on {cost.n_atoms} atoms, "
            f"{cost.device}, {cost.timestep_fs:g} fs, {args.temperature:g} K: measured "
            f"{cost.steps} steps in {cost.seconds:.3f} s after {MD_WARMUP} warm-up"
        )
        if scaled:
            md_step *= len(atoms) / cost.n_atoms
            print(
                f"  (no make_supercell width gives {repeats}; scaled linearly in atom count "
                f"{cost.n_atoms} -> {len(atoms)})"
            )
        steps_per_ps = 1000.0 / cost.timestep_fs
        md_ps = md_step * steps_per_ps
        md_ns = md_ps * 1000.0
        print(f"  {md_step:.4f} s/step (measured)")
        print(f"  {md_ps:.4g} s/ps  (extrapolated: x {steps_per_ps:g} steps per ps)")
        print(f"  {hms(md_ns)} per ns (extrapolated: x {steps_per_ps * 1000:g} steps per ns)")
        print(
            f"speed-up ({cost.calculator} s/ns / LiFlow s/ns): Propagator+Corrector "
            f"{md_ns / pc_ns:.4g}x, Propagator only {md_ns / p_ns:.4g}x "
            f"(target >= 1000x; paper ~400x vs its MLIP on GPU) -> "
            f"{'met' if md_ns / pc_ns >= 1000 else 'NOT met'}"
        )
        if fine is not None:
            print(f"  without the fine Corrector: {md_ns / (nf_step * steps_per_ns):.4g}x")
        if math.isfinite(pc_clean):
            print(
                f"  at the cost of a step without a re-sample: "
                f"{md_ns / (pc_clean * steps_per_ns):.4g}x"
            )
        if args.rounds and not scaled:
            dyn = reference_md_run(
                args.material, width, args.calculator, args.device, args.md_timestep_fs,
                args.temperature,
            )  # fmt: skip
            dyn.run(MD_WARMUP)
            print(
                f"interleaved: {args.rounds} rounds of {args.steps} LiFlow steps, then "
                f"{args.md_steps} MD steps (one rollout, one MD run)"
            )
            ratios = interleaved_speedups(
                sim, atoms, args.temperature, args.flow_steps, device, dyn, args.rounds,
                args.steps, args.md_steps,
            )  # fmt: skip
            if not ratios:
                print("  no round completed (the rollout diverged)")
            else:
                median = statistics.median(ratios)
                print(
                    f"  median speed-up over {len(ratios)} rounds {median:.4g}x (target >= "
                    f"1000x) -> {'met' if median >= 1000 else 'NOT met'}"
                )

    temps = BATCH_TEMPERATURES_K
    try:
        batched, sequential, b_retries = time_batched(
            sim, atoms, temps, args.batch_steps, args.flow_steps, device
        )
    except SimulationDiverged as exc:  # a trained model can diverge; no timing then
        print(f"batched comparison not timed: {exc}")
        return
    n = len(temps)
    ratio = sequential / batched
    on_cpu = sim.cpu_group_atoms is not None and str(device) == "cpu"  # as the simulator
    graphs = f"CPU groups of <= {sim.cpu_group_atoms} atoms" if on_cpu else "one graph"
    print(
        f"batched: {n} x {len(atoms)} atoms at {'/'.join(f'{t:g}' for t in temps)} K, "
        f"{args.batch_steps} steps each (prepare + steps, after 1 warm-up batched step; "
        f"{graphs})"
    )
    print(
        f"  one prepare_batch rollout: {batched:.3f} s "
        f"({n * args.batch_steps * sim.time_step_ps / batched:.4g} simulated ps/s)"
    )
    print(
        f"  {n} sequential rollouts  : {sequential:.3f} s "
        f"({n * args.batch_steps * sim.time_step_ps / sequential:.4g} simulated ps/s)"
    )
    print(
        f"  throughput ratio sequential/batched: {ratio:.3g}x (target >= 2x) -> "
        f"{'met' if ratio >= 2 else 'NOT met'}; re-samples: {b_retries}"
    )


if __name__ == "__main__":
    main()
