"""Pure plotly builders: the data on screen are exactly the analysis results."""

from __future__ import annotations

import shutil

import numpy as np
import plotly.graph_objects as go
import pytest

from explorer.analysis.diffusion import arrhenius_fit, diffusion_coefficient
from explorer.analysis.msd import msd
from explorer.analysis.pmf import pmf_slice
from explorer.analysis.rdf import overlap_score, rdf
from explorer.testing import brownian_trajectory
from widgets import figures


@pytest.fixture(scope="module")
def traj():
    t = brownian_trajectory(0.1, n_atoms=8, n_frames=40, dt_ps=1.0, frame_atoms=4, seed=1)
    t.metadata["temperature_K"] = 800.0
    return t


def by_key(fig, key):
    (trace,) = [t for t in fig.data if t.meta == key]
    return trace


def test_msd_traces_carry_the_msd_and_reference_is_dashed(traj):
    result = msd(traj)
    reference = msd(traj[:20])
    fig = figures.msd_figure(result, reference)
    li = by_key(fig, "msd:Li:model")
    np.testing.assert_allclose(li.x, result.times_ps)
    np.testing.assert_allclose(li.y, result.msd["Li"])
    assert by_key(fig, "msd:Li:reference").line.dash == "dash"
    assert {t.meta for t in fig.data} == {
        "msd:Li:model", "msd:S:model", "msd:Li:reference", "msd:S:reference"
    }  # fmt: skip


def test_log_msd_drops_zero_lag_and_frozen_species(traj):
    fig = figures.msd_figure(msd(traj), log=True)
    assert fig.layout.xaxis.type == "log" and fig.layout.yaxis.type == "log"
    li = by_key(fig, "msd:Li:model")
    assert len(li.x) == traj.n_frames - 1 and min(li.x) > 0
    assert len(by_key(fig, "msd:S:model").x) == 0  # S never moves: nothing on a log axis


def test_rdf_figure_has_total_pairs_and_overlap_in_title(traj):
    result, reference = rdf(traj), rdf(traj[:10])
    scores = overlap_score(result, reference)
    fig = figures.rdf_figure(result, reference, scores)
    np.testing.assert_allclose(by_key(fig, "rdf:total:model").y, result.total)
    np.testing.assert_allclose(by_key(fig, "rdf:Li-S:model").y, result.partial("Li", "S"))
    assert by_key(fig, "rdf:S-S:model").visible == "legendonly"  # no Li: hidden at first
    title = fig.layout.title.text
    assert f"min {min(scores.values()):.2f}" in title and "Li–S" in title


def test_overlap_title_sets_thinly_sampled_pairs_apart():
    scores = {("Li", "Li"): 0.8, ("Li", "S"): 0.7, ("S", "S"): 0.02}
    title = figures.overlap_title(scores, "RDF", sparse=[("S", "S")])
    expected = "min 0.70 (Li–Li 0.80, Li–S 0.70; too few pairs yet: S–S)"
    assert title == f"RDF · overlap with reference MD: {expected}"
    everything = figures.overlap_title(scores, "RDF", sparse=list(scores))
    assert "min" not in everything and "too few pairs yet: Li–Li, Li–S, S–S" in everything
    assert figures.overlap_title(scores, "RDF").startswith(
        "RDF · overlap with reference MD: min 0.02"
    )


def test_pmf_heatmap_is_the_pmf_with_blank_unvisited_bins(traj):
    result = pmf_slice(traj, "Li", "ab", bins=(10, 10))
    fig = figures.pmf_figure(result)
    z = np.array(fig.data[0].z, dtype=float)  # None -> nan
    expected = np.where(np.isfinite(result.pmf), result.pmf, np.nan).T  # inf: blank on screen
    np.testing.assert_allclose(z, expected)
    assert np.isnan(z).any() and np.nanmin(z) == 0.0
    assert fig.data[0].x[-1] == pytest.approx(0.95 * 12.0)


def test_arrhenius_figure_points_fit_line_and_ea_title():
    temps = np.array([600.0, 800.0, 1000.0])
    d = 10.0 * np.exp(-0.3 / (8.617333e-5 * temps))
    points = [figures.ArrheniusPoint(t, v, 0.05 * v) for t, v in zip(temps, d, strict=True)]
    fit = arrhenius_fit(temps, d, 0.05 * d)
    fig = figures.arrhenius_figure(points, fit, points[:2], None)
    model = by_key(fig, "arrhenius:points:model")
    np.testing.assert_allclose(model.x, 1000.0 / temps)
    np.testing.assert_allclose(model.y, d * 1e-4)  # Å²/ps -> cm²/s
    line = by_key(fig, "arrhenius:fit:model")
    np.testing.assert_allclose(line.y, fit.predict(1000.0 / np.array(line.x)) * 1e-4)
    assert "Ea = 0.300 ±" in fig.layout.title.text
    assert len(by_key(fig, "arrhenius:fit:reference").x) == 0  # no reference fit given


def test_diffusion_summary_line(traj):
    result = diffusion_coefficient(traj, "Li")
    line = figures.diffusion_summary(result, result)
    assert line.startswith(f"D_Li = {result.D_cm2_s:.2e} ± ")
    assert "reference MD" in line
    assert figures.diffusion_summary(None, reason="need more frames") == (
        "D_Li: not available yet (need more frames)"
    )


