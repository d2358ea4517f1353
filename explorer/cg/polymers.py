"""Reference MD of single bead-spring polymer chains in implicit solvent (OpenMM, CPU).

The potential is eq. 3 of the MSGN paper (Fu et al., TMLR 2023, App. B), after Webb et al.
(2020)::

    U = Σ_bonds U_vib(r) + Σ_angles U_bend(θ) + Σ_dihedrals U_tors(φ) + Σ_pairs U_nb(r)
    U_vib(r)  = -½ K R0² log(1 - (r/R0)²)                          FENE, K = 30 ε/σ², R0 = 1.5 σ
    U_bend(θ) = K_θ (θ - θ0)²                                        K_θ = 10 ε, θ0 = 120°
    U_tors(φ) = K_φ [1 + cos φ]                                      K_φ = 0.5 ε
    U_nb(r)   = 4 ε_ij [(σ_ij/r)¹² - (σ_ij/r)⁶] + ε_ij   bonded pairs, r < 2^{1/6} σ_ij (WCA)
              = 4 ε_ij [(σ_ij/r)⁹ - (σ_ij/r)⁶]                       all other pairs

The WCA term is shifted by +ε_ij so that it vanishes at its cutoff (a constant per bond that
changes no force); the 9-6 term acts between every non-bonded pair without cutoff (a single
chain of tens of beads). σ_ij, ε_ij follow Lorentz–Berthelot mixing of the bead types'.

Units: reduced LJ units. OpenMM is run with σ = 1 nm, ε = 1 kJ/mol and bead mass m = 1 amu,
so that τ = σ √(m/ε) = 1 ps and k_B T = ε at T = ε / k_B ≈ 120.27 K. Positions in the H5MD
files are in σ and times in τ (they sit in the fields H5MD readers label Å and ps; the
file metadata say ``length_unit: sigma``, ``time_unit: tau``). Langevin dynamics
(``LangevinMiddleIntegrator``), time step 0.01 τ, friction 1/τ, k_B T = 1 ε.

Chemistry space (after Webb et al., paper Fig. 2a): four bead types A–D (different σ, ε)
form ten constitutional units (CUs): a backbone bead with an optional linear side chain.
Class I polymers (training; 32, the last two for validation) repeat a pattern of four CUs
exactly; class II polymers (testing, 8, never seen in training) are random sequences of
four CUs.

Scaled to 2 CPU cores (paper: ~890 beads, 50k τ training / 5M τ testing): chains of
~40 beads, training trajectories of 1,000 τ recorded every 2 τ and test trajectories
of 20,000 τ (20×) recorded every 10 τ. The measured Rg² relaxation times are 10–47 τ, so a
test trajectory spans 400–2,000 relaxation times (converged ⟨Rg²⟩ and ACF) and a training
one 20–100: the paper's design (train short, test ≥ 20× longer) with a milder contrast than
its 50k τ vs 5M τ.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from explorer.errors import ExplorerError, SimulationDiverged, TrajectoryFileError

__all__ = [
    "BEAD_TYPES",
    "CONSTITUTIONAL_UNITS",
    "POLYMER_DIR",
    "ForceField",
    "Polymer",
    "PolymerRun",
    "build_polymer",
    "build_system",
    "dataset_plan",
    "extended_positions",
    "generate_dataset",
    "load_polymer",
    "numpy_energy",
    "polymer_path",
    "random_copolymer",
    "regular_copolymer",
    "relaxation_plan",
    "run_polymer",
    "spread_training_plan",
]

POLYMER_DIR = Path(__file__).resolve().parents[2] / "sample_data" / "polymers"
BEAD_TYPES = ("A", "B", "C", "D")
# (σ in σ-units, ε in ε-units) per bead type: A/D soluble, B sticky, C large and mildly sticky,
# so chains range from swollen to collapsed and ⟨Rg²⟩ varies across the chemistry space.
BEAD_SIGMA = (1.0, 1.0, 1.1, 0.9)
BEAD_EPSILON = (0.6, 1.3, 0.9, 0.4)
# Ten CUs: (backbone bead type, side-chain bead types from the backbone outwards).
CONSTITUTIONAL_UNITS: tuple[tuple[int, tuple[int, ...]], ...] = (
    (0, ()),
    (1, ()),
    (2, ()),
    (3, ()),
    (0, (1,)),
    (0, (2,)),
    (2, (3,)),
    (1, (3, 3)),
    (3, (0,)),
    (2, (1, 0)),
)
CONNECTIVITY = "connectivity/all_bonds"  # H5MD connectivity module: (bonds, 2) particle indices
KB_KJ_PER_MOL_K = 0.008314462618  # k_B in kJ/(mol K): T such that k_B T = 1 ε = 1 kJ/mol


@dataclass(frozen=True)
class ForceField:
    """Parameters of eq. 3 in reduced units (ε, σ); see the module docstring."""

    fene_k: float = 30.0
    fene_r0: float = 1.5
    # Stiff enough that collinear triples, where the torsion force is singular, are ~11 k_BT
    # away: with K_θ = 2 ε a 40-bead chain blew up about once per 10⁴ τ at Δt = 0.01 τ.
    angle_k: float = 10.0
    angle_theta0: float = 2.0 * math.pi / 3.0
    torsion_k: float = 0.5
    sigma: tuple[float, ...] = BEAD_SIGMA
    epsilon: tuple[float, ...] = BEAD_EPSILON

    def pair(self, ti: int, tj: int) -> tuple[float, float]:
        """Lorentz–Berthelot (σ_ij, ε_ij) of two bead types."""
        return 0.5 * (self.sigma[ti] + self.sigma[tj]), math.sqrt(
            self.epsilon[ti] * self.epsilon[tj]
        )


@dataclass(frozen=True)
class Polymer:
    """A single chain: bead types (N,), bonds (B, 2), masses (N,) in m, its CU sequence."""

    name: str
    types: np.ndarray
    bonds: np.ndarray
    masses: np.ndarray
    cu_sequence: tuple[int, ...] = ()
    polymer_class: str = ""

    @property
    def n_beads(self) -> int:
        return int(self.types.size)

    def angles(self) -> np.ndarray:
        """(A, 3) bead triples i-j-k with j bonded to both i and k."""
        nbrs = _neighbours(self.n_beads, self.bonds)
        out = [(i, j, k) for j in range(self.n_beads) for i in nbrs[j] for k in nbrs[j] if i < k]
        return np.array(out, dtype=np.int64).reshape(-1, 3)

    def dihedrals(self) -> np.ndarray:
        """(D, 4) bead quadruples i-j-k-l along bonded paths (each once)."""
        nbrs = _neighbours(self.n_beads, self.bonds)
        out = []
        for j, k in self.bonds:
            for i in nbrs[j]:
                for m in nbrs[k]:
                    if i != k and m != j and i != m:
                        out.append((i, j, k, m))
        return np.array(out, dtype=np.int64).reshape(-1, 4)


def _neighbours(n: int, bonds: np.ndarray) -> list[list[int]]:
    nbrs: list[list[int]] = [[] for _ in range(n)]
    for i, j in bonds:
        nbrs[int(i)].append(int(j))
        nbrs[int(j)].append(int(i))
    return nbrs


def build_polymer(name: str, cu_sequence: Sequence[int], polymer_class: str = "") -> Polymer:
    """Assemble a chain from CU indices: backbone beads bonded in order, side chains hung on."""
    types: list[int] = []
    bonds: list[tuple[int, int]] = []
    previous_backbone = -1
    for cu in cu_sequence:
        backbone, side = CONSTITUTIONAL_UNITS[int(cu)]
        index = len(types)
        types.append(backbone)
        if previous_backbone >= 0:
            bonds.append((previous_backbone, index))
        previous_backbone, parent = index, index
        for bead in side:
            types.append(bead)
            bonds.append((parent, len(types) - 1))
            parent = len(types) - 1
    return Polymer(
        name=name,
        types=np.array(types, dtype=np.int64),
        bonds=np.array(bonds, dtype=np.int64).reshape(-1, 2),
        masses=np.ones(len(types)),
        cu_sequence=tuple(int(c) for c in cu_sequence),
        polymer_class=polymer_class,
    )


def _n_beads(cu_sequence: Sequence[int]) -> int:
    return sum(1 + len(CONSTITUTIONAL_UNITS[c][1]) for c in cu_sequence)


def regular_copolymer(
    name: str, rng: np.random.Generator, target_beads: int = 40, distinct: bool = True
) -> Polymer:
    """Class I: a pattern of four CUs repeated exactly until ≥ ``target_beads``.

    ``distinct`` (the bundled files): the pattern holds four distinct CUs, so every chain
    has the same CU composition. Otherwise the pattern's four positions are drawn with
    repetition from four distinct CUs, so compositions spread like those of class II,
    whose 40-bead random sequences stray far from equal shares (an opt-in training set:
    README, CG polymers).
    """
    if distinct:
        pattern = [int(c) for c in rng.choice(len(CONSTITUTIONAL_UNITS), size=4, replace=False)]
    else:
        units = rng.choice(len(CONSTITUTIONAL_UNITS), size=4, replace=False)
        pattern = [int(c) for c in rng.choice(units, size=4, replace=True)]
    sequence: list[int] = []
    while _n_beads(sequence) < target_beads:
        sequence.extend(pattern)
    return build_polymer(name, sequence, "I")


def random_copolymer(name: str, rng: np.random.Generator, target_beads: int = 40) -> Polymer:
    """Class II: CUs drawn i.i.d. from four distinct CUs until ≥ ``target_beads``."""
    units = rng.choice(len(CONSTITUTIONAL_UNITS), size=4, replace=False)
    sequence: list[int] = []
    while _n_beads(sequence) < target_beads:
        sequence.append(int(rng.choice(units)))
    return build_polymer(name, sequence, "II")


def initial_positions(polymer: Polymer, rng: np.random.Generator) -> np.ndarray:
    """A non-overlapping random walk along the bond graph (N, 3) in σ, bond length 0.97 σ."""
    x = np.zeros((polymer.n_beads, 3))
    placed = np.zeros(polymer.n_beads, dtype=bool)
    placed[0] = True
    nbrs = _neighbours(polymer.n_beads, polymer.bonds)
    order = [0]
    for i in order:  # breadth-first; the list grows while iterating
        for j in nbrs[i]:
            if placed[j]:
                continue
            for _ in range(1000):
                step = rng.normal(size=3)
                trial = x[i] + 0.97 * step / np.linalg.norm(step)
                if np.all(np.linalg.norm(x[placed] - trial, axis=1) > 0.9):
                    break
            x[j], placed[j] = trial, True
            order.append(j)
    return x


def build_system(polymer: Polymer, ff: ForceField | None = None) -> Any:
    """The OpenMM System of eq. 3 (σ → nm, ε → kJ/mol, m → amu)."""
    import openmm

    ff = ff or ForceField()
    system = openmm.System()
    for m in polymer.masses:
        system.addParticle(float(m))
    bonded = openmm.CustomBondForce(
        "-0.5*kf*r0^2*log(1-(r/r0)^2) + step(rc-r)*(4*eps*((sig/r)^12-(sig/r)^6)+eps);"
        "rc=2^(1/6)*sig"
    )
    for name in ("kf", "r0", "sig", "eps"):
        bonded.addPerBondParameter(name)
    for i, j in polymer.bonds:
        sig, eps = ff.pair(polymer.types[i], polymer.types[j])
        bonded.addBond(int(i), int(j), [ff.fene_k, ff.fene_r0, sig, eps])
    system.addForce(bonded)
    angles = openmm.HarmonicAngleForce()
    for i, j, k in polymer.angles():  # OpenMM's ½ k (θ-θ0)²: k = 2 K_θ
        angles.addAngle(int(i), int(j), int(k), ff.angle_theta0, 2.0 * ff.angle_k)
    system.addForce(angles)
    torsions = openmm.PeriodicTorsionForce()
    for i, j, k, m in polymer.dihedrals():  # k (1 + cos(1·φ - 0)) = K_φ [1 + cos φ]
        torsions.addTorsion(int(i), int(j), int(k), int(m), 1, 0.0, ff.torsion_k)
    system.addForce(torsions)
    pair = openmm.CustomNonbondedForce(
        "4*eps*((sig/r)^9-(sig/r)^6); sig=0.5*(s1+s2); eps=sqrt(e1*e2)"
    )
    pair.addPerParticleParameter("s")
    pair.addPerParticleParameter("e")
    pair.setNonbondedMethod(openmm.CustomNonbondedForce.NoCutoff)
    for t in polymer.types:
        pair.addParticle([ff.sigma[t], ff.epsilon[t]])
    for i, j in polymer.bonds:  # bonded pairs feel WCA (above), not 9-6
        pair.addExclusion(int(i), int(j))
    system.addForce(pair)
    return system


def numpy_energy(polymer: Polymer, positions: np.ndarray, ff: ForceField | None = None) -> float:
    """Eq. 3 evaluated directly in numpy (ε), independent of OpenMM (for tests)."""
    ff = ff or ForceField()
    x = np.asarray(positions, dtype=np.float64)
    t = polymer.types
    energy = 0.0
    for i, j in polymer.bonds:
        r = np.linalg.norm(x[i] - x[j])
        sig, eps = ff.pair(t[i], t[j])
        energy += -0.5 * ff.fene_k * ff.fene_r0**2 * np.log(1 - (r / ff.fene_r0) ** 2)
        if r < 2 ** (1 / 6) * sig:
            energy += 4 * eps * ((sig / r) ** 12 - (sig / r) ** 6) + eps
    for i, j, k in polymer.angles():
        a, b = x[i] - x[j], x[k] - x[j]
        theta = np.arccos(np.clip(a @ b / np.linalg.norm(a) / np.linalg.norm(b), -1, 1))
        energy += ff.angle_k * (theta - ff.angle_theta0) ** 2
    for i, j, k, m in polymer.dihedrals():
        b1, b2, b3 = x[j] - x[i], x[k] - x[j], x[m] - x[k]
        n1, n2 = np.cross(b1, b2), np.cross(b2, b3)
        m1 = np.cross(n1, b2 / np.linalg.norm(b2))
        phi = np.arctan2(m1 @ n2, n1 @ n2)
        energy += ff.torsion_k * (1 + np.cos(phi))
    bonded = {(min(i, j), max(i, j)) for i, j in polymer.bonds.tolist()}
    for i in range(polymer.n_beads):
        for j in range(i + 1, polymer.n_beads):
            if (i, j) in bonded:
                continue
            sig, eps = ff.pair(t[i], t[j])
            r = np.linalg.norm(x[i] - x[j])
            energy += 4 * eps * ((sig / r) ** 9 - (sig / r) ** 6)
    return float(energy)


@dataclass(frozen=True)
class PolymerRun:
    """How one reference trajectory is simulated (times in τ; the MD step is 0.01 τ)."""

    length_tau: float = 1_000.0
    record_every_tau: float = 2.0
    equilibrate_tau: float = 100.0
    timestep_tau: float = 0.01
    friction_per_tau: float = 1.0
    kT: float = 1.0
    seed: int = 0
    restart_every: int = 100  # frames between saved OpenMM checkpoints
    # "random_walk" (equilibrium runs) or "extended" (relaxation runs: :func:`relaxation_plan`)
    start: str = "random_walk"

    def __post_init__(self) -> None:
        if self.start not in STARTS:
            raise ValueError(f"start must be one of {sorted(STARTS)}, not {self.start!r}")

    @property
    def steps_per_frame(self) -> int:
        return round(self.record_every_tau / self.timestep_tau)

    @property
    def n_frames(self) -> int:
        return round(self.length_tau / self.record_every_tau) + 1


def extended_positions(polymer: Polymer, rng: np.random.Generator) -> np.ndarray:
    """A fully stretched chain (N, 3) in σ: the bonded minimum, far from equilibrium.

    The backbone is a planar zig-zag (bonds 0.97 σ, angles θ0 = 120°, every torsion at
    180°, where K_φ [1 + cos φ] vanishes); side chains stick straight out of the plane,
    on alternate sides for successive CUs. 0.02 σ of Gaussian jitter breaks the symmetry.
    """
    if not polymer.cu_sequence:
        raise ExplorerError(f"{polymer.name}: an extended start needs the CU sequence")
    x = np.zeros((polymer.n_beads, 3))
    bond, index = 0.97, 0
    for k, cu in enumerate(polymer.cu_sequence):
        side = CONSTITUTIONAL_UNITS[int(cu)][1]
        x[index] = [k * bond * math.cos(math.pi / 6), (k % 2) * bond * math.sin(math.pi / 6), 0]
        out_of_plane = 1.0 if k % 2 == 0 else -1.0
        for s in range(1, len(side) + 1):
            x[index + s] = x[index] + [0.0, 0.0, out_of_plane * bond * s]
        index += 1 + len(side)
    return x + rng.normal(scale=0.02, size=x.shape)


STARTS: dict[str, Callable[[Polymer, np.random.Generator], np.ndarray]] = {
    "random_walk": initial_positions,
    "extended": extended_positions,
}


def _context(polymer: Polymer, run: PolymerRun, ff: ForceField) -> Any:
    import openmm

    integrator = openmm.LangevinMiddleIntegrator(
        run.kT / KB_KJ_PER_MOL_K, run.friction_per_tau, run.timestep_tau
    )
    integrator.setRandomNumberSeed(run.seed + 1)  # OpenMM treats 0 as "pick one at random"
    platform = openmm.Platform.getPlatformByName("CPU")
    # One thread: the machine's cores are shared with other jobs (and runs are small).
    return openmm.Context(build_system(polymer, ff), integrator, platform, {"Threads": "1"})


def metadata_of(polymer: Polymer, run: PolymerRun, ff: ForceField) -> dict[str, Any]:
    """Everything needed to reproduce a reference file, with the units spelled out."""
    return {
        "producer": "explorer.cg.polymers (OpenMM CPU, LangevinMiddleIntegrator)",
        "polymer": polymer.name,
        "polymer_class": polymer.polymer_class,
        "cu_sequence": list(polymer.cu_sequence),
        "bead_type_names": list(BEAD_TYPES),
        "n_beads": polymer.n_beads,
        "force_field": asdict(ff),
        "run": _run_record(run),
        "units": {"length": "sigma", "time": "tau", "energy": "epsilon", "mass": "bead mass"},
        "length_unit": "sigma",
        "time_unit": "tau",
        "openmm_units": "sigma = 1 nm, epsilon = 1 kJ/mol, m = 1 amu, so tau = 1 ps",
        "equation": "MSGN paper App. B eq. 3 (FENE, harmonic angle, K[1+cos phi], WCA/9-6)",
    }


def _run_record(run: PolymerRun) -> dict[str, Any]:
    """The run's settings as stored; the default start is left out, so files written
    before starts were selectable keep matching their runs (resume check)."""
    record = asdict(run)
    if record["start"] == "random_walk":
        del record["start"]
    return record


def run_polymer(
    polymer: Polymer,
    path: str | Path,
    run: PolymerRun,
    ff: ForceField | None = None,
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Simulate one chain into an H5MD file, continuing an interrupted file exactly.

    Frame 0 follows ``equilibrate_tau`` of relaxation from a minimised ``run.start``
    (a random walk, or a stretched chain for relaxation runs). Every
    ``restart_every`` frames the OpenMM checkpoint (positions, velocities, RNG state) is
    stored in the file, so a rerun continues bit-for-bit from there. ``progress(n)`` is
    called with the number of new frames.
    """
    import openmm

    from explorer.h5md import H5MDWriter, read_restart

    ff = ff or ForceField()
    path = Path(path)
    metadata = metadata_of(polymer, run, ff)
    context = _context(polymer, run, ff)
    cell = np.zeros((3, 3))
    writer = H5MDWriter(
        path, polymer.types, cell, False, {**metadata, "status": "running"}, "a", polymer.masses
    )
    restart = read_restart(path) if writer.n_frames else None
    if restart is not None and "openmm_checkpoint" in restart:
        _check_same_run(path, metadata)
        writer.truncate(int(restart["n_frames"]))
        context.loadCheckpoint(np.asarray(restart["openmm_checkpoint"], dtype=np.uint8).tobytes())
    else:
        writer.truncate(0)
        _equilibrate(context, polymer, run, ff)
    integrator = context.getIntegrator()
    try:
        while writer.n_frames < run.n_frames:
            if writer.n_frames > 0:
                integrator.step(run.steps_per_frame)
            state = context.getState(getPositions=True, getEnergy=True)
            x = np.asarray(state.getPositions(asNumpy=True).value_in_unit(openmm.unit.nanometer))
            _check_frame(polymer, x, ff, writer.n_frames)
            energy = state.getPotentialEnergy().value_in_unit(openmm.unit.kilojoule_per_mole)
            n = writer.n_frames
            writer.append(x, n * run.record_every_tau, step=n * run.steps_per_frame,
                          energies={"potential_energy": energy})  # fmt: skip
            if progress is not None:
                progress(1)
            if writer.n_frames % run.restart_every == 0 or writer.n_frames == run.n_frames:
                checkpoint = np.frombuffer(context.createCheckpoint(), dtype=np.uint8)
                writer.write_restart({"openmm_checkpoint": checkpoint})
        writer.update_metadata(status="done")
    finally:
        writer.close()
        # After the writer: H5MDWriter rewrites a file that holds no frame yet.
        if h5py_frames(path):
            _write_graph(path, polymer)
    if h5py_frames(path) >= run.n_frames:
        compact(path)
    return path


