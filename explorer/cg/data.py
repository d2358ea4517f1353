"""Training examples of the CG simulator: coarse-grained reference frames as batched graphs.

A :class:`CGPolymer` is one reference trajectory mapped to CG beads once (METIS groups,
centres of mass, R_g² of the fine and CG chains). :func:`make_batch` draws frames t and
assembles, for every drawn (polymer, t), the CG graph at t with k history velocities and
the targets (units σ, τ; Δt = stride × the file's frame spacing, x_{t±1} the frames Δt away):

    v_{t-j} = (x_{t-j} - x_{t-j-1}) / Δt          j = 0 … k-1
    a_t     = (x_{t+1} - 2 x_t + x_{t-1}) / Δt²   the time-integrated acceleration

Edges (:func:`graph_edges`) are the CG bonds plus radius edges (|x_m - x_n| < r), both
directions, with a bond flag.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from explorer.analysis.polymer import radius_of_gyration_sq
from explorer.cg.coarsen import CGMapping, CoarseningError, coarsen
from explorer.cg.polymers import PolymerData
from explorer.errors import AnalysisError

__all__ = [
    "Batch",
    "CGPolymer",
    "contour_limits",
    "edge_limits",
    "frames_batch",
    "graph_edges",
    "make_batch",
    "prepare_polymer",
]


@dataclass
class CGPolymer:
    """One polymer's static graphs (torch) and its CG trajectory (numpy, σ)."""

    name: str
    types: torch.Tensor
    fine_masses: torch.Tensor
    bonds: torch.Tensor
    groups: torch.Tensor
    cg_masses: torch.Tensor
    bond_matrix: torch.Tensor  # (M, M) bool, CG bonds
    positions: np.ndarray  # (F, M, 3)
    rg2_fine: np.ndarray  # (F,)
    rg2_cg: np.ndarray  # (F,)
    dt_tau: float
    distance_limits: torch.Tensor | None = None  # (M, M) σ, see contour_limits

    @property
    def n_beads(self) -> int:
        return int(self.cg_masses.numel())


def prepare_polymer(
    data: PolymerData, bead_size: int, seed: int = 0, mapping: CGMapping | None = None
) -> CGPolymer:
    """Coarse-grain a reference trajectory (eq. 1) and compute its R_g² series."""
    poly = data.polymer
    if mapping is None:
        try:
            mapping = coarsen(poly.n_beads, poly.bonds, poly.masses, bead_size, seed)
        except CoarseningError as exc:  # name the polymer: training reads dozens of files
            raise CoarseningError(f"{poly.name}: {exc}") from None
    cg = mapping.positions(data.positions)
    if data.times_tau.size < 2:
        raise AnalysisError(f"{poly.name}: needs at least two frames")
    m = mapping.n_beads
    bond_matrix = torch.zeros(m, m, dtype=torch.bool)
    if mapping.bonds.size:
        b = torch.as_tensor(mapping.bonds)
        bond_matrix[b[:, 0], b[:, 1]] = True
        bond_matrix[b[:, 1], b[:, 0]] = True
    return CGPolymer(
        name=poly.name,
        types=torch.as_tensor(poly.types, dtype=torch.long),
        fine_masses=torch.as_tensor(poly.masses, dtype=torch.float32),
        bonds=torch.as_tensor(poly.bonds, dtype=torch.long).reshape(-1, 2),
        groups=torch.as_tensor(mapping.groups, dtype=torch.long),
        cg_masses=torch.as_tensor(mapping.masses, dtype=torch.float32),
        bond_matrix=bond_matrix,
        positions=cg,
        rg2_fine=radius_of_gyration_sq(data.positions, poly.masses),
        rg2_cg=radius_of_gyration_sq(cg, mapping.masses),
        dt_tau=float(np.median(np.diff(data.times_tau))),
        distance_limits=_limits_of(data, mapping),
    )


