"""CG rollouts: finite, seeded frames; refinement knob; divergence keeps frames; bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from explorer.cg.coarsen import CoarseningError
from explorer.cg.polymers import load_polymer
from explorer.cg.simulate import CGSimulator, UnknownBeadTypeError
from explorer.errors import MDConfigError, SimulationDiverged
from explorer.session import FAILED, Rollout


@pytest.fixture
def simulator(tiny_checkpoint: Path, polymer_dir: Path) -> CGSimulator:
    return CGSimulator.from_checkpoint(tiny_checkpoint, polymer_dir=polymer_dir)


def test_rollout_gives_finite_seeded_frames(simulator: CGSimulator) -> None:
    atoms = simulator.polymer_atoms("test_II_000")
    knobs = {"seed": 3}
    a = Rollout(simulator, atoms, 12, knobs).run()
    b = Rollout(simulator, atoms, 12, knobs).run()
    c = Rollout(simulator, atoms, 12, {"seed": 4}).run()
    assert a.n_frames == 13 and np.all(np.isfinite(a.positions))
    np.testing.assert_allclose(a.times_ps, simulator.dt_tau * np.arange(13))
    np.testing.assert_array_equal(a.positions, b.positions)
    assert not np.allclose(a.positions[-1], c.positions[-1])
    assert np.all(a.energies["rg2_cg"] > 0) and np.all(np.isfinite(a.energies["rg2_fine"]))


def test_refinement_knob_changes_the_trajectory(simulator: CGSimulator) -> None:
    atoms = simulator.polymer_atoms("test_II_000")
    off = Rollout(simulator, atoms, 3, {"seed": 0, "refinement": 0}).run()
    on = Rollout(simulator, atoms, 3, {"seed": 0, "refinement": 2, "langevin_steps": 2}).run()
    assert np.all(np.isfinite(on.positions))
    assert not np.allclose(off.positions[-1], on.positions[-1])


def test_blow_up_raises_simulation_diverged_and_keeps_frames(simulator: CGSimulator) -> None:
    dynamics = simulator.modules.dynamics
    calls = {"n": 0}
    original = dynamics.forward

    def exploding(*args, **kwargs):
        calls["n"] += 1
        out = original(*args, **kwargs)
        # prepare() calls the network once, each step once more: blow up at step 4.
        return out._replace(mean=out.mean * (1e6 if calls["n"] > 4 else 1.0))

    dynamics.forward = exploding
    try:
        rollout = Rollout(simulator, simulator.polymer_atoms("test_II_000"), 10, {"seed": 0})
        rollout.start()
        rollout.join()
    finally:
        dynamics.forward = original
    assert rollout.status == FAILED
    assert isinstance(rollout.error, SimulationDiverged)
    assert "step 4" in str(rollout.error)
    assert rollout.n_frames == 4  # the initial frame and three good steps are kept
    assert np.all(np.isfinite(rollout.trajectory().positions))


def test_unknown_bead_type_and_bad_bead_size(simulator: CGSimulator, polymer_dir: Path) -> None:
    data = load_polymer(polymer_dir / "test_II_000.h5")
    poly = data.polymer
    alien = type(data)(
        type(poly)(poly.name, poly.types + 7, poly.bonds, poly.masses),
        data.positions,
        data.times_tau,
    )
    with pytest.raises(UnknownBeadTypeError, match="unknown to checkpoint"):
        simulator.load(alien)
    simulator.bead_size = 10_000
    with pytest.raises(CoarseningError, match="bead size") as raised:
        simulator.load(data)
    assert str(raised.value).startswith(f"{poly.name}: ")  # which of many files


def test_step_is_exactly_semi_implicit_euler_of_the_sampled_acceleration(
    simulator: CGSimulator,
) -> None:
    state = simulator.prepare(simulator.polymer_atoms("test_II_000"), seed=5)
    x0, v0 = state.x.clone(), state.v[0].clone()
    state = simulator.step(state)
    # x1 = x0 + (v0 + a Δt) Δt  ⇒  the new history velocity is (x1 - x0)/Δt = v0 + a Δt.
    torch.testing.assert_close(state.v[0], (state.x - x0) / simulator.dt_tau)
    assert not torch.allclose(state.v[0], v0)


def test_contour_limits_are_reached_by_a_straight_chain_and_never_exceeded() -> None:
    from explorer.cg.data import contour_limits

    # 8 equal beads in a line, bonds exactly R0 long, two groups of 4: the centres of mass
    # are 4 R0 apart, which is the bound (a straight chain at full extension reaches it)
    r0 = 1.5
    bonds = np.array([[k, k + 1] for k in range(7)])
    groups = np.repeat([0, 1], 4)
    limits = contour_limits(8, bonds, groups, np.ones(8), r0)
    assert limits[0, 1] == pytest.approx(4 * r0) and limits[1, 0] == limits[0, 1]
    assert np.isinf(np.diag(limits)).all()
    # a branched graph, unequal masses, random configurations with bonds ≤ R0: never above
    rng = np.random.default_rng(1)
    bonds = np.array([[0, 1], [1, 2], [2, 3], [1, 4], [4, 5], [3, 6], [6, 7], [7, 8]])
    groups = np.array([0, 0, 1, 1, 0, 2, 1, 2, 2])
    masses = rng.uniform(0.5, 2.0, 9)
    limits = contour_limits(9, bonds, groups, masses, r0)
    for _ in range(200):
        x = np.zeros((9, 3))
        for a, b in bonds:  # parents come first in this list
            step = rng.normal(size=3)
            x[b] = x[a] + step / np.linalg.norm(step) * r0 * rng.uniform(0.2, 1.0)
        com = np.stack([np.average(x[groups == g], 0, masses[groups == g]) for g in range(3)])
        d = np.linalg.norm(com[:, None] - com[None], axis=-1)
        assert np.all(d <= limits + 1e-12)


def test_over_stretched_chain_is_rejected(simulator: CGSimulator, polymer_dir: Path) -> None:
    atoms = simulator.polymer_atoms("test_II_000")
    state = simulator.prepare(atoms, seed=0)
    limits = state.polymer.distance_limits
    assert limits is not None  # the file states its FENE R0
    # every reference frame respects the limits
    positions = torch.as_tensor(state.polymer.positions, dtype=torch.float32)
    d = torch.cdist(positions, positions)
    assert bool((d <= limits[None] * (1 + 1e-5)).all())

    def build(**kwargs: float) -> CGSimulator:
        return CGSimulator(simulator.modules, simulator.bead_size, simulator.dt_tau,
                           polymer_dir=polymer_dir, max_step=float("inf"), **kwargs)  # fmt: skip

    checked, unchecked = build(max_extension=1.0), build()
    assert unchecked.max_extension == float("inf")  # reported, not enforced, by default
    assert checked._problem(state, state.x) == ""
    assert checked.frame(state).observables["extension"] <= 1.0
    stretched = state.x * 20.0  # every distance 20x: beyond full extension
    assert "stretched beyond full extension" in checked._problem(state, stretched)
    assert unchecked._problem(state, stretched) == ""
    state.x = stretched
    assert unchecked.frame(state).observables["extension"] > 1.0
    state.x = stretched / 20.0
    with pytest.raises(MDConfigError):
        build(max_extension=0.0)

    # in a step: a model whose means tear the chain apart is stopped with that reason
    dynamics = checked.modules.dynamics
    original = dynamics.forward
    dynamics.forward = lambda *a, **k: original(*a, **k)._replace(mean=original(*a, **k).mean * 50)
    try:
        with pytest.raises(SimulationDiverged, match="full extension"):
            checked.step(state)
    finally:
        dynamics.forward = original