def test_li_traces_and_cell_edges(traj):
    edges = figures.cell_edges(traj.cell)
    assert edges.shape == (36, 3)  # 12 edges × (2 ends + separator)
    fig = figures.li_traces_figure(traj)
    paths = by_key(fig, "traces:paths:model")
    assert len(paths.x) == 8 * (traj.n_frames + 1)


def test_sync_figure_replaces_whole_arrays_in_a_figure_widget(traj):
    live = go.FigureWidget(figures.msd_figure(msd(traj[:5])))
    fresh = figures.msd_figure(msd(traj), reference=msd(traj[:10]))
    figures.sync_figure(live, fresh)
    li = by_key(live, "msd:Li:model")
    np.testing.assert_allclose(li.y, msd(traj).msd["Li"])
    assert by_key(live, "msd:Li:reference") is not None  # appended
    figures.set_log_axes(live, True)
    assert live.layout.yaxis.type == "log"


def test_write_figures_html(tmp_path, traj):
    written, problems = figures.write_figures({"msd": figures.msd_figure(msd(traj))}, tmp_path)
    assert written == [tmp_path / "msd.html"] and not problems
    assert "plotly" in (tmp_path / "msd.html").read_text()[:5000].lower()


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("chromium") is None, reason="kaleido needs a Chrome/Chromium")
def test_write_figures_png_renders_the_curve(tmp_path, traj):
    """PNG export goes through kaleido and the system Chromium; the image must show data."""
    from PIL import Image

    fig = figures.msd_figure(msd(traj))
    written, problems = figures.write_figures({"msd": fig}, tmp_path, ("png",))
    assert written == [tmp_path / "msd.png"] and not problems
    pixels = np.asarray(Image.open(tmp_path / "msd.png").convert("RGB"), dtype=float)
    assert pixels.shape[0] > 100 and pixels.shape[1] > 100
    # A plot with curves and axes, not a blank canvas: many distinct colours.
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50


def test_write_figures_reports_unknown_format_instead_of_raising(tmp_path, traj):
    written, problems = figures.write_figures(
        {"msd": figures.msd_figure(None)}, tmp_path, ("bmpx",)
    )
    assert written == [] and len(problems) == 1 and "msd.bmpx" in problems[0]


def test_sync_figure_keeps_the_traces_of_a_source_the_fresh_figure_omits(traj):
    live = go.FigureWidget(figures.msd_figure(msd(traj[:10]), reference=msd(traj)))
    reference_y = np.array(by_key(live, "msd:Li:reference").y)
    fresh = figures.omit_source(figures.msd_figure(msd(traj)), figures.REFERENCE)
    figures.sync_figure(live, fresh)
    np.testing.assert_allclose(by_key(live, "msd:Li:reference").y, reference_y)
    np.testing.assert_allclose(by_key(live, "msd:Li:model").y, msd(traj).msd["Li"])
    # Without the mark, traces missing from the fresh figure are emptied (a new run).
    figures.sync_figure(live, figures.msd_figure(msd(traj)))
    assert len(by_key(live, "msd:Li:reference").y) == 0


def test_sync_figure_sends_whole_numpy_arrays_and_heatmaps_as_nested_lists(traj):
    live = go.FigureWidget(figures.pmf_figure(None))
    result = pmf_slice(traj, "Li", "ab", bins=(10, 10))
    figures.sync_figure(live, figures.pmf_figure(result))
    z = live.data[0].z
    assert not isinstance(z, np.ndarray) and isinstance(z[0], list)  # rows of plain values
    expected = np.where(np.isfinite(result.pmf), result.pmf, np.nan).T
    np.testing.assert_allclose(np.array(z, dtype=float), expected)  # None -> NaN
    lines = go.FigureWidget(figures.msd_figure(None, species=["Li"]))
    figures.sync_figure(lines, figures.msd_figure(msd(traj)))
    assert isinstance(by_key(lines, "msd:Li:model").y, np.ndarray)


def test_live_analysis_leaves_the_reference_out_when_asked(traj):
    from pathlib import Path

    from widgets.live import LiveAnalysis, ReferenceAnalysis

    analysis = LiveAnalysis(800.0, material=None)
    analysis.reference = ReferenceAnalysis(Path("ref.h5"), traj, msd(traj), rdf(traj), None)
    analysis.update(traj[:20])
    full = analysis.figures()
    assert any(t.meta == "msd:Li:reference" for t in full["msd"].data)
    assert full["msd"].layout.meta is None
    assert set(full) == {"msd", "rdf", "pmf", "traces"}
    partial = analysis.figures(names=["msd", "rdf"], omit_reference=["msd", "rdf"])
    assert set(partial) == {"msd", "rdf"}
    for name in ("msd", "rdf"):
        assert not [t for t in partial[name].data if t.meta.endswith(":reference")]
        assert partial[name].layout.meta == {"omits": ["reference"]}
    assert partial["rdf"].layout.title.text == full["rdf"].layout.title.text  # overlap kept
    only_rdf = analysis.figures(names=["msd", "rdf"], omit_reference=["rdf"])
    assert any(t.meta == "msd:Li:reference" for t in only_rdf["msd"].data)
    with pytest.raises(ValueError, match="unknown figures"):
        analysis.figures(names=["msd", "arrhenius"])
