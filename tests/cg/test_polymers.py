"""Reference MD of bead-spring chains: eq. 3 in OpenMM, the chemistry space, H5MD files."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pytest

from explorer.cg.polymers import (
    CONSTITUTIONAL_UNITS,
    ForceField,
    PolymerRun,
    build_polymer,
    build_system,
    dataset_plan,
    initial_positions,
    load_polymer,
    numpy_energy,
    regular_copolymer,
    run_polymer,
    spread_training_plan,
)
from explorer.errors import ExplorerError
from explorer.h5md import read_h5md


def _openmm_energy(polymer, x: np.ndarray) -> float:
    import openmm

    context = openmm.Context(
        build_system(polymer),
        openmm.VerletIntegrator(0.001),
        openmm.Platform.getPlatformByName("CPU"),
        {"Threads": "1"},
    )
    context.setPositions(x)
    energy = context.getState(getEnergy=True).getPotentialEnergy()
    return energy.value_in_unit(openmm.unit.kilojoule_per_mole)


@pytest.mark.parametrize("seed", [0, 1])
def test_openmm_energy_matches_numpy_eq3(seed: int) -> None:
    # Side chains, branch points, all four bead types: every term of eq. 3 is present.
    polymer = build_polymer("tiny", [4, 7, 9, 2, 6])
    assert polymer.angles().shape[0] > 0 and polymer.dihedrals().shape[0] > 0
    x = initial_positions(polymer, np.random.default_rng(seed))
    # Squeeze one bonded pair into the WCA range to test that branch too.
    i, j = polymer.bonds[0]
    x[j] = x[i] + 0.92 * (x[j] - x[i]) / np.linalg.norm(x[j] - x[i])
    assert _openmm_energy(polymer, x) == pytest.approx(numpy_energy(polymer, x), rel=1e-6)


def test_chemistry_space_classes() -> None:
    plan = dataset_plan(n_train=6, n_test=4)
    train = [p for p, _ in plan if p.polymer_class == "I"]
    test = [p for p, _ in plan if p.polymer_class == "II"]
    for p in train:  # class I repeats a pattern of four CUs exactly
        seq = p.cu_sequence
        assert len(set(seq[:4])) == 4 and all(seq[k] == seq[k % 4] for k in range(len(seq)))
    train_seqs = {p.cu_sequence for p in train}
    assert all(p.cu_sequence not in train_seqs for p in test)
    assert {t for p, _ in plan for t in p.types.tolist()} <= {0, 1, 2, 3}
    assert len(CONSTITUTIONAL_UNITS) == 10
    runs = {p.polymer_class: r for p, r in plan}
    assert runs["II"].length_tau >= 20 * runs["I"].length_tau


def test_class_i_patterns_with_repeated_units_spread_the_composition() -> None:
    rng = np.random.default_rng(2025)
    chains = [regular_copolymer(f"w{k}", rng, distinct=False) for k in range(40)]
    for p in chains:  # still an exact repeat of a four-CU pattern over at most four CUs
        seq = p.cu_sequence
        assert all(seq[k] == seq[k % 4] for k in range(len(seq))) and len(set(seq)) <= 4
    assert any(len(set(p.cu_sequence)) < 4 for p in chains)
    shares = np.array([np.bincount(p.types, minlength=4) / p.n_beads for p in chains])
    rng = np.random.default_rng(2025)
    plain = [regular_copolymer(f"r{k}", rng) for k in range(40)]
    plain_shares = np.array([np.bincount(p.types, minlength=4) / p.n_beads for p in plain])
    assert shares.max() > plain_shares.max() and shares.std(0).mean() > plain_shares.std(0).mean()
    plan = spread_training_plan(3)
    assert [p.name for p, _ in plan] == ["wide_I_000", "wide_I_001", "wide_I_002"]
    assert [p.cu_sequence for p, _ in plan] == [p.cu_sequence for p in chains[:3]]
    assert [r.seed for _, r in plan] == [5000, 5001, 5002]
    assert {(r.length_tau, r.record_every_tau) for _, r in plan} == {(1000.0, 2.0)}


def test_reference_file_holds_graph_types_and_units(polymer_dir: Path) -> None:
    path = polymer_dir / "train_I_000.h5"
    traj = read_h5md(path)
    data = load_polymer(path)
    assert traj.positions.dtype == np.float32
    np.testing.assert_array_equal(traj.numbers, data.polymer.types)
    assert (
        data.metadata["units"]["length"] == "sigma" and data.metadata["run"]["timestep_tau"] == 0.01
    )
    with h5py.File(path, "r", locking=False) as f:
        bonds = f["connectivity/all_bonds"][()]
    assert bonds.shape == (data.polymer.n_beads - 1, 2)  # a tree: N - 1 bonds
    lengths = np.linalg.norm(
        data.positions[:, bonds[:, 0]] - data.positions[:, bonds[:, 1]], axis=-1
    )
    assert lengths.max() < ForceField().fene_r0 and lengths.min() > 0.7
    np.testing.assert_allclose(np.diff(data.times_tau), 0.5)


def test_interrupted_run_resumes_exactly(tmp_path: Path) -> None:
    polymer = build_polymer("resume", [0, 4, 1, 8])
    run = PolymerRun(length_tau=6.0, record_every_tau=0.5, equilibrate_tau=1.0, restart_every=4)
    straight = run_polymer(polymer, tmp_path / "a.h5", run)

    class Crash(Exception):
        pass

    count = {"n": 0}

    def crash_after_seven(n: int) -> None:
        count["n"] += n
        if count["n"] == 7:
            raise Crash

    with pytest.raises(Crash):
        run_polymer(polymer, tmp_path / "b.h5", run, progress=crash_after_seven)
    assert read_h5md(tmp_path / "b.h5").n_frames == 7
    resumed = run_polymer(polymer, tmp_path / "b.h5", run)
    a, b = read_h5md(straight), read_h5md(resumed)
    assert b.n_frames == run.n_frames
    np.testing.assert_allclose(a.positions, b.positions, atol=1e-5)


def test_a_start_that_blows_up_is_replaced_by_the_next_random_walk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import explorer.cg.polymers as polymers

    polymer = build_polymer("restart", [0, 4, 1, 8])
    run = PolymerRun(length_tau=2.0, record_every_tau=0.5, equilibrate_tau=1.0, restart_every=4)
    real_check, calls = polymers._check_frame, {"n": 0}

    def first_start_explodes(poly, x, ff, frame) -> None:
        calls["n"] += 1
        real_check(poly, x * (100.0 if calls["n"] == 1 else 1.0), ff, frame)

    monkeypatch.setattr(polymers, "_check_frame", first_start_explodes)
    data = read_h5md(run_polymer(polymer, tmp_path / "a.h5", run))
    assert data.n_frames == run.n_frames and calls["n"] == 2 + run.n_frames  # 2 starts
    monkeypatch.setattr(polymers, "_check_frame", lambda *a: real_check(a[0], a[1] * 100, *a[2:]))
    with pytest.raises(polymers.SimulationDiverged, match="blew up before frame 0"):
        run_polymer(polymer, tmp_path / "b.h5", run)


def test_growing_the_training_set_keeps_every_existing_chain() -> None:
    small, large = dataset_plan(n_train_extra=0), dataset_plan(n_train_extra=5)
    assert [(p.name, p.cu_sequence, r.seed) for p, r in small] == [
        (p.name, p.cu_sequence, r.seed) for p, r in large[: len(small)]
    ]
    assert [p.name for p, _ in large[len(small) :]] == [f"train_I_{k:03d}" for k in range(12, 17)]
    assert len({r.seed for _, r in large}) == len(large)


def _angles_deg(x: np.ndarray, triples: np.ndarray) -> np.ndarray:
    a = x[triples[:, 0]] - x[triples[:, 1]]
    b = x[triples[:, 2]] - x[triples[:, 1]]
    cos = (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def test_extended_start_is_the_stretched_bonded_minimum() -> None:
    from explorer.analysis.polymer import radius_of_gyration_sq
    from explorer.cg.polymers import extended_positions

    polymer = dataset_plan(n_train=1, n_test=0)[0][0]
    x = extended_positions(polymer, np.random.default_rng(0))
    lengths = np.linalg.norm(x[polymer.bonds[:, 0]] - x[polymer.bonds[:, 1]], axis=-1)
    np.testing.assert_allclose(lengths, 0.97, atol=0.1)
    backbone = np.cumsum([0] + [1 + len(CONSTITUTIONAL_UNITS[c][1]) for c in polymer.cu_sequence])
    triples = np.stack([backbone[:-3], backbone[1:-2], backbone[2:-1]], axis=1)
    angles = _angles_deg(x, triples)  # θ0 up to the 0.02 σ jitter
    assert abs(np.median(angles) - 120.0) < 1.5 and np.abs(angles - 120.0).max() < 10.0
    # Side chains leave the backbone at right angles, so no bead overlaps another.
    d = np.linalg.norm(x[:, None] - x[None], axis=-1) + 10 * np.eye(len(x))
    assert d.min() > 0.8
    walk = initial_positions(polymer, np.random.default_rng(0))
    rg2_ext, rg2_walk = radius_of_gyration_sq(np.stack([x, walk]), polymer.masses)
    assert rg2_ext > 60.0 and rg2_ext > 5 * rg2_walk
    np.testing.assert_array_equal(x, extended_positions(polymer, np.random.default_rng(0)))
    with pytest.raises(ExplorerError, match="CU sequence"):
        extended_positions(replace(polymer, cu_sequence=()), np.random.default_rng(0))


def test_run_start_is_validated_and_recorded_only_when_not_the_default() -> None:
    from explorer.cg.polymers import metadata_of

    with pytest.raises(ValueError, match="start must be one of"):
        PolymerRun(start="helix")
    polymer = build_polymer("meta", [0, 4, 1, 8])
    assert "start" not in metadata_of(polymer, PolymerRun(), ForceField())["run"]
    extended = metadata_of(polymer, PolymerRun(start="extended"), ForceField())
    assert extended["run"]["start"] == "extended"


def test_relaxation_runs_fold_back_from_the_extended_start(tmp_path: Path) -> None:
    from explorer.analysis.polymer import radius_of_gyration_sq
    from explorer.cg.polymers import relaxation_plan

    training = [p for p, _ in dataset_plan(n_train=4, n_test=0)]
    plan = relaxation_plan([training[0], training[3]], n_per_chain=2)
    names = [f"relax_train_I_00{c}_0{k}" for c in (0, 3) for k in (0, 1)]
    assert [p.name for p, _ in plan] == names
    assert plan[2][0].cu_sequence == training[3].cu_sequence
    default = relaxation_plan()
    assert len(default) == 50 and default[-1][0].name == "relax_train_I_009_04"
    assert {r.start for _, r in plan} == {"extended"}
    assert {r.equilibrate_tau for _, r in plan} == {0.0}
    assert len({r.seed for _, r in plan}) == 4
    polymer, run = plan[0]
    short = replace(run, length_tau=20.0)
    data = load_polymer(run_polymer(polymer, tmp_path / "relax.h5", short))
    rg2 = radius_of_gyration_sq(data.positions, polymer.masses)
    assert rg2[0] > 50.0  # recorded from the stretched start, not after equilibration
    assert rg2[-1] < 0.8 * rg2[0]  # and folding back
