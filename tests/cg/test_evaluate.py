"""CG evaluation summaries: the short-MD baseline over every window of the long reference."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.stats import wasserstein_distance
from sklearn.metrics import mean_absolute_error, r2_score

from explorer.cg.evaluate import short_windows, summarize
from explorer.errors import AnalysisError


def test_short_windows_tile_the_reference_with_shared_boundary_frames() -> None:
    series = np.arange(2001.0)  # 20,000 τ at 10 τ per frame
    windows = short_windows(series, 101)  # 1,000 τ each
    assert len(windows) == 20
    np.testing.assert_array_equal(windows[0], series[:101])  # the first is the baseline
    assert all(len(w) == 101 for w in windows)
    assert all(a[-1] == b[0] for a, b in itertools.pairwise(windows))
    assert windows[-1][-1] == series[-1]
    assert short_windows(series[:50], 101) == []  # shorter than one window
    with pytest.raises(AnalysisError, match="at least 2 frames"):
        short_windows(series, 1)


def _row(name: str, ref: float, model: float, windows: list[float], emd: list[float]) -> dict:
    row = {"polymer": name, "diverged": "", "reference_mean_rg2": ref,
           "reference_t_relax_tau": 10.0, "model_mean_rg2": model, "model_t_relax_tau": 12.0,
           "short_md_mean_rg2": windows[0] if windows else ref,
           "short_md_t_relax_tau": 9.0}  # fmt: skip
    for key in ("model", "short_md"):
        row.update({f"{key}_emd": 0.5, f"{key}_rs_mae": 0.1, f"{key}_contact_mae": 0.01})
    row["short_md_window_mean_rg2"] = windows
    row["short_md_window_emd"] = emd
    return row


def test_summary_gives_the_short_md_spread_over_windows_and_how_often_the_model_wins() -> None:
    ref = np.array([5.0, 6.0, 8.0, 9.0])
    model = np.array([5.5, 6.2, 7.1, 8.6])
    windows = np.array([[5.1, 4.0, 5.6], [6.1, 7.0, 5.2], [8.2, 6.0, 9.9], [9.0, 11.0, 8.1]])
    emd = np.array([[0.1, 0.9, 0.4], [0.2, 0.8, 0.5], [0.3, 0.7, 0.6], [0.2, 0.6, 0.5]])
    rows = [_row(f"p{k}", ref[k], model[k], list(windows[k]), list(emd[k])) for k in range(4)]
    summary = summarize(rows)
    r2 = np.array([r2_score(ref, windows[:, w]) for w in range(3)])
    mae = np.array([mean_absolute_error(ref, windows[:, w]) for w in range(3)])
    model_r2, model_mae = r2_score(ref, model), mean_absolute_error(ref, model)
    assert summary["model_r2"] == pytest.approx(model_r2)
    assert summary["short_md_r2"] == pytest.approx(r2[0])  # window 0 is the baseline
    assert summary["short_md_windows"] == 3
    assert summary["short_md_r2_median"] == pytest.approx(np.median(r2))
    assert (summary["short_md_r2_min"], summary["short_md_r2_max"]) == pytest.approx(
        (r2.min(), r2.max())
    )
    assert summary["short_md_mae_median"] == pytest.approx(np.median(mae))
    assert summary["short_md_emd_median"] == pytest.approx(np.median(emd.mean(0)))
    assert summary["model_beats_short_md_r2_fraction"] == pytest.approx(np.mean(r2 < model_r2))
    assert summary["model_beats_short_md_mae_fraction"] == pytest.approx(np.mean(mae > model_mae))
    assert summary["model_beats_short_md_emd_fraction"] == pytest.approx(np.mean(emd.mean(0) > 0.5))
    assert 0 < summary["model_beats_short_md_r2_fraction"] < 1  # the example has both


def test_window_emd_matches_scipy() -> None:
    from explorer.analysis.polymer import wasserstein_1d

    rng = np.random.default_rng(0)
    series = rng.gamma(4.0, 1.5, size=401)
    for window in short_windows(series, 101):
        assert wasserstein_1d(window, series) == pytest.approx(
            wasserstein_distance(window, series), rel=1e-9
        )


def test_reports_without_windows_summarise_as_before() -> None:
    rows = [_row(f"p{k}", 5.0 + k, 5.2 + k, [5.1 + k], [0.1]) for k in range(3)]
    for row in rows:
        del row["short_md_window_mean_rg2"], row["short_md_window_emd"]
    summary = summarize(rows)
    assert "short_md_r2" in summary and not any("median" in key for key in summary)
    rows = [_row(f"p{k}", 5.0 + k, 5.2 + k, [], []) for k in range(3)]
    assert "short_md_windows" not in summarize(rows)  # references shorter than one window
