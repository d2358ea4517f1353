"""Reference MD runner: files, physics sanity, exact resume, divergence, validation.

Systems are tiny (32 Cu atoms with EMT, a few LJ argon atoms) so the whole
module runs in well under a minute; one CHGNet test of a few steps is marked slow.
"""

from __future__ import annotations

import os
import signal

import h5py
import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.lj import LennardJones

from explorer.errors import (
    ExplorerError,
    MDConfigError,
    ResumeError,
    SimulationDiverged,
    TrajectoryFileError,
)
from explorer.h5md import read_h5md, read_metadata_from, read_restart
from explorer.reference.md import MDConfig, _interrupts_deferred, run_md

EMT_INFO = {"name": "emt", "version": "ase"}
# Short, fast protocol: 4 fs steps are fine for Cu (period of its fastest phonon ~140 fs).
FAST = {"timestep_fs": 4.0, "every": 5, "equilibration_ps": 0.04, "production_ps": 0.2}


def copper(material: str | None = None) -> Atoms:
    atoms = bulk("Cu", cubic=True).repeat(2)  # 32 atoms, 7.2 Å cube
    if material:
        atoms.info.update(material=material, supercell=(2, 2, 2))
    return atoms


class Crash(RuntimeError):
    """Stands for a kill or Ctrl-C in the middle of a run."""


class Sabotaged(EMT):
    """EMT that misbehaves from its ``after``-th evaluation on."""

    def __init__(self, after: int, mode: str) -> None:
        super().__init__()
        self.after, self.mode, self.calls = after, mode, 0

    def calculate(self, atoms=None, properties=("energy",), system_changes=()):
        self.calls += 1
        if self.calls >= self.after and self.mode == "crash":
            raise Crash(f"crash at evaluation {self.calls}")
        super().calculate(atoms, properties, system_changes)
        if self.calls >= self.after:
            if self.mode == "nan":
                self.results["forces"] = np.full_like(self.results["forces"], np.nan)
            elif self.mode == "energy":
                self.results["energy"] += 10.0 * len(self.atoms)
            elif self.mode == "heat":
                rng = np.random.default_rng(self.calls)
                self.results["forces"] = rng.normal(scale=30.0, size=self.results["forces"].shape)


def frames_equal(a, b) -> None:
    assert a.n_frames == b.n_frames
    assert np.array_equal(a.positions, b.positions)
    assert np.array_equal(a.times_ps, b.times_ps)
    for name in ("momenta", "velocities"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None)
        if x is not None:
            assert np.array_equal(x, y)
    assert a.energies.keys() == b.energies.keys()
    for key in a.energies:
        assert np.array_equal(a.energies[key], b.energies[key]), key


def test_nvt_file_frames_times_and_metadata(tmp_path):
    config = MDConfig(temperature_K=600.0, seed=3, **FAST)
    result = run_md(copper("Cu-test"), EMT(), config, tmp_path / "run.h5", EMT_INFO, progress=False)

    traj = read_h5md(tmp_path / "run.h5")
    assert result.status == "complete" and result.n_frames == traj.n_frames == config.n_frames
    assert config.n_frames == 11  # 0.2 ps / (5 × 4 fs) intervals + frame 0
    np.testing.assert_allclose(traj.times_ps, 0.02 * np.arange(11), rtol=0, atol=1e-12)
    assert traj.momenta is None and traj.velocities is None  # NVT records positions only
    assert set(traj.energies) == {
        "potential_energy",
        "kinetic_energy",
        "total_energy",
        "temperature",
        "conserved_energy",
    }
    meta = traj.metadata
    assert meta["status"] == "complete" and meta["wall_time_s"] > 0
    assert meta["calculator"] == EMT_INFO
    assert meta["temperature_K"] == 600.0 and meta["timestep_fs"] == 4.0
    assert meta["frame_interval_fs"] == 20.0 and meta["seed"] == 3
    assert meta["thermostat"]["name"] == "NoseHooverChainNVT"
    assert meta["thermostat"]["tchain"] == 10  # Geodite: 10 chains, damping 100 × dt
    assert meta["thermostat"]["tdamp_fs"] == pytest.approx(400.0)
    assert meta["material"] == "Cu-test" and meta["supercell"] == [2, 2, 2]
    assert meta["minimization"]["converged"]
    assert meta["md_config"] == config.to_dict()
    for key in ("explorer_version", "ase_version", "torch_version", "started_at"):
        assert key in meta
    with h5py.File(tmp_path / "run.h5") as f:
        assert f["observables/temperature/value"].attrs["unit"] == "K"
        assert f["observables/potential_energy/value"].attrs["unit"] == "eV"
    restart = read_restart(tmp_path / "run.h5")
    assert restart["phase"] == "production" and restart["n_frames"] == 11
    assert restart["positions"].dtype == np.float64 and restart["nhc_eta"].shape == (10,)

    again = run_md(copper(), EMT(), config, tmp_path / "run.h5", EMT_INFO, progress=False)
    assert again.resumed and again.n_frames == 11 and again.wall_time_s < 1.0


