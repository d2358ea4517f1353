"""Cost of reference MLIP MD on this machine: the baseline for every speed-up.

Runs a short NVT (Nosé–Hoover chain) trajectory of a ~100-atom catalogue cell
with the chosen calculator and prints steps per second and simulated ps per
hour. LiFlow and FlashMD benchmarks import ``measure_reference_md`` and print
their ratios against it, measured in the same run.

    .venv/bin/python bench/reference_md.py --material Li2S --steps 40
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np
from ase import units
from ase.md.nose_hoover_chain import NoseHooverChainNVT
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary

from explorer.materials import load_material, make_supercell
from explorer.reference.calculators import make_calculator


@dataclass(frozen=True)
class MDCost:
    material: str
    n_atoms: int
    calculator: str
    device: str
    timestep_fs: float
    steps: int
    seconds: float

    @property
    def steps_per_second(self) -> float:
        return self.steps / self.seconds

    @property
    def ps_per_hour(self) -> float:
        return self.steps_per_second * 3600 * self.timestep_fs / 1000


def reference_md_run(
    material: str = "Li2S",
    min_width: float = 9.0,
    calculator: str = "chgnet",
    device: str = "auto",
    timestep_fs: float = 2.0,
    temperature_K: float = 800.0,
) -> NoseHooverChainNVT:
    """An NVT (Nosé–Hoover chain) integrator of the catalogue cell, velocities drawn at
    ``temperature_K`` (K), ready to ``run``; its ``atoms`` carry the calculator."""
    atoms = make_supercell(load_material(material), min_width=min_width)
    atoms.calc = make_calculator(calculator, device=device)
    MaxwellBoltzmannDistribution(atoms, temperature_K=temperature_K, rng=np.random.default_rng(0))
    Stationary(atoms)
    return NoseHooverChainNVT(
        atoms,
        timestep=timestep_fs * units.fs,
        temperature_K=temperature_K,
        tdamp=100 * timestep_fs * units.fs,
        tchain=10,
    )


def measure_reference_md(
    material: str = "Li2S",
    min_width: float = 9.0,
    calculator: str = "chgnet",
    device: str = "auto",
    timestep_fs: float = 2.0,
    steps: int = 40,
    warmup: int = 5,
    temperature_K: float = 800.0,
) -> MDCost:
    """Time ``steps`` NVT steps after ``warmup`` untimed ones (model load, JIT)."""
    dyn = reference_md_run(material, min_width, calculator, device, timestep_fs, temperature_K)
    dyn.run(warmup)
    start = time.perf_counter()
    dyn.run(steps)
    seconds = time.perf_counter() - start
    used = getattr(dyn.atoms.calc, "device", device)
    return MDCost(material, len(dyn.atoms), calculator, str(used), timestep_fs, steps, seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--material", default="Li2S")
    parser.add_argument("--min-width", type=float, default=9.0)
    parser.add_argument("--calculator", default="chgnet")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--timestep-fs", type=float, default=2.0)
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args()
    cost = measure_reference_md(
        args.material, args.min_width, args.calculator, args.device, args.timestep_fs, args.steps
    )
    print(
        f"{cost.calculator} NVT on {cost.material} ({cost.n_atoms} atoms, {cost.device}): "
        f"{cost.steps_per_second:.3f} steps/s = {1 / cost.steps_per_second:.3f} s/step, "
        f"{cost.ps_per_hour:.2f} simulated ps/hour at {cost.timestep_fs} fs"
    )


if __name__ == "__main__":
    main()
