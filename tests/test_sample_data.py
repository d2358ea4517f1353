"""Budget of the bundled data (project rule: sample_data/ under 60 MB in total)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

SAMPLE_DATA = Path(__file__).resolve().parents[1] / "sample_data"
LIMIT_BYTES = 60_000_000


def test_sample_data_stays_under_60_mb() -> None:
    total = sum(p.stat().st_size for p in SAMPLE_DATA.rglob("*") if p.is_file())
    assert 0 < total < LIMIT_BYTES, f"sample_data/ holds {total / 1e6:.1f} MB"


def test_bundled_trajectories_store_float32_positions() -> None:
    files = sorted(SAMPLE_DATA.rglob("*.h5"))
    assert files
    for path in files:
        with h5py.File(path, "r") as f:
            assert f["particles/all/position/value"].dtype == np.float32, path.name
