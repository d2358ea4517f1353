"""The three graph networks of the multi-scale CG simulator (MSGN paper §3, App. C).

All are Encoder–Processor–Decoder GNNs (Sanchez-Gonzalez et al. 2020): node and edge MLPs
encode, ``layers`` interaction-network layers update edges then nodes with residuals
(messages summed at the receiving node), and MLPs decode. MLPs have two hidden ReLU layers
(App. C).

- :class:`EmbeddingGNN` (G_NE) on the fine bond graph: node input = learned bead-type
  embedding a_i and weight w_i; edge input = a_i + a_j + a_bond. Output: per-bead type
  embeddings c_i without positional information, averaged per CG group (eq. 1).
- :class:`DynamicsGNN` (G_ND) on the CG graph (CG bonds + radius edges): inputs the bead
  embeddings c_m, weights w_m, positions x_m and k history velocities
  v_{t-j} = (x_{t-j} - x_{t-j-1}) / Δt; outputs a Gaussian over the time-integrated
  acceleration a_m = (x_{t+Δt} - 2 x_t + x_{t-Δt}) / Δt², trained by its negative
  log-likelihood; a rollout samples a and integrates by semi-implicit Euler
  (v ← v + a Δt, x ← x + v Δt). An optional head predicts R_g²(fine) - R_g²(CG) from the
  pooled latent graph (App. C).

  The paper's Gaussian is independent per bead, N(μ_m, s_m² I) (the default). With
  ``correlated_noise`` the beads of one chain share a covariance C ⊗ I₃, C = diag(s²) + B Bᵀ,
  where B_mm and B_mn (one per edge n → m) are invariant network outputs: at Δt = 2 τ the
  reference displacements of bonded CG beads are correlated (ρ ≈ 0.3), and the slowest
  chain modes, which set R_g², carry 1.3–1.5× the mean per-bead displacement variance
  while the fast ones carry 0.4–0.5×. Independent noise with the right per-bead variance
  therefore starves the slow modes. The option lowers the validation NLL (0.161 → 0.091 at
  Δt = 2 τ) but did not improve ⟨R_g²⟩ on the test chains (see the cg-polymers card).
- :class:`ScoreGNN` (G_NS): noise-conditional score network trained by denoising score
  matching (eq. 2); applied by annealed Langevin dynamics (App. C, Algorithm 1).

Symmetry, by construction rather than augmentation: networks see only invariants
(distances, bond flags, inner products of velocities with each other and with edge
directions), and vector outputs are linear combinations of the unit edge vectors r̂_mn and
of the bead's own history velocities with invariant coefficients. The predicted mean and
score are therefore exactly translation-invariant and rotation-equivariant (tests check
it), and the isotropic variance is invariant, so the predicted Gaussian rotates with the
chain. Units: σ, τ; inputs are divided by the scales stored in :class:`Scales`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch
from torch import nn

from explorer.errors import MDConfigError
from explorer.nn.painn import scatter_sum

__all__ = [
    "DynamicsGNN",
    "DynamicsOutput",
    "EmbeddingGNN",
    "ModelConfig",
    "Scales",
    "ScoreGNN",
    "acceleration_noise",
    "bead_covariance",
    "correlated_gaussian_nll",
    "expected_next_rg2",
    "gaussian_nll",
    "graph_rg2",
    "mlp",
    "stretch_acceleration",
    "wall_acceleration",
]


@dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters (paper App. C: 7 layers, widths 64 / 128; smaller here for CPUs).

    ``n_types`` bead types; ``history`` k velocities; ``cutoff`` radius-edge connectivity r
    in σ; ``noise_levels`` L geometric score levels from ``sigma_max`` to ``sigma_min`` (σ);
    ``correlated_noise`` couples the beads' Gaussian noise (module doc; False = the paper's
    independent Gaussian). ``wall_k`` (ε/σ²) and ``wall_r0`` (σ) set a fixed repulsive
    prior between CG beads that share no CG bond (:func:`wall_acceleration`), added to the
    network's mean acceleration, which then learns the rest (0 = none, the paper's model).
    ``stretch_k`` (ε/σ²) and ``stretch_fraction`` set a second fixed prior that pulls
    together CG beads farther apart than that fraction of their full-extension bound
    (:func:`stretch_acceleration`; 0 = none). ``variance_head`` gives the log-variance its
    own output MLP (:meth:`DynamicsGNN.attach_variance_head`) instead of a channel of the
    per-bead output MLP, so it can be refitted with the mean frozen (False = the paper's).
    """

    n_types: int = 4
    embed_dim: int = 32
    embed_layers: int = 2
    hidden: int = 64
    layers: int = 3
    history: int = 3
    cutoff: float = 8.0
    score_hidden: int = 32
    score_layers: int = 2
    noise_levels: int = 10
    sigma_min: float = 0.01
    sigma_max: float = 1.0
    rg_head: bool = True
    correlated_noise: bool = False
    wall_k: float = 0.0
    wall_r0: float = 1.2
    stretch_k: float = 0.0
    stretch_fraction: float = 0.6
    variance_head: bool = False

    def __post_init__(self) -> None:
        if self.history < 1:  # semi-implicit Euler integrates from the latest velocity
            raise MDConfigError(f"history must be >= 1 velocity, got {self.history}")
        if not (self.wall_k >= 0 and self.wall_r0 > 0):
            raise MDConfigError(
                f"wall_k must be >= 0 and wall_r0 > 0, got {self.wall_k} and {self.wall_r0}"
            )
        if not (self.stretch_k >= 0 and self.stretch_fraction > 0):
            raise MDConfigError(
                f"stretch_k must be >= 0 and stretch_fraction > 0, got {self.stretch_k} "
                f"and {self.stretch_fraction}"
            )

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Scales:
    """Data scales that make network inputs and targets O(1): velocity (σ/τ), acceleration
    (σ/τ²), length (σ), the R_g² offset (σ²) mean and spread, and the RMS change of the CG
    R_g² over one Δt (σ²)."""

    velocity: float = 1.0
    acceleration: float = 1.0
    length: float = 1.0
    rg2_offset_mean: float = 0.0
    rg2_offset_std: float = 1.0
    rg2_step: float = 1.0

    def to_dict(self) -> dict:
        return asdict(self)


