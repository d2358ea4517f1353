"""PaiNN building blocks (Schütt, Unke & Gastegger, ICML 2021), written for this project.

Features of atom i: invariant scalars s_i ∈ R^F and equivariant vectors v_i ∈ R^{3×F},
stored as tensors of shape (N, F) and (N, 3, F). Messages flow along directed edges
(i ← j) of a radius graph: ``edge_index[0]`` is the receiving centre i, ``edge_index[1]``
the neighbour j. Sums over neighbours use ``Tensor.index_add_`` (no torch_scatter).

Message block (PaiNN eqs. 7–8), generalised to G edge geometries g (G = 1: original PaiNN;
G = 2: LiFlow eqs. 14b/15b, current and intermediate structure). With the split
φ(s_j) = [φ_s, φ_vv, φ_vs] (an MLP F → F → 3F) and per-geometry filters
W^g(r) = [W_s^g, W_vv^g, W_vs^g] = Linear_g(rbf(r^g_ij)) · f_c(r_ij):

    Δs_i = Σ_j φ_s(s_j) ∘ Σ_g W_s^g
    Δv_i = Σ_j v_j ∘ φ_vv(s_j) ∘ Σ_g W_vv^g  +  Σ_g φ_vs(s_j) ∘ W_vs^g ⊗ r̂^g_ij

Filters of the different distances are *added*; each unit vector r̂^g gets its own filter
W_vs^g so the geometries are not interchangeable.

Update block (PaiNN eqs. 9–11), with U, V ∈ R^{F×F} acting on the feature axis and
a = MLP([s_i, ‖V v_i‖]) split into [a_vv, a_sv, a_ss]:

    Δv_i = a_vv ∘ U v_i,     Δs_i = a_ss + a_sv ∘ ⟨U v_i, V v_i⟩.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["GatedVectorOutput", "PaiNNMessage", "PaiNNUpdate", "safe_norm", "scatter_sum"]

# Added under the square root of vector norms: ‖v‖ has an infinite gradient at v = 0,
# which happens for every atom whose displacement (hence initial vector feature) is zero.
NORM_EPS = 1e-8


def safe_norm(vectors: torch.Tensor, dim: int = -2) -> torch.Tensor:
    """sqrt(Σ v² + ε) along ``dim`` (the Cartesian axis); differentiable at v = 0."""
    return torch.sqrt(torch.sum(vectors * vectors, dim=dim) + NORM_EPS)


# Whether compiled graphs sum over edges on the CPU with ATen's scatter_reduce instead of
# inductor's generated loop; explorer.nn.compiled sets it before every compiled call (for
# more than one thread), and torch.compile guards on it, recompiling when it changes.
PARALLEL_CPU_SCATTER = False


def scatter_sum(values: torch.Tensor, index: torch.Tensor, num_nodes: int) -> torch.Tensor:
    """Sum rows of ``values`` (E, ...) into ``num_nodes`` bins given by ``index`` (E,)."""
    out = values.new_zeros((num_nodes, *values.shape[1:]))
    if PARALLEL_CPU_SCATTER and values.device.type == "cpu" and torch.compiler.is_compiling():
        # Compiled for the CPU, index_add_ becomes generated code with an atomic add per
        # element, and threads contend for them: a compiled LiFlow step on the LGPS 2×2×1
        # cell took 0.19–0.25 s on 2 threads against 0.15 s on 1. scatter_reduce "sum"
        # runs ATen's kernel instead (inductor's fallback_scatter_reduce_sum): 0.10 s on
        # 2 threads. On one thread the generated loop is the faster one.
        rows = index.view((-1,) + (1,) * (values.dim() - 1)).expand_as(values)
        return out.scatter_reduce_(0, rows, values, "sum")
    return out.index_add_(0, index, values)


def _mlp(n_in: int, n_hidden: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, n_hidden), nn.SiLU(), nn.Linear(n_hidden, n_out))


class PaiNNMessage(nn.Module):
    """Continuous-filter-convolution message over G edge geometries (module docstring).

    Args:
        num_features: F.
        num_rbf: width of the radial basis fed to the filters.
        num_geometries: G, number of (distance, direction) sets per edge.
    """

    def __init__(self, num_features: int, num_rbf: int, num_geometries: int = 1) -> None:
        super().__init__()
        self.num_features = num_features
        self.phi = _mlp(num_features, num_features, 3 * num_features)
        self.filters = nn.ModuleList(
            nn.Linear(num_rbf, 3 * num_features) for _ in range(num_geometries)
        )

    def forward(
        self,
        s: torch.Tensor,
        v: torch.Tensor,
        edge_index: torch.Tensor,
        rbfs: Sequence[torch.Tensor | None],
        unit_vectors: Sequence[torch.Tensor],
        envelope: torch.Tensor,
        filters: Sequence[torch.Tensor | None] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the residual updates (Δs (N, F), Δv (N, 3, F)).

        Args:
            s, v: node features (N, F), (N, 3, F).
            edge_index: (2, E) centre i, neighbour j.
            rbfs: G tensors (E, N_rbf), radial basis of each geometry's distance (None
                where ``filters`` gives that geometry's filter).
            unit_vectors: G tensors (E, 3), direction r̂^g_ij of each geometry.
            envelope: (E,) cutoff envelope multiplying every filter.
            filters: per geometry, its filter from :meth:`geometry_filter` computed
                beforehand, or None to compute it here: a geometry that stays fixed over
                many calls (LiFlow's current structure over the flow steps) is filtered once.
        """
        if len(rbfs) != len(self.filters) or len(unit_vectors) != len(self.filters):
            raise ValueError(f"expected {len(self.filters)} geometries, got {len(rbfs)}")
        given = list(filters) if filters is not None else [None] * len(self.filters)
        i, j = edge_index[0], edge_index[1]
        f = self.num_features
        phi_s, phi_vv, phi_vs = torch.split(self.phi(s)[j], f, dim=-1)
        w_s = w_vv = 0.0
        dv_edges: torch.Tensor | None = None  # (E, 3, F), accumulated in place
        for g, (rbf, unit, w) in enumerate(zip(rbfs, unit_vectors, given, strict=True)):
            w = self.geometry_filter(g, rbf, envelope) if w is None else w
            ws, wvv, wvs = torch.split(w, f, dim=-1)
            w_s = w_s + ws
            w_vv = w_vv + wvv
            # The (E, 3, F) edge tensors dominate the cost of a step (LiFlow: ~90 % of an
            # eager step); fused multiply-adds into one buffer halve the passes over them.
            if dv_edges is None:
                dv_edges = unit.unsqueeze(-1) * (phi_vs * wvs).unsqueeze(1)
            else:
                dv_edges.addcmul_(unit.unsqueeze(-1), (phi_vs * wvs).unsqueeze(1))
        assert dv_edges is not None  # at least one geometry (checked above)
        ds = scatter_sum(phi_s * w_s, i, s.shape[0])
        dv_edges.addcmul_(v[j], (phi_vv * w_vv).unsqueeze(1))
        dv = scatter_sum(dv_edges, i, s.shape[0])
        return ds, dv

    def geometry_filter(
        self, geometry: int, rbf: torch.Tensor | None, envelope: torch.Tensor
    ) -> torch.Tensor:
        """W^g = Linear_g(rbf) · f_c: (E, 3F), the filters of one geometry's edges."""
        if rbf is None:
            raise ValueError(f"geometry {geometry} has neither a radial basis nor a filter")
        return self.filters[geometry](rbf) * envelope.unsqueeze(-1)