def _equilibrate(context: Any, polymer: Polymer, run: PolymerRun, ff: ForceField) -> None:
    """Relax a minimised start (``run.start``) for ``equilibrate_tau``. A start that blows
    up (a rare near-collinear triple, where the torsion force is singular, early in the
    relaxation) is replaced by the next start of the same seeded stream, so the result stays
    reproducible; after ``attempts`` failures the last error is raised."""
    import openmm

    rng = np.random.default_rng(run.seed)
    attempts = 5
    for attempt in range(attempts):
        context.setPositions(STARTS[run.start](polymer, rng))
        openmm.LocalEnergyMinimizer.minimize(context, 1e-3, 500)
        context.setVelocitiesToTemperature(run.kT / KB_KJ_PER_MOL_K, run.seed + 1 + attempt)
        context.getIntegrator().step(round(run.equilibrate_tau / run.timestep_tau))
        context.setTime(0.0)
        state = context.getState(getPositions=True)
        x = np.asarray(state.getPositions(asNumpy=True).value_in_unit(openmm.unit.nanometer))
        try:
            _check_frame(polymer, x, ff, 0)
            return
        except SimulationDiverged:
            if attempt == attempts - 1:
                raise


def compact(path: str | Path) -> Path:
    """Rewrite a finished file with gzip+shuffle compressed datasets (same layout, readers
    need nothing special). The constant box and the step/time columns shrink to almost
    nothing; this keeps the bundled dataset small."""
    path = Path(path)
    tmp = path.with_suffix(".compact.tmp")

    def copy(src: h5py.Group, dst: h5py.Group) -> None:
        dst.attrs.update(dict(src.attrs))
        for key, item in src.items():
            if isinstance(item, h5py.Group):
                copy(item, dst.create_group(key))
            elif item.chunks is not None and item.size > 0:
                out = dst.create_dataset(
                    key, data=item[()], maxshape=item.maxshape, chunks=item.chunks,
                    compression="gzip", compression_opts=6, shuffle=True,
                )  # fmt: skip
                out.attrs.update(dict(item.attrs))
            else:
                src.copy(item, dst, name=key)

    with h5py.File(path, "r", locking=False) as f, h5py.File(tmp, "w", locking=False) as g:
        copy(f, g)
    tmp.replace(path)
    return path


