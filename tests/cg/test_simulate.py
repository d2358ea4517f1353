"""CG rollouts: finite, seeded frames; refinement knob; divergence keeps frames; bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from explorer.cg.coarsen import CoarseningError
from explorer.cg.polymers import load_polymer
from explorer.cg.simulate import CGSimulator, UnknownBeadTypeError
from explorer.errors import SimulationDiverged
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
