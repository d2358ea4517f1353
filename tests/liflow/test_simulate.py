"""LiFlow rollout engine: Euler flow integration, knobs, CoM, divergence, checkpoints."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable

import numpy as np
import pytest
import torch
from ase import Atoms

from explorer.checkpoints import CheckpointError, save_checkpoint
from explorer.errors import MDConfigError, SimulationDiverged, UnknownElementError
from explorer.liflow import FlowModel, FlowModelConfig
from explorer.liflow.prior import PriorConfig, masses_of, prior_std, sample_prior
from explorer.liflow.simulate import LiFlowSimulator, integrate_flow
from explorer.session import FAILED, Rollout

DTYPE = torch.float64
TINY = FlowModelConfig(elements=(3, 8, 16), num_features=8, num_rbf=4, num_layers=1)
PRIOR = PriorConfig(kind="maxwell_boltzmann", scale=1.0)  # σ_Li ≈ 0.1 Å at 800 K


def tiny_model(seed: int = 0) -> FlowModel:
    torch.manual_seed(seed)
    return FlowModel(TINY).to(DTYPE)


class Spy(FlowModel):
    """A FlowModel whose output is ``fn(positions, displacement)``; records flow times."""

    def __init__(self, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
        super().__init__(TINY)
        self.to(DTYPE)
        self.fn = fn
        self.times: list[float] = []
        self.time_types: list[type] = []

    def forward(self, numbers, positions, displacement, cell, temperature_K, flow_time, *a):
        self.times.append(float(flow_time))
        self.time_types.append(type(flow_time))
        return self.fn(positions, displacement)


def zero(x: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(d)


def structure(shift: bool = False, symbols: str = "Li4O2S2") -> Atoms:
    """8 atoms on a 2×2×2 grid of a 6 Å cube (≥ 3 Å apart)."""
    grid = np.array([[i, j, k] for i in range(2) for j in range(2) for k in range(2)], float)
    atoms = Atoms(symbols, positions=3.0 * grid + 0.7, cell=np.eye(3) * 6.0, pbc=True)
    if shift:  # unwrapped start outside the cell: wrapping would show
        atoms.positions += np.array([12.0, -6.0, 6.0])
    return atoms


def simulator(corrector: FlowModel | None = None, **kw) -> LiFlowSimulator:
    return LiFlowSimulator(tiny_model(0), corrector, PRIOR, **kw)


def test_zero_model_gives_prior_sample_and_euler_times() -> None:
    atoms = structure()
    numbers = torch.as_tensor(atoms.numbers)
    x = torch.as_tensor(atoms.positions)
    cell = torch.as_tensor(atoms.cell[:])
    std = prior_std(numbers, 800.0, PRIOR, dtype=DTYPE)
    model = tiny_model()
    torch.nn.init.zeros_(model.readout.mix.weight)
    d = integrate_flow(model, numbers, x, cell, 800.0, std, torch.Generator().manual_seed(3), 10)
    expected = sample_prior(std, torch.Generator().manual_seed(3))
    assert torch.equal(d, expected)
    spy = Spy(zero)
    integrate_flow(spy, numbers, x, cell, 800.0, std, torch.Generator().manual_seed(3), 4)
    assert spy.times == [0.0, 0.25, 0.5, 0.75]
    # Tensors, not floats: torch.compile would otherwise build one graph per flow time.
    assert spy.time_types == [torch.Tensor] * 4


def run_rollout(seed: int, sim: LiFlowSimulator | None = None, n_steps: int = 3) -> Rollout:
    sim = sim or simulator(tiny_model(1))
    knobs = {"temperature_K": 800.0, "seed": seed, "flow_steps": 3}
    rollout = Rollout(sim, structure(shift=True), n_steps=n_steps, knobs=knobs)
    rollout.start()
    assert rollout.join(timeout=60)
    return rollout


def test_rollout_frames_unwrapped_com_free_and_seeded() -> None:
    frames = run_rollout(seed=1).frames_since(0)  # float64 (a Trajectory stores float32)
    positions = np.stack([f.positions for f in frames])
    assert positions.shape == (4, 8, 3) and positions.dtype == np.float64
    np.testing.assert_allclose([f.time_ps for f in frames], [0.0, 1.0, 2.0, 3.0])
    start = structure(shift=True)
    np.testing.assert_array_equal(positions[0], start.positions)
    assert (positions[:, :, 0] > 6.0).all()  # never wrapped back into the cell
    steps = np.diff(positions, axis=0)
    assert np.abs(steps).max() > 1e-3  # atoms do move
    np.testing.assert_allclose(
        [f.observables["max_displacement_A"] for f in frames[1:]],
        np.linalg.norm(steps, axis=-1).max(-1),
    )
    masses = masses_of(torch.as_tensor(start.numbers)).numpy()
    drift = np.einsum("i,sij->sj", masses, steps) / masses.sum()
    np.testing.assert_allclose(drift, 0.0, atol=1e-12)
    again = np.stack([f.positions for f in run_rollout(seed=1).frames_since(0)])
    np.testing.assert_array_equal(again, positions)
    other = np.stack([f.positions for f in run_rollout(seed=2).frames_since(0)])
    assert not np.allclose(other, positions)


def test_corrector_strength_is_a_linear_monotone_blend() -> None:
    atoms = structure()
    spy = Spy(lambda x, d: torch.ones_like(d))  # corrector: c = prior sample + (1, 1, 1) Å
    sim = simulator(spy)
    deltas = {}
    for s in (0.0, 0.25, 0.5, 1.0):
        state = sim.prepare(atoms, temperature_K=800.0, corrector_strength=s, seed=5)
        deltas[s] = sim.propose(state)
        if s == 0.0:
            assert spy.times == []  # strength 0: the Corrector is not run
    plain = simulator(None)
    uncorrected = plain.propose(plain.prepare(atoms, temperature_K=800.0, seed=5))
    torch.testing.assert_close(deltas[0.0], uncorrected, rtol=0, atol=0)
    full = deltas[1.0] - deltas[0.0]
    assert full.abs().max() > 0.01
    for s in (0.25, 0.5):
        torch.testing.assert_close(deltas[s] - deltas[0.0], s * full, rtol=0, atol=1e-12)
    sizes = [float((deltas[s] - deltas[0.0]).norm()) for s in (0.0, 0.25, 0.5, 1.0)]
    assert sizes == sorted(sizes)


def test_corrector_start_at_the_prior_mean_drops_only_the_correctors_draw() -> None:
    """``corrector_start="mean"``: the Correctors start from zero displacement (the authors'
    test script), so a field moving atom 0 by 1 Å along x corrects by exactly that; the
    Propagator's draw is the same as with sampled starts (same random stream)."""
    atoms = structure()
    sim = simulator(Spy(_push(0, 0)))
    sampled = sim.propose(sim.prepare(atoms, 800.0, seed=5))
    mean = sim.propose(sim.prepare(atoms, 800.0, seed=5, corrector_start="mean"))
    plain = simulator(None)
    uncorrected = plain.propose(plain.prepare(atoms, 800.0, seed=5))
    masses = torch.as_tensor(atoms.get_masses())
    push = torch.zeros_like(mean)
    push[0, 0] = 1.0
    push -= masses @ push / masses.sum()  # the step's centre-of-mass drift is removed
    torch.testing.assert_close(mean, uncorrected + push, rtol=0, atol=1e-9)
    # sampled starts add the Corrector prior's draw on top: a different, noisier step
    assert float((sampled - uncorrected - push).abs().max()) > 1e-3
    with pytest.raises(MDConfigError, match="corrector_start"):
        sim.prepare(atoms, 800.0, corrector_start="median")


