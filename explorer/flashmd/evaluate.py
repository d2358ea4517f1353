"""Evaluation of a FlashMD checkpoint against held-out reference trajectories (App H, F, §1).

* **One-stride errors** on test pairs (App H, Table 3): RMSE of q (Å) and of v (Å/fs)
  of the constrained prediction, beside velocity Verlet run with the same large step
  Δτ and the reference calculator (the baseline the paper's table starts from).
* **Rollouts** from the first test frame (positions and momenta): NVE with and without the
  energy-conservation filter (total-energy drift per ps, by a linear fit, in meV/atom/ps),
  and NVT with Langevin and Bussi thermostats (mean temperature minus target, K, overall
  and per element as in FlashMD Table 1, over all strides and, as the steady-state error,
  after :data:`WARMUP_TIME_CONSTANTS` thermostat time constants); the RDF overlap score
  (Geodite eq. 7, :mod:`explorer.analysis.rdf`) of the Langevin rollout against the test trajectory
  (periodic cells), or for a slab the per-layer mean-square displacement at the last time
  both trajectories reach (FlashMD Fig. 3b style). A rollout that diverges reports where.
* **Reference Langevin run** (``rollouts["reference_langevin"]``): the reference
  calculator at its own 1 fs step with the same thermostat, target, start and length. Its
  temperature error is the statistical floor of the rollouts' (exact dynamics is not
  exactly on target in a run this short), and it is the slab's per-layer MSD reference.
* **Seeds** (``rollout_seeds`` > 1): the stochastic runs (thermostats, and the reference
  Langevin run) are repeated with seeds 0 … n − 1. Each entry keeps seed 0's full report
  and adds ``over_seeds`` (:func:`seed_summary`): how many runs completed, where the others
  stopped, and the temperature errors per seed and averaged over the completed runs. A
  blow-up is a rare event along a trajectory, so one seed says little about stability.
  NVE without random rotation is deterministic and runs once.

Units: Å, fs, K, eV.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms, units
from ase.calculators.calculator import Calculator
from ase.data import atomic_masses, chemical_symbols
from ase.md.langevin import Langevin

from explorer.errors import ExplorerError, SimulationDiverged
from explorer.flashmd.data import FS_PER_PS, StatePair, load_pairs
from explorer.flashmd.energy import EnergyModel
from explorer.flashmd.simulate import FlashMDSimulator
from explorer.flashmd.train import evaluate_pairs
from explorer.h5md import read_h5md
from explorer.session import Rollout
from explorer.trajectory import Trajectory

__all__ = [
    "evaluate_checkpoint",
    "frame_temperatures",
    "layer_msd",
    "record_in_card",
    "reference_langevin_run",
    "rollout_report",
    "seed_summary",
    "species_temperatures",
    "temperature_summary",
    "verlet_baseline",
    "warmup_frames",
]


def layer_msd(traj: Trajectory, time_ps: float, n_layers: int) -> list[float]:
    """Mean-square displacement (Å²) per layer at the frame nearest ``time_ps``, relative to
    the slab's centre of mass (a thermostat lets the whole slab drift, which is not layer
    motion); layers are ``n_layers`` equal groups of atoms ranked by their initial z (a slab
    along z)."""
    frame = int(np.argmin(np.abs(traj.times_ps - time_ps)))
    order = np.argsort(traj.positions[0, :, 2], kind="stable")
    disp = traj.positions[frame].astype(np.float64) - traj.positions[0]
    masses = atomic_masses[traj.numbers]
    disp -= masses @ disp / masses.sum()
    sq = np.sum(disp**2, axis=-1)
    return [float(sq[group].mean()) for group in np.array_split(order, n_layers)]


#: Thermostat time constants left out before the steady-state temperature: e⁻⁵ ≈ 0.7 % of
#: the start's offset from the target is left. A start frame from NVE sits off the target
#: by the kinetic-energy fluctuations (±37 K for the 240-atom slab at 700 K); the first
#: Al(110) test run, equilibrated too briefly, started ~130 K low, and the mean over all
#: strides of a short NVT run mixed that warm-up into the model's error.
WARMUP_TIME_CONSTANTS = 5.0

#: Thermostat time constant of every NVT run of the evaluation (fs): the rollouts' and the
#: reference Langevin run's, so that both relax alike.
EVAL_TIME_CONSTANT_FS = 100.0


def warmup_frames(traj: Trajectory, time_constant_fs: float) -> int:
    """Index of the first frame at least ``WARMUP_TIME_CONSTANTS × time_constant_fs`` (fs)
    after the start (≥ 1)."""
    elapsed_fs = (traj.times_ps - traj.times_ps[0]) * 1000.0
    limit = WARMUP_TIME_CONSTANTS * float(time_constant_fs)
    return max(1, int(np.searchsorted(elapsed_fs, limit - 1e-9, side="left")))


def _internal_kinetic(traj: Trajectory, first_frame: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-atom kinetic energy (eV) in the centre-of-mass frame, frames ``first_frame``…,
    and each atom's share of the 3N − 3 internal degrees of freedom, 3 (1 − m_i / M)."""
    assert traj.velocities is not None
    velocities = traj.velocities[first_frame:].astype(np.float64) / (1000.0 * units.fs)
    masses = atomic_masses[traj.numbers]
    total_mass = masses.sum()
    com_velocity = np.einsum("i,fij->fj", masses, velocities) / total_mass
    internal = velocities - com_velocity[:, None, :]
    kinetic = 0.5 * masses[None, :] * np.sum(internal**2, axis=-1)  # (frames, atoms)
    return kinetic, 3.0 * (1.0 - masses / total_mass)