def h5py_frames(path: Path) -> int:
    from explorer.h5md import h5md_frame_count

    try:
        return h5md_frame_count(path)
    except TrajectoryFileError:
        return 0


def _check_frame(polymer: Polymer, x: np.ndarray, ff: ForceField, frame: int) -> None:
    """Stop a reference run that blew up (a bond beyond the FENE limit, NaN)."""
    bonds = np.linalg.norm(x[polymer.bonds[:, 0]] - x[polymer.bonds[:, 1]], axis=-1)
    if not np.all(np.isfinite(x)) or np.any(bonds >= ff.fene_r0):
        raise SimulationDiverged(
            f"{polymer.name}: reference MD blew up before frame {frame} (longest bond "
            f"{np.nanmax(bonds):.3g} σ ≥ R0 = {ff.fene_r0} σ or non-finite positions)",
            reason="bond beyond FENE limit",
            frames_written=frame,
        )


def _check_same_run(path: Path, metadata: dict[str, Any]) -> None:
    with h5py.File(path, "r", locking=False) as f:
        stored = json.loads(f["parameters"].attrs.get("accelmd_metadata", "{}"))
    keys = ("polymer", "cu_sequence", "force_field", "run")
    if any(json.loads(json.dumps(metadata[k])) != stored.get(k) for k in keys):
        raise TrajectoryFileError(f"{path}: holds a different polymer or run; delete it to redo")


