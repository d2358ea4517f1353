"""Wall time per simulated τ: the learned CG simulator vs OpenMM on the same polymer.

Usage: ``python bench/cg_speed.py [--checkpoint cg-polymers] [--polymer test_II_000]``.
Prints seconds of wall time per τ for OpenMM (CPU platform, Langevin at 0.01 τ, all
beads) and for the learned simulator (one step = Δt τ on the CG beads, no refinement and
with refinement), and the speed-up ratio (paper: 10³–10⁴× against CPU force fields, for
~890-bead chains with 100 beads per CG bead; our chains are ~40 beads, 4 per CG bead, so
the advantage is much smaller: the cost of OpenMM grows with the number of beads, the
learned step's does not).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def openmm_seconds_per_tau(polymer_name: str, tau: float) -> float:
    from explorer.cg.polymers import ForceField, PolymerRun, _context, load_polymer

    data = load_polymer(polymer_name)
    run = PolymerRun()
    context = _context(data.polymer, run, ForceField())
    context.setPositions(data.positions[0])
    integrator = context.getIntegrator()
    integrator.step(100)  # warm-up
    steps = round(tau / run.timestep_tau)
    start = time.perf_counter()
    integrator.step(steps)
    context.getState(getPositions=True)  # make sure the work is done
    return (time.perf_counter() - start) / tau


def learned_seconds_per_tau(checkpoint: str, polymer: str, steps: int, refinement: int) -> float:
    from explorer.cg.simulate import CGSimulator

    sim = CGSimulator.from_checkpoint(checkpoint)
    state = sim.prepare(sim.polymer_atoms(polymer), refinement=refinement, seed=0)
    for _ in range(5):
        state = sim.step(state)
        sim.frame(state)
    start = time.perf_counter()
    for _ in range(steps):
        state = sim.step(state)
        sim.frame(state)  # the rollout reads a frame every step
    return (time.perf_counter() - start) / (steps * sim.dt_tau)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="cg-polymers")
    parser.add_argument("--polymer", default="test_II_000")
    parser.add_argument("--tau", type=float, default=100.0, help="OpenMM τ to time")
    parser.add_argument("--steps", type=int, default=200, help="learned steps to time")
    args = parser.parse_args()
    torch.set_num_threads(1)
    md = openmm_seconds_per_tau(args.polymer, args.tau)
    ml = learned_seconds_per_tau(args.checkpoint, args.polymer, args.steps, 0)
    ml_ref = learned_seconds_per_tau(args.checkpoint, args.polymer, max(10, args.steps // 10), 3)
    print(f"polymer {args.polymer}, 1 CPU thread each")
    print(f"OpenMM (CPU, dt 0.01 τ):           {md * 1e3:9.3f} ms per τ")
    print(f"learned CG (no refinement):        {ml * 1e3:9.3f} ms per τ   speed-up {md / ml:8.1f}×")
    print(
        f"learned CG (refinement 3 levels):  {ml_ref * 1e3:9.3f} ms per τ   "
        f"speed-up {md / ml_ref:8.1f}×"
    )
    print(f"ratio OpenMM / learned: {np.round(md / ml, 1)}")


if __name__ == "__main__":
    main()
