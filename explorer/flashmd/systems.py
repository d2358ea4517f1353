"""The two FlashMD reference systems and their NVE training trajectories (App H, App K).

**Liquid argon** (FlashMD App H, after Zheng et al.'s MDNet benchmark): 256 Lennard-Jones
atoms at Rahman's state point (Phys. Rev. 136, A405, 1964): T = 94.4 K and
ρ = 1.374 g cm⁻³, i.e. reduced density ρ* = ρσ³ = 0.8442 and T* = k_B T / ε = 0.78 (a
liquid just above the LJ triple point). ε = 0.0104 eV (≈ 120.7 K · k_B) and σ = 3.40 Å
(:data:`explorer.reference.calculators.LJ_ARGON`); the pair potential is cut at
r_c = 3σ = 10.2 Å with ASE's smooth switch starting at r_o = 2.5σ, so the switch only
touches the tail (|u| < 0.02 ε) instead of ASE's default r_o = 0.66 r_c, which would start
inside the second neighbour shell. The cubic cell is 22.84 Å wide (> 2 r_c). Protocol:
an fcc lattice is melted (Langevin, 300 K, 2 ps) and cooled (Langevin, 94.4 K, 1 ps), then
each run draws its own Maxwell–Boltzmann velocities (seed = run index), re-equilibrates with
a Nosé–Hoover chain at 94.4 K and records an NVE velocity-Verlet production at a 1 fs step.
Frames every 64 fs keep the files small; the 128 fs stride of App H is two frames. Runs
0–5 train, 6 validates, 7 tests (App H: separate trajectories; we use 8 instead of 10 runs
and 3 ps instead of 10 ps to fit a CPU budget).

**Al(110) slab** (App K): a 5 × 6 × 8 fcc(110) slab, 20 Å of vacuum along z (periodic in
x, y only), ASE's EMT, over App K's 400–900 K. Eight runs train (400, 500, 550, 600, 750,
800, 850, 900 K), 650 K validates, 700 K tests. Each is minimised, equilibrated for 2 ps
with Langevin dynamics at γ = 10/ps (velocity relaxation time 0.1 ps: the slab starts at
rest, equipartition halves the drawn kinetic energy, and the friction restores the target
within ~0.5 ps), then recorded for 2.5 ps of NVE at 1 fs, frames every 16 fs (strides 16
and 64 fs are 1 and 4 frames). An earlier protocol (0.5 ps Nosé–Hoover) left the 700 K
test run at ~570 K; now the first 0.3 ps of every run is within 3 canonical standard
deviations of its target. The surface keeps disordering during NVE (potential energy up
to +4 eV over 2.5 ps), so some runs cool: the 700 K test run averages 627 K and the
800 K run 691 K. NVE data is valid training data at any temperature; the evaluation's
NVT reference is a Langevin run (:func:`explorer.flashmd.evaluate.reference_langevin_run`).

Every run goes through :func:`explorer.reference.md.run_md`, so an interrupted generation
resumes where it stopped. Files: ``sample_data/flashmd/<system>_<split><k>.h5``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms, units
from ase.build import bulk, fcc110
from ase.calculators.calculator import Calculator
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import thermalize_momenta

from explorer.errors import UnknownMaterialError
from explorer.flashmd.lj import FastLennardJones
from explorer.reference.calculators import LJ_ARGON, make_calculator
from explorer.reference.config import MDConfig
from explorer.reference.md import MDResult, run_md

__all__ = [
    "AL_SLAB",
    "ARGON",
    "DATA_DIR",
    "SYSTEMS",
    "ReferenceSystem",
    "al110_slab",
    "argon_calculator",
    "argon_liquid",
    "generate",
    "system_calculator",
    "system_files",
]

DATA_DIR = Path(__file__).resolve().parents[2] / "sample_data" / "flashmd"

ARGON_MASS_DENSITY_G_CM3 = 1.374  # Rahman 1964
ARGON_TEMPERATURE_K = 94.4
ARGON_REDUCED_DENSITY = 0.8442
ARGON_RC_SIGMAS = 3.0
ARGON_RO_SIGMAS = 2.5


@dataclass(frozen=True)
class ReferenceSystem:
    """One FlashMD reference system: how to build it and its runs.

    ``runs`` are (split, temperature K, seed); ``every`` is steps between frames.
    """

    name: str
    calculator: str
    runs: tuple[tuple[str, float, int], ...]
    timestep_fs: float
    equilibration_ps: float
    production_ps: float
    every: int
    minimize: bool
    equilibration_ensemble: str = "nvt"
    langevin_friction_per_ps: float = 1.0

    def filename(self, split: str, index: int) -> str:
        return f"{self.name}_{split}{index}.h5"


ARGON = ReferenceSystem(
    name="argon",
    calculator="lj",
    runs=(
        *(("train", ARGON_TEMPERATURE_K, k) for k in range(6)),
        ("val", ARGON_TEMPERATURE_K, 6),
        ("test", ARGON_TEMPERATURE_K, 7),
    ),
    timestep_fs=1.0,
    equilibration_ps=1.0,
    production_ps=3.0,
    every=64,
    minimize=False,
)
AL_SLAB = ReferenceSystem(
    name="al110",
    calculator="emt",
    runs=(
        *(
            ("train", t, k)
            for k, t in enumerate((400.0, 500.0, 550.0, 600.0, 750.0, 800.0, 850.0, 900.0))
        ),
        ("val", 650.0, 8),
        ("test", 700.0, 9),
    ),
    timestep_fs=1.0,
    equilibration_ps=2.0,
    production_ps=2.5,
    every=16,
    minimize=True,
    equilibration_ensemble="langevin",
    langevin_friction_per_ps=10.0,
)
SYSTEMS = {s.name: s for s in (ARGON, AL_SLAB)}


def argon_calculator() -> FastLennardJones:
    """The argon pair potential (module docstring): ε, σ of LJ_ARGON, r_c = 3σ, r_o = 2.5σ."""
    sigma = LJ_ARGON["sigma"]
    return FastLennardJones(
        epsilon=LJ_ARGON["epsilon"],
        sigma=sigma,
        rc=ARGON_RC_SIGMAS * sigma,
        ro=ARGON_RO_SIGMAS * sigma,
    )


def system_calculator(name: str) -> Calculator:
    """A fresh reference calculator of a system (``"argon"``: LJ; ``"al110"``: EMT)."""
    if name == "argon":
        return argon_calculator()
    if name == "al110":
        return make_calculator("emt")
    raise UnknownMaterialError(f"unknown FlashMD system {name!r}; known: {', '.join(SYSTEMS)}")


def argon_liquid(seed: int = 0) -> Atoms:
    """256 argon atoms at ρ* = 0.8442, melted at 300 K and cooled to 94.4 K (Langevin).

    Deterministic for a given ``seed``; costs ~1,500 force calls (a few seconds).
    """
    sigma = LJ_ARGON["sigma"]
    box = (256 / ARGON_REDUCED_DENSITY) ** (1 / 3) * sigma  # 22.84 Å
    atoms = bulk("Ar", "fcc", a=box / 4, cubic=True).repeat((4, 4, 4))
    atoms.calc = argon_calculator()
    rng = np.random.default_rng(seed)
    thermalize_momenta(atoms, temperature_K=300.0, rng=rng)
    for temperature, steps in ((300.0, 1000), (ARGON_TEMPERATURE_K, 500)):
        dyn = Langevin(
            atoms, 2.0 * units.fs, temperature_K=temperature, friction=0.01 / units.fs, rng=rng
        )
        dyn.run(steps)
    liquid = Atoms(atoms.numbers, atoms.positions, cell=atoms.cell, pbc=True)
    liquid.info["material"] = "argon"
    return liquid


def al110_slab() -> Atoms:
    """The App K Al(110) slab: 5 × 6 × 8 atoms (240), 10 Å vacuum on each side, pbc (x, y)."""
    slab = fcc110("Al", size=(5, 6, 8), vacuum=10.0)
    slab.pbc = (True, True, False)
    slab.info["material"] = "Al(110)"
    return slab


def system_files(name: str, split: str, directory: Path = DATA_DIR) -> list[Path]:
    """The existing files of one split (``train`` | ``val`` | ``test``) of a system."""
    system = SYSTEMS[name]
    index = [k for k, (s, _, _) in enumerate(system.runs) if s == split]
    paths = [directory / system.filename(split, k) for k in index]
    return [p for p in paths if p.exists()]


def generate(
    name: str,
    directory: Path = DATA_DIR,
    *,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
    runs: Iterable[int] | None = None,
) -> list[MDResult]:
    """Run (or resume) the reference runs of a system into ``directory``.

    Each file is an H5MD trajectory with unwrapped positions (float32, Å) and momenta
    (float32, amu·Å/ps) every ``every`` steps of NVE production. ``runs`` picks run
    indices (into ``SYSTEMS[name].runs``) so that separate processes can share the work;
    default all.
    """
    if name not in SYSTEMS:
        raise UnknownMaterialError(f"unknown FlashMD system {name!r}; known: {', '.join(SYSTEMS)}")
    system = SYSTEMS[name]
    start = argon_liquid() if name == "argon" else al110_slab()
    wanted = set(range(len(system.runs)) if runs is None else runs)
    if not wanted <= set(range(len(system.runs))):
        raise ValueError(f"{name} has runs 0-{len(system.runs) - 1}; asked for {sorted(wanted)}")
    results = []
    for k, (split, temperature, seed) in enumerate(system.runs):
        if k not in wanted:
            continue
        config = MDConfig(
            temperature_K=temperature,
            ensemble="nve",
            equilibration_ensemble=system.equilibration_ensemble,
            langevin_friction_per_ps=system.langevin_friction_per_ps,
            timestep_fs=system.timestep_fs,
            equilibration_ps=system.equilibration_ps,
            production_ps=system.production_ps,
            every=system.every,
            seed=seed,
            minimize=system.minimize,
            record_momenta=True,
            checkpoint_every=5,
        )
        calc = system_calculator(name)
        description = calc.describe() if isinstance(calc, FastLennardJones) else "ASE EMT"
        info = {"name": system.calculator, "model": description, "flashmd_system": name}
        out = directory / system.filename(split, k)
        result = run_md(start, calc, config, out, info, progress=progress)
        results.append(result)
        if log is not None:
            log(f"{out.name}: {result.n_frames} frames ({result.wall_time_s:.0f} s)")
    return results


if __name__ == "__main__":  # python -m explorer.flashmd.systems argon al110 [--runs 0 2 4]
    import argparse

    parser = argparse.ArgumentParser(description="generate the FlashMD reference runs")
    parser.add_argument("systems", nargs="*", default=list(SYSTEMS))
    parser.add_argument("--runs", type=int, nargs="+", default=None, help="run indices")
    cli = parser.parse_args()
    for system_name in cli.systems:
        generate(system_name, progress=False, log=print, runs=cli.runs)