def _write_graph(path: Path, polymer: Polymer) -> None:
    """The bond graph (H5MD connectivity module) next to the particles."""
    with h5py.File(path, "r+", locking=False) as f:
        if CONNECTIVITY in f:
            del f[CONNECTIVITY]
        bonds = f.create_dataset(CONNECTIVITY, data=polymer.bonds.astype(np.int32))
        bonds.attrs["particles_group"] = "/particles/all"
        bonds.attrs["description"] = "bonded bead pairs (indices into particles/all)"


@dataclass(frozen=True)
class PolymerData:
    """A reference file read back: the polymer, positions (F, N, 3) in σ, times (F,) in τ."""

    polymer: Polymer
    positions: np.ndarray
    times_tau: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def missing_frames(self) -> int:
        """Frames the file's recorded run still owes (0 when complete or not recorded):
        a file being generated, or cut short, reads as a valid but shorter trajectory."""
        run = self.metadata.get("run") or {}
        if "length_tau" not in run or "record_every_tau" not in run:
            return 0
        expected = round(run["length_tau"] / run["record_every_tau"]) + 1
        return max(0, expected - len(self.positions))


def polymer_path(name: str, directory: Path = POLYMER_DIR) -> Path:
    """The H5MD file of a bundled polymer name (or the given path if it is a file)."""
    path = Path(name)
    if path.suffix == ".h5" and path.exists():
        return path
    path = directory / f"{name}.h5"
    if not path.exists():
        available = ", ".join(p.stem for p in sorted(directory.glob("*.h5")))
        raise ExplorerError(f"no polymer {name!r} in {directory}; available: {available or 'none'}")
    return path