def test_nvt_mean_temperature_near_target(tmp_path):
    # A shorter damping time (20 dt = 0.1 ps) than the default so that 2 ps suffice.
    config = MDConfig(
        temperature_K=800.0,
        timestep_fs=5.0,
        every=10,
        equilibration_ps=0.5,
        production_ps=1.5,
        nhc_tdamp_steps=20,
    )
    run_md(copper(), EMT(), config, tmp_path / "t.h5", EMT_INFO, progress=False)
    temperature = read_h5md(tmp_path / "t.h5").energies["temperature"]
    # ASE's chain thermostats 3N degrees of freedom while total momentum stays zero,
    # so <T> (ASE's 3N-dof estimator) is 800 K × (3N − 3)/3N = 775 K for 32 atoms.
    assert abs(temperature.mean() - 775.0) < 0.15 * 800.0


@pytest.mark.parametrize(
    ("ensemble", "extra", "crash_after"),
    [
        ("nvt", {"checkpoint_every": 3}, 40),  # frames after the last checkpoint are redone
        ("nvt", {"checkpoint_every": 1}, 40),  # a checkpoint after every frame
        ("nvt", {}, 8),  # during equilibration (no frames yet)
        ("langevin", {}, 35),  # RNG state restored
        ("nve", {"equilibration_ensemble": "nvt"}, 30),  # NVT → NVE switch, momenta
    ],
)
def test_resume_after_crash_gives_identical_frames(tmp_path, ensemble, extra, crash_after):
    config = MDConfig(temperature_K=700.0, ensemble=ensemble, seed=11, **FAST, **extra)
    run_md(copper(), EMT(), config, tmp_path / "a.h5", EMT_INFO, progress=False)
    reference = read_h5md(tmp_path / "a.h5")

    path = tmp_path / "b.h5"
    with pytest.raises(Crash):
        run_md(copper(), Sabotaged(crash_after, "crash"), config, path, EMT_INFO, progress=False)
    with h5py.File(path) as f:
        assert read_metadata_from(f)["status"] == "interrupted"
    result = run_md(copper(), EMT(), config, path, EMT_INFO, progress=False)
    assert result.resumed and result.status == "complete"
    frames_equal(read_h5md(path), reference)


def test_resume_after_callback_interrupt_and_extension(tmp_path):
    # A checkpoint after every frame, so the short run's end is one of the longer
    # run's checkpoints: only then is an extension bitwise equal to a longer run.
    short = MDConfig(temperature_K=700.0, seed=5, checkpoint_every=1, **FAST)
    longer = MDConfig(
        temperature_K=700.0, seed=5, checkpoint_every=1, **{**FAST, "production_ps": 0.3}
    )
    run_md(copper(), EMT(), longer, tmp_path / "a.h5", EMT_INFO, progress=False)

    def stop_at_frame_4(index, atoms):
        if index == 4:
            raise KeyboardInterrupt

    path = tmp_path / "b.h5"
    with pytest.raises(KeyboardInterrupt):
        run_md(copper(), EMT(), short, path, EMT_INFO, progress=False, callback=stop_at_frame_4)
    assert read_h5md(path).n_frames == 5
    run_md(copper(), EMT(), short, path, EMT_INFO, progress=False)
    assert read_h5md(path).n_frames == 11
    # A finished run continues when production_ps grows, as if it had never stopped.
    run_md(copper(), EMT(), longer, path, EMT_INFO, progress=False)
    frames_equal(read_h5md(path), read_h5md(tmp_path / "a.h5"))


