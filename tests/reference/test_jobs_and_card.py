"""accelmd reference / data, the dataset plan and the dataset card."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from ase.build import bulk
from ase.units import kB

from explorer.cli import main
from explorer.h5md import read_h5md, read_restart
from explorer.materials import get_entry
from explorer.reference import dataset
from explorer.reference.card import (
    FRAMEWORK_MOBILE_A2,
    arrhenius_by_material,
    trajectory_row,
    write_card,
)
from explorer.testing import brownian_trajectory


def test_plan_covers_the_issue():
    runs = dataset.REFERENCE_RUNS
    train = [r for r in runs if r.split == "train"]
    materials = {r.material for r in train}
    assert len(materials) >= 4 and {"LGPS", "Li6PS5Cl"} <= materials
    assert any(m.startswith("Li3PS4") for m in materials)
    for material in materials:
        temps = sorted(r.temperature_K for r in train if r.material == material)
        assert temps == [600.0, 800.0, 1000.0, 1200.0]
    heldout = [r for r in runs if r.split == "heldout"]
    assert len({r.material for r in heldout} - materials) >= 2
    assert any(r.material == "LGPS" and 600 < r.temperature_K < 1200 for r in heldout)
    assert len({r.filename for r in runs}) == len(runs)
    for run in runs:
        get_entry(run.material)  # every plan entry names a catalogue material
        assert run.filename == f"{run.material}_{round(run.temperature_K)}K.h5"
    assert dataset.EVERY * dataset.TIMESTEP_FS * 50 == 1000  # 1 ps = 50 frames


def test_reference_path_lookup(tmp_path):
    (tmp_path / "LGPS_900K.h5").write_bytes(b"")
    assert dataset.reference_path("LGPS", 900.0, tmp_path) == tmp_path / "LGPS_900K.h5"
    assert dataset.reference_path("LGPS", 600.0, tmp_path) is None
    assert dataset.available_references(tmp_path) == {"LGPS": [900.0]}


def test_cli_reference_writes_valid_h5md_and_resumes(tmp_path, capsys):
    # Lennard-Jones argon from a user file: fast, and a physically sane pairing.
    structure = tmp_path / "argon.extxyz"
    bulk("Ar", "fcc", a=5.26, cubic=True).write(structure)
    out = tmp_path / "argon_lj.h5"
    args = [
        "reference",
        "--material",
        str(structure),
        "--temperature",
        "60",
        "--ps",
        "0.1",
        "--equilibration-ps",
        "0.02",
        "--timestep-fs",
        "2",
        "--every",
        "5",
        "--mlip",
        "lj",
        "--out",
        str(out),
        "--no-progress",
    ]
    assert main(args) == 0
    traj = read_h5md(out)
    assert traj.n_frames == 11 and traj.times_ps[-1] == pytest.approx(0.1)
    assert traj.metadata["material"] == "argon" and traj.metadata["calculator"]["name"] == "lj"
    assert traj.metadata["temperature_K"] == 60.0 and traj.metadata["timestep_fs"] == 2.0
    assert traj.metadata["supercell"] == [2, 2, 2]  # 5.26 Å cube -> widths >= 9 Å
    with h5py.File(out) as f:  # plain h5py sees the H5MD layout
        assert f["particles/all/position/value"].shape == (11, 32, 3)
    # Without --resume an existing file is refused, with it the run continues.
    assert main(args) == 2
    assert "--resume" in capsys.readouterr().err
    longer = [*args[:6], "0.2", *args[7:]]
    assert main([*longer, "--resume"]) == 0
    extended = read_h5md(out)
    assert extended.n_frames == 21
    np.testing.assert_array_equal(extended.positions[:11], traj.positions)
    assert read_restart(out) is not None


def test_cli_reference_reports_bad_input(tmp_path, capsys):
    out = tmp_path / "x.h5"
    assert (
        main(
            [
                "reference",
                "--material",
                "unobtainium",
                "--temperature",
                "300",
                "--out",
                str(out),
                "--mlip",
                "lj",
            ]
        )
        == 2
    )
    assert "unknown material" in capsys.readouterr().err
    assert (
        main(
            [
                "reference",
                "--material",
                "Li2S",
                "--temperature",
                "-5",
                "--out",
                str(out),
                "--mlip",
                "lj",
            ]
        )
        == 2
    )
    assert "temperature" in capsys.readouterr().err
    assert (
        main(
            [
                "reference",
                "--material",
                "Li2S",
                "--temperature",
                "300",
                "--out",
                str(out),
                "--mlip",
                "nonsense",
            ]
        )
        == 2
    )
    assert "chgnet" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_reference_with_chgnet_for_a_few_steps(tmp_path):
    out = tmp_path / "Li2S_chgnet.h5"
    assert (
        main(
            [
                "reference",
                "--material",
                "Li2S",
                "--temperature",
                "800",
                "--ps",
                "0.02",
                "--equilibration-ps",
                "0.004",
                "--every",
                "2",
                "--supercell",
                "1",
                "1",
                "1",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    traj = read_h5md(out)
    assert traj.n_frames == 6 and traj.metadata["calculator"]["name"] == "chgnet"
    assert np.isfinite(traj.energies["potential_energy"]).all()


def synthetic_reference(directory, material, temperature_K, D_A2_ps, seed):
    traj = brownian_trajectory(
        D_A2_ps, n_atoms=64, n_frames=300, dt_ps=0.02, frame_atoms=16, seed=seed
    )
    traj.metadata.update(
        material=material,
        temperature_K=temperature_K,
        timestep_fs=2.0,
        calculator={"name": "synthetic", "version": "1"},
    )
    return traj.save(directory / dataset.reference_filename(material, temperature_K))


def test_card_rows_and_arrhenius_recompute_from_files(tmp_path):
    Ea = 0.2
    temps = [600.0, 800.0, 1000.0, 1200.0]
    for i, t in enumerate(temps):
        synthetic_reference(tmp_path, "LGPS", t, 30.0 * np.exp(-Ea / (kB * t)), seed=i)
    row = trajectory_row(tmp_path / "LGPS_600K.h5", "train")
    assert row.n_atoms == 80 and row.n_frames == 300 and row.temperature_K == 600.0
    assert row.mlip == "synthetic 1" and row.msd_frame_end_A2 == 0.0
    traj = read_h5md(tmp_path / "LGPS_600K.h5")
    li = traj.species_indices("Li")
    end_msd = np.mean(np.sum((traj.positions[-1, li] - traj.positions[0, li]) ** 2, axis=1))
    assert row.msd_li_end_A2 == pytest.approx(end_msd, rel=1e-5)
    rows = [trajectory_row(tmp_path / f"LGPS_{t:.0f}K.h5", "train") for t in temps]
    fit = arrhenius_by_material(rows)["LGPS"]
    assert abs(fit.Ea_eV - Ea) < 3 * fit.Ea_std_eV and abs(fit.Ea_eV - Ea) < 0.05
    card = write_card(tmp_path).read_text()
    assert "LGPS_1200K.h5" in card and "| LGPS |" in card
    # Synthetic Ea 0.2 eV vs literature 0.19 eV: inside the CI, said in words.
    assert "agrees (literature inside the 95 % CI" in card
    assert (tmp_path / "arrhenius.png").stat().st_size > 1000


def test_literature_verdict_says_which_way_chgnet_differs():
    from explorer.analysis.diffusion import arrhenius_fit
    from explorer.reference.card import literature_verdict

    temps = np.array([600.0, 800.0, 1000.0, 1200.0])
    d = 1e-3 * np.exp(-0.1 / (kB * temps))
    fit = arrhenius_fit(temps, d, 0.01 * d)  # Ea = 0.10 eV, tight CI
    assert literature_verdict(fit, 0.19) == (
        "CHGNet lower by 0.09 eV (literature outside the 95 % CI)"
    )
    assert literature_verdict(fit, 0.05).startswith("CHGNet higher by 0.05 eV")
    assert literature_verdict(fit, None) == "no literature value"


def test_card_marks_running_runs_and_lists_pending_ones(tmp_path):
    for i, t in enumerate([600.0, 800.0]):
        synthetic_reference(tmp_path, "LGPS", t, 0.05 * (i + 1), seed=i)
    running = tmp_path / "LGPS_800K.h5"
    traj = read_h5md(running)
    traj.metadata["status"] = "running"
    traj.save(running)
    rows = [trajectory_row(tmp_path / f"LGPS_{t}K.h5", "train") for t in (600, 800)]
    assert [r.complete for r in rows] == [True, False]
    assert arrhenius_by_material(rows) == {}  # one finished temperature: no fit
    card = write_card(tmp_path).read_text()
    assert "LGPS_800K.h5 (running)" in card and "Li3InCl6_600K.h5" in card.split("Not generated")[1]


def test_card_flags_a_framework_whose_least_mobile_species_diffuses(tmp_path):
    path = synthetic_reference(tmp_path, "LGPS", 1200.0, 0.5, seed=3)
    traj = read_h5md(path)
    frame = traj.numbers == 16
    rng = np.random.default_rng(0)
    # Half of the frame atoms become P and stay put, the S ones random-walk (D = 0.1 Å²/ps):
    # one mobile species is not a melted framework, both mobile is.
    traj.numbers[np.flatnonzero(frame)[:8]] = 15
    walk = np.cumsum(rng.normal(scale=0.06, size=(traj.n_frames, int(frame.sum()), 3)), axis=0)
    sulfur = traj.numbers == 16
    traj.positions[:, sulfur] += walk[:, :8] - walk[0, :8]
    traj.save(path)
    row = trajectory_row(path, "train")
    assert row.framework_intact and row.msd_framework_end_A2 == pytest.approx(0.0, abs=1e-9)
    phosphorus = traj.numbers == 15
    traj.positions[:, phosphorus] += walk[:, 8:] - walk[0, 8:]
    traj.save(path)
    row = trajectory_row(path, "train")
    assert not row.framework_intact and row.msd_framework_end_A2 > FRAMEWORK_MOBILE_A2
    card = write_card(tmp_path).read_text()
    assert "| mobile |" in card and "Mobile frameworks: LGPS_1200K.h5" in card