def load_polymer(name: str | Path, directory: Path = POLYMER_DIR) -> PolymerData:
    """Read a polymer reference file (ours): graph, bead types, masses, frames."""
    from explorer.h5md import read_h5md

    path = polymer_path(str(name), directory)
    traj = read_h5md(path)
    with h5py.File(path, "r", locking=False) as f:
        if CONNECTIVITY not in f:
            raise TrajectoryFileError(f"{path}: no bond graph ('{CONNECTIVITY}')")
        bonds = np.asarray(f[CONNECTIVITY][()], dtype=np.int64)
        masses = np.asarray(f["particles/all/mass"][()], dtype=np.float64)
    meta = traj.metadata
    polymer = Polymer(
        name=str(meta.get("polymer", path.stem)),
        types=traj.numbers,
        bonds=bonds,
        masses=masses,
        cu_sequence=tuple(meta.get("cu_sequence", ())),
        polymer_class=str(meta.get("polymer_class", "")),
    )
    return PolymerData(polymer, traj.positions.astype(np.float64), traj.times_ps, meta)


def dataset_plan(
    n_train: int = 12,
    n_test: int = 8,
    target_beads: int = 40,
    train_run: PolymerRun | None = None,
    test_run: PolymerRun | None = None,
    seed: int = 2023,
    n_train_extra: int = 20,
) -> list[tuple[Polymer, PolymerRun]]:
    """The bundled dataset: class I training chains and 20× longer class II test chains.

    The first ``n_train`` training chains and then the ``n_test`` test chains come from one
    random stream (``seed``); ``n_train_extra`` more training chains (named after them) come
    from a second stream (``seed + 1``), so enlarging the training set never changes a
    test chain or an existing file.
    """
    train_run = train_run or PolymerRun()
    test_run = test_run or PolymerRun(length_tau=20_000.0, record_every_tau=10.0)
    rng = np.random.default_rng(seed)
    plan = []
    for k in range(n_train):
        polymer = regular_copolymer(f"train_I_{k:03d}", rng, target_beads)
        plan.append((polymer, PolymerRun(**{**asdict(train_run), "seed": seed + k})))
    for k in range(n_test):
        polymer = random_copolymer(f"test_II_{k:03d}", rng, target_beads)
        plan.append((polymer, PolymerRun(**{**asdict(test_run), "seed": seed + 1000 + k})))
    extra_rng = np.random.default_rng(seed + 1)
    for k in range(n_train, n_train + n_train_extra):
        polymer = regular_copolymer(f"train_I_{k:03d}", extra_rng, target_beads)
        plan.append((polymer, PolymerRun(**{**asdict(train_run), "seed": seed + k})))
    return plan