def frame_temperatures(traj: Trajectory) -> np.ndarray:
    """Kinetic temperature (K) of every frame with the centre-of-mass motion removed:
    2 K_int / ((3N − 3) k_B).

    Unbiased whether or not the dynamics keeps the total momentum: FlashMD conserves it
    (NVE, Bussi: P = 0, so ``Atoms.get_temperature``'s 3N degrees of freedom read T (1 −
    1/N), 2.9 K low for the 240-atom slab at 700 K) and Langevin noise thermalises it."""
    if traj.velocities is None:
        raise ExplorerError("the trajectory has no velocities")
    kinetic, dof = _internal_kinetic(traj, 0)
    return 2.0 * kinetic.sum(axis=1) / (dof.sum() * units.kB)


def species_temperatures(traj: Trajectory, first_frame: int = 1) -> dict[str, float]:
    """Mean kinetic temperature (K) of each element over frames ``first_frame``…, from the
    velocities in the centre-of-mass frame (FlashMD Table 1: equipartition per species).

    An atom of mass m_i holds 3 (1 − m_i / M) of the 3N − 3 internal degrees of freedom
    (⟨m_i u_i²⟩ = 3 k_B T (1 − m_i / M) for u_i = v_i − V_com), so every element reads the
    same T in equilibrium. Empty without velocities or frames."""
    if traj.velocities is None or traj.n_frames <= first_frame:
        return {}
    kinetic, dof = _internal_kinetic(traj, first_frame)
    result = {}
    for z in np.unique(traj.numbers):
        chosen = traj.numbers == z
        per_frame = 2.0 * kinetic[:, chosen].sum(axis=1) / (dof[chosen].sum() * units.kB)
        result[chemical_symbols[z]] = float(per_frame.mean())
    return result