def test_nve_records_momenta_and_conserves_energy(tmp_path):
    config = MDConfig(
        temperature_K=300.0,
        ensemble="nve",
        timestep_fs=1.0,
        every=3,
        equilibration_ps=0.0,
        production_ps=0.15,
    )
    run_md(copper(), EMT(), config, tmp_path / "nve.h5", EMT_INFO, progress=False)
    traj = read_h5md(tmp_path / "nve.h5")
    assert traj.momenta is not None and traj.metadata["thermostat"]["name"] == "VelocityVerlet"
    total = traj.energies["total_energy"]
    assert np.ptp(total) / len(traj.numbers) < 2e-4  # eV/atom over 0.15 ps at 1 fs
    # Momenta are in amu·Å/ps: p/m matches the finite-difference velocity of the positions.
    masses = copper().get_masses()[None, :, None]
    dt = traj.times_ps[2] - traj.times_ps[0]
    v_fd = (traj.positions[2:].astype(float) - traj.positions[:-2]) / dt
    v = traj.momenta[1:-1] / masses
    assert np.abs(v_fd - v).max() < 0.05 * np.abs(v).max()
    # Zero net momentum from the start (up to the float32 rounding of the stored
    # momenta), exactly the target temperature at t = 0.
    with h5py.File(tmp_path / "nve.h5", "r") as f:
        assert f["particles/all/momentum/value"].dtype == np.float32
    p0 = traj.momenta[0].astype(np.float64)
    assert np.abs(p0.sum(axis=0)).max() < 1e-6 * np.abs(p0).sum()
    assert traj.energies["temperature"][0] == pytest.approx(300.0, rel=1e-9)


def test_seed_reproducibility(tmp_path):
    def frames(seed, name):
        config = MDConfig(temperature_K=500.0, seed=seed, **{**FAST, "production_ps": 0.1})
        run_md(copper(), EMT(), config, tmp_path / name, EMT_INFO, progress=False)
        return read_h5md(tmp_path / name)

    first, same, other = frames(1, "a.h5"), frames(1, "b.h5"), frames(2, "c.h5")
    frames_equal(first, same)
    assert not np.array_equal(first.positions[1:], other.positions[1:])


def test_positions_are_unwrapped(tmp_path):
    # A hot, dilute LJ argon gas: atoms fly through the 9 Å box within 0.5 ps.
    grid = 4.5 * np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)])
    gas = Atoms("Ar8", positions=grid + 1.0, cell=[9.0] * 3, pbc=True)
    lj = LennardJones(sigma=3.4, epsilon=0.0104, rc=4.5, smooth=True)
    config = MDConfig(
        temperature_K=2000.0,
        ensemble="nve",
        timestep_fs=5.0,
        every=4,
        equilibration_ps=0.0,
        production_ps=0.6,
        minimize=False,
        min_distance_A=1.5,
        max_temperature_factor=3.0,
    )
    seen = []
    run_md(
        gas,
        lj,
        config,
        tmp_path / "gas.h5",
        {"name": "lj"},
        progress=False,
        callback=lambda i, atoms: seen.append(atoms.get_positions(wrap=False)),
    )
    traj = read_h5md(tmp_path / "gas.h5")
    assert np.array_equal(traj.positions, np.array(seen, dtype=np.float32))
    assert (traj.positions < 0).any() or (traj.positions >= 9.0).any()
    assert np.abs(np.diff(traj.positions, axis=0)).max() < 4.5  # continuous, no jumps by L


@pytest.mark.parametrize(
    ("mode", "after", "message"),
    [
        ("nan", 30, "non-finite forces"),
        ("energy", 30, "potential energy changed"),
        ("heat", 30, "temperature"),
    ],
)
def test_divergence_stops_with_message_and_keeps_frames(tmp_path, mode, after, message):
    config = MDConfig(temperature_K=600.0, **FAST)
    path = tmp_path / "bad.h5"
    with pytest.raises(SimulationDiverged, match=message) as info:
        run_md(copper(), Sabotaged(after, mode), config, path, EMT_INFO, progress=False)
    error = info.value
    assert isinstance(error, ExplorerError) and "production step" in str(error)
    traj = read_h5md(path)
    assert traj.n_frames == error.frames_written > 0
    assert np.isfinite(traj.positions).all()
    assert traj.metadata["status"].startswith("diverged")
    with pytest.raises(SimulationDiverged):  # a resume does not pretend it can go on
        run_md(copper(), EMT(), config, path, EMT_INFO, progress=False)