def contour_limits(
    n_atoms: int, bonds: np.ndarray, groups: np.ndarray, masses: np.ndarray, max_bond: float
) -> np.ndarray:
    """(M, M) upper bounds (σ) on the distance between the centres of mass of CG beads.

    With every fine bond at most ``max_bond`` long (FENE: R0, where its potential diverges),
    |x_a - x_b| ≤ max_bond · d(a, b) for the bond-graph distance d, and centres of mass
    are weighted means, so |X_m - X_n| ≤ max_bond · Σ_{a∈m, b∈n} w_a w_b d(a, b) (w: mass
    fractions within each bead). A straight chain at full extension reaches the bound; no
    configuration of the fine model exceeds it. The diagonal is +inf (no constraint).
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import shortest_path

    edges = np.asarray(bonds, dtype=np.int64).reshape(-1, 2)
    graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), (n_atoms, n_atoms))
    hops = shortest_path(graph, directed=False, unweighted=True)
    groups = np.asarray(groups)
    n_beads = int(groups.max()) + 1
    weights = np.zeros((n_beads, n_atoms))
    weights[groups, np.arange(n_atoms)] = masses
    weights /= weights.sum(axis=1, keepdims=True)
    limits = max_bond * (weights @ hops @ weights.T)
    np.fill_diagonal(limits, np.inf)
    return limits


def _limits_of(data: PolymerData, mapping: CGMapping) -> torch.Tensor | None:
    """:func:`contour_limits` from the file's FENE R0, or None when it does not say."""
    r0 = (data.metadata.get("force_field") or {}).get("fene_r0")
    if r0 is None:
        return None
    poly = data.polymer
    limits = contour_limits(poly.n_beads, poly.bonds, mapping.groups, poly.masses, float(r0))
    return torch.as_tensor(limits, dtype=torch.float32)