def verlet_baseline(
    pairs: Sequence[StatePair], energy: EnergyModel, stride_fs: float
) -> dict[str, float]:
    """RMSE(q) in Å and RMSE(v) in Å/fs of one velocity-Verlet step of length Δτ."""
    sq_q = sq_v = 0.0
    n = 0
    dt = stride_fs * units.fs
    for pair in pairs:
        atoms = Atoms(pair.numbers, pair.positions, cell=pair.cell, pbc=pair.pbc)
        atoms.calc = energy.calculator
        m = pair.masses[:, None]
        p = pair.momenta / units.fs  # amu·Å/fs → ASE units
        f0 = atoms.get_forces()
        p_half = p + 0.5 * dt * f0
        atoms.positions = pair.positions + dt * p_half / m
        p_new = p_half + 0.5 * dt * atoms.get_forces()
        sq_q += float(np.sum((atoms.positions - pair.next_positions) ** 2))
        sq_v += float(np.sum((p_new * units.fs / m - pair.next_momenta / m) ** 2))
        n += pair.positions.size
    return {"rmse_q": math.sqrt(sq_q / n), "rmse_v": math.sqrt(sq_v / n)}


def temperature_summary(traj: Trajectory, knobs: dict[str, Any]) -> dict[str, Any]:
    """Mean temperature (K) after frame 0 and, with a thermostat, its error against the
    target overall and per element, over all frames and after the warm-up (module
    docstring). Temperatures come from the velocities in the centre-of-mass frame
    (:func:`frame_temperatures`), else from ``energies["temperature"]``."""
    summary: dict[str, Any] = {}
    if traj.velocities is not None:
        temperature = frame_temperatures(traj)
    else:
        temperature = traj.energies.get("temperature")
    if temperature is None or temperature.size <= 1:
        return summary
    summary["mean_temperature_K"] = float(np.mean(temperature[1:]))
    if knobs.get("thermostat", "none") == "none":
        return summary
    target = knobs["temperature_K"]
    summary["temperature_error_K"] = summary["mean_temperature_K"] - target
    summary["temperature_error_by_species_K"] = {
        symbol: t - target for symbol, t in species_temperatures(traj).items()
    }
    first = warmup_frames(traj, knobs.get("time_constant_fs", 100.0))
    if temperature.size > first + 1:  # at least two frames after the warm-up
        summary["steady_state_from_ps"] = float(traj.times_ps[first] - traj.times_ps[0])
        summary["temperature_error_steady_K"] = float(np.mean(temperature[first:])) - target
        summary["temperature_error_steady_by_species_K"] = {
            symbol: t - target for symbol, t in species_temperatures(traj, first).items()
        }
    return summary


def reference_langevin_run(
    start: Atoms,
    calculator: Calculator,
    temperature_K: float,
    time_constant_fs: float,
    strides: int,
    stride_fs: float,
    timestep_fs: float = 1.0,
    seed: int = 0,
) -> Trajectory:
    """The reference calculator under ASE's Langevin dynamics (friction 1/τ), started from
    ``start``'s positions and momenta, one frame per stride: ``strides × stride_fs`` fs.

    The baseline of the NVT rollouts: what exact dynamics with the same thermostat, target,
    start and run length scores. Its temperature error is the statistical noise of the
    rollout's (a 100-stride run of the 240-atom slab is a few correlation times long), and
    its per-layer MSD is the like-for-like reference of a thermostatted rollout (the NVE
    test trajectory drifts away from the target as the surface disorders).
    """
    every = round(stride_fs / timestep_fs)
    if every < 1 or not math.isclose(every * timestep_fs, stride_fs, rel_tol=1e-9):
        raise ExplorerError(f"stride {stride_fs} fs is not a multiple of {timestep_fs} fs")
    atoms = start.copy()
    atoms.calc = calculator
    dyn = Langevin(
        atoms,
        timestep_fs * units.fs,
        temperature_K=temperature_K,
        friction=1.0 / (time_constant_fs * units.fs),
        # The centre of mass is thermalised, as in FlashMDLangevin's OBABO half-steps.
        fixcm=False,
        rng=np.random.default_rng(seed),
    )
    positions, velocities, temperatures = [], [], []

    def record() -> None:
        positions.append(atoms.get_positions())
        velocities.append(atoms.get_velocities() * FS_PER_PS * units.fs)  # Å/ps
        temperatures.append(atoms.get_temperature())

    dyn.attach(record, interval=every)
    dyn.run(strides * every)
    return Trajectory(
        positions=np.asarray(positions),
        cell=atoms.cell.array,
        numbers=atoms.numbers,
        times_ps=np.arange(len(positions)) * stride_fs / FS_PER_PS,
        pbc=atoms.pbc,
        velocities=np.asarray(velocities),
        energies={"temperature": np.asarray(temperatures)},
        metadata={"thermostat": "langevin", "timestep_fs": timestep_fs},
    )