def spread_training_plan(
    n: int = 30, target_beads: int = 40, seed: int = 2025, run_seed: int = 5000
) -> list[tuple[Polymer, PolymerRun]]:
    """Opt-in class I training chains ``wide_I_000 …`` with repeated units in their
    pattern (:func:`regular_copolymer` with ``distinct=False``), 1,000 τ each like the
    bundled ones: compositions as spread as class II's. Not bundled (``generate_dataset(
    directory, plan=spread_training_plan())``; 30 chains take about 8 min on 2 cores)."""
    rng = np.random.default_rng(seed)
    return [
        (regular_copolymer(f"wide_I_{k:03d}", rng, target_beads, distinct=False),
         PolymerRun(seed=run_seed + k))
        for k in range(n)
    ]  # fmt: skip


def selection_plan(
    n: int = 16,
    target_beads: int = 40,
    length_tau: float = 8_000.0,
    seed: int = 2027,
    run_seed: int = 9000,
) -> list[tuple[Polymer, PolymerRun]]:
    """Class I chains ``sel_I_000 …`` with long references, for choosing among trained models.

    Compositions spread like class II's (:func:`regular_copolymer` with ``distinct=False``,
    from their own random stream), and each run is ``length_tau`` long (recorded every
    10 τ like the test references), so its ⟨R_g²⟩ is converged to a few per cent: the
    1,000-τ training files' means are too noisy to rank models by. No class II chain is
    involved, so test polymers stay unseen by every choice. Not bundled (about 2 min per
    chain on one core; ``generate_dataset(directory, plan=selection_plan())``).
    """
    rng = np.random.default_rng(seed)
    return [
        (regular_copolymer(f"sel_I_{k:03d}", rng, target_beads, distinct=False),
         PolymerRun(length_tau=length_tau, record_every_tau=10.0, seed=run_seed + k))
        for k in range(n)
    ]  # fmt: skip


