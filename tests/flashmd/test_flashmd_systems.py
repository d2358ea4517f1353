"""The FlashMD reference systems: run selection, protocol and the bundled Al(110) runs."""

from __future__ import annotations

import dataclasses

import h5py
import numpy as np
import pytest

from explorer.flashmd import systems
from explorer.flashmd.systems import AL_SLAB, DATA_DIR, generate, system_files
from explorer.h5md import read_h5md


def test_splits_never_share_a_run_and_span_app_k_temperatures() -> None:
    splits = [split for split, _, _ in AL_SLAB.runs]
    assert splits.count("val") == 1 and splits.count("test") == 1
    seeds = [seed for _, _, seed in AL_SLAB.runs]
    assert len(set(seeds)) == len(seeds)
    temperatures = [t for _, t, _ in AL_SLAB.runs]
    assert min(temperatures) == 400.0 and max(temperatures) == 900.0  # App K
    assert AL_SLAB.equilibration_ensemble == "langevin"


def test_generate_rejects_unknown_run_indices(tmp_path) -> None:
    with pytest.raises(ValueError, match="runs 0-9"):
        generate("al110", tmp_path, runs=[10])


def test_generate_runs_only_the_selected_runs(tmp_path, monkeypatch) -> None:
    tiny = dataclasses.replace(AL_SLAB, equilibration_ps=0.016, production_ps=0.032)
    monkeypatch.setitem(systems.SYSTEMS, "al110", tiny)
    (result,) = generate("al110", tmp_path, runs=[1])
    written = sorted(p.name for p in tmp_path.glob("*.h5"))
    assert written == [AL_SLAB.filename("train", 1)]
    assert result.n_frames == 3  # frames at 0, 16, 32 fs
    with h5py.File(tmp_path / written[0], "r") as f:
        assert f["particles/all/momentum/value"].dtype == np.float32
        assert f["particles/all/momentum/value"].shape == (3, 240, 3)
    traj = read_h5md(tmp_path / written[0])
    assert traj.metadata["temperature_K"] == AL_SLAB.runs[1][1]


@pytest.mark.skipif(not system_files("al110", "test"), reason="Al(110) data not generated")
def test_bundled_al_runs_start_near_their_target_temperature() -> None:
    """After the Langevin equilibration the first 0.3 ps of NVE sit within 3 canonical
    standard deviations of the target. (The old 0.5 ps Nosé–Hoover protocol left the 700 K
    test run at ~570 K.)"""
    for k, (split, target, _) in enumerate(AL_SLAB.runs):
        traj = read_h5md(DATA_DIR / AL_SLAB.filename(split, k))
        early = traj.energies["temperature"][:20]  # 0.3 ps
        sigma = target * np.sqrt(2.0 / (3.0 * traj.n_atoms))
        assert abs(early.mean() - target) < 3 * sigma, (split, target, early.mean())