def rollout_report(
    simulator: FlashMDSimulator,
    start: Atoms,
    steps: int,
    knobs: dict[str, Any],
    reference: Trajectory | None = None,
) -> dict[str, Any]:
    """Run one rollout and summarise it (temperature, energy drift, RDF overlap)."""
    rollout = Rollout(simulator, start, steps, knobs)
    rollout.start()
    rollout.join()
    report: dict[str, Any] = {"status": rollout.status, "strides": rollout.n_frames - 1}
    if isinstance(rollout.error, SimulationDiverged):
        report["error"] = str(rollout.error)
    elif rollout.error is not None:
        raise rollout.error
    traj = rollout.trajectory()
    report.update(temperature_summary(traj, knobs))
    total = traj.energies.get("total_energy")
    if total is not None and total.size > 2 and np.all(np.isfinite(total)):
        slope = np.polyfit(traj.times_ps, total, 1)[0]
        report["energy_drift_meV_per_atom_per_ps"] = float(slope / traj.n_atoms * 1e3)
    if reference is not None and traj.n_frames > 5 and all(traj.pbc):
        from explorer.analysis.rdf import min_overlap_score, rdf

        ours = rdf(traj, discard_fraction=0.2)
        ref = rdf(reference, discard_fraction=0.0)
        report["rdf_overlap"] = float(min_overlap_score(ours, ref))
    elif reference is not None and traj.n_frames > 1:
        t = min(float(traj.times_ps[-1]), float(reference.times_ps[-1]))
        report["layer_msd_time_ps"] = t
        report["layer_msd_A2"] = layer_msd(traj, t, n_layers=8)
        report["reference_layer_msd_A2"] = layer_msd(reference, t, n_layers=8)
    return report