def test_corrector_every_k_runs_the_correctors_on_steps_k_2k_only() -> None:
    coarse, fine = Spy(zero), Spy(zero)
    sim = LiFlowSimulator(Spy(zero), coarse, PRIOR, fine_corrector=fine)
    state = sim.prepare(structure(), 800.0, flow_steps=2, corrector_every=3, seed=1)
    ran = []
    for _ in range(7):
        before = len(coarse.times)
        state = sim.step(state)
        ran.append(len(coarse.times) > before)
    assert ran == [False, False, True, False, False, True, False]
    # two corrections of ⌈2 / 2⌉ = 1 Euler step each; the fine one follows the Corrector
    assert len(coarse.times) == len(fine.times) == 2
    every = sim.prepare(structure(), 800.0, flow_steps=2, seed=1)
    assert every.corrector_every == 1 and sim._runs_corrector(every)
    for bad in (0, 1.5, True):
        with pytest.raises(MDConfigError, match="corrector_every"):
            sim.prepare(structure(), 800.0, corrector_every=bad)


def test_prior_scale_knobs_scale_sigma_by_sqrt() -> None:
    sim, atoms = simulator(), structure()
    base = sim.prepare(atoms, temperature_K=800.0)
    scaled = sim.prepare(atoms, temperature_K=800.0, prior_scale_li=4.0, prior_scale_frame=9.0)
    is_li = torch.as_tensor(atoms.numbers) == 3
    ratio = scaled.std_propagator / base.std_propagator
    torch.testing.assert_close(ratio[is_li], torch.full((4,), 2.0, dtype=DTYPE))
    torch.testing.assert_close(ratio[~is_li], torch.full((4,), 3.0, dtype=DTYPE))
    torch.testing.assert_close(scaled.std_corrector, base.std_corrector)  # Corrector untouched
    # with a zero model the step is the (CoM-free) prior sample: its spread follows σ
    zero_sim = LiFlowSimulator(Spy(zero), None, PRIOR)
    big = zero_sim.prepare(atoms, temperature_K=800.0, prior_scale_li=4.0, prior_scale_frame=4.0)
    small = zero_sim.prepare(atoms, temperature_K=800.0)
    torch.testing.assert_close(zero_sim.propose(big), 2.0 * zero_sim.propose(small))


