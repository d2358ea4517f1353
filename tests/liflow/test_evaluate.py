"""LiFlow evaluation metrics (seed 001 §IV.6) on Brownian systems with known answers."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
from ase.units import kB

from explorer.liflow.evaluate import (
    aggregate,
    corrector_rdf_bias,
    default_knobs_for,
    evaluate,
    rdf_sampling_floor,
    rdf_scores,
    spearman,
    trajectory_metrics,
)
from explorer.testing import BrownianSimulator, brownian_trajectory
from explorer.trajectory import Trajectory

STEP_PS = 1.0


def reference(D: float, temperature_K: float = 800.0, material: str = "toy", seed: int = 0):
    """25 ps Brownian Li reference (0.5 ps frames) with an immobile S frame."""
    traj = brownian_trajectory(
        D, n_atoms=64, n_frames=51, dt_ps=0.5, cell=10.0, frame_atoms=8, seed=seed
    )
    traj.metadata.update(material=material, temperature_K=temperature_K)
    return traj


def brownian_knobs(ref: Trajectory, factor: float = 1.0) -> dict:
    return {"D_A2_ps": {"Li": factor * ref.metadata["D_A2_ps"]}, "step_ps": STEP_PS}


def test_identical_trajectories_score_perfectly():
    ref = reference(0.1)
    jitter = np.random.default_rng(1).normal(scale=0.05, size=ref.positions.shape)
    jitter[:, ref.numbers == 3] = 0.0  # frame atoms rattle, so their MSD has a log
    ref = dataclasses.replace(ref, positions=ref.positions + jitter)
    m = trajectory_metrics(ref, ref)
    assert m["time_ps"] == pytest.approx(25.0)
    assert math.isfinite(m["log10_msd_frame"])
    assert m["log10_msd_li"] == m["log10_msd_li_ref"]
    assert m["log10_msd_frame"] == m["log10_msd_frame_ref"]
    assert m["rdf_mae"] == 0.0 and m["rdf_iae_A"] == 0.0
    assert m["overlap"] == pytest.approx(1.0) and m["overlap_sampled"] == pytest.approx(1.0)
    assert m["D_li"] == m["D_li_ref"] and m["D_li_std"] > 0
    summary = aggregate([{**m, "material": "toy", "temperature_K": 800.0, "stable": True}])
    assert summary["mae_log10_msd_li"] == 0.0
    assert summary["mae_log10_msd_frame"] == 0.0
    assert summary["rdf_mae"] == 0.0 and summary["stable_fraction"] == 1.0


def test_end_msd_compares_at_the_shorter_span():
    ref = reference(0.1)
    m = trajectory_metrics(ref[:21], ref)  # 10 ps generated vs 25 ps reference
    assert m["time_ps"] == pytest.approx(10.0)
    assert m["log10_msd_li"] == m["log10_msd_li_ref"]
    assert math.isnan(m["log10_msd_frame"])  # immobile frame: MSD 0 has no log


@pytest.mark.parametrize(("factor", "expected_mae"), [(1.0, 0.0), (10.0, 1.0)])
def test_brownian_simulator_reproduces_the_reference_msd(factor, expected_mae):
    ref = reference(0.1)
    report = evaluate(
        BrownianSimulator(),
        [ref],
        n_seeds=2,
        step_ps=STEP_PS,
        knobs_for=lambda r: brownian_knobs(r, factor),
    )
    summary = report.summary
    assert len(report.records) == 2
    assert all(r["n_frames"] == 26 and r["stable"] for r in report.records)
    assert summary["stable_fraction"] == 1.0
    if factor == 1.0:
        assert summary["mae_log10_msd_li"] < 0.15
    else:
        assert summary["mae_log10_msd_li"] == pytest.approx(expected_mae, abs=0.2)
    assert math.isnan(summary["mae_log10_msd_frame"])  # the frame never moves
    assert math.isnan(summary["spearman_li"])  # two records: ρ undefined
    parsed = json.loads(report.to_json())
    assert parsed["summary"]["stable_fraction"] == 1.0
    assert parsed["summary"]["spearman_li"] is None


def _rdf_by_ase(traj: Trajectory) -> np.ndarray:
    """Total g(r) on 0.1-Å bins over [0, 5 Å] after the first 20 % of frames, from ASE's
    neighbour list: N² normalisation and exact shell volumes, as the module documents."""
    from ase import Atoms
    from ase.neighborlist import neighbor_list

    edges = np.linspace(0.0, 5.0, 51)
    counts = np.zeros(50)
    kept = traj.positions[int(np.floor(0.2 * traj.n_frames)) :]
    for x in kept:
        atoms = Atoms(numbers=traj.numbers, positions=x, cell=traj.cell, pbc=True)
        counts += np.histogram(neighbor_list("d", atoms, 5.0), bins=edges)[0]
    shells = 4.0 / 3.0 * np.pi * np.diff(edges**3)
    n = len(traj.numbers)
    return counts * abs(np.linalg.det(traj.cell)) / (n * n * len(kept) * shells)


def test_rdf_mae_is_the_papers_mean_over_bins_up_to_5_angstrom():
    """Seed 001 eq. 18 as the LiFlow authors evaluate it: mean |Δg| on 0.1-Å bins to 5 Å,
    dimensionless, whatever the overlap grid (here r_max 5 Å too, on 0.05-Å bins)."""
    slow, fast = reference(0.02, seed=3), reference(0.5, seed=4)
    expected = np.mean(np.abs(_rdf_by_ase(fast) - _rdf_by_ase(slow)))
    scores = rdf_scores(fast, slow)
    assert expected > 0.01
    assert scores["rdf_mae"] == pytest.approx(expected, rel=1e-9)
    # The integral on the overlap grid is in Å and ~5× larger on this 5-Å range.
    assert scores["rdf_iae_A"] == pytest.approx(5.0 * expected, rel=0.3)


def test_rdf_floor_is_the_reference_against_its_own_frames_at_rollout_spacing():
    ref = reference(0.1)  # 0.5-ps frames
    # a crystal that never moves has the same RDF in every frame: no sampling error
    still = dataclasses.replace(ref, positions=np.repeat(ref.positions[:1], ref.n_frames, 0))
    assert rdf_sampling_floor(still, 1.0)["rdf_mae_floor"] == pytest.approx(0.0, abs=1e-12)
    # otherwise it is the RDF error of every 2nd frame against all of them, and it shrinks
    # as more frames are kept
    floors = rdf_sampling_floor(ref, 1.0)
    floor = floors["rdf_mae_floor"]
    scores = rdf_scores(ref[::2], ref)
    assert floor == scores["rdf_mae"] and floor > 0.0
    assert floors["rdf_iae_floor_A"] == scores["rdf_iae_A"]
    assert rdf_sampling_floor(ref, 5.0)["rdf_mae_floor"] > floor
    every = rdf_sampling_floor(ref, 0.5)  # every frame kept
    assert every == pytest.approx({"rdf_mae_floor": 0.0, "rdf_iae_floor_A": 0.0}, abs=1e-12)
    assert all(math.isnan(v) for v in rdf_sampling_floor(ref, 100.0).values())  # one frame
    report = evaluate(
        BrownianSimulator(), [ref], n_seeds=1, step_ps=STEP_PS, knobs_for=brownian_knobs
    )
    assert report.records[0]["rdf_mae_floor"] == floor
    assert report.summary["rdf_mae_floor"] == floor
    assert report.summary["rdf_iae_floor_A"] == floors["rdf_iae_floor_A"]


def test_failed_rollout_counts_as_unstable():
    ref = reference(0.1)
    report = evaluate(BrownianSimulator(fail_at_step=3), [ref], n_seeds=2, knobs_for=brownian_knobs)
    assert report.summary["stable_fraction"] < 1.0
    record = report.records[0]
    assert record["stable"] is False and record["status"] == "failed"
    assert "divergence" in record["error"]
    assert record["n_frames"] == 3 and record["time_ps"] == pytest.approx(2.0)
    assert math.isfinite(record["log10_msd_li"]) and math.isnan(record["D_li"])


def test_failure_at_the_first_step_skips_the_metrics():
    knobs = {"D_A2_ps": {"Li": 0.1}, "step_ps": STEP_PS}
    report = evaluate(BrownianSimulator(fail_at_step=1), [reference(0.1)], knobs, n_seeds=1)
    assert report.records[0]["n_frames"] == 1 and "log10_msd_li" not in report.records[0]
    assert report.summary["stable_fraction"] == 0.0
    assert math.isnan(report.summary["mae_log10_msd_li"])


def test_arrhenius_of_generated_lies_in_reference_ci():
    Ea, D0 = 0.3, 10.0
    refs = [
        reference(D0 * math.exp(-Ea / (kB * T)), T, material="LGPS", seed=i)
        for i, T in enumerate((600.0, 800.0, 1000.0))
    ]
    # The toy draws the same unit noise for a seed at every T (only σ ∝ √D changes),
    # so the generated D(T) follow the law exactly; the reference CI carries the noise.
    report = evaluate(BrownianSimulator(), refs, n_seeds=3, knobs_for=brownian_knobs)
    fits = report.summary["arrhenius"]["LGPS"]
    low, high = fits["reference"]["Ea_ci95_eV"]
    assert low < Ea < high
    assert fits["generated"]["n_points"] == 9 and fits["reference"]["n_points"] == 3
    assert fits["generated"]["Ea_eV"] == pytest.approx(Ea, abs=0.05)
    assert fits["Ea_in_ref_ci"] is True
    assert 0.0 < report.summary["spearman_li"] <= 1.0


def test_spearman_needs_three_records_and_ranks():
    rows = [
        {"material": "m", "temperature_K": 600.0 + i, "log10_msd_li": x, "log10_msd_li_ref": y}
        for i, (x, y) in enumerate([(0.1, 1.0), (0.5, 2.0), (0.7, 2.5), (2.0, 3.0)])
    ]
    assert math.isnan(aggregate(rows[:2])["spearman_li"])
    assert aggregate(rows)["spearman_li"] == pytest.approx(1.0)
    assert aggregate(rows[::-1])["spearman_li"] == pytest.approx(1.0)
    assert math.isnan(spearman(np.ones(4), np.arange(4.0)))  # constant: undefined
    assert aggregate(rows)["arrhenius"]["m"]["generated"] is None  # no D given


def test_default_knobs_pass_temperature_only_when_accepted():
    class WithTemperature(BrownianSimulator):
        def prepare(self, atoms, temperature_K: float, **knobs):
            return super().prepare(atoms, **knobs)

    ref = reference(0.1, temperature_K=700.0)
    assert default_knobs_for(BrownianSimulator())(ref) == {}
    assert default_knobs_for(WithTemperature())(ref) == {"temperature_K": 700.0}


class JitterCorrector:
    """Stands in for ``LiFlowSimulator.correct``: Gaussian jitter of ``sigma`` Å; records
    the temperatures, seeds and the frames it was given."""

    def __init__(self, sigma: float) -> None:
        self.sigma = sigma
        self.calls: list[tuple[float, int, np.ndarray]] = []

    def correct(self, atoms, temperature_K, seed=0):
        self.calls.append((temperature_K, seed, atoms.positions.copy()))
        out = atoms.copy()
        out.positions += np.random.default_rng(seed).normal(scale=self.sigma, size=(len(out), 3))
        return out


def crystal_reference(n_frames: int = 21) -> Trajectory:
    """fcc Cu 3×3×3 (108 atoms) rattling by 0.05 Å, 1-ps frames, at 700 K."""
    from ase.build import bulk

    base = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(3)
    rng = np.random.default_rng(0)
    frames = []
    for _ in range(n_frames):
        atoms = base.copy()
        atoms.positions += rng.normal(scale=0.05, size=atoms.positions.shape)
        frames.append(atoms)
    return Trajectory.from_atoms_list(frames, timestep_ps=1.0, metadata={"temperature_K": 700.0})


def test_corrector_rdf_bias_is_zero_for_a_no_op_and_grows_with_the_distortion():
    ref = crystal_reference()
    no_op = JitterCorrector(0.0)
    assert corrector_rdf_bias(no_op, ref) == 0.0
    assert len(no_op.calls) == 17  # the default 200 frames, capped at frames 4 … 20
    small, large = JitterCorrector(0.05), JitterCorrector(0.3)
    biases = [corrector_rdf_bias(c, ref, n_frames=5) for c in (small, large)]
    assert 0.0 < biases[0] < biases[1]
    # Five frames spread over the part after the 20 % induction period (frames 4 … 20),
    # each at the reference temperature and with its own seed.
    temps, seeds, given = zip(*small.calls, strict=True)
    assert temps == (700.0,) * 5 and seeds == (0, 1, 2, 3, 4)
    np.testing.assert_allclose(given[0], ref.positions[4], atol=1e-5)
    np.testing.assert_allclose(given[-1], ref.positions[20], atol=1e-5)
    with pytest.raises(ValueError, match="n_frames"):
        corrector_rdf_bias(small, ref, n_frames=0)