def seed_summary(reports: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stability and temperature errors (K) of one setting's rollouts over seeds.

    ``reports`` are :func:`rollout_report` results (or the reference run's summary), seed
    0 first. Returns the number of seeds and of completed runs, the strides each run
    reached, the seeds' temperature errors (overall and after the warm-up, where
    reported; NaN where a run has none) and their means over the completed runs.
    """
    done = [r for r in reports if r.get("status") == "done"]
    summary: dict[str, Any] = {
        "seeds": len(reports),
        "completed": len(done),
        "strides_per_seed": [int(r.get("strides", 0)) for r in reports],
    }
    for key in ("temperature_error_K", "temperature_error_steady_K"):
        if any(key in r for r in reports):
            summary[f"{key}_per_seed"] = [float(r.get(key, math.nan)) for r in reports]
            values = [r[key] for r in done if key in r]
            if values:
                summary[f"{key}_mean_completed"] = float(np.mean(values))
    return summary


def evaluate_checkpoint(
    checkpoint: str | Path,
    test_files: Sequence[str | Path],
    *,
    rollout_steps: int = 100,
    rollout_seeds: int = 1,
    energy_structures: int = 16,
    device: str = "cpu",
) -> dict[str, Any]:
    """The full report (module docstring) as a JSON-ready dict; ``rollout_seeds``
    repeats every stochastic rollout with seeds 0 … n − 1."""
    if rollout_seeds < 1:
        raise ExplorerError(f"rollout_seeds must be >= 1, got {rollout_seeds}")
    simulator = FlashMDSimulator.from_checkpoint(checkpoint, device=device)
    if simulator.energy_model_name is None:
        raise ExplorerError(f"{simulator.name}: the card names no energy model")
    energy = EnergyModel(simulator.energy_model_name)
    stride = simulator.stride_fs
    pairs = load_pairs(test_files, stride, time_reversal=False)
    report: dict[str, Any] = {
        "checkpoint": simulator.name,
        "stride_fs": stride,
        "test_files": [Path(f).name for f in test_files],
        "test_pairs": len(pairs),
        "test": evaluate_pairs(simulator.model, pairs, energy, energy_structures),
        "verlet_same_stride": verlet_baseline(pairs[:energy_structures], energy, stride),
    }
    reference = read_h5md(test_files[0])
    start = reference.to_atoms(0)
    assert reference.momenta is not None
    start.set_momenta(reference.momenta[0] / (FS_PER_PS * units.fs))
    temperature = float(reference.metadata.get("temperature_K") or start.get_temperature())
    rollouts: dict[str, Any] = {}
    if rollout_steps > 0:
        nvt_knobs = {
            "thermostat": "langevin",
            "temperature_K": temperature,
            "time_constant_fs": EVAL_TIME_CONSTANT_FS,
        }
        exact_runs = [
            reference_langevin_run(
                start,
                energy.calculator,
                temperature,
                nvt_knobs["time_constant_fs"],
                rollout_steps,
                stride,
                float(reference.metadata.get("timestep_fs") or 1.0),
                seed=seed,
            )
            for seed in range(rollout_seeds)
        ]
        exact = exact_runs[0]
        exact_reports = [
            {"status": "done", "strides": rollout_steps, **temperature_summary(run, nvt_knobs)}
            for run in exact_runs
        ]
        rollouts["reference_langevin"] = _with_seeds(exact_reports)
        # A slab's per-layer MSD compares with the thermostatted reference; a periodic
        # cell's RDF with the (equilibrated, NVE) test run.
        layer_reference = reference if all(reference.pbc) else exact
        for label, knobs in (
            ("nve_filter", {"thermostat": "none", "energy_conservation": True}),
            ("nve_no_filter", {"thermostat": "none", "energy_conservation": False}),
            ("langevin_filter", {"thermostat": "langevin", "energy_conservation": True}),
            ("langevin_no_filter", {"thermostat": "langevin", "energy_conservation": False}),
            ("bussi_filter", {"thermostat": "bussi", "energy_conservation": True}),
            ("bussi_no_filter", {"thermostat": "bussi", "energy_conservation": False}),
        ):
            knobs = {
                **knobs,
                "temperature_K": temperature,
                "time_constant_fs": EVAL_TIME_CONSTANT_FS,
            }
            ref = layer_reference if label == "langevin_filter" else None
            stochastic = knobs["thermostat"] != "none" or knobs.get("random_rotation", False)
            # Only seed 0 is compared with the layer-MSD / RDF reference.
            reports = [
                rollout_report(
                    simulator, start, rollout_steps, {**knobs, "seed": seed}, None if seed else ref
                )
                for seed in range(rollout_seeds if stochastic else 1)
            ]
            rollouts[label] = _with_seeds(reports)
        if "layer_msd_A2" in rollouts["langevin_filter"]:
            rollouts["langevin_filter"]["layer_msd_reference"] = "reference_langevin"
    report["rollouts"] = rollouts
    return report


def _with_seeds(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """Seed 0's report, with :func:`seed_summary` as ``over_seeds`` when there are more."""
    if len(reports) == 1:
        return reports[0]
    return {**reports[0], "over_seeds": seed_summary(reports)}


def record_in_card(checkpoint: str | Path, report: dict[str, Any]) -> Path:
    """Store ``report`` under ``evaluation`` in the checkpoint's model card (weights and
    their sha256 are untouched); returns the card path."""
    import json

    from explorer.checkpoints import read_card, resolve

    path = resolve(checkpoint)
    card = read_card(path)
    card["evaluation"] = report
    path.write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
    return path