def test_atoms_too_close_is_a_divergence_at_step_zero(tmp_path):
    argon = Atoms("Ar2", positions=[[2, 2, 2], [2.3, 2, 2]], cell=[8.0] * 3, pbc=True)
    config = MDConfig(temperature_K=100.0, minimize=False, **FAST)
    lj = LennardJones(sigma=3.4, epsilon=0.0104, rc=4.0)
    with pytest.raises(SimulationDiverged, match=r"0\.300 Å apart") as info:
        run_md(argon, lj, config, tmp_path / "ar.h5", {"name": "lj"}, progress=False)
    assert "equilibration step 0" in str(info.value) and info.value.frames_written == 0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("temperature_K", 0.0),
        ("temperature_K", -5.0),
        ("temperature_K", 1e5),
        ("temperature_K", float("nan")),
        ("timestep_fs", 0.0),
        ("timestep_fs", 50.0),
        ("every", 0),
        ("every", 2.5),
        ("seed", -1),
        ("ensemble", "npt"),
        ("equilibration_ensemble", "berendsen"),
        ("nhc_chain", 0),
        ("langevin_friction_per_ps", 0.0),
        ("production_ps", 0.001),
        ("max_temperature_factor", 1.0),
        ("minimize", "yes"),
    ],
)
def test_bad_config_values_raise_clear_errors(field, value):
    with pytest.raises(MDConfigError, match=field):
        MDConfig(**{"temperature_K": 600.0, field: value})


def test_resume_refuses_other_protocols_and_foreign_files(tmp_path):
    config = MDConfig(temperature_K=600.0, **{**FAST, "production_ps": 0.04})
    path = tmp_path / "run.h5"
    run_md(copper(), EMT(), config, path, EMT_INFO, progress=False)
    hotter = MDConfig(temperature_K=900.0, **{**FAST, "production_ps": 0.04})
    with pytest.raises(ResumeError, match="temperature_K"):
        run_md(copper(), EMT(), hotter, path, EMT_INFO, progress=False)
    with pytest.raises(ResumeError, match="calculator"):
        run_md(copper(), EMT(), config, path, {"name": "chgnet"}, progress=False)
    run_md(copper(), EMT(), hotter, path, EMT_INFO, progress=False, resume=False)
    assert read_h5md(path).metadata["temperature_K"] == 900.0

    foreign = tmp_path / "notes.h5"
    foreign.write_text("not hdf5")
    with pytest.raises(TrajectoryFileError, match="not overwriting"):
        run_md(copper(), EMT(), config, foreign, EMT_INFO, progress=False, resume=False)
    assert foreign.read_text() == "not hdf5"


def test_relaxed_cell_is_used_and_resumes(tmp_path):
    strained = copper()
    strained.set_cell(strained.cell * 1.03, scale_atoms=True)
    config = MDConfig(temperature_K=300.0, relax_cell=True, **{**FAST, "production_ps": 0.08})
    path = tmp_path / "cell.h5"

    def stop(index, atoms):
        if index == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_md(strained, EMT(), config, path, EMT_INFO, progress=False, callback=stop)
    result = run_md(strained, EMT(), config, path, EMT_INFO, progress=False)
    assert result.resumed and result.n_frames == config.n_frames
    traj = read_h5md(path)
    assert traj.cell[0, 0] < strained.cell[0, 0] * 0.99  # EMT Cu relaxes back towards 3.6 Å
    assert traj.metadata["minimization"]["relax_cell"]


def test_ctrl_c_is_delivered_after_the_critical_section():
    # Start from Python's own handler: another test in this worker may have left its own.
    outer = signal.signal(signal.SIGINT, signal.default_int_handler)
    done = []
    try:
        with pytest.raises(KeyboardInterrupt), _interrupts_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            done.append(True)  # still runs: the interrupt waits for the block to end
        assert done == [True]
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, outer)


@pytest.mark.slow
def test_chgnet_few_steps_on_li2s(tmp_path):
    chgnet = pytest.importorskip("chgnet.model.dynamics")
    from explorer.materials import load_material

    calc = chgnet.CHGNetCalculator(use_device="cpu")
    config = MDConfig(
        temperature_K=800.0,
        timestep_fs=2.0,
        every=1,
        equilibration_ps=0.0,
        production_ps=0.01,  # 5 steps
        minimize_steps=3,
        checkpoint_every=10,
    )
    info = {"name": "chgnet", "version": "0.3.0"}
    result = run_md(load_material("Li2S"), calc, config, tmp_path / "li2s.h5", info, progress=False)
    traj = read_h5md(tmp_path / "li2s.h5")
    assert result.n_frames == traj.n_frames == 6
    assert traj.metadata["material"] == "Li2S" and traj.metadata["calculator"]["name"] == "chgnet"
    assert np.isfinite(traj.energies["potential_energy"]).all()
