"""The FlashMD network: (q, p) at τ → (q, p) at τ + Δτ for one fixed stride Δτ (FlashMD §3.1).

An equivariant PaiNN backbone (:mod:`explorer.nn`) instead of the paper's PET: PET is not
rotationally equivariant and needs rotation augmentation plus the random-rotation filter
(App A.4); PaiNN's vector features make the prediction exactly E(3)-equivariant, so
neither is needed (the test suite measures the equivariance error, ~1e-7 in float32).

Inputs (units: Å, amu, fs): atomic numbers Z_i, positions q_i, momenta p_i in amu·Å/fs,
masses m_i, a cell and its periodicity. With the mass-scaled momentum p̃_i = p_i / √m_i
(App A.2) and its dataset standard deviation s_p:

* node init (§3.1 (i)): scalars s_i = h(Z_i) + MLP(|p̃_i| / s_p), vectors v_i = (p̃_i / s_p) ⊗ w
  with a learnable w ∈ R^F — the momentum enters as the initial vector feature;
* edges: a radius graph of q (cutoff r_c), Bessel basis of |q_j − q_i + S·cell|, cosine
  envelope, PaiNN message + update blocks;
* two gated vector heads (§3.1 (ii)) give standardised targets y_q, y_p (N, 3); the model
  returns the mass-scaled displacement Δq̃_i = (q'_i − q_i) √m_i = s_q y_q and momentum
  p̃'_i = p'_i / √m_i = s_p y_p (App A.2), s_q and s_p being stored buffers set from the
  training data (App B.1), so a checkpoint carries its own standardisation.

:meth:`FlashMDModel.predict` converts back to Δq, p' and, at inference, enforces the two
conservation laws of App A.3 per structure (eqs. 4–5): Σ p'_i = Σ p_i and
Σ m_i (q'_i − q_i) = Δτ Σ p_i, by removing a uniform velocity and a uniform shift.

Optional ballistic geometries (``FlashMDConfig.ballistic_fractions``): for each fraction f,
the edges also carry the geometry of the free-flight positions q_i + f Δτ p_i / m_i, a
second (distance, direction) set fed to the same messages with its own filters, as LiFlow
feeds its displaced structure (:mod:`explorer.liflow.model`). The distance a neighbour
pair *would* reach along straight lines carries the per-edge approach velocity
r̂_ij · (v_j − v_i), which PaiNN's node-wise vector features only see after aggregation;
over a 128 fs stride in liquid argon, collisions decided by that quantity dominate the
force-driven motion. Equivariant by construction (positions and momenta rotate together).
Measured in same-budget H100 runs (fractions 0.5 and 1): validation RMSE(q) 0.016 → 0.0045
Å for argon at 128 fs, 0.058 → 0.028 Å for Al(110) at 64 fs.

Optional free-flight baseline (``FlashMDConfig.free_flight_baseline``): the heads predict
the residuals Δq̃ − p̃Δτ and p̃' − p̃ instead of Δq̃ and p̃', as MDNet did (FlashMD App A.2
discusses the choice). The baseline is what a free particle would do; on smooth potentials
such as Lennard-Jones argon it removes most of the target variance, so the network only
learns the force-driven part. Off by default: at long strides on rougher potentials the
paper finds it raises the variance instead; on argon at 128 fs it did not help in our
runs (RMSE(q) 0.016 → 0.019 Å without ballistic geometries, 0.0045 → 0.0043 Å with).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from explorer.neighbors import PeriodicGraph, edge_vectors, radius_graph
from explorer.nn import (
    BesselRBF,
    CosineCutoff,
    GatedVectorOutput,
    PaiNNMessage,
    PaiNNUpdate,
    SpeciesEmbedding,
    safe_norm,
)

__all__ = ["FlashMDConfig", "FlashMDModel", "enforce_conservation"]

_LENGTH_EPS2 = 1e-12


@dataclass(frozen=True)
class FlashMDConfig:
    """Hyper-parameters of :class:`FlashMDModel`.

    Attributes:
        elements: atomic numbers the species embedding knows.
        stride_fs: Δτ, the time the model advances in one call (fs).
        num_features: F, scalar and vector feature width.
        num_rbf: Bessel basis size.
        num_layers: message-passing layers.
        cutoff: radius-graph cutoff in Å.
        free_flight_baseline: predict residuals to the free-particle step (module docstring).
        ballistic_fractions: extra edge geometries at q + f Δτ p / m, one per f (module
            docstring); empty: positions only.
    """

    elements: tuple[int, ...] = (18,)
    stride_fs: float = 128.0
    num_features: int = 32
    num_rbf: int = 16
    num_layers: int = 3
    cutoff: float = 7.0
    free_flight_baseline: bool = False
    ballistic_fractions: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "elements", tuple(int(z) for z in self.elements))
        fractions = tuple(float(f) for f in self.ballistic_fractions)
        object.__setattr__(self, "ballistic_fractions", fractions)
        if not all(0.0 < f <= 2.0 for f in fractions):
            raise ValueError(f"ballistic_fractions must lie in (0, 2], got {fractions}")
        if not self.elements:
            raise ValueError("elements must not be empty")
        if not (self.stride_fs > 0 and self.cutoff > 0):
            raise ValueError("stride_fs and cutoff must be > 0")
        if self.num_features < 1 or self.num_rbf < 1 or self.num_layers < 1:
            raise ValueError("num_features, num_rbf and num_layers must be >= 1")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["elements"] = list(self.elements)
        d["ballistic_fractions"] = list(self.ballistic_fractions)
        return d


class FlashMDModel(nn.Module):
    """FlashMD predictor (module docstring)."""

    def __init__(self, config: FlashMDConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config if config is not None else FlashMDConfig()
        f = cfg.num_features
        self.species = SpeciesEmbedding(cfg.elements, f)
        self.momentum_scalar = nn.Sequential(nn.Linear(1, f), nn.SiLU(), nn.Linear(f, f))
        self.momentum_weight = nn.Parameter(torch.randn(f))
        self.rbf = BesselRBF(cfg.num_rbf, cfg.cutoff)
        self.envelope = CosineCutoff(cfg.cutoff)
        geometries = 1 + len(cfg.ballistic_fractions)
        self.messages = nn.ModuleList(
            PaiNNMessage(f, cfg.num_rbf, num_geometries=geometries) for _ in range(cfg.num_layers)
        )
        self.updates = nn.ModuleList(PaiNNUpdate(f) for _ in range(cfg.num_layers))
        self.head_q = GatedVectorOutput(f)
        self.head_p = GatedVectorOutput(f)
        # Standard deviations of Δq̃ (√amu·Å) and p̃ (√amu·Å/fs) over the training set.
        self.register_buffer("q_scale", torch.tensor(1.0))
        self.register_buffer("p_scale", torch.tensor(1.0))

    def set_scales(self, q_scale: float, p_scale: float) -> None:
        """Store the target standardisation (App B.1): std of Δq̃ and of p̃ over the data."""
        if not (q_scale > 0 and p_scale > 0):
            raise ValueError(f"scales must be > 0, got {q_scale}, {p_scale}")
        self.q_scale.fill_(float(q_scale))
        self.p_scale.fill_(float(p_scale))

    def baseline(
        self, momenta: torch.Tensor, masses: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Free-flight part of the mass-scaled targets: (p̃Δτ, p̃), or zeros when disabled.

        Units: √amu·Å and √amu·Å/fs, for momenta in amu·Å/fs and masses in amu.
        """
        p_tilde = momenta / torch.sqrt(masses.to(momenta.dtype)).unsqueeze(-1)
        if not self.config.free_flight_baseline:
            return torch.zeros_like(p_tilde), torch.zeros_like(p_tilde)
        return p_tilde * self.config.stride_fs, p_tilde

    def standardise_targets(
        self,
        dq_tilde: torch.Tensor,
        p_tilde_next: torch.Tensor,
        momenta: torch.Tensor,
        masses: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """What :meth:`forward` should output for the mass-scaled targets (Δq̃, p̃')."""
        base_q, base_p = self.baseline(momenta, masses)
        return (dq_tilde - base_q) / self.q_scale, (p_tilde_next - base_p) / self.p_scale

    def build_graph(
        self,
        positions: torch.Tensor,
        cell: torch.Tensor,
        batch: torch.Tensor | None = None,
        pbc: torch.Tensor | None = None,
    ) -> PeriodicGraph:
        """Radius graph of q with the model's cutoff (a transform outside the network)."""
        return radius_graph(positions, cell, self.config.cutoff, batch=batch, pbc=pbc)

    def forward(
        self,
        numbers: torch.Tensor,
        positions: torch.Tensor,
        momenta: torch.Tensor,
        masses: torch.Tensor,
        cell: torch.Tensor,
        graph: PeriodicGraph,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Standardised predictions (y_q, y_p), each (N, 3): Δq̃ / s_q and p̃' / s_p, less
        the free-flight baseline when the config enables it (:meth:`standardise_targets`).

        Args:
            numbers: (N,) atomic numbers.
            positions: (N, 3) q in Å.
            momenta: (N, 3) p in amu·Å/fs.
            masses: (N,) amu.
            cell: (3, 3) or (B, 3, 3) Å.
            graph: from :meth:`build_graph` on ``positions``.
        """
        dtype = positions.dtype
        sqrt_m = torch.sqrt(masses.to(dtype)).unsqueeze(-1)
        p_std = momenta / sqrt_m / self.p_scale.to(dtype)
        velocities = momenta / masses.to(dtype).unsqueeze(-1)
        rbf, unit, envelope = [], [], None
        for fraction in (0.0, *self.config.ballistic_fractions):
            moved = positions + (fraction * self.config.stride_fs) * velocities
            vec = edge_vectors(
                moved, cell.to(dtype), graph.edge_index, graph.cell_shifts, graph.batch
            )
            length = torch.sqrt(torch.sum(vec * vec, dim=-1) + _LENGTH_EPS2)
            rbf.append(self.rbf(length))
            unit.append(vec / length.unsqueeze(-1))
            if envelope is None:  # the graph (and its smooth cutoff) is that of q
                envelope = self.envelope(length)
        s = self.species(numbers) + self.momentum_scalar(safe_norm(p_std, dim=-1).unsqueeze(-1))
        v = p_std.unsqueeze(-1) * self.momentum_weight.to(dtype)
        for message, update in zip(self.messages, self.updates, strict=True):
            ds, dv = message(s, v, graph.edge_index, rbf, unit, envelope)
            s, v = s + ds, v + dv
            ds, dv = update(s, v)
            s, v = s + ds, v + dv
        return self.head_q(s, v), self.head_p(s, v)

    def predict(
        self,
        numbers: torch.Tensor,
        positions: torch.Tensor,
        momenta: torch.Tensor,
        masses: torch.Tensor,
        cell: torch.Tensor,
        batch: torch.Tensor | None = None,
        pbc: torch.Tensor | None = None,
        constrain: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One FlashMD step as (Δq in Å, p' in amu·Å/fs), conservation laws enforced.

        ``constrain=False`` returns the raw network prediction (used to measure how far
        it violates eqs. 4–5). Returning Δq rather than q' lets callers add it to float64
        positions.
        """
        graph = self.build_graph(positions, cell, batch, pbc)
        y_q, y_p = self(numbers, positions, momenta, masses, cell, graph)
        sqrt_m = torch.sqrt(masses.to(positions.dtype)).unsqueeze(-1)
        base_q, base_p = self.baseline(momenta, masses)
        dq = (y_q * self.q_scale + base_q) / sqrt_m
        p_new = (y_p * self.p_scale + base_p) * sqrt_m
        if constrain:
            dq, p_new = enforce_conservation(
                dq, p_new, momenta, masses, self.config.stride_fs, batch
            )
        return dq, p_new

    def step(
        self,
        numbers: torch.Tensor,
        positions: torch.Tensor,
        momenta: torch.Tensor,
        masses: torch.Tensor,
        cell: torch.Tensor,
        batch: torch.Tensor | None = None,
        pbc: torch.Tensor | None = None,
        constrain: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(q', p') in Å and amu·Å/fs: :meth:`predict` added to the positions."""
        dq, p_new = self.predict(numbers, positions, momenta, masses, cell, batch, pbc, constrain)
        return positions + dq, p_new


def enforce_conservation(
    displacement: torch.Tensor,
    new_momenta: torch.Tensor,
    momenta: torch.Tensor,
    masses: torch.Tensor,
    stride_fs: float,
    batch: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Impose FlashMD eqs. 4–5 per structure (App A.3).

    Total momentum: p'_i ← p'_i − m_i (Σ p' − Σ p) / M, a uniform velocity change.
    Centre of mass: Δq_i ← Δq_i − (Σ m Δq − Δτ Σ p) / M, a uniform shift, so that the
    centre of mass moves by exactly Δτ P / M. Units: Å, amu, fs, amu·Å/fs.
    """
    if batch is None:
        batch = torch.zeros(masses.shape[0], dtype=torch.int64, device=masses.device)
    n_struct = int(batch.max()) + 1 if batch.numel() else 0
    m = masses.to(displacement.dtype).unsqueeze(-1)
    total_mass = torch.zeros(n_struct, 1, dtype=m.dtype, device=m.device).index_add_(0, batch, m)

    def per_structure(values: torch.Tensor) -> torch.Tensor:
        out = values.new_zeros((n_struct, 3))
        return out.index_add_(0, batch, values)

    momentum_before = per_structure(momenta)
    velocity_fix = (per_structure(new_momenta) - momentum_before) / total_mass
    new_momenta = new_momenta - m * velocity_fix[batch]
    shift = (per_structure(m * displacement) - stride_fs * momentum_before) / total_mass
    displacement = displacement - shift[batch]
    return displacement, new_momenta