def graph_edges(
    x: torch.Tensor, bond_matrix: torch.Tensor, cutoff: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Edges of S same-polymer graphs x (S, M, 3): (E, 2) global indices s·M + m and flags.

    An edge joins m ≠ n when they share a CG bond or lie closer than ``cutoff`` (σ).
    """
    _s, m, _ = x.shape
    d = torch.cdist(x, x)
    mask = (d < cutoff) | bond_matrix[None]
    mask &= ~torch.eye(m, dtype=torch.bool, device=x.device)[None]
    graph, src, dst = torch.nonzero(mask, as_tuple=True)
    edges = torch.stack([graph * m + src, graph * m + dst], dim=1)
    return edges, bond_matrix[src, dst].to(x.dtype)


def edge_limits(edges: torch.Tensor, polymer: CGPolymer) -> torch.Tensor:
    """(E,) full-extension bound (σ, :func:`contour_limits`) of each edge of
    :func:`graph_edges` over copies of ``polymer`` (indices s·M + m); +inf when the
    polymer's file does not give its FENE R0."""
    if polymer.distance_limits is None:
        return torch.full((edges.shape[0],), float("inf"))
    m = polymer.n_beads
    return polymer.distance_limits[edges[:, 0] % m, edges[:, 1] % m]


@dataclass
class Batch:
    """A batched CG graph: per bead ``x`` (n, 3), ``v`` (n, k, 3), ``target`` (n, 3),
    ``next_x`` (n, 3), ``weights`` (n,), ``graph`` (n,) sample index; per sample
    ``rg2_offset`` (S,) R_g²(fine) - R_g²(CG) at t; ``edges``/``bond_flag``/``edge_limit``
    (:func:`edge_limits`) of the graph at t; per polymer in the batch, its fine graph for
    the embedding GNN; ``dt`` Δt (τ)."""

    x: torch.Tensor
    v: torch.Tensor
    target: torch.Tensor
    next_x: torch.Tensor
    weights: torch.Tensor
    graph: torch.Tensor
    rg2_offset: torch.Tensor
    edges: torch.Tensor
    bond_flag: torch.Tensor
    edge_limit: torch.Tensor
    polymers: list[CGPolymer]
    samples_per_polymer: int
    dt: float = 1.0


def valid_starts(polymer: CGPolymer, history: int, stride: int = 1) -> np.ndarray:
    """Frames t with k history velocities and a next frame ``stride`` frames apart:
    k·stride ≤ t ≤ F - 1 - stride."""
    return np.arange(history * stride, polymer.positions.shape[0] - stride)


def make_batch(
    polymers: Sequence[CGPolymer],
    rng: np.random.Generator,
    history: int,
    cutoff: float,
    n_polymers: int = 4,
    samples_per_polymer: int = 8,
    stride: int = 1,
    by_frames: bool = False,
) -> Batch:
    """Draw ``n_polymers`` polymers (with replacement) and ``samples_per_polymer`` frames each;
    the model's Δt is ``stride`` × the file's frame spacing.

    Polymers are equally likely by default (the paper's one trajectory per polymer);
    ``by_frames`` weights each by its usable frames instead, so that a short run (e.g. a
    200-τ relaxation run beside 1,000-τ equilibrium runs) gets its share of the data
    rather than an equal share of every batch."""
    if by_frames:
        counts = np.array([valid_starts(p, history, stride).size for p in polymers], float)
        if counts.sum() == 0:
            raise AnalysisError(f"too few frames for {history} history velocities in any polymer")
        picks = rng.choice(len(polymers), size=n_polymers, p=counts / counts.sum())
    else:
        picks = rng.integers(len(polymers), size=n_polymers)
    chosen = []
    for p in picks:
        poly = polymers[int(p)]
        starts = valid_starts(poly, history, stride)
        if starts.size == 0:
            raise AnalysisError(f"{poly.name}: too few frames for {history} history velocities")
        chosen.append((poly, rng.choice(starts, size=samples_per_polymer)))
    return frames_batch(chosen, history, cutoff, stride)


def frames_batch(
    frames: Sequence[tuple[CGPolymer, np.ndarray]],
    history: int,
    cutoff: float,
    stride: int = 1,
) -> Batch:
    """The batch of given frames: for each (polymer, t) pair, its frames t (S,), each
    with ``history`` velocities and the next frame ``stride`` frames on (t from
    :func:`valid_starts`; the same S for every polymer)."""
    sizes = {len(t) for _, t in frames}
    if len(sizes) != 1:
        raise AnalysisError(f"every polymer of a batch needs as many frames; got {sizes}")
    samples_per_polymer = sizes.pop()
    xs, vs, targets, nexts, ws, offsets, edge_list, flags, limits = ([] for _ in range(9))
    n_nodes = 0
    for poly, t in frames:
        pos = poly.positions
        x = pos[t]
        dt = stride * poly.dt_tau
        lags = t[:, None] - stride * np.arange(history + 1)[None]  # t, t-Δt, ..., t-kΔt
        window = pos[lags]  # (S, k+1, M, 3)
        v = (window[:, :-1] - window[:, 1:]) / dt  # (S, k, M, 3)
        a = (pos[t + stride] - 2 * x + pos[t - stride]) / dt**2
        x_t = torch.as_tensor(x, dtype=torch.float32)
        edges, flag = graph_edges(x_t, poly.bond_matrix, cutoff)
        edge_list.append(edges + n_nodes)
        flags.append(flag)
        limits.append(edge_limits(edges, poly))
        xs.append(x_t.reshape(-1, 3))
        vs.append(
            torch.as_tensor(v.transpose(0, 2, 1, 3), dtype=torch.float32).reshape(-1, history, 3)
        )
        targets.append(torch.as_tensor(a, dtype=torch.float32).reshape(-1, 3))
        nexts.append(torch.as_tensor(pos[t + stride], dtype=torch.float32).reshape(-1, 3))
        ws.append(poly.cg_masses.repeat(samples_per_polymer))
        offsets.append(torch.as_tensor(poly.rg2_fine[t] - poly.rg2_cg[t], dtype=torch.float32))
        n_nodes += samples_per_polymer * poly.n_beads
    chosen = [poly for poly, _ in frames]
    graph = torch.cat(
        [
            torch.arange(k * samples_per_polymer, (k + 1) * samples_per_polymer).repeat_interleave(
                poly.n_beads
            )
            for k, poly in enumerate(chosen)
        ]
    )
    return Batch(
        x=torch.cat(xs),
        v=torch.cat(vs),
        target=torch.cat(targets),
        next_x=torch.cat(nexts),
        weights=torch.cat(ws),
        graph=graph,
        rg2_offset=torch.cat(offsets),
        edges=torch.cat(edge_list),
        bond_flag=torch.cat(flags),
        edge_limit=torch.cat(limits),
        polymers=chosen,
        samples_per_polymer=samples_per_polymer,
        dt=float(stride * chosen[0].dt_tau),
    )
