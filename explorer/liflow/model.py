"""The LiFlow marginal vector-field network (Propagator / Corrector), LiFlow §IV.4.

A PaiNN network with two edge geometries. For a structure with current positions x
(Å, unwrapped), a fixed cell, and the flow-intermediate displacement d_t (Å):

* node init: s_i = h(Z_i) + ψ_T(T) + ψ_t(t)           (eq. 13, T in K, t ∈ [0, 1])
             v_i = d_i ⊗ w,  w ∈ R^F learnable         (vectors start from the displacement)
* edges: a radius graph on x (cutoff r_c = 5 Å), built once and reused for every flow step;
  each edge carries r_ij = x_j − x_i + S·cell and r̃_ij = (x_j + d_j) − (x_i + d_i) + S·cell
  (same edge list and shifts S);
* the filters depend on the distances only, which an edge and its reverse (j, i, −S)
  share: they are computed on one edge of each pair and gathered for both (half of the
  radial-filter products, the largest single cost of a flow step; same result);
* radial features: Bessel basis of (|r| + δ) with δ = 0.5 Å offset ("we shift the distance
  by 0.5 Å", to tame the basis at small radii when atoms clash mid-flow); the basis has
  r_c + δ as its own cutoff so it vanishes when |r| reaches r_c;
* messages (eqs. 14b, 15b): scalar filters of |r| and |r̃| are added; the two unit vectors
  r̂, r̂̃ get distinct filters (see :mod:`explorer.nn.painn`); all filters are multiplied by
  the cosine envelope f_c(|r_ij|) of the graph distance so edges enter smoothly;
* 3 × (message + update), then a gated linear readout of the vectors to one vector per
  atom: the predicted flow velocity dd/dt in Å (per unit flow time).

The output is E(3)-equivariant (rotations and reflections act on x, d, cell and the
output alike), permutation-equivariant, invariant to global translations and to lattice
translations of single atoms in x, and consistent under supercells (LiFlow eqs. 3–7).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import torch
from torch import nn

from explorer.neighbors import PeriodicGraph, edge_vectors, radius_graph, reverse_edges
from explorer.nn import (
    BesselRBF,
    CosineCutoff,
    GatedVectorOutput,
    PaiNNMessage,
    PaiNNUpdate,
    SinusoidalEmbedding,
    SpeciesEmbedding,
)

__all__ = ["CurrentGeometry", "EdgeHalves", "FlowModel", "FlowModelConfig", "edge_halves"]

# Added to squared edge lengths: intermediate structures may place two atoms on top of
# each other (|r̃| = 0), where the norm's gradient and the unit vector are undefined.
_LENGTH_EPS2 = 1e-12


class EdgeHalves(NamedTuple):
    """One edge of each (i, j, S) / (j, i, −S) pair of a full radius graph.

    Attributes:
        half: (H,) indices of the kept edges (H = E / 2), each pair's first in the list.
        gather: (E,) for every edge, the row of its pair among the ``half`` edges.
        sign: (E,) int64, +1 where the edge is the kept one, −1 where it is the reverse
            (its vector is the kept vector negated).
    """

    half: torch.Tensor
    gather: torch.Tensor
    sign: torch.Tensor


def edge_halves(graph: PeriodicGraph) -> EdgeHalves:
    """Pair the edges of ``graph`` with their reverses (:func:`reverse_edges`). Eager
    only: the number of pairs is data-dependent (one host sync)."""
    reverse = reverse_edges(graph)
    ids = torch.arange(reverse.numel(), device=reverse.device)
    kept = ids < reverse  # an edge is never its own reverse (S = 0 implies i != j)
    slot = torch.cumsum(kept, 0) - 1
    gather = torch.where(kept, slot, slot[reverse])
    sign = torch.where(kept, 1, -1)
    return EdgeHalves(kept.nonzero().squeeze(1), gather, sign)


class CurrentGeometry(NamedTuple):
    """The edge terms of the current structure x, shared by every flow step of one
    propagation (:meth:`FlowModel.current_geometry`).

    Attributes:
        unit: (E, 3) unit vectors r̂.
        envelope: (E,) cutoff envelope f_c(|r|).
        filters: one (E, 3F) filter of |r| per layer.
        half_edge_index, half_shifts: (2, H), (H, 3) the kept edge of each pair
            (:class:`EdgeHalves`), on which the intermediate structure's filters are computed.
        half_envelope: (H,) f_c on those edges.
        gather: (E,) row of each edge's pair; ``sign``: (E,) ±1 in the positions' dtype.
    """

    unit: torch.Tensor
    envelope: torch.Tensor
    filters: tuple[torch.Tensor, ...]
    half_edge_index: torch.Tensor
    half_shifts: torch.Tensor
    half_envelope: torch.Tensor
    gather: torch.Tensor
    sign: torch.Tensor


@dataclass(frozen=True)
class FlowModelConfig:
    """Hyper-parameters of :class:`FlowModel`; defaults from the LiFlow paper (Table S1).

    Attributes:
        elements: atomic numbers the species embedding knows (default Z = 1 … 94).
        num_features: F, width of scalar and vector features (64).
        num_rbf: number of Bessel radial basis functions (20).
        num_layers: message-passing layers (3).
        cutoff: radius-graph cutoff in Å (5.0).
        distance_offset: δ in Å added to distances before the radial basis (0.5).
        temperature_scale_K: T is divided by this before the sinusoidal embedding, so
            standard-normal frequencies see O(1) arguments (our choice; not in the paper).
        trainable_rbf: learn the Bessel frequencies (PaiNN keeps them fixed).
        temperature_seed, time_seed: seeds of the fixed frequencies of ψ_T and ψ_t.
    """

    elements: tuple[int, ...] = field(default_factory=lambda: tuple(range(1, 95)))
    num_features: int = 64
    num_rbf: int = 20
    num_layers: int = 3
    cutoff: float = 5.0
    distance_offset: float = 0.5
    temperature_scale_K: float = 1000.0
    trainable_rbf: bool = False
    temperature_seed: int = 0
    time_seed: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "elements", tuple(int(z) for z in self.elements))
        if self.num_features < 2 or self.num_features % 2:
            raise ValueError(f"num_features must be even and >= 2, got {self.num_features}")
        if self.num_rbf < 1 or self.num_layers < 1:
            raise ValueError("num_rbf and num_layers must be >= 1")
        if not self.cutoff > 0 or self.distance_offset < 0 or not self.temperature_scale_K > 0:
            raise ValueError("need cutoff > 0, distance_offset >= 0, temperature_scale_K > 0")


class FlowModel(nn.Module):
    """LiFlow vector field u_θ(d_t, t | x, T) → (N, 3) in Å (module docstring)."""

    def __init__(self, config: FlowModelConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config if config is not None else FlowModelConfig()
        f = cfg.num_features
        self.species = SpeciesEmbedding(cfg.elements, f)
        self.temperature_embedding = SinusoidalEmbedding(
            f, seed=cfg.temperature_seed, scale=cfg.temperature_scale_K
        )
        self.time_embedding = SinusoidalEmbedding(f, seed=cfg.time_seed)
        self.displacement_weight = nn.Parameter(torch.randn(f))
        self.rbf = BesselRBF(cfg.num_rbf, cfg.cutoff + cfg.distance_offset, cfg.trainable_rbf)
        self.envelope = CosineCutoff(cfg.cutoff)
        self.messages = nn.ModuleList(
            PaiNNMessage(f, cfg.num_rbf, num_geometries=2) for _ in range(cfg.num_layers)
        )
        self.updates = nn.ModuleList(PaiNNUpdate(f) for _ in range(cfg.num_layers))
        self.readout = GatedVectorOutput(f)

    def build_graph(
        self,
        positions: torch.Tensor,
        cell: torch.Tensor,
        batch: torch.Tensor | None = None,
        pbc: torch.Tensor | None = None,
    ) -> PeriodicGraph:
        """Radius graph of the current positions x (cutoff from the config), to be reused
        for every flow step of one propagation (only d_t changes between steps)."""
        return radius_graph(positions, cell, self.config.cutoff, batch=batch, pbc=pbc)

    def current_geometry(
        self,
        positions: torch.Tensor,
        cell: torch.Tensor,
        graph: PeriodicGraph,
        halves: EdgeHalves | None = None,
    ) -> CurrentGeometry:
        """The edge terms of the current structure x (:class:`CurrentGeometry`), which
        every flow step of one propagation shares (only d_t changes): computing them once
        saves half of the per-edge filter products of the later steps. ``halves`` is
        :func:`edge_halves` of ``graph`` (computed here if absent; pass it when this
        method is compiled, since pairing the edges is data-dependent)."""
        if halves is None:
            halves = edge_halves(graph)
        cell = cell.to(positions.dtype)
        vec = edge_vectors(positions, cell, graph.edge_index, graph.cell_shifts, graph.batch)
        length = torch.sqrt(torch.sum(vec * vec, dim=-1) + _LENGTH_EPS2)
        rbf = self.rbf(length + self.config.distance_offset)
        envelope = self.envelope(length)
        return CurrentGeometry(
            unit=vec / length.unsqueeze(-1),
            envelope=envelope,
            filters=tuple(m.geometry_filter(0, rbf, envelope) for m in self.messages),
            half_edge_index=graph.edge_index[:, halves.half],
            half_shifts=graph.cell_shifts[halves.half],
            half_envelope=envelope[halves.half],
            gather=halves.gather,
            sign=halves.sign.to(positions.dtype),
        )

    def node_conditioning(
        self,
        numbers: torch.Tensor,
        temperature_K: torch.Tensor | float,
        batch: torch.Tensor,
        like: torch.Tensor,
    ) -> torch.Tensor:
        """(N, F) species + temperature embedding: the scalar node features that every
        flow step of one propagation shares (only the flow-time embedding changes).

        Computed eagerly once per flow, it also keeps the vocabulary check (a data-dependent
        branch that ``torch.compile`` cannot trace) out of the compiled per-step network.
        ``like`` gives dtype and device.

        Raises:
            UnknownElementError: an atomic number outside ``config.elements``.
        """
        temps = _per_atom(temperature_K, batch, like, "temperature_K")
        return self.species(numbers) + self.temperature_embedding(temps)

    def forward(
        self,
        numbers: torch.Tensor,
        positions: torch.Tensor,
        displacement: torch.Tensor,
        cell: torch.Tensor,
        temperature_K: torch.Tensor | float,
        flow_time: torch.Tensor | float,
        batch: torch.Tensor | None = None,
        graph: PeriodicGraph | None = None,
        current: CurrentGeometry | None = None,
        conditioning: torch.Tensor | None = None,
        halves: EdgeHalves | None = None,
    ) -> torch.Tensor:
        """Predict the flow velocity of every atom.

        Args:
            numbers: (N,) atomic numbers.
            positions: (N, 3) current positions x in Å (unwrapped is fine).
            displacement: (N, 3) intermediate displacement d_t in Å.
            cell: (3, 3) or (B, 3, 3) cells in Å, rows are lattice vectors.
            temperature_K: scalar or (B,) temperatures in K.
            flow_time: scalar or (B,) flow-matching times t ∈ [0, 1].
            batch: (N,) sorted structure index; ``None`` for one structure.
            graph: a graph from :meth:`build_graph` on these ``positions``; built if absent.
            current: :meth:`current_geometry` of these ``positions`` and ``graph``: what
                depends on x alone, computed once for all flow steps (same result).
            conditioning: :meth:`node_conditioning` of these ``numbers`` and
                ``temperature_K`` (then neither is read again; same result).
            halves: :func:`edge_halves` of ``graph``, used where ``current`` is computed
                here; pass it when compiling (pairing the edges is data-dependent).

        Returns:
            (N, 3) velocity in Å per unit flow time, dtype of ``positions``.

        Raises:
            UnknownElementError: an atomic number outside ``config.elements``.
            NeighborListError: bad positions, cell or batch (when building the graph).
        """
        if displacement.shape != positions.shape or numbers.shape != positions.shape[:1]:
            raise ValueError(
                f"shape mismatch: numbers {tuple(numbers.shape)}, positions "
                f"{tuple(positions.shape)}, displacement {tuple(displacement.shape)}"
            )
        if graph is None:
            graph = self.build_graph(positions, cell, batch)
        batch = graph.batch
        edge_index = graph.edge_index
        cell = cell.to(positions.dtype)
        if current is None:
            current = self.current_geometry(positions, cell, graph, halves)
        # The intermediate structure's distances, basis and filters on one edge of each
        # pair (they are symmetric); directions and filters gathered for both edges.
        vec_t = edge_vectors(
            positions + displacement, cell, current.half_edge_index, current.half_shifts, batch
        )
        length_t = torch.sqrt(torch.sum(vec_t * vec_t, dim=-1) + _LENGTH_EPS2)
        rbf_t = self.rbf(length_t + self.config.distance_offset)
        unit_t = (vec_t / length_t.unsqueeze(-1))[current.gather] * current.sign.unsqueeze(-1)

        if conditioning is None:
            conditioning = self.node_conditioning(numbers, temperature_K, batch, positions)
        times = _per_atom(flow_time, batch, positions, "flow_time")
        s = conditioning + self.time_embedding(times)
        v = displacement.unsqueeze(-1) * self.displacement_weight.to(positions.dtype)

        units = (current.unit, unit_t)
        for message, update, w in zip(self.messages, self.updates, current.filters, strict=True):
            w_t = message.geometry_filter(1, rbf_t, current.half_envelope)[current.gather]
            ds, dv = message(s, v, edge_index, (None, None), units, current.envelope, (w, w_t))
            s, v = s + ds, v + dv
            ds, dv = update(s, v)
            s, v = s + ds, v + dv
        return self.readout(s, v)


def _per_atom(
    value: torch.Tensor | float, batch: torch.Tensor, like: torch.Tensor, name: str
) -> torch.Tensor:
    """Broadcast a per-structure scalar (scalar or (B,)) to the atoms: (N,)."""
    value = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    if value.numel() == 1:
        return value.reshape(1).expand(batch.shape[0])
    if torch.compiler.is_compiling():
        # The check reads a tensor value (a graph break); eager calls make it, and the
        # indexing below still fails on a short ``value``.
        return value[batch]
    num_structures = int(batch.max()) + 1 if batch.numel() else 0
    if value.ndim != 1 or value.shape[0] < num_structures:
        raise ValueError(
            f"{name} must be a scalar or hold one value per structure "
            f"({num_structures}), got shape {tuple(value.shape)}"
        )
    return value[batch]
