"""Analysis of a growing trajectory and of its reference MD, turned into figures.

:class:`LiveAnalysis` recomputes MSD, D_Li, RDF (with the overlap score against the
reference) and the Li PMF from the frames a Rollout has produced so far and hands
fresh figures from :mod:`widgets.figures` to whichever UI shows them (ipywidgets here,
Panel in ``widgets/app.py``). :func:`arrhenius_analysis` does the same for the replicas
of an Arrhenius run. Reference trajectories are analysed once per file version (cache
keyed by path and modification time: reference jobs may still be extending them).
No UI library is imported here.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
from ase.data import atomic_numbers

from explorer.analysis.diffusion import ArrheniusResult, DiffusionResult, arrhenius_fit
from explorer.analysis.diffusion import diffusion_coefficient as fit_diffusion
from explorer.analysis.msd import MSDResult, msd
from explorer.analysis.pmf import PMFResult, pmf_slice
from explorer.analysis.rdf import RDFResult, overlap_score, rdf, sparse_pairs
from explorer.errors import ExplorerError
from explorer.h5md import read_h5md
from explorer.reference.dataset import REFERENCE_DIR, available_references
from explorer.trajectory import Trajectory
from widgets import figures
from widgets.helpers import matching_reference

#: The figures of a live LiFlow analysis (``traces``: the Li paths).
FIGURE_NAMES = ("msd", "rdf", "pmf", "traces")
#: RDF bin width, Å: the reference and the model must share it for the overlap score.
RDF_BIN_A = 0.05
#: PMF grid: coarse enough that a few ps of LiFlow frames fill it visibly.
PMF_BINS = (40, 40)
#: Reference RDFs average every 5th frame (20 fs apart, strongly correlated anyway).
REFERENCE_RDF_STRIDE = 5


@dataclass(frozen=True)
class ReferenceAnalysis:
    """A reference MD trajectory and its MSD, RDF and D_Li (None when not estimable)."""

    path: Path
    traj: Trajectory
    msd: MSDResult
    rdf: RDFResult
    diffusion: DiffusionResult | None


@functools.lru_cache(maxsize=16)
def _reference_cached(path: str, mtime_ns: int) -> ReferenceAnalysis:
    traj = read_h5md(path)
    try:
        diffusion = fit_diffusion(traj, "Li")
    except ExplorerError:
        diffusion = None
    return ReferenceAnalysis(
        path=Path(path),
        traj=traj,
        msd=msd(traj),
        rdf=rdf(traj, bin_width=RDF_BIN_A, frame_stride=REFERENCE_RDF_STRIDE),
        diffusion=diffusion,
    )


def reference_analysis(path: str | Path | None) -> ReferenceAnalysis | None:
    """Analysis of a reference H5MD file (cached per file version); None without a path."""
    if path is None:
        return None
    path = Path(path)
    return _reference_cached(str(path), path.stat().st_mtime_ns)


def species_order(symbols: Sequence[str]) -> list[str]:
    """Unique element symbols, Li first, the rest by atomic number."""
    unique = sorted(set(symbols), key=atomic_numbers.get)
    return sorted(unique, key=lambda s: s != "Li")


@dataclass
class LiveAnalysis:
    """MSD, D_Li, RDF + overlap and Li PMF of the frames so far, as figures.

    Call :meth:`update` with the rollout's current trajectory (cheap for the sizes of
    interest: everything is recomputed, which keeps the results exactly those of the
    ``explorer.analysis`` functions), then :meth:`figures` for fresh plotly figures.

    Attributes:
        temperature_K: of the run, K (PMF and the reference match).
        material: catalogue name (None for an uploaded structure: no reference).
        reference_dir: where reference MD files are looked up.
        plane: PMF plane, ``"ab"``, ``"bc"`` or ``"ac"``.
    """

    temperature_K: float
    material: str | None = None
    reference_dir: Path = REFERENCE_DIR
    plane: str = "ab"
    traj: Trajectory | None = None
    msd: MSDResult | None = None
    rdf: RDFResult | None = None
    overlap: dict | None = None
    sparse: list = field(default_factory=list)  # pairs too thinly sampled to score
    pmf: PMFResult | None = None
    diffusion: DiffusionResult | None = None
    diffusion_reason: str = "need more frames"
    reference: ReferenceAnalysis | None = None
    problems: list[str] = field(default_factory=list)
    # Figures whose reference traces a live view already shows (it updates the rest).
    reference_drawn: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        path = matching_reference(self.material, self.temperature_K, self.reference_dir)
        try:
            self.reference = reference_analysis(path)
        except (ExplorerError, OSError) as exc:  # a broken reference must not stop a run
            self.problems.append(f"reference MD {path}: {exc}")

    @property
    def n_frames(self) -> int:
        return 0 if self.traj is None else self.traj.n_frames

    def update(self, traj: Trajectory, pmf: bool = True) -> None:
        """Recompute everything from ``traj`` (unwrapped frames, evenly spaced in time)."""
        self.traj = traj
        self.msd = _or_none(msd, traj) if traj.n_frames >= 2 else None
        try:
            self.diffusion = fit_diffusion(traj, "Li") if "Li" in traj.symbols else None
            self.diffusion_reason = "" if self.diffusion else "no Li"
        except ExplorerError as exc:
            self.diffusion, self.diffusion_reason = None, str(exc)
        self.rdf = _or_none(rdf, traj, bin_width=RDF_BIN_A)
        self.overlap, self.sparse = None, []
        if self.rdf is not None and self.reference is not None:
            self.overlap = _or_none(overlap_score, self.rdf, self.reference.rdf)
            self.sparse = _or_none(sparse_pairs, self.rdf, self.reference.rdf) or []
        if pmf and "Li" in traj.symbols:
            self.pmf = _or_none(
                pmf_slice, traj, "Li", self.plane, PMF_BINS, temperature_K=self.temperature_K
            )

    def summary(self) -> str:
        """The D_Li line (with the reference's D when there is one)."""
        reference = self.reference.diffusion if self.reference else None
        return figures.diffusion_summary(self.diffusion, reference, self.diffusion_reason)

    def figures(
        self,
        log_msd: bool = False,
        names: Collection[str] = FIGURE_NAMES,
        omit_reference: Collection[str] = (),
    ) -> dict[str, go.Figure]:
        """Fresh figures of the current state: those of ``names`` among ``msd``, ``rdf``,
        ``pmf`` and ``traces`` (Li paths).

        ``omit_reference`` names figures built without the reference MD's traces and
        marked so (:func:`widgets.figures.omit_source`): live views that already show
        them keep them, and the update costs about half as much.
        """
        unknown = set(names) - set(FIGURE_NAMES)
        if unknown:
            raise ValueError(f"unknown figures {sorted(unknown)}; known: {FIGURE_NAMES}")
        symbols = self.traj.symbols if self.traj is not None else []

        def reference(name: str) -> ReferenceAnalysis | None:
            return None if name in omit_reference else self.reference

        builders = {
            "msd": lambda ref: figures.msd_figure(
                self.msd,
                ref.msd if ref else None,
                log=log_msd,
                species=species_order(symbols) or None,
                title=f"MSD at {self.temperature_K:g} K",
            ),
            "rdf": lambda ref: figures.rdf_figure(
                self.rdf, ref.rdf if ref else None, self.overlap, sparse=self.sparse
            ),
            "pmf": lambda _ref: figures.pmf_figure(self.pmf),
            "traces": lambda _ref: figures.li_traces_figure(self.traj),
        }
        fresh = {}
        for name in names:
            fresh[name] = builders[name](reference(name))
            if name in omit_reference and name in ("msd", "rdf"):
                figures.omit_source(fresh[name], figures.REFERENCE)
        return fresh


def _or_none(function: Any, *args: Any, **kwargs: Any) -> Any:
    """The analysis result, or None when the frames do not allow it yet."""
    try:
        return function(*args, **kwargs)
    except ExplorerError:
        return None


@dataclass(frozen=True)
class ArrheniusAnalysis:
    """D_Li per temperature of the model and of the reference MD, with Arrhenius fits."""

    points: list[figures.ArrheniusPoint]
    fit: ArrheniusResult | None
    reference_points: list[figures.ArrheniusPoint]
    reference_fit: ArrheniusResult | None
    problems: list[str]

    def figure(self) -> go.Figure:
        return figures.arrhenius_figure(
            self.points, self.fit, self.reference_points, self.reference_fit
        )


def _fit(points: Sequence[figures.ArrheniusPoint]) -> ArrheniusResult | None:
    usable = [p for p in points if p.D_A2_ps > 0 and p.D_std_A2_ps > 0]
    if len(usable) < 2:
        return None
    try:
        return arrhenius_fit(
            [p.temperature_K for p in usable],
            [p.D_A2_ps for p in usable],
            [p.D_std_A2_ps for p in usable],
        )
    except ExplorerError:
        return None


def arrhenius_analysis(
    replicas: Sequence[Trajectory],
    temperatures_K: Sequence[float],
    material: str | None,
    reference_dir: Path = REFERENCE_DIR,
) -> ArrheniusAnalysis:
    """D_Li of each replica, the model's Arrhenius fit, and the reference MD's line.

    The reference points are every bundled reference temperature of the material (not
    only the ones run), so the reference line is there from the first frame.
    """
    points, problems = [], []
    for traj, temperature in zip(replicas, temperatures_K, strict=True):
        try:
            d = fit_diffusion(traj, "Li")
        except ExplorerError as exc:
            problems.append(f"{temperature:g} K: {exc}")
            continue
        points.append(figures.ArrheniusPoint(temperature, d.D_A2_ps, d.D_std_A2_ps))
    reference_points = []
    for temperature in available_references(reference_dir).get(material or "", []):
        try:
            ref = reference_analysis(matching_reference(material, temperature, reference_dir))
        except (ExplorerError, OSError) as exc:
            problems.append(f"reference {material} {temperature:g} K: {exc}")
            continue
        if ref is not None and ref.diffusion is not None:
            d = ref.diffusion
            reference_points.append(figures.ArrheniusPoint(temperature, d.D_A2_ps, d.D_std_A2_ps))
    return ArrheniusAnalysis(
        points, _fit(points), reference_points, _fit(reference_points), problems
    )
