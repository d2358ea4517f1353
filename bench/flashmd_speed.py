"""Wall time per simulated ps: FlashMD against reference MD on the same cell (not a test).

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python bench/flashmd_speed.py [--md-steps 200]
        [--flashmd-steps 20] [--chgnet-steps 3] [--checkpoints NAME ...]

For every bundled FlashMD checkpoint (or those named), on the system it was trained for
(argon: 256 LJ atoms; al110: the 240-atom EMT slab), in one run:

* reference MD: ASE velocity Verlet at 1 fs with the reference calculator — ASE's own
  ``LennardJones`` / ``EMT``, and for argon also our vectorised LJ (same potential);
* FlashMD NVE, one model call per stride, with and without the energy-conservation
  filter (the filter adds one reference-energy call per stride);
* optionally CHGNet MD (2 fs) on the same cell, so users see where long strides pay off
  against an MLIP (``--chgnet-steps 0`` skips it).

Printed: seconds per simulated ps and the acceleration factor = reference s/ps ÷ FlashMD
s/ps (paper App G, Table 2: 48–195× against PET-MAD). Classical references are cheap, so
the factor against them is much smaller; it is reported as measured.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from ase import Atoms, units
from ase.md.md import MolecularDynamics
from ase.md.verlet import VelocityVerlet

from explorer.checkpoints import list_checkpoints
from explorer.errors import SimulationDiverged
from explorer.flashmd.integrators import FlashMDVerlet
from explorer.flashmd.simulate import FlashMDSimulator
from explorer.flashmd.systems import al110_slab, argon_liquid


def _seconds_per_ps(dyn: MolecularDynamics, steps: int, step_fs: float) -> float:
    """Wall seconds per simulated ps of ``steps`` steps (after one warm-up step); a FlashMD
    run that diverges is timed over the steps it completed."""
    dyn.run(1)  # warm-up (neighbour lists, first model call)
    done = dyn.nsteps
    start = time.perf_counter()
    try:
        dyn.run(steps)
    except SimulationDiverged as exc:
        print(f"    (diverged after {dyn.nsteps - done} steps: {exc.reason})")
    elapsed = time.perf_counter() - start
    return elapsed / (max(dyn.nsteps - done, 1) * step_fs * 1e-3)


def _start(system: str) -> Atoms:
    """An equilibrated state (first frame + momenta of the system's test trajectory), or
    the freshly built system with Maxwell–Boltzmann momenta when the data are absent."""
    from ase.md.velocitydistribution import Stationary, thermalize_momenta

    from explorer.cli_flashmd import flashmd_start_atoms
    from explorer.flashmd.systems import system_files

    tests = system_files(system, "test")
    if tests:
        return flashmd_start_atoms(str(tests[0]))
    atoms = argon_liquid() if system == "argon" else al110_slab()
    thermalize_momenta(atoms, temperature_K=94.4 if system == "argon" else 650.0,
                       rng=np.random.default_rng(0))  # fmt: skip
    Stationary(atoms)
    return atoms


def _reference_calculators(system: str) -> dict[str, object]:
    from ase.calculators.emt import EMT
    from ase.calculators.lj import LennardJones

    from explorer.flashmd.systems import ARGON_RC_SIGMAS, ARGON_RO_SIGMAS, argon_calculator
    from explorer.reference.calculators import LJ_ARGON

    if system == "argon":
        sigma = LJ_ARGON["sigma"]
        ase_lj = LennardJones(epsilon=LJ_ARGON["epsilon"], sigma=sigma, smooth=True,
                              rc=ARGON_RC_SIGMAS * sigma, ro=ARGON_RO_SIGMAS * sigma)  # fmt: skip
        return {"ASE LennardJones": ase_lj, "vectorised LJ (ours)": argon_calculator()}
    return {"ASE EMT": EMT()}


def bench_checkpoint(card: dict, md_steps: int, flashmd_steps: int, chgnet_steps: int) -> None:
    system = card.get("system") or ("argon" if card.get("elements") == [18] else "al110")
    sim = FlashMDSimulator.from_checkpoint(card["name"], device="cpu")
    stride = sim.stride_fs
    atoms = _start(system)
    print(f"\n{card['name']} ({system}, {len(atoms)} atoms, stride {stride:g} fs)")
    reference: dict[str, float] = {}
    for label, calc in _reference_calculators(system).items():
        work = atoms.copy()
        work.calc = calc
        dyn = VelocityVerlet(work, timestep=1.0 * units.fs)
        reference[label] = _seconds_per_ps(dyn, md_steps, 1.0)
        print(f"  reference MD, {label}, 1 fs: {reference[label]:9.2f} s/ps")
    if chgnet_steps > 0:
        try:
            from explorer.reference.calculators import make_calculator

            work = atoms.copy()
            work.calc = make_calculator("chgnet", device="cpu")
            dyn = VelocityVerlet(work, timestep=2.0 * units.fs)
            reference["CHGNet"] = _seconds_per_ps(dyn, chgnet_steps, 2.0)
            print(f"  reference MD, CHGNet, 2 fs: {reference['CHGNet']:9.2f} s/ps")
        except Exception as exc:  # CHGNet is optional for this bench
            print(f"  CHGNet skipped: {exc}")
    for filtered in (False, True):
        work = atoms.copy()
        dyn = FlashMDVerlet(work, sim.model, energy_conservation=filtered,
                            energy_model=sim.energy_model_name if filtered else None)  # fmt: skip
        seconds = _seconds_per_ps(dyn, flashmd_steps, stride)
        label = "with" if filtered else "without"
        print(f"  FlashMD {label} energy filter: {seconds:9.2f} s/ps")
        for ref_label, ref_seconds in reference.items():
            print(f"    acceleration vs {ref_label}: {ref_seconds / seconds:8.1f}×")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--md-steps", type=int, default=200)
    parser.add_argument("--flashmd-steps", type=int, default=20)
    parser.add_argument("--chgnet-steps", type=int, default=3)
    parser.add_argument("--checkpoints", nargs="*", help="default: every bundled FlashMD one")
    args = parser.parse_args()
    cards = [c for c in list_checkpoints() if c.get("family") == "flashmd"]
    if args.checkpoints:
        cards = [c for c in cards if c["name"] in args.checkpoints]
    if not cards:
        raise SystemExit("no FlashMD checkpoint found (train one with `accelmd train flashmd`)")
    for card in cards:
        bench_checkpoint(card, args.md_steps, args.flashmd_steps, args.chgnet_steps)


if __name__ == "__main__":
    main()
