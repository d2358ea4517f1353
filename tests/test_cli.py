"""The ``accelmd`` command line: materials and analyze."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from explorer.cli import main
from explorer.testing import brownian_trajectory

D_TRUE = 0.05  # Å²/ps


@pytest.fixture(scope="module")
def brownian_file(tmp_path_factory):
    # 2000 Li atoms: σ_D/D ≈ 1.7 % with the default fit window, so 5 % is 3σ.
    traj = brownian_trajectory(
        D_TRUE, n_atoms=2000, n_frames=500, dt_ps=0.1, cell=30.0, frame_atoms=100, seed=11
    )
    return traj.save(tmp_path_factory.mktemp("cli") / "brownian.h5"), traj


def run_json(capsys, *args: str) -> dict:
    assert main(list(args)) == 0
    return json.loads(capsys.readouterr().out)


def test_materials_lists_the_catalogue(capsys):
    entries = run_json(capsys, "materials", "--json")
    assert len(entries) >= 10
    assert {"LGPS", "Li3PS4-gamma", "Li6PS5Cl", "LLZO"} <= {e["name"] for e in entries}
    assert main(["materials"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[0] == "name" and len(table) == len(entries) + 1


def test_console_script_is_installed():
    script = shutil.which("accelmd") or str(
        __import__("pathlib").Path(sys.executable).with_name("accelmd")
    )
    out = subprocess.run([script, "materials"], capture_output=True, text=True, check=True)
    assert "Li10GeP2S12" in out.stdout


def test_analyze_recovers_brownian_D(capsys, brownian_file):
    path, _ = brownian_file
    summary = run_json(
        capsys, "analyze", str(path), "--json", "--rdf-rmax", "5", "--rdf-frames", "20"
    )
    assert summary["n_frames"] == 500 and summary["composition"] == {"Li": 2000, "S": 100}
    li = summary["diffusion"]["Li"]
    assert abs(li["D_A2_ps"] - D_TRUE) < 0.05 * D_TRUE
    assert li["D_cm2_s"] == pytest.approx(li["D_A2_ps"] * 1e-4)
    assert summary["msd_last_time_ps"] == pytest.approx(49.9)
    assert summary["msd_last_A2"]["Li"] == pytest.approx(6 * D_TRUE * 49.9, rel=0.1)
    assert summary["msd_last_A2"]["S"] == 0.0
    assert "do not move" in summary["diffusion"]["S"]["error"]
    assert summary["rdf"]["r_max_A"] == pytest.approx(5.0, abs=0.05)
    # Independent random walkers are an ideal gas: g(r) ≈ 1.
    assert summary["rdf"]["pair_peaks"]["Li-Li"]["g"] == pytest.approx(1.0, abs=0.2)


def test_analyze_human_readable(capsys, brownian_file):
    path, _ = brownian_file
    assert (
        main(["analyze", str(path), "--species", "Li", "--rdf-rmax", "4", "--rdf-frames", "10"])
        == 0
    )
    out = capsys.readouterr().out
    assert "D_Li = " in out and "cm²/s" in out


def test_analyze_bad_file_is_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "bad.h5"
    bad.write_text("not a trajectory")
    assert main(["analyze", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "error" in err and "bad.h5" in err and "Traceback" not in err
    assert main(["analyze", str(tmp_path / "missing.h5")]) == 2
    assert "no such file" in capsys.readouterr().err


@pytest.mark.slow
def test_analyze_agrees_with_kinisi_within_its_uncertainty(capsys, tmp_path):
    sc = pytest.importorskip("scipp")
    kinisi = pytest.importorskip("kinisi.analyze")
    traj = brownian_trajectory(D_TRUE, n_atoms=64, n_frames=1000, frame_atoms=8, seed=0)
    path = traj.save(tmp_path / "walk.h5")
    ours = run_json(capsys, "analyze", str(path), "--json", "--rdf-rmax", "4")["diffusion"]["Li"]
    analyzer = kinisi.DiffusionAnalyzer.from_ase(
        traj.to_atoms_list(wrap=True),
        specie="Li",
        time_step=sc.scalar(0.1, unit="ps"),
        step_skip=sc.scalar(1, unit=sc.units.dimensionless),
        # the same window as ours: 10 %–50 % of the span
        dt=sc.array(dims=["time interval"], values=0.1 * np.arange(1, 500), unit="ps"),
        progress=False,
    )
    analyzer.diffusion(
        sc.scalar(ours["fit_start_ps"], unit="ps"),
        n_samples=500,
        n_burn=200,
        progress=False,
        random_state=np.random.RandomState(0),
    )
    assert str(analyzer.D.unit) == "cm^2/s"
    kinisi_mean, kinisi_std = analyzer.D.values.mean(), analyzer.D.values.std()
    assert abs(ours["D_cm2_s"] - kinisi_mean) < kinisi_std
    assert 0.67 < ours["D_std_cm2_s"] / kinisi_std < 1.5