def test_divergence_keeps_earlier_frames() -> None:
    calls = {"n": 0}

    def nan_after_first_step(x: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        return torch.zeros_like(d) if calls["n"] <= 3 else torch.full_like(d, torch.nan)

    rollout = run_rollout(seed=0, sim=LiFlowSimulator(Spy(nan_after_first_step), None, PRIOR))
    assert rollout.status == FAILED
    assert rollout.n_frames == 2
    err = rollout.error
    assert isinstance(err, SimulationDiverged) and err.step == 2
    assert "step 2" in str(err) and "non-finite" in str(err)
    assert calls["n"] == 3 + 4 * 3  # one good step, then 1 + 3 retries of 3 flow steps


def test_far_jumps_and_clashes_are_rejected() -> None:
    atoms = structure()

    def far(x: torch.Tensor, d: torch.Tensor) -> torch.Tensor:  # atom 0 jumps 20 Å
        v = torch.zeros_like(d)
        v[0, 0] = 20.0
        return v

    jump = LiFlowSimulator(Spy(far), None, PRIOR)
    with pytest.raises(SimulationDiverged, match="moved"):
        jump.step(jump.prepare(atoms, temperature_K=800.0, flow_steps=1))
    target = torch.as_tensor(atoms.positions[1] - atoms.positions[0])

    def collapse(x: torch.Tensor, d: torch.Tensor) -> torch.Tensor:  # atom 0 onto atom 1
        v = -d.clone()
        v[0] += target
        return v

    clash = LiFlowSimulator(Spy(collapse), None, PRIOR, max_retries=1)
    with pytest.raises(SimulationDiverged, match="apart") as info:
        clash.step(clash.prepare(atoms, temperature_K=800.0, flow_steps=1))
    assert info.value.step == 1


def test_input_checks() -> None:
    sim = simulator(training_temperatures_K=[600.0, 1000.0], name="tiny-ckpt")
    with pytest.raises(UnknownElementError, match=r"Fe.*tiny-ckpt"):
        sim.prepare(structure(symbols="Li4O2Fe2"), temperature_K=800.0)
    with pytest.warns(UserWarning, match="outside the training temperatures"):
        sim.prepare(structure(), temperature_K=300.0)
    with pytest.warns(UserWarning, match="no Li"):
        sim.prepare(structure(symbols="O4S4"), temperature_K=800.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sim.prepare(structure(), temperature_K=800.0)
    for bad in (0.0, -5.0):
        with pytest.raises(MDConfigError, match="temperature"):
            sim.prepare(structure(), temperature_K=bad)
    with pytest.raises(MDConfigError, match="corrector_strength"):
        sim.prepare(structure(), temperature_K=800.0, corrector_strength=1.5)


def test_batch_of_structures_and_temperatures() -> None:
    sim = simulator(tiny_model(1))
    state = sim.prepare_batch([structure(), structure(shift=True)], [600.0, 1000.0], seed=2)
    assert state.batch.tolist() == [0] * 8 + [1] * 8
    ratio = state.std_propagator[8:] / state.std_propagator[:8]
    torch.testing.assert_close(ratio, torch.full((8,), (1000 / 600) ** 0.5, dtype=DTYPE))
    new = sim.step(state)
    delta = (new.positions - state.positions).reshape(2, 8, 3)
    masses = state.masses.reshape(2, 8, 1)
    torch.testing.assert_close((masses * delta).sum(1), torch.zeros(2, 3, dtype=DTYPE))
    assert sim.frame(new).positions.shape == (16, 3) and sim.frame(new).time_ps == 1.0


def test_recommended_knobs_are_defaults_that_explicit_knobs_override() -> None:
    atoms = structure()
    plain = simulator()
    tuned = simulator(recommended_knobs={"prior_scale_frame": 0.49, "flow_steps": 3})
    neutral, recommended = plain.prepare(atoms, 800.0), tuned.prepare(atoms, 800.0)
    is_li = torch.as_tensor(atoms.numbers) == 3
    ratio = recommended.std_propagator / neutral.std_propagator
    torch.testing.assert_close(ratio[is_li], torch.ones(4, dtype=DTYPE))  # Li untouched
    torch.testing.assert_close(ratio[~is_li], torch.full((4,), 0.7, dtype=DTYPE))
    assert (neutral.flow_steps, recommended.flow_steps) == (10, 3)
    # a knob given explicitly wins, 1 still meaning the trained prior
    explicit = tuned.prepare(atoms, 800.0, prior_scale_frame=1.0, flow_steps=10)
    torch.testing.assert_close(explicit.std_propagator, neutral.std_propagator)
    assert explicit.flow_steps == 10
    assert tuned.knob_default("prior_scale_li") == 1.0
    assert tuned.knob_default("prior_scale_frame") == 0.49
    assert tuned.knob_default("prior_scale_frame", 2.0) == 2.0


@pytest.mark.parametrize(
    "knobs",
    [{"corrector_strength": 0.5}, {"prior_scale_frame": 0}, {"prior_scale_li": float("nan")},
     {"prior_scale_frame": True}, {"flow_steps": 2.5}, {"flow_steps": 0}],
)  # fmt: skip
def test_unusable_recommended_knobs_are_refused_naming_the_checkpoint(knobs) -> None:
    with pytest.raises(CheckpointError, match="tiny"):
        simulator(recommended_knobs=knobs, name="tiny")


def test_from_checkpoint_round_trip(tmp_path) -> None:
    propagator, corrector = tiny_model(3).float(), tiny_model(4).float()
    card = {
        "family": "liflow",
        "model": dataclasses.asdict(TINY),
        "prior": dataclasses.asdict(PRIOR),
        "prior_choice": {"li_large": False, "frame_large": False},
        "training_temperatures_K": [600, 1000],
        "time_step_ps": 2.0,
        "recommended_knobs": {"prior_scale_frame": 0.7},
        "full_corrector_flow_below_K": 700.0,
    }
    path = save_checkpoint(
        "tiny", {"propagator": propagator, "corrector": corrector}, card, tmp_path
    )
    sim = LiFlowSimulator.from_checkpoint(path, device="cpu")
    assert sim.name == "tiny" and sim.prior == PRIOR and sim.training_temperatures_K == (600, 1000)
    assert sim.recommended_knobs == {"prior_scale_frame": 0.7}
    assert sim.full_corrector_flow_below_K == 700.0
    for mine, theirs in ((sim.propagator, propagator), (sim.corrector, corrector)):
        for key, value in theirs.state_dict().items():
            assert torch.equal(mine.state_dict()[key], value)
    direct = LiFlowSimulator(
        propagator, corrector, PRIOR, li_large=False, time_step_ps=2.0,
        recommended_knobs={"prior_scale_frame": 0.7}, full_corrector_flow_below_K=700.0,
    )  # fmt: skip
    a = sim.step(sim.prepare(structure(), temperature_K=800.0, seed=1, flow_steps=2))
    b = direct.step(direct.prepare(structure(), temperature_K=800.0, seed=1, flow_steps=2))
    assert a.time_ps == 2.0
    torch.testing.assert_close(a.positions, b.positions, rtol=0, atol=0)


def test_compile_routes_both_flows_through_the_compiled_networks(monkeypatch):
    compiled: list[torch.nn.Module] = []

    def fake_compile(module, **kwargs):
        compiled.append(module)
        return lambda *a, **k: calls.append(module) or module(*a, **k)

    calls: list[torch.nn.Module] = []
    monkeypatch.setattr(torch, "compile", fake_compile)
    prop, corr = tiny_model(0), tiny_model(1)
    sim = LiFlowSimulator(prop, corr, PRIOR, compile=True)
    eager = LiFlowSimulator(tiny_model(0), tiny_model(1), PRIOR)
    # each network, and each one's edge terms of the current structure (once per flow)
    geometries = [prop.current_geometry, corr.current_geometry]
    assert compiled == [prop, corr, *geometries]
    a = sim.step(sim.prepare(structure(), 800.0, flow_steps=3, corrector_strength=1.0, seed=4))
    b = eager.step(eager.prepare(structure(), 800.0, flow_steps=3, corrector_strength=1.0, seed=4))
    assert calls.count(prop) == 3 and calls.count(corr) == 2  # Corrector: ⌈3 / 2⌉ steps
    assert [calls.count(g) for g in geometries] == [1, 1]
    torch.testing.assert_close(a.positions, b.positions)  # same networks, same draws


def test_compiled_batches_keep_the_structure_count_symbolic(monkeypatch):
    """A batch re-sampling one structure must not make torch.compile build new graphs
    for B = 1: the cells' batch dimension is marked unbacked before every compiled flow."""
    marked: list[tuple[int, ...]] = []
    monkeypatch.setattr(torch, "compile", lambda module, **kw: module)
    monkeypatch.setattr(
        torch._dynamo.decorators, "mark_unbacked", lambda t, d: marked.append((t.dim(), d))
    )
    compiled = LiFlowSimulator(tiny_model(0), tiny_model(1), PRIOR, compile=True)
    batch = compiled.prepare_batch([structure(), structure()], [800.0, 900.0], flow_steps=2)
    compiled.step(batch)
    assert marked and set(marked) == {(3, 0)}  # (B, 3, 3) cells, dimension 0
    marked.clear()
    compiled.step(compiled.prepare(structure(), 800.0, flow_steps=2))  # (3, 3): nothing
    eager = LiFlowSimulator(tiny_model(0), tiny_model(1), PRIOR)
    eager.step(eager.prepare_batch([structure(), structure()], [800.0, 900.0], flow_steps=2))
    assert marked == []


def test_a_batch_redraws_only_the_structures_whose_step_was_rejected() -> None:
    sizes: list[int] = []

    def second_jumps_once(x: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        # atom 8 (structure 1) jumps 20 Å in the first proposal only
        sizes.append(x.shape[0])
        v = torch.zeros_like(d)
        if len(sizes) == 1:
            v[8, 0] = 20.0
        return v

    sim = LiFlowSimulator(Spy(second_jumps_once), None, PRIOR)
    state = sim.prepare_batch([structure(), structure()], [800.0, 800.0], seed=4, flow_steps=1)
    copy = dataclasses.replace(state, generator=torch.Generator().manual_seed(4))
    state = dataclasses.replace(state, generator=torch.Generator().manual_seed(4))
    first_draw = sim.propose(copy)  # what step() draws first (same noise)
    sizes.clear()
    new = sim.step(state)
    assert new.retries == 1
    assert sizes == [16, 8]  # the redraw is a batch of the rejected structure alone
    delta = new.positions - state.positions
    torch.testing.assert_close(delta[:8], first_draw[:8].to(DTYPE))  # accepted at once: kept
    assert float(delta[8:].norm(dim=-1).max()) < 5.0  # the jump was drawn again
    assert not torch.allclose(delta[8:], first_draw[8:].to(DTYPE))
    masses = state.masses[8:, None]
    torch.testing.assert_close((masses * delta[8:]).sum(0), torch.zeros(3, dtype=DTYPE))


@pytest.mark.parametrize("group_atoms, graphs", [(None, [24]), (16, [16, 8]), (4, [8, 8, 8])])
def test_cpu_groups_of_a_batch_give_the_one_graph_result(group_atoms, graphs) -> None:
    """On the CPU a batch's networks run over groups of at most ``cpu_group_atoms``
    atoms (a larger structure alone); the step is the one-graph step, draws included."""
    sizes: list[int] = []

    class Recording(FlowModel):
        def forward(self, numbers, positions, *rest):
            sizes.append(positions.shape[0])
            return super().forward(numbers, positions, *rest)

    def sim_with(group):
        torch.manual_seed(0)
        prop = Recording(TINY).to(DTYPE)
        torch.manual_seed(1)
        corr = Recording(TINY).to(DTYPE)
        return LiFlowSimulator(prop, corr, PRIOR, cpu_group_atoms=group)

    structures = [structure(), structure(shift=True), structure()]
    temperatures = [600.0, 800.0, 1000.0]
    one = sim_with(None)
    expected = one.step(one.prepare_batch(structures, temperatures, seed=3, flow_steps=2))
    grouped = sim_with(group_atoms)
    sizes.clear()
    got = grouped.step(grouped.prepare_batch(structures, temperatures, seed=3, flow_steps=2))
    # group by group: the Propagator's 2 flow steps, then the Corrector's 1
    assert sizes == [n for n in graphs for _ in range(3)]
    torch.testing.assert_close(got.positions, expected.positions, rtol=0, atol=1e-12)
    assert got.retries == expected.retries == 0


def test_cpu_group_atoms_must_be_positive() -> None:
    with pytest.raises(MDConfigError, match="cpu_group_atoms"):
        simulator(cpu_group_atoms=0)


def test_a_redrawn_structure_names_its_atoms_by_their_batch_index() -> None:
    def last_atom_jumps(x: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        v = torch.zeros_like(d)
        v[-1, 0] = 20.0  # atom 15 of the batch; atom 7 of a redrawn structure 1 alone
        return v

    sim = LiFlowSimulator(Spy(last_atom_jumps), None, PRIOR, max_retries=2)
    state = sim.prepare_batch([structure(), structure()], [800.0, 800.0], flow_steps=1)
    with pytest.raises(SimulationDiverged, match="atom 15 moved"):
        sim.step(state)


def test_a_redraw_renews_the_noise_only_around_the_offending_atom() -> None:
    calls = {"n": 0}

    def atom0_jumps_once(x: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        v = torch.zeros_like(d)
        if calls["n"] == 1:
            v[0, 0] = 20.0  # rejected: moved further than max_step_A
        return v

    atoms = structure().repeat((3, 3, 3))  # 216 atoms, 3 Å apart, in an 18 Å cube
    sim = LiFlowSimulator(Spy(atom0_jumps_once), None, PRIOR, resample_radius_A=4.0)
    state = sim.prepare(atoms, temperature_K=800.0, seed=7, flow_steps=1)
    copy = dataclasses.replace(state, generator=torch.Generator().manual_seed(7))
    state = dataclasses.replace(state, generator=torch.Generator().manual_seed(7))
    first = sim.propose(copy)  # the rejected first proposal (same noise as step's)
    calls["n"] = 0
    new = sim.step(state)
    assert new.retries == 1
    delta = new.positions - state.positions
    change = delta - first.to(DTYPE)
    # Minimum-image distances to atom 0: its 6 axial neighbours are 3 Å away, the
    # next ones 4.24 Å, so the redraw renews atom 0 and 6 others.
    rel = atoms.get_distances(0, range(len(atoms)), mic=True)
    region = torch.as_tensor(rel <= 4.0)
    assert int(region.sum()) == 7
    # Outside the region the noise is kept: the step differs only by the CoM correction,
    # the same vector for every atom.
    outside = change[~region]
    torch.testing.assert_close(outside, outside[:1].expand_as(outside), rtol=0, atol=1e-12)
    inside = change[region] - outside[:1]
    assert bool((inside.norm(dim=-1) > 1e-6).all())
    assert float(delta.norm(dim=-1).max()) < 5.0


def test_the_redraw_region_is_the_offenders_and_their_neighbours() -> None:
    atoms = structure().repeat((2, 2, 2))  # 64 atoms, 12 Å cube
    offenders = torch.zeros(len(atoms), dtype=torch.bool)
    offenders[[0, 63]] = True
    rel = np.minimum(
        atoms.get_distances(0, range(len(atoms)), mic=True),
        atoms.get_distances(63, range(len(atoms)), mic=True),
    )
    for radius in (0.0, 3.5, 5.0):
        sim = simulator(resample_radius_A=radius)
        region = sim._redraw_region(sim.prepare(atoms, temperature_K=800.0), offenders)
        expected = torch.as_tensor(rel <= radius) | offenders
        assert torch.equal(region, expected), radius
    with pytest.raises(MDConfigError, match="resample_radius_A"):
        simulator(resample_radius_A=-1.0)


def test_correct_applies_one_corrector_flow_and_keeps_the_centre_of_mass() -> None:
    atoms = structure(shift=True)

    # A field that pushes atom 0 along x at 1 Å per unit flow time, nothing else.
    def push(x: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        v = torch.zeros_like(d)
        v[0, 0] = 1.0
        return v

    sim = simulator(Spy(push))
    corrected = sim.correct(atoms, 800.0, seed=4)
    assert corrected is not atoms and np.array_equal(corrected.numbers, atoms.numbers)
    np.testing.assert_array_equal(corrected.cell[:], atoms.cell[:])
    step = corrected.positions - atoms.positions
    masses = atoms.get_masses()
    np.testing.assert_allclose(masses @ step, 0.0, atol=1e-10)  # CoM kept
    # Atom 0 moved ~1 Å along x (minus its share of the CoM shift, plus prior noise
    # of ~0.01 Å); the others only by noise and the CoM shift.
    com_shift = masses[0] / masses.sum()
    assert step[0, 0] == pytest.approx(1.0 - com_shift, abs=0.05)
    np.testing.assert_allclose(step[1:, 0], -com_shift, atol=0.05)
    again = sim.correct(atoms, 800.0, seed=4)
    np.testing.assert_array_equal(again.positions, corrected.positions)
    assert not np.array_equal(sim.correct(atoms, 800.0, seed=5).positions, corrected.positions)
    with pytest.raises(MDConfigError, match="no Corrector"):
        simulator(None).correct(atoms, 800.0)
    with pytest.raises(UnknownElementError):
        sim.correct(structure(symbols="Li4O2Se2"), 800.0)


def test_prior_choices_override_the_classifier_and_correct_skips_it(monkeypatch) -> None:
    atoms = structure()
    sim = LiFlowSimulator(tiny_model(0), tiny_model(1), PriorConfig(kind="adaptive"))
    default = sim.prepare(atoms, 800.0)  # the card's choice: Li large, frame small
    large = sim.prepare(atoms, 800.0, prior_choices=[{"li": True, "frame": True}])
    frame = atoms.numbers != 3
    torch.testing.assert_close(large.std_propagator[~frame], default.std_propagator[~frame])
    assert bool((large.std_propagator[frame] > default.std_propagator[frame]).all())
    assert large.prior_choices == ({"li": True, "frame": True},)
    with pytest.raises(MDConfigError, match="2 prior choices for 1"):
        sim.prepare(atoms, 800.0, prior_choices=[{"li": True, "frame": True}] * 2)
    with pytest.raises(MDConfigError, match="per structure"):
        sim.prepare(atoms, 800.0, prior_choices=[{"li": True}])

    def no_classifier(*args):
        raise AssertionError("correct() ran the prior classifier")

    monkeypatch.setattr(sim, "prior_choices", no_classifier)
    assert sim.correct(atoms, 800.0).positions.shape == (8, 3)


def _push(atom: int, axis: int) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """A field moving one atom along one axis at 1 Å per unit flow time, nothing else."""

    def field(x: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        v = torch.zeros_like(d)
        v[atom, axis] = 1.0
        return v

    return field


def test_the_fine_corrector_runs_after_the_corrector_on_its_output() -> None:
    atoms = structure()
    seen: list[torch.Tensor] = []

    def fine_field(x: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        seen.append(x.clone())
        return _push(1, 1)(x, d)

    coarse, fine = Spy(_push(0, 0)), Spy(fine_field)
    sim = LiFlowSimulator(Spy(zero), coarse, PRIOR, fine_corrector=fine)
    delta = {}
    for s in (0.0, 0.5, 1.0):
        fine.times.clear()
        state = sim.prepare(atoms, temperature_K=800.0, corrector_strength=s, seed=2)
        delta[s] = sim.propose(state)
        # off at strength 0; both Correctors on 3 of the Propagator's 10 flow steps
        assert len(fine.times) == (0 if s == 0.0 else 3) and len(coarse.times) == 3 * (s > 0)
        coarse.times.clear()
    # The fine Corrector sees the structure the Corrector left: atom 0 moved by ~1 Å in
    # x (s = 1), the rest only by the Propagator's prior draw (σ ≈ 0.1 Å).
    moved = (seen[-1] - torch.as_tensor(atoms.positions)).abs()
    assert float(moved[0, 0]) == pytest.approx(1.0, abs=0.3) and float(moved[1:].max()) < 0.5
    # Both corrections, each scaled by s: atom 0 along x and atom 1 along y.
    share = atoms.get_masses() / atoms.get_masses().sum()  # of a push, the CoM removal takes
    for s in (0.5, 1.0):
        step = delta[s] - delta[0.0]
        assert float(step[0, 0]) == pytest.approx(s * (1 - share[0]), abs=0.1)
        assert float(step[1, 1]) == pytest.approx(s * (1 - share[1]), abs=0.1)
    # ⌈3N / 10⌉ each with a fine Corrector, ⌈N / 2⌉ for a lone one, at least one step;
    # the Propagator keeps N.
    lone = LiFlowSimulator(Spy(zero), Spy(zero), PRIOR)
    for n, expected, alone in ((3, 1, 2), (7, 3, 4), (20, 6, 10), (1, 1, 1)):
        fine.times.clear()
        sim.propose(sim.prepare(atoms, 800.0, flow_steps=n, seed=2))
        assert len(fine.times) == expected
        state = sim.prepare(atoms, 800.0, flow_steps=n)
        assert sim.flow_steps_of(sim.corrector, state) == expected
        assert sim.flow_steps_of(sim.fine_corrector, state) == expected
        assert sim.flow_steps_of(sim.propagator, state) == n
        assert lone.flow_steps_of(lone.corrector, state) == alone
    # correct(): one full pass of both.
    corrected = sim.correct(atoms, 800.0, seed=4).positions - atoms.positions
    assert corrected[0, 0] > 0.9 and corrected[1, 1] > 0.9
    with pytest.raises(MDConfigError, match="fine Corrector runs after the Corrector"):
        LiFlowSimulator(tiny_model(0), None, PRIOR, fine_corrector=tiny_model(1))


def test_a_checkpoint_with_a_fine_corrector_loads_and_runs_it(tmp_path) -> None:
    modules = {
        k: tiny_model(i).float()
        for i, k in enumerate(("propagator", "corrector", "corrector_fine"))
    }
    card = {
        "family": "liflow",
        "model": dataclasses.asdict(TINY),
        "prior": dataclasses.asdict(PRIOR),
    }
    sim = LiFlowSimulator.from_checkpoint(save_checkpoint("tiny", modules, card, tmp_path))
    assert sim.fine_corrector is not None
    for key, value in modules["corrector_fine"].state_dict().items():
        assert torch.equal(sim.fine_corrector.state_dict()[key], value)
    without = LiFlowSimulator(modules["propagator"], modules["corrector"], PRIOR)
    a = sim.step(sim.prepare(structure(), 800.0, seed=1, flow_steps=2))
    b = without.step(without.prepare(structure(), 800.0, seed=1, flow_steps=2))
    assert not torch.equal(a.positions, b.positions)  # the fine pass changed the step
    with pytest.raises(UnknownElementError):
        sim.prepare(structure(symbols="Li4O2Se2"), 800.0)


def test_full_corrector_flow_below_a_temperature_gives_those_structures_n_steps() -> None:
    """Module doc, 2d: below ``full_corrector_flow_below_K`` each Corrector integrates
    the Propagator's N steps; at or above it, the default ⌈3N / 10⌉."""
    fine = Spy(zero)
    sim = LiFlowSimulator(
        Spy(zero), Spy(zero), PRIOR, fine_corrector=fine, full_corrector_flow_below_K=900.0
    )
    for temperature, expected in ((600.0, 10), (899.0, 10), (900.0, 3), (1200.0, 3)):
        fine.times.clear()
        state = sim.prepare(structure(), temperature, seed=1)
        assert sim.flow_steps_of(sim.corrector, state) == expected
        assert sim.flow_steps_of(sim.fine_corrector, state) == expected
        assert sim.flow_steps_of(sim.propagator, state) == 10
        sim.propose(state)
        assert len(fine.times) == expected


@pytest.mark.parametrize("group_atoms", [None, 8, 1000])
def test_a_batch_across_the_full_flow_threshold_matches_its_structures_alone(
    group_atoms,
) -> None:
    """Structures on both sides of the threshold run as separate graphs, each with its
    Corrector step count; the result is each structure's own step with the same draws."""
    sizes: list[int] = []

    class Recording(FlowModel):
        def forward(self, numbers, positions, *rest):
            sizes.append(positions.shape[0])
            return super().forward(numbers, positions, *rest)

    def make():
        torch.manual_seed(0)
        prop = Recording(TINY).to(DTYPE)
        torch.manual_seed(1)
        corr = Recording(TINY).to(DTYPE)
        return LiFlowSimulator(
            prop, corr, PRIOR, cpu_group_atoms=group_atoms, full_corrector_flow_below_K=700.0
        )

    sim = make()
    structures = [structure(), structure(shift=True), structure()]
    temperatures = [600.0, 800.0, 650.0]
    state = sim.prepare_batch(structures, temperatures, seed=3, flow_steps=4)
    noise = sim._draw_noise(state, state.numbers.shape[0])
    sizes.clear()
    batched = sim.propose(state, noise=tuple(n.clone() for n in noise))
    # the hot structure, then the two cold ones (one graph unless the budget splits them);
    # the Propagator's 4 steps, then the Corrector's ⌈4 / 2⌉ = 2 (hot) or 4 (cold)
    cold = [16] if group_atoms in (None, 1000) else [8, 8]
    assert sizes == [8] * 6 + [n for n in cold for _ in range(8)]
    for k, (atoms, temperature) in enumerate(zip(structures, temperatures, strict=True)):
        alone = sim.prepare(atoms, temperature, seed=3, flow_steps=4)
        rows = slice(8 * k, 8 * (k + 1))
        own = sim.propose(alone, noise=tuple(n[rows].clone() for n in noise))
        torch.testing.assert_close(batched[rows], own, rtol=0, atol=1e-12)


@pytest.mark.parametrize("below", [0.0, -5.0, float("nan"), float("inf")])
def test_full_corrector_flow_threshold_must_be_a_temperature(below) -> None:
    with pytest.raises(MDConfigError, match="full_corrector_flow_below_K"):
        simulator(tiny_model(1), full_corrector_flow_below_K=below)