def mlp(n_in: int, n_hidden: int, n_out: int, norm: bool = True) -> nn.Sequential:
    """Two hidden ReLU layers (App. C), LayerNorm on the output for latent MLPs."""
    layers: list[nn.Module] = [
        nn.Linear(n_in, n_hidden),
        nn.ReLU(),
        nn.Linear(n_hidden, n_hidden),
        nn.ReLU(),
        nn.Linear(n_hidden, n_out),
    ]
    if norm:
        layers.append(nn.LayerNorm(n_out))
    return nn.Sequential(*layers)


class InteractionLayer(nn.Module):
    """One processor step: e' = e + φ_e(e, h_src, h_dst); h' = h + φ_v(h, Σ_{e→h} e')."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.edge = mlp(3 * hidden, hidden, hidden)
        self.node = mlp(2 * hidden, hidden, hidden)

    def forward(
        self, h: torch.Tensor, e: torch.Tensor, edges: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        src, dst = edges[:, 0], edges[:, 1]
        e = e + self.edge(torch.cat([e, h[src], h[dst]], dim=-1))
        h = h + self.node(torch.cat([h, scatter_sum(e, dst, h.shape[0])], dim=-1))
        return h, e


class EmbeddingGNN(nn.Module):
    """G_NE: bead types + weights on the fine bond graph → type embeddings c_i (N, D)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        d = config.embed_dim
        self.types = nn.Embedding(config.n_types, d)
        self.bond_type = nn.Parameter(torch.zeros(d))  # one bond type in this chemistry
        self.node_in = mlp(d + 1, d, d)
        self.edge_in = mlp(d, d, d)
        self.layers = nn.ModuleList(InteractionLayer(d) for _ in range(config.embed_layers))
        self.out = mlp(d, d, d, norm=False)

    def forward(
        self, types: torch.Tensor, weights: torch.Tensor, bonds: torch.Tensor
    ) -> torch.Tensor:
        """types (N,) int, weights (N,) bead masses, bonds (B, 2) → c (N, D)."""
        a = self.types(types)
        edges = torch.cat([bonds, bonds.flip(1)], dim=0)  # messages both ways
        h = self.node_in(torch.cat([a, weights[:, None]], dim=-1))
        e = self.edge_in(a[edges[:, 0]] + a[edges[:, 1]] + self.bond_type)
        for layer in self.layers:
            h, e = layer(h, e, edges)
        return self.out(h)