def relaxation_plan(
    polymers: Sequence[Polymer] | None = None,
    n_per_chain: int = 5,
    length_tau: float = 200.0,
    run_seed: int = 80_000,
) -> list[tuple[Polymer, PolymerRun]]:
    """Opt-in relaxation runs ``relax_<polymer>_<k>``: chains folding back from a stretch.

    Each starts from :func:`extended_positions` (R_g² ≈ 90 σ² for 40 beads against
    4–10 σ² at equilibrium) and is recorded from the first frame for ``length_tau``
    (every 2 τ) while the chain folds back. Equilibrium runs never visit such states, so
    a learned simulator that drifts into them has seen no way back (it unfolds); these
    files show it one. ``polymers`` default to :func:`dataset_plan`'s train_I_000 … 009
    (the two validation chains left out). Not bundled: 50 runs take about 2 min on
    2 cores (``generate_dataset(directory, plan=relaxation_plan())``).
    """
    if polymers is None:
        polymers = [polymer for polymer, _ in dataset_plan()[:10]]
    plan = []
    for index, polymer in enumerate(polymers):
        for k in range(n_per_chain):
            run = PolymerRun(
                length_tau=length_tau,
                equilibrate_tau=0.0,
                start="extended",
                seed=run_seed + 100 * index + k,
            )
            plan.append((replace(polymer, name=f"relax_{polymer.name}_{k:02d}"), run))
    return plan


def generate_dataset(
    directory: Path = POLYMER_DIR,
    plan: list[tuple[Polymer, PolymerRun]] | None = None,
    progress: bool = True,
    only: Sequence[str] | None = None,
) -> list[Path]:
    """Simulate every polymer of ``plan`` into ``directory`` (resumable; done files skipped)."""
    from tqdm import tqdm

    from explorer.h5md import h5md_frame_count

    plan = plan if plan is not None else dataset_plan()
    if only:
        plan = [(p, r) for p, r in plan if p.name in set(only)]
    paths = []
    total = sum(r.n_frames for _, r in plan)
    with tqdm(total=total, disable=not progress, desc="polymers", unit="frame") as bar:
        for polymer, run in plan:
            path = Path(directory) / f"{polymer.name}.h5"
            if path.exists():
                try:
                    done = h5md_frame_count(path)
                except TrajectoryFileError:
                    done = 0
                if done >= run.n_frames:
                    bar.update(run.n_frames)
                    paths.append(path)
                    continue
            bar.set_postfix(polymer=polymer.name)
            paths.append(run_polymer(polymer, path, run, progress=bar.update))
    return paths
