"""Pure plotly figure builders shared by the notebook explorer, the Panel app and the tests.

Every builder takes analysis results from :mod:`explorer.analysis` (or a
:class:`~explorer.trajectory.Trajectory`) and returns a fresh ``plotly.graph_objects.Figure``;
nothing here imports ipywidgets or Panel. Live views keep one figure object (a
``FigureWidget`` in Jupyter, a ``Figure`` inside a Panel pane) and copy a freshly built
figure into it with :func:`sync_figure`, which assigns whole arrays to each trace (partial
in-place edits of plotly's tuples lost points in Panel, see ``UI-NOTES.md``).

Every trace gets a stable key in ``meta`` (``"<figure>:<what>:<source>"``) so that
:func:`sync_figure` can match traces between the live figure and a rebuilt one (not
``uid``: ``FigureWidget`` replaces trace uids with its own).

Units: lag time ps, MSD Å², r Å, g(r) dimensionless, PMF eV, D Å²/ps (shown also in cm²/s),
temperatures K, activation energies eV.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio

from explorer.analysis.diffusion import A2_PS_TO_CM2_S, ArrheniusResult, DiffusionResult
from explorer.analysis.msd import MSDResult
from explorer.analysis.pmf import PMFResult
from explorer.analysis.rdf import PairKey, RDFResult
from explorer.trajectory import Trajectory

# One colour per element symbol, stable across figures (Li always the same green).
_PALETTE = ("#636efa", "#ef553b", "#ab63fa", "#ffa15a", "#19d3f3", "#ff6692", "#b6e880")
LI_COLOUR = "#00a65a"
REFERENCE_DASH = "dash"
MODEL, REFERENCE = "model", "reference"
#: What our figures take from plotly's "plotly_white": page, axes, 3-D scene, font and
#: colours. The full template also carries defaults for trace types we never draw; it is
#: copied and validated into every new figure (31 ms a figure here, against 3 ms for this
#: part; live views build four per update) and sent to the browser with each (7 kB).
_WHITE_KEYS = (
    "paper_bgcolor", "plot_bgcolor", "xaxis", "yaxis", "scene", "colorway", "font",
    "hovermode", "hoverlabel", "title", "annotationdefaults", "shapedefaults",
)  # fmt: skip
TEMPLATE = go.layout.Template(
    layout={
        key: value
        for key, value in pio.templates["plotly_white"].layout.to_plotly_json().items()
        if key in _WHITE_KEYS
    }
)
_LAYOUT = dict(template=TEMPLATE, margin=dict(l=60, r=20, t=50, b=50), height=360)


def species_colour(symbol: str, order: Sequence[str] = ()) -> str:
    """A stable colour per element: Li green, the others from a palette by position."""
    if symbol == "Li":
        return LI_COLOUR
    others = [s for s in order if s != "Li"] or [symbol]
    index = others.index(symbol) if symbol in others else len(others)
    return _PALETTE[index % len(_PALETTE)]


def _empty_note(fig: go.Figure, text: str) -> go.Figure:
    fig.add_annotation(
        text=text, showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5, name="note"
    )
    return fig


# -- MSD ------------------------------------------------------------------------------


def msd_figure(
    result: MSDResult | None,
    reference: MSDResult | None = None,
    log: bool = False,
    species: Sequence[str] | None = None,
    title: str = "Mean squared displacement",
) -> go.Figure:
    """MSD per species against lag time (seed 001 eq. 16), linear or log-log axes.

    Model curves are solid, the reference MD (when given) dashed in the same colour.
    ``species`` fixes the traces (and their order) so that a live figure keeps the same
    traces while data arrive; default: the species of ``result``. On log axes the lag 0
    (MSD 0) is left out.
    """
    names = list(species or (result.species if result else reference.species if reference else []))
    traces = []  # dicts, validated once by the Figure (measured: half the cost of go.Scatter)
    for source, data in ((MODEL, result), (REFERENCE, reference)):
        if source == REFERENCE and data is None:
            continue
        for name in names:
            x, y = _msd_xy(data, name, log)
            traces.append(
                dict(
                    type="scatter",
                    x=x,
                    y=y,
                    mode="lines+markers" if source == MODEL else "lines",
                    name=name if source == MODEL else f"{name} (reference MD)",
                    meta=f"msd:{name}:{source}",
                    legendgroup=name,
                    line=dict(
                        color=species_colour(name, names),
                        dash=REFERENCE_DASH if source == REFERENCE else "solid",
                    ),
                    marker=dict(size=5),
                )
            )
    axis = "log" if log else "linear"
    fig = go.Figure(
        data=traces,
        layout=dict(
            **_LAYOUT,
            title=title,
            xaxis=dict(title=dict(text="lag time t (ps)"), type=axis),
            yaxis=dict(title=dict(text="MSD (Å²)"), type=axis),
        ),
    )
    if result is None:
        _empty_note(fig, "no frames yet")
    return fig


def _msd_xy(data: MSDResult | None, name: str, log: bool) -> tuple[np.ndarray, np.ndarray]:
    if data is None or name not in data.msd:
        return np.array([]), np.array([])
    x, y = data.times_ps, data.msd[name]
    if log:
        keep = (x > 0) & (y > 0)
        x, y = x[keep], y[keep]
    return x, y


# -- RDF ------------------------------------------------------------------------------


def pair_label(pair: PairKey) -> str:
    return f"{pair[0]}–{pair[1]}"


def overlap_title(
    scores: Mapping[PairKey, float] | None, base: str = "RDF", sparse: Collection[PairKey] = ()
) -> str:
    """``RDF · overlap with reference MD: min 0.93 (Li–S 0.95, …; too few pairs yet: Ge–Ge)``
    (seed 004 eq. 7). ``sparse`` pairs (``explorer.analysis.rdf.sparse_pairs``) are named
    but left out of the minimum: with a handful of distances they score near 0 anyway."""
    if not scores:
        return base
    scored = {k: v for k, v in sorted(scores.items()) if k not in sparse}
    few = [pair_label(k) for k in sorted(scores) if k in sparse]
    parts = ", ".join(f"{pair_label(k)} {v:.2f}" for k, v in scored.items())
    if few:
        parts += ("; " if parts else "") + "too few pairs yet: " + ", ".join(few)
    head = f"min {min(scored.values()):.2f} " if scored else ""
    return f"{base} · overlap with reference MD: {head}({parts})"


def rdf_figure(
    result: RDFResult | None,
    reference: RDFResult | None = None,
    overlap: Mapping[PairKey, float] | None = None,
    pairs: Sequence[PairKey] | None = None,
    title: str = "Radial distribution function",
    sparse: Collection[PairKey] = (),
) -> go.Figure:
    """Total g(r) and element-pair partials g_AB(r) (seed 001 eq. 18), reference dashed.

    Pairs involving Li are shown, the other partials start hidden (click the legend).
    ``overlap`` (seed 004 eq. 7 per pair) goes into the title, ``sparse`` pairs apart.
    """
    base = result or reference
    keys = list(pairs) if pairs is not None else (list(base.partials) if base else [])
    curves: list[tuple[str, str, PairKey | None]] = [("total", "total", None)]
    curves += [(f"{a}-{b}", pair_label((a, b)), (a, b)) for a, b in keys]
    traces = []  # dicts, validated once by the Figure (as in msd_figure)
    for source, data in ((MODEL, result), (REFERENCE, reference)):
        if source == REFERENCE and data is None:
            continue
        for i, (key, label, pair) in enumerate(curves):
            x, y = _rdf_xy(data, pair)
            shown = pair is None or "Li" in pair
            traces.append(
                dict(
                    type="scatter",
                    x=x,
                    y=y,
                    mode="lines",
                    name=label if source == MODEL else f"{label} (reference MD)",
                    meta=f"rdf:{key}:{source}",
                    legendgroup=key,
                    visible=True if shown else "legendonly",
                    line=dict(
                        color="black" if pair is None else _PALETTE[(i - 1) % len(_PALETTE)],
                        dash=REFERENCE_DASH if source == REFERENCE else "solid",
                        width=2 if pair is None else 1.5,
                    ),
                )
            )
    fig = go.Figure(
        data=traces,
        layout=dict(
            **_LAYOUT,
            title=overlap_title(overlap, title, sparse),
            xaxis=dict(title=dict(text="r (Å)")),
            yaxis=dict(title=dict(text="g(r)")),
        ),
    )
    if result is None:
        _empty_note(fig, "no frames yet")
    return fig


def _rdf_xy(data: RDFResult | None, pair: PairKey | None) -> tuple[np.ndarray, np.ndarray]:
    if data is None:
        return np.array([]), np.array([])
    if pair is None:
        return data.r, data.total
    if pair not in data.partials:
        return np.array([]), np.array([])
    return data.r, data.partials[pair]


# -- PMF ------------------------------------------------------------------------------


def pmf_figure(result: PMFResult | None, title: str | None = None) -> go.Figure:
    """Heat map of F(u, v) = −k_B T ln(ρ/ρ_max) on a lattice plane (seed 001 Fig. 4), eV.

    Axes are distances along the two in-plane lattice vectors (fractional coordinate ×
    lattice length, Å); for an oblique plane the picture is sheared (noted in the
    title). Never-visited bins (F = +inf) are left blank.
    """
    if result is None:
        fig = go.Figure(
            data=[dict(type="heatmap", z=[[None]], meta="pmf:map:model", colorscale="Viridis")],
            layout=dict(**{**_LAYOUT, "height": 420}, title=title or "Li potential of mean force"),
        )
        return _empty_note(fig, "no frames yet")
    lengths = np.linalg.norm(result.xy_corners[-1, 0]), np.linalg.norm(result.xy_corners[0, -1])
    z = np.where(np.isfinite(result.pmf), result.pmf, np.nan).T  # rows = v, columns = u
    heatmap = dict(
        type="heatmap",
        x=result.frac_u * lengths[0],
        y=result.frac_v * lengths[1],
        z=z,  # NaN: blank; validated as one array (a nested list: element by element)
        meta="pmf:map:model",
        colorscale="Viridis",
        colorbar=dict(title=dict(text="F (eV)")),
        hovertemplate="%{x:.2f} Å, %{y:.2f} Å: %{z:.3f} eV<extra></extra>",
    )
    u_axis, v_axis = result.plane[0], result.plane[1]
    oblique = abs(float(np.dot(*_unit_in_plane(result)))) > 1e-6
    default = (
        f"{result.species} PMF on the {result.plane} plane at {result.temperature_K:g} K "
        f"({result.n_frames_used} frames{', oblique axes drawn square' if oblique else ''})"
    )
    return go.Figure(
        data=[heatmap],
        layout=dict(
            **{**_LAYOUT, "height": 420},
            title=title or default,
            xaxis=dict(title=dict(text=f"along {u_axis} (Å)"), constrain="domain"),
            yaxis=dict(title=dict(text=f"along {v_axis} (Å)"), scaleanchor="x"),
        ),
    )


def _unit_in_plane(result: PMFResult) -> tuple[np.ndarray, np.ndarray]:
    a = result.xy_corners[-1, 0] - result.xy_corners[0, 0]
    b = result.xy_corners[0, -1] - result.xy_corners[0, 0]
    return a / np.linalg.norm(a), b / np.linalg.norm(b)


# -- diffusion and Arrhenius --------------------------------------------------------------


@dataclass(frozen=True)
class ArrheniusPoint:
    """D of one species at one temperature: K, Å²/ps ± Å²/ps."""

    temperature_K: float
    D_A2_ps: float
    D_std_A2_ps: float


def diffusion_summary(
    result: DiffusionResult | None,
    reference: DiffusionResult | None = None,
    reason: str = "",
) -> str:
    """One line: ``D_Li = 1.2e-05 ± 2e-06 cm²/s (fit 1–5 ps, 20 Li); reference MD …``.

    ``reason`` says why there is no D yet (e.g. too few frames).
    """
    if result is None:
        text = f"D_Li: not available yet{f' ({reason})' if reason else ''}"
    else:
        text = (
            f"D_{result.species} = {result.D_cm2_s:.2e} ± {result.D_std_cm2_s:.1e} cm²/s "
            f"({result.D_A2_ps:.3g} ± {result.D_std_A2_ps:.2g} Å²/ps; fit "
            f"{result.fit_start_ps:g}–{result.fit_end_ps:g} ps, {result.n_atoms} atoms)"
        )
    if reference is not None:
        text += f"; reference MD: {reference.D_cm2_s:.2e} ± {reference.D_std_cm2_s:.1e} cm²/s"
    return text


def ea_text(fit: ArrheniusResult | None, label: str = "model") -> str:
    """``model: Ea = 0.25 ± 0.03 eV (95 % CI 0.19–0.31)``."""
    if fit is None:
        return ""
    low, high = fit.Ea_ci95_eV
    return f"{label}: Ea = {fit.Ea_eV:.3f} ± {fit.Ea_std_eV:.3f} eV (95 % CI {low:.3f}–{high:.3f})"


def arrhenius_figure(
    points: Sequence[ArrheniusPoint],
    fit: ArrheniusResult | None = None,
    reference_points: Sequence[ArrheniusPoint] = (),
    reference_fit: ArrheniusResult | None = None,
    species: str = "Li",
) -> go.Figure:
    """D(T) against 1000/T on a log axis with the fitted Arrhenius lines (seed 001 §II.4).

    Error bars are ±1 standard uncertainty of D; lines are D0 exp(−Ea/k_B T) of the fits;
    the title carries Ea ± its standard error and 95 % interval for the model and the
    reference MD.
    """
    fig = go.Figure(layout=dict(**_LAYOUT))
    all_t = [p.temperature_K for p in (*points, *reference_points)]
    for source, pts, line_fit in (
        (MODEL, points, fit),
        (REFERENCE, reference_points, reference_fit),
    ):
        colour = LI_COLOUR if source == MODEL else "grey"
        label = "model" if source == MODEL else "reference MD"
        shown = [p for p in pts if p.D_A2_ps > 0]
        fig.add_trace(
            go.Scatter(
                x=[1000.0 / p.temperature_K for p in shown],
                y=[p.D_A2_ps * A2_PS_TO_CM2_S for p in shown],
                error_y=dict(type="data", array=[p.D_std_A2_ps * A2_PS_TO_CM2_S for p in shown]),
                mode="markers",
                name=f"D_{species} {label}",
                meta=f"arrhenius:points:{source}",
                marker=dict(color=colour, size=9, symbol="circle" if source == MODEL else "square"),
            )
        )
        x, y = _fit_line(line_fit, all_t)
        fig.add_trace(
            go.Scatter(
                x=x,
                y=y,
                mode="lines",
                name=f"Arrhenius fit ({label})",
                meta=f"arrhenius:fit:{source}",
                line=dict(color=colour, dash="solid" if source == MODEL else REFERENCE_DASH),
            )
        )
    texts = [t for t in (ea_text(fit), ea_text(reference_fit, "reference MD")) if t]
    fig.update_layout(title="<br>".join(texts) if texts else f"Arrhenius plot of D_{species}")
    fig.update_xaxes(title_text="1000 / T (1/K)")
    fig.update_yaxes(title_text=f"D_{species} (cm²/s)", type="log", exponentformat="e")
    if not points and not reference_points:
        _empty_note(fig, "run several temperatures in Arrhenius mode")
    return fig


def _fit_line(fit: ArrheniusResult | None, temps: Sequence[float]) -> tuple[list, list]:
    if fit is None or not temps:
        return [], []
    t = np.linspace(min(temps) * 0.95, max(temps) * 1.05, 30)
    return list(1000.0 / t), list(fit.predict(t) * A2_PS_TO_CM2_S)


# -- trajectory in 3-D (plotly; the nglview view lives in widgets.viewer) -------------


def cell_edges(cell: np.ndarray) -> np.ndarray:
    """(36, 3) endpoints of the 12 cell edges with NaN separators: one Scatter3d line."""
    cell = np.asarray(cell, dtype=float)
    corners = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)]) @ cell
    lines = []
    for a in range(8):
        for b in range(a + 1, 8):
            if bin(a ^ b).count("1") == 1:  # corners differing in one lattice index
                lines += [corners[a], corners[b], [np.nan] * 3]
    return np.array(lines)


def li_traces_figure(
    traj: Trajectory | None, species: str = "Li", max_atoms: int = 64
) -> go.Figure:
    """Unwrapped paths of the ``species`` atoms (Å) with the cell: where Li went.

    One Scatter3d line holds every path (NaN-separated), so the trace count stays fixed
    as frames arrive. At most ``max_atoms`` atoms are drawn, to keep the browser fast.
    """
    fig = go.Figure(layout=dict(**{**_LAYOUT, "height": 420}, title=f"{species} paths"))
    paths = np.empty((0, 3))
    start = np.empty((0, 3))
    edges = np.empty((0, 3))
    if traj is not None:
        index = traj.species_indices(species)[:max_atoms]
        pos = traj.positions[:, index].astype(float)  # (frames, atoms, 3)
        gap = np.full((1, index.size, 3), np.nan)
        paths = np.concatenate([pos, gap]).transpose(1, 0, 2).reshape(-1, 3)
        start = pos[0]
        edges = cell_edges(traj.cell)
    fig.add_trace(
        go.Scatter3d(
            x=edges[:, 0], y=edges[:, 1], z=edges[:, 2], mode="lines", name="cell",
            meta="traces:cell:model", line=dict(color="grey", width=2), hoverinfo="skip",
        )
    )  # fmt: skip
    fig.add_trace(
        go.Scatter3d(
            x=paths[:, 0], y=paths[:, 1], z=paths[:, 2], mode="lines", name=f"{species} paths",
            meta="traces:paths:model", line=dict(color=LI_COLOUR, width=3),
        )
    )  # fmt: skip
    fig.add_trace(
        go.Scatter3d(
            x=start[:, 0], y=start[:, 1], z=start[:, 2], mode="markers", name="start",
            meta="traces:start:model", marker=dict(color=LI_COLOUR, size=3),
        )
    )  # fmt: skip
    fig.update_layout(scene=dict(aspectmode="data"))
    return fig


# -- live updates and export ------------------------------------------------------------

_DATA_FIELDS = ("x", "y", "z", "error_y", "visible", "name")


def omit_source(fig: go.Figure, source: str) -> go.Figure:
    """Mark ``fig`` as built without its ``source`` traces (e.g. :data:`REFERENCE`):
    :func:`sync_figure` then keeps the live figure's traces of that source as they are.

    Live views use it for data that cannot change during a run (the reference MD), so
    that each update rebuilds only the model's traces.
    """
    meta = fig.layout.meta if isinstance(fig.layout.meta, dict) else {}
    fig.layout.meta = {**meta, "omits": sorted({*meta.get("omits", ()), source})}
    return fig


def _omitted_sources(fig: Any) -> set[str]:
    meta = fig.layout.meta
    return set(meta.get("omits", ())) if isinstance(meta, dict) else set()


def _trace_source(trace: Any) -> str:
    return str(trace.meta).rsplit(":", 1)[-1]


def sync_figure(target: Any, fresh: go.Figure) -> None:
    """Copy a freshly built figure into a live one (FigureWidget or Figure), in place.

    Traces are matched by their ``meta`` key; their data are replaced by whole arrays (never edited
    element-wise). Traces of ``fresh`` missing from ``target`` are appended, traces of
    ``target`` absent from ``fresh`` are emptied (unless ``fresh`` omits their source,
    see :func:`omit_source`), and title, axis types and annotations follow ``fresh``.
    A ``visible`` the user changed through the legend is kept.
    """
    by_key = {trace.meta: trace for trace in target.data}
    omitted = _omitted_sources(fresh)
    seen = set()
    with target.batch_update():
        for new in fresh.data:
            seen.add(new.meta)
            old = by_key.get(new.meta)
            if old is None or old.type != new.type:
                target.add_trace(new)
                continue
            for name in _DATA_FIELDS:
                if name == "visible" or name not in new:
                    continue
                value = new[name]
                if name in ("x", "y", "z") and value is None:
                    value = []
                if name in ("x", "y", "z"):
                    value = _as_data(value)
                old[name] = value
        for key, old in by_key.items():
            if key not in seen and old.type == "scatter" and _trace_source(old) not in omitted:
                old.x, old.y = [], []
        target.layout.title = fresh.layout.title
        target.layout.annotations = fresh.layout.annotations
        target.layout.xaxis.type = fresh.layout.xaxis.type
        target.layout.yaxis.type = fresh.layout.yaxis.type


def _as_data(value: Any) -> Any:
    """Whole arrays in the form plotly front ends take fastest.

    1-D numeric arrays stay float64 numpy arrays (NaN marks a gap): plotly validates
    them with one copy, FigureWidget sends them as binary buffers and Panel's pane as
    ColumnDataSource columns. As plain lists, plotly's validator visits every element
    (measured: 0.08 s of a 0.21-s LiFlow figure update). 2-D arrays (heatmaps) become
    nested lists (NaN → None), which both front ends draw.
    """
    if isinstance(value, np.ndarray):
        if value.ndim > 1:
            return np.where(np.isfinite(value), value, None).tolist()
        if value.dtype.kind in "fiu":
            return np.ascontiguousarray(value, dtype=np.float64)
        return value.tolist()
    if isinstance(value, tuple):
        return list(value)
    return value


def set_log_axes(fig: Any, log: bool) -> None:
    """Switch both axes between linear and log (the MSD view's toggle)."""
    axis = "log" if log else "linear"
    with fig.batch_update():
        fig.layout.xaxis.type = axis
        fig.layout.yaxis.type = axis


def write_figures(
    figures: Mapping[str, Any], directory: str | Path, formats: Sequence[str] = ("html",)
) -> tuple[list[Path], list[str]]:
    """Write each figure as ``<directory>/<name>.<format>``; returns (written, problems).

    HTML embeds plotly.js, so the files open offline. PNG goes through kaleido, which
    drives a local Chrome or Chromium (Debian's /usr/bin/chromium works);
    when it is unavailable the problem is returned as text instead of raised.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written, problems = [], []
    for name, fig in figures.items():
        for fmt in formats:
            path = directory / f"{name}.{fmt}"
            try:
                if fmt == "html":
                    go.Figure(fig).write_html(path, include_plotlyjs=True)
                else:
                    go.Figure(fig).write_image(path)
            except Exception as exc:  # kaleido/Chrome missing or broken: report, go on
                problems.append(f"{path.name}: {type(exc).__name__}: {str(exc)[:200]}")
                continue
            written.append(path)
    return written, problems


# -- FlashMD: thermodynamic traces --------------------------------------------------------


def _hline(x: Sequence[float], value: float | None) -> tuple[list, list]:
    """A horizontal line across ``x`` (empty when there is no value or no x)."""
    if value is None or len(x) == 0 or not np.isfinite(value):
        return [], []
    return [float(x[0]), float(x[-1])], [float(value), float(value)]


def temperature_figure(
    times_ps: np.ndarray | None,
    temperature_K: np.ndarray | None,
    target_K: float | None = None,
    title: str = "Temperature",
) -> go.Figure:
    """Instantaneous kinetic temperature (K) against simulated time (ps), target dashed."""
    t = np.asarray(times_ps if times_ps is not None else [], dtype=float)
    y = np.asarray(temperature_K if temperature_K is not None else [], dtype=float)
    fig = go.Figure(layout=dict(**_LAYOUT, title=title))
    fig.add_trace(
        go.Scatter(
            x=t, y=y, mode="lines+markers", name="model", meta="temperature:T:model",
            line=dict(color="#d62728"), marker=dict(size=4),
        )
    )  # fmt: skip
    hx, hy = _hline(t, target_K)
    fig.add_trace(
        go.Scatter(
            x=hx, y=hy, mode="lines", name="target", meta="temperature:target:reference",
            line=dict(color="grey", dash=REFERENCE_DASH),
        )
    )  # fmt: skip
    fig.update_xaxes(title_text="time (ps)")
    fig.update_yaxes(title_text="T (K)")
    if t.size == 0:
        _empty_note(fig, "no frames yet")
    return fig


def energy_figure(
    times_ps: np.ndarray | None,
    energies: Mapping[str, np.ndarray] | None,
    n_atoms: int = 1,
    title: str = "Energy change since the start",
) -> go.Figure:
    """Total, potential and kinetic energy minus their first value, meV/atom, against ps.

    The total (shown) tells energy conservation at a glance; potential and kinetic start
    hidden in the legend. A missing series (no energy model) gives an empty trace.
    """
    t = np.asarray(times_ps if times_ps is not None else [], dtype=float)
    energies = energies or {}
    fig = go.Figure(layout=dict(**_LAYOUT, title=title))
    styles = (
        ("total_energy", "total", "black", True),
        ("potential_energy", "potential", "#1f77b4", "legendonly"),
        ("kinetic_energy", "kinetic", "#d62728", "legendonly"),
    )
    for key, label, colour, visible in styles:
        values = energies.get(key)
        x, y = np.array([]), np.array([])
        if values is not None and len(values) and t.size == len(values):
            values = np.asarray(values, dtype=float)
            x, y = t, (values - values[0]) / max(int(n_atoms), 1) * 1e3
        fig.add_trace(
            go.Scatter(
                x=x, y=y, mode="lines", name=label, meta=f"energy:{key}:model",
                visible=visible, line=dict(color=colour),
            )
        )  # fmt: skip
    fig.update_xaxes(title_text="time (ps)")
    fig.update_yaxes(title_text="E(t) − E(0) (meV/atom)")
    if t.size == 0:
        _empty_note(fig, "no frames yet")
    return fig


# -- CG polymers ----------------------------------------------------------------------------


def rg2_trace_figure(
    times_tau: np.ndarray | None,
    rg2_fine: np.ndarray | None,
    rg2_cg: np.ndarray | None = None,
    reference_mean: float | None = None,
    reference_std: float | None = None,
    title: str = "Radius of gyration²",
) -> go.Figure:
    """R_g²(t) of the rollout (σ², fine level; CG level hidden) against τ, with the long
    reference's mean (dashed) and ± one standard deviation (dotted)."""
    t = np.asarray(times_tau if times_tau is not None else [], dtype=float)
    fig = go.Figure(layout=dict(**_LAYOUT, title=title))
    for key, label, values, visible, colour in (
        ("fine", "R_g² (fine, model)", rg2_fine, True, "#1f77b4"),
        ("cg", "R_g² (CG beads, model)", rg2_cg, "legendonly", "#9467bd"),
    ):
        y = np.asarray(values if values is not None else [], dtype=float)
        fig.add_trace(
            go.Scatter(
                x=t if y.size == t.size else [], y=y if y.size == t.size else [],
                mode="lines", name=label, meta=f"rg2:{key}:model", visible=visible,
                line=dict(color=colour),
            )
        )  # fmt: skip
    lines = [("mean", reference_mean, "dash", "reference ⟨R_g²⟩")]
    if reference_mean is not None and reference_std is not None:
        lines += [
            ("low", reference_mean - reference_std, "dot", "reference ± 1 sd"),
            ("high", reference_mean + reference_std, "dot", None),
        ]
    for key, value, dash, label in lines:
        hx, hy = _hline(t, value)
        fig.add_trace(
            go.Scatter(
                x=hx, y=hy, mode="lines", name=label or "", showlegend=label is not None,
                meta=f"rg2:{key}:reference", line=dict(color="grey", dash=dash),
            )
        )  # fmt: skip
    fig.update_xaxes(title_text="time (τ)")
    fig.update_yaxes(title_text="R_g² (σ²)")
    if t.size == 0:
        _empty_note(fig, "no frames yet")
    return fig


def rg2_histogram_figure(
    model: np.ndarray | None,
    reference: np.ndarray | None = None,
    bins: int = 30,
    title: str = "R_g² distribution",
) -> go.Figure:
    """Densities of R_g² samples (σ²) of the rollout and of the long reference on shared
    bins (``explorer.analysis.polymer.rg2_distribution``); the title carries both means."""
    from explorer.analysis.polymer import rg2_distribution

    samples = {
        MODEL: np.asarray(model if model is not None else [], dtype=float),
        REFERENCE: np.asarray(reference if reference is not None else [], dtype=float),
    }
    pooled = np.concatenate([np.empty(0), *samples.values()])
    pooled = pooled[np.isfinite(pooled)]
    value_range = (float(pooled.min()), float(pooled.max())) if pooled.size else None
    if value_range is not None and value_range[0] == value_range[1]:
        value_range = (value_range[0] - 0.5, value_range[1] + 0.5)
    parts = []
    fig = go.Figure(layout=dict(**_LAYOUT))
    for source, colour, label in ((MODEL, "#1f77b4", "model"), (REFERENCE, "grey", "long MD")):
        values = samples[source]
        x, y = np.array([]), np.array([])
        if values.size and value_range is not None:
            x, y = rg2_distribution(values, bins, value_range)
            parts.append(f"{label} ⟨R_g²⟩ = {values.mean():.2f} σ² ({values.size} samples)")
        fig.add_trace(
            go.Scatter(
                x=x, y=y, mode="lines", line_shape="hvh", name=label, meta=f"rg2hist:{source}",
                line=dict(color=colour, dash="solid" if source == MODEL else REFERENCE_DASH),
            )
        )  # fmt: skip
    fig.update_layout(title=title + (": " + "; ".join(parts) if parts else ""))
    fig.update_xaxes(title_text="R_g² (σ²)")
    fig.update_yaxes(title_text="density (1/σ²)")
    if samples[MODEL].size == 0:
        _empty_note(fig, "no frames yet")
    return fig


def internal_distance_figure(
    model: tuple[np.ndarray, np.ndarray] | None,
    reference: tuple[np.ndarray, np.ndarray] | None = None,
    title: str = "Mean internal distance R(s) of the CG beads",
) -> go.Figure:
    """⟨R(s)⟩ (σ) against the bead separation s along the CG chain, reference dashed."""
    fig = go.Figure(layout=dict(**_LAYOUT, title=title))
    for source, data, colour in ((MODEL, model, "#1f77b4"), (REFERENCE, reference, "grey")):
        x, y = (np.array([]), np.array([])) if data is None else data
        fig.add_trace(
            go.Scatter(
                x=np.asarray(x, dtype=float), y=np.asarray(y, dtype=float),
                mode="lines+markers" if source == MODEL else "lines",
                name="model" if source == MODEL else "long MD", meta=f"rs:{source}",
                line=dict(color=colour, dash="solid" if source == MODEL else REFERENCE_DASH),
            )
        )  # fmt: skip
    fig.update_xaxes(title_text="separation s (CG beads)")
    fig.update_yaxes(title_text="⟨R(s)⟩ (σ)")
    if model is None:
        _empty_note(fig, "no frames yet")
    return fig


def contact_map_figure(
    model: np.ndarray | None,
    reference: np.ndarray | None = None,
    cutoff: float | None = None,
) -> go.Figure:
    """One heat map: the rollout's contact fractions above the diagonal, the long
    reference's below it (``explorer.analysis.polymer.contact_map``); cells without data
    are blank."""
    base = model if model is not None else reference
    fig = go.Figure(layout=dict(**{**_LAYOUT, "height": 420}))
    if base is None:
        fig.add_trace(go.Heatmap(x=[0], y=[0], z=[[None]], meta="contacts:map", zmin=0, zmax=1))
        fig.update_layout(title="Contact map")
        return _empty_note(fig, "no frames yet")
    n = np.asarray(base).shape[0]
    z = np.full((n, n), np.nan)
    upper = np.triu_indices(n, 1)
    lower = np.tril_indices(n, -1)
    if model is not None:
        z[upper] = np.asarray(model)[upper]
    if reference is not None:
        z[lower] = np.asarray(reference)[lower]
    index = np.arange(n)
    fig.add_trace(
        go.Heatmap(
            x=index, y=index, z=[[None if np.isnan(v) else float(v) for v in row] for row in z],
            meta="contacts:map", colorscale="Blues", zmin=0, zmax=1,
            colorbar=dict(title="fraction"),
            hovertemplate="beads %{x}, %{y}: %{z:.2f}<extra></extra>",
        )
    )  # fmt: skip
    within = f" (< {cutoff:g} σ)" if cutoff else ""
    fig.update_layout(title=f"Contact map{within}: model above the diagonal, long MD below")
    fig.update_xaxes(title_text="CG bead j", constrain="domain")
    fig.update_yaxes(title_text="CG bead i", scaleanchor="x", autorange="reversed")
    return fig


def bond_segments(positions: np.ndarray, bonds: np.ndarray) -> np.ndarray:
    """(3 × bonds, 3) endpoints of each bond with NaN separators: one Scatter3d line."""
    positions = np.asarray(positions, dtype=float)
    bonds = np.asarray(bonds, dtype=int).reshape(-1, 2)
    out = np.full((3 * len(bonds), 3), np.nan)
    out[0::3] = positions[bonds[:, 0]]
    out[1::3] = positions[bonds[:, 1]]
    return out


def cg_beads_figure(
    positions: np.ndarray | None,
    bonds: np.ndarray | None = None,
    sizes: np.ndarray | None = None,
    title: str = "CG beads",
) -> go.Figure:
    """CG bead positions (σ) as spheres coloured along the chain index, bonds as lines.

    Two traces (bonds, beads) whatever the frame, so a live view only swaps their data.
    """
    fig = go.Figure(layout=dict(**{**_LAYOUT, "height": 460}, title=title))
    x = np.empty((0, 3)) if positions is None else np.asarray(positions, dtype=float)
    segments = np.empty((0, 3))
    if bonds is not None and x.size:
        segments = bond_segments(x, bonds)
    fig.add_trace(
        go.Scatter3d(
            x=segments[:, 0], y=segments[:, 1], z=segments[:, 2], mode="lines", name="bonds",
            meta="beads:bonds:model", line=dict(color="grey", width=4), hoverinfo="skip",
        )
    )  # fmt: skip
    size = 8 if sizes is None else list(np.asarray(sizes, dtype=float))
    fig.add_trace(
        go.Scatter3d(
            x=x[:, 0], y=x[:, 1], z=x[:, 2], mode="markers", name="beads",
            meta="beads:beads:model",
            marker=dict(size=size, color=np.arange(len(x)), colorscale="Viridis", opacity=0.9),
            text=[f"bead {i}" for i in range(len(x))],
        )
    )  # fmt: skip
    fig.update_layout(scene=dict(aspectmode="data"))
    if positions is None:
        _empty_note(fig, "no frames yet")
    return fig