def cg_embedding(c_fine: torch.Tensor, groups: torch.Tensor, n_beads: int) -> torch.Tensor:
    """Eq. 1: c_m = mean of c_i over the atoms of group m → (M, D)."""
    counts = torch.bincount(groups, minlength=n_beads).clamp(min=1).to(c_fine.dtype)
    return scatter_sum(c_fine, groups, n_beads) / counts[:, None]


def _edge_geometry(x: torch.Tensor, edges: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Distances (E,) and unit vectors r̂ (E, 3) from receiver to sender, x_src - x_dst."""
    r = x[edges[:, 0]] - x[edges[:, 1]]
    d = torch.sqrt((r * r).sum(-1) + 1e-12)
    return d, r / d[:, None]


class DynamicsOutput(NamedTuple):
    """The Gaussian over normalised accelerations of a batch of CG graphs, plus latents.

    ``mean`` (M, 3); ``log_var`` (M,) log s²; ``pooled`` (G, H) per-graph latents;
    ``self_coupling`` (M,) B_mm and ``edge_coupling`` (E,) B_mn for edge n → m, or None for
    the independent Gaussian.
    """

    mean: torch.Tensor
    log_var: torch.Tensor
    pooled: torch.Tensor
    self_coupling: torch.Tensor | None = None
    edge_coupling: torch.Tensor | None = None


class DynamicsGNN(nn.Module):
    """G_ND: history-augmented CG graph → Gaussian over the time-integrated acceleration.

    ``forward`` returns a :class:`DynamicsOutput` in units of ``Scales.acceleration`` (the
    caller multiplies by it).
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        k, hdim = config.history, config.hidden
        self.k = k
        self.correlated = bool(config.correlated_noise)
        extra = 1 if self.correlated else 0
        n_node = config.embed_dim + 1 + k * (k + 1) // 2
        n_edge = 2 + 3 * k  # distance, bond flag, v_m·r̂, v_n·r̂, v_m·v_n per history step
        self.node_in = mlp(n_node, hdim, hdim)
        self.edge_in = mlp(n_edge, hdim, hdim)
        self.layers = nn.ModuleList(InteractionLayer(hdim) for _ in range(config.layers))
        # per bead: k velocity weights, log-variance (and B_mm); per edge: weight of r̂ (and B_mn)
        self.node_out = mlp(hdim, hdim, k + 1 + extra, norm=False)
        self.edge_out = mlp(hdim, hdim, 1 + extra, norm=False)
        self.rg_head = mlp(hdim, hdim, 1, norm=False) if config.rg_head else None
        self.variance_out: nn.Sequential | None = None
        if config.variance_head:
            self.attach_variance_head()
        iu = torch.triu_indices(k, k)
        self.register_buffer("_iu", iu, persistent=False)

    def forward(
        self,
        c: torch.Tensor,
        weights: torch.Tensor,
        x: torch.Tensor,
        v: torch.Tensor,
        edges: torch.Tensor,
        bond_flag: torch.Tensor,
        graph: torch.Tensor,
        n_graphs: int,
    ) -> DynamicsOutput:
        """c (M, D); weights (M,); x (M, 3) and edge lengths in length scale; v (M, k, 3)
        in velocity scale; edges (E, 2) sender→receiver; bond_flag (E,); graph (M,)."""
        d, rhat = _edge_geometry(x, edges)
        src, dst = edges[:, 0], edges[:, 1]
        gram = torch.einsum("mid,mjd->mij", v, v)[:, self._iu[0], self._iu[1]]
        h = self.node_in(torch.cat([c, torch.log(weights)[:, None], gram], dim=-1))
        proj_dst = torch.einsum("ekd,ed->ek", v[dst], rhat)
        proj_src = torch.einsum("ekd,ed->ek", v[src], rhat)
        cross = (v[dst] * v[src]).sum(-1)
        e = self.edge_in(torch.cat([d[:, None], bond_flag[:, None], proj_dst, proj_src, cross], -1))
        for layer in self.layers:
            h, e = layer(h, e, edges)
        out, edge_out = self.node_out(h), self.edge_out(e)
        mean = torch.einsum("mk,mkd->md", out[:, : self.k], v)
        mean = mean + scatter_sum(edge_out[:, :1] * rhat, dst, x.shape[0])
        pooled = scatter_sum(h, graph, n_graphs) / torch.bincount(graph, minlength=n_graphs)[
            :, None
        ].clamp(min=1)
        log_var = out[:, self.k] if self.variance_out is None else self.variance_out(h)[:, 0]
        if not self.correlated:
            return DynamicsOutput(mean, log_var, pooled)
        return DynamicsOutput(mean, log_var, pooled, out[:, self.k + 1], edge_out[:, 1])

    def attach_variance_head(self) -> nn.Sequential:
        """Give the log-variance its own MLP, a copy of the per-bead output MLP reduced to
        its log-variance channel: the outputs are unchanged until the head is trained, and
        training it leaves the mean untouched (:func:`~explorer.cg.train.refit_variance`).
        """
        head = mlp(self.node_out[0].in_features, self.node_out[0].out_features, 1, norm=False)
        with torch.no_grad():
            for mine, theirs in zip(head[:3], self.node_out[:3], strict=True):
                if isinstance(mine, nn.Linear):
                    mine.weight.copy_(theirs.weight)
                    mine.bias.copy_(theirs.bias)
            head[4].weight.copy_(self.node_out[4].weight[self.k : self.k + 1])
            head[4].bias.copy_(self.node_out[4].bias[self.k : self.k + 1])
        self.variance_out = head.to(self.node_out[0].weight.device)
        return head

    def rg2_offset(self, pooled: torch.Tensor) -> torch.Tensor:
        """(G,) normalised R_g²(fine) - R_g²(CG) from pooled latents (App. C)."""
        if self.rg_head is None:
            return torch.zeros(pooled.shape[0], dtype=pooled.dtype, device=pooled.device)
        return self.rg_head(pooled)[:, 0]


def _std(log_var: torch.Tensor) -> torch.Tensor:
    return torch.exp(0.5 * log_var.clamp(-10.0, 10.0))  # clamp keeps exp() finite early on


def gaussian_nll(mean: torch.Tensor, log_var: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood per coordinate of N(mean, exp(log_var) I), constants
    dropped: ½ [log σ² + |target - mean|² / (3 σ²)] averaged over beads."""
    log_var = log_var.clamp(-10.0, 10.0)
    sq = ((target - mean) ** 2).sum(-1) / 3.0
    return 0.5 * (log_var + sq * torch.exp(-log_var)).mean()


def acceleration_noise(
    out: DynamicsOutput, edges: torch.Tensor, z_own: torch.Tensor, z_shared: torch.Tensor
) -> torch.Tensor:
    """A draw of the zero-mean part of the Gaussian from standard normals (M, 3):
    ε = s ⊙ z_own + B z_shared, so Cov(ε) = (diag(s²) + B Bᵀ) ⊗ I₃."""
    eps = _std(out.log_var)[:, None] * z_own
    if out.self_coupling is None or out.edge_coupling is None:
        return eps
    shared = out.self_coupling[:, None] * z_shared
    shared = shared + scatter_sum(
        out.edge_coupling[:, None] * z_shared[edges[:, 0]], edges[:, 1], z_shared.shape[0]
    )
    return eps + shared


def _local_index(graph: torch.Tensor, n_graphs: int) -> tuple[torch.Tensor, int]:
    """Each node's index within its graph (graphs are contiguous runs) and the largest size."""
    counts = torch.bincount(graph, minlength=n_graphs)
    first = torch.cumsum(counts, 0) - counts
    return torch.arange(graph.shape[0], device=graph.device) - first[graph], int(counts.max())


def bead_covariance(
    out: DynamicsOutput, edges: torch.Tensor, graph: torch.Tensor, n_graphs: int
) -> torch.Tensor:
    """(G, M_max, M_max) per-graph covariance C = diag(s²) + B Bᵀ of the normalised
    acceleration (each Cartesian component independent with this C). Graphs are contiguous
    runs of ``graph``; smaller graphs are padded with the identity."""
    local, size = _local_index(graph, n_graphs)
    var = torch.ones(n_graphs, size, dtype=out.mean.dtype, device=out.mean.device)
    var = var.index_put((graph, local), _std(out.log_var) ** 2)
    cov = torch.diag_embed(var)
    if out.self_coupling is None or out.edge_coupling is None:
        return cov
    b = torch.zeros(n_graphs, size, size, dtype=out.mean.dtype, device=out.mean.device)
    b = b.index_put((graph, local, local), out.self_coupling, accumulate=True)
    src, dst = edges[:, 0], edges[:, 1]
    b = b.index_put((graph[dst], local[dst], local[src]), out.edge_coupling, accumulate=True)
    return cov + b @ b.transpose(1, 2)


def graph_rg2(
    x: torch.Tensor, masses: torch.Tensor, graph: torch.Tensor, n_graphs: int
) -> torch.Tensor:
    """(G,) mass-weighted R_g² of each graph of a batch (σ²)."""
    total = scatter_sum(masses, graph, n_graphs)
    com = scatter_sum(masses[:, None] * x, graph, n_graphs) / total[:, None]
    return scatter_sum(masses * ((x - com[graph]) ** 2).sum(-1), graph, n_graphs) / total


def expected_next_rg2(
    out: DynamicsOutput,
    x: torch.Tensor,
    v_last: torch.Tensor,
    masses: torch.Tensor,
    edges: torch.Tensor,
    graph: torch.Tensor,
    n_graphs: int,
    dt: float,
    acceleration_scale: float,
    cov: torch.Tensor | None = None,
) -> torch.Tensor:
    """(G,) E[R_g²(x_{t+Δt})] (σ²) under the predicted Gaussian, in closed form.

    With x_{t+Δt} = m + Δt² s_a ε, m = x + Δt v_last + Δt² s_a μ and Cov(ε) = C ⊗ I₃:
    E[R_g²] = R_g²(m) + 3 Δt⁴ s_a² tr(P C), P = (diag(w) - w wᵀ / W) / W the mass-weighted
    centring. x, v_last in σ and σ/τ; masses (M,) CG bead masses; ``cov`` the
    :func:`bead_covariance` of ``out`` when the caller already has it.
    """
    dx2 = (dt * dt * acceleration_scale) ** 2
    m = x + dt * v_last + dt * dt * acceleration_scale * out.mean
    total = scatter_sum(masses, graph, n_graphs)
    rg2 = graph_rg2(m, masses, graph, n_graphs)
    if cov is None:
        cov = bead_covariance(out, edges, graph, n_graphs)
    local, size = _local_index(graph, n_graphs)
    w = torch.zeros(n_graphs, size, dtype=x.dtype, device=x.device).index_put(
        (graph, local), masses
    )
    trace = (w * torch.diagonal(cov, dim1=1, dim2=2)).sum(-1) / total
    trace = trace - torch.einsum("gm,gmn,gn->g", w, cov, w) / total**2
    return rg2 + 3.0 * dx2 * trace


def correlated_gaussian_nll(
    out: DynamicsOutput,
    target: torch.Tensor,
    edges: torch.Tensor,
    graph: torch.Tensor,
    n_graphs: int,
    cov: torch.Tensor | None = None,
) -> torch.Tensor:
    """Negative log-likelihood per coordinate of the (possibly correlated) Gaussian, constants
    dropped: Σ_g ½ [3 log det C_g + Σ_xyz r_gᵀ C_g⁻¹ r_g] / (3 M); equals
    :func:`gaussian_nll` when B = 0. ``cov``: the :func:`bead_covariance` of ``out`` if
    already computed."""
    local, size = _local_index(graph, n_graphs)
    residual = torch.zeros(n_graphs, size, 3, dtype=target.dtype, device=target.device)
    residual = residual.index_put((graph, local), target - out.mean)
    if cov is None:
        cov = bead_covariance(out, edges, graph, n_graphs)
    chol = torch.linalg.cholesky(cov)
    white = torch.linalg.solve_triangular(chol, residual, upper=False)
    logdet = 2.0 * torch.log(torch.diagonal(chol, dim1=1, dim2=2)).sum()
    return 0.5 * (3.0 * logdet + (white**2).sum()) / (3.0 * graph.shape[0])


class ScoreGNN(nn.Module):
    """G_NS: (noisy CG positions, embeddings, noise level σ) → ε̂ ≈ -z, i.e. σ × score.

    Denoising score matching (eq. 2) with x̃ = x + σ z trains
    ``|G_NS(x̃, σ) + z|²``; then ∇ log p_σ(x̃) ≈ G_NS(x̃, σ) / σ (Algorithm 1 divides by σ_i).
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        hdim = config.score_hidden
        self.node_in = mlp(config.embed_dim + 2, hdim, hdim)
        self.edge_in = mlp(3, hdim, hdim)
        self.layers = nn.ModuleList(InteractionLayer(hdim) for _ in range(config.score_layers))
        self.edge_out = mlp(hdim, hdim, 1, norm=False)

    def forward(
        self,
        c: torch.Tensor,
        weights: torch.Tensor,
        x: torch.Tensor,
        sigma: torch.Tensor,
        edges: torch.Tensor,
        bond_flag: torch.Tensor,
    ) -> torch.Tensor:
        """x (M, 3) in length scale; sigma (M,) per-bead noise level (same unit) → (M, 3)."""
        d, rhat = _edge_geometry(x, edges)
        dst = edges[:, 1]
        log_sigma = torch.log(sigma)
        h = self.node_in(torch.cat([c, torch.log(weights)[:, None], log_sigma[:, None]], -1))
        e = self.edge_in(torch.stack([d, bond_flag, log_sigma[dst]], dim=-1))
        for layer in self.layers:
            h, e = layer(h, e, edges)
        return scatter_sum(self.edge_out(e) * rhat, dst, x.shape[0])


def noise_schedule(config: ModelConfig) -> torch.Tensor:
    """(L,) geometric noise levels σ_1 > … > σ_L from sigma_max to sigma_min (σ)."""
    return torch.logspace(
        torch.log10(torch.tensor(config.sigma_max)),
        torch.log10(torch.tensor(config.sigma_min)),
        config.noise_levels,
    )


def wall_acceleration(
    x: torch.Tensor,
    weights: torch.Tensor,
    edges: torch.Tensor,
    bond_flag: torch.Tensor,
    k: float,
    r0: float,
) -> torch.Tensor:
    """Acceleration (n, 3) in σ/τ² from a harmonic wall U = k/2 (r0 - r)² for r < r0
    (k in ε/σ², r0 and positions ``x`` (n, 3) in σ, ``weights`` (n,) bead masses in m)
    between the beads of every edge that is not a CG bond.

    ``edges`` (E, 2) hold both directions of a pair; each directed edge pushes its
    receiver, so the forces of a pair cancel (total momentum is kept) and the result
    rotates with ``x``. Overlapping CG beads are what the learned dynamics alone lets
    through: non-bonded CG beads came 1.3–1.6× closer than in MD (README, CG polymers).
    """
    if k == 0.0 or edges.numel() == 0:
        return torch.zeros_like(x)
    return _pair_acceleration(
        x, weights, edges, lambda r: k * (r0 - r).clamp(min=0.0) * (1.0 - bond_flag)
    )


def stretch_acceleration(
    x: torch.Tensor,
    weights: torch.Tensor,
    edges: torch.Tensor,
    limit: torch.Tensor,
    k: float,
) -> torch.Tensor:
    """Acceleration (n, 3) in σ/τ² from U = k/2 (r - L)² for r > L between the beads of
    every edge, L (E,) the edge's length limit in σ (+inf: none), k in ε/σ², positions
    ``x`` (n, 3) in σ, ``weights`` (n,) bead masses in m.

    The fine chain cannot stretch past its FENE bonds' R0, so no reference configuration
    has two CG beads beyond their full-extension bound (:func:`~explorer.cg.data.
    contour_limits`; in the training files never past 0.57 of it), while the learned
    dynamics alone drifts there: 14 % of the shipped model's frames went beyond the bound
    itself. As in :func:`wall_acceleration`, each directed edge pulls its receiver, so the
    forces of a pair cancel and the result rotates with ``x``.
    """
    if k == 0.0 or edges.numel() == 0:
        return torch.zeros_like(x)
    return _pair_acceleration(x, weights, edges, lambda r: -(k * (r - limit).clamp(min=0.0)))


def _pair_acceleration(
    x: torch.Tensor,
    weights: torch.Tensor,
    edges: torch.Tensor,
    outward: Callable[[torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """Acceleration (n, 3) in σ/τ² of central pair forces: each directed edge pushes its
    receiver away from its sender with ``outward(r)`` (E,) in ε/σ (negative: pulls), r the
    pair distances in σ; with both directions of a pair present the forces cancel."""
    src, dst = edges[:, 0], edges[:, 1]
    d = x[dst] - x[src]
    r = torch.sqrt((d * d).sum(-1) + 1e-12)
    force = scatter_sum((outward(r) / r)[:, None] * d, dst, x.shape[0])
    return force / weights[:, None]