class PaiNNUpdate(nn.Module):
    """Atom-wise update mixing scalar and vector channels (PaiNN eqs. 9–11)."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features
        # No bias: a bias on vectors would break rotation equivariance.
        self.mix = nn.Linear(num_features, 2 * num_features, bias=False)
        self.mlp = _mlp(2 * num_features, num_features, 3 * num_features)

    def forward(self, s: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, F), (N, 3, F) → residual updates (Δs, Δv) of the same shapes."""
        f = self.num_features
        uv, vv = torch.split(self.mix(v), f, dim=-1)
        a_vv, a_sv, a_ss = torch.split(self.mlp(torch.cat([s, safe_norm(vv)], -1)), f, -1)
        dv = a_vv.unsqueeze(1) * uv
        ds = a_ss + a_sv * torch.sum(uv * vv, dim=1)
        return ds, dv


class GatedVectorOutput(nn.Module):
    """Read out one equivariant vector per atom from (s, v).

    y_i = Σ_f g_f(s_i, ‖V v_i‖) · (U v_i)_f with g an MLP and U, V ∈ R^{F×F} (no bias), a
    gated linear map (the vector half of PaiNN's gated equivariant block).
    """

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features
        self.mix = nn.Linear(num_features, 2 * num_features, bias=False)
        self.gate = _mlp(2 * num_features, num_features, num_features)

    def forward(self, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """(N, F), (N, 3, F) → (N, 3)."""
        uv, vv = torch.split(self.mix(v), self.num_features, dim=-1)
        gates = self.gate(torch.cat([s, safe_norm(vv)], dim=-1))
        return torch.sum(uv * gates.unsqueeze(1), dim=-1)
