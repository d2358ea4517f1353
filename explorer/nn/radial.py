"""Radial basis functions and smooth cutoff envelopes of interatomic distances (Å).

Bessel basis (PaiNN, Schütt et al. 2021, eq. 5; DimeNet):

    e_n(r) = sqrt(2 / r_c) · sin(n π r / r_c) / r,      n = 1 … N_rbf,

every function vanishing at r = r_c. Cosine cutoff (SchNet/PaiNN):

    f_c(r) = ½ (cos(π r / r_c) + 1)  for r < r_c,   0 otherwise,

which goes to 0 at r_c with zero slope, so messages switch on smoothly when an atom enters
the cutoff sphere.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["BesselRBF", "CosineCutoff"]


class BesselRBF(nn.Module):
    """Bessel radial basis ``sqrt(2/r_c) sin(ω_n r) / r`` with ω_n = n π / r_c (1/Å).

    Args:
        num_basis: number of functions N_rbf.
        cutoff: r_c in Å, where every function is zero (for the initial frequencies).
        trainable: learn the frequencies ω_n (initialised at n π / r_c) instead of fixing
            them; trained frequencies no longer vanish exactly at r_c, so pair the basis
            with a cutoff envelope.
    """

    def __init__(self, num_basis: int, cutoff: float, trainable: bool = False) -> None:
        super().__init__()
        if num_basis < 1 or cutoff <= 0:
            raise ValueError(f"need num_basis >= 1 and cutoff > 0, got {num_basis}, {cutoff}")
        self.num_basis = int(num_basis)
        self.cutoff = float(cutoff)
        # Stored as the dimensionless multipliers n (exact integers in any dtype, so a
        # float32-built module cast to float64 keeps exact frequencies); ω_n = n π / r_c.
        multipliers = torch.arange(1, num_basis + 1, dtype=torch.get_default_dtype())
        if trainable:
            self.multipliers = nn.Parameter(multipliers)
        else:
            self.register_buffer("multipliers", multipliers)
        self.prefactor = math.sqrt(2.0 / cutoff)

    def forward(self, distances: torch.Tensor) -> torch.Tensor:
        """(E,) distances in Å → (E, N_rbf) basis values (units 1/Å)."""
        r = distances.unsqueeze(-1)
        w = self.multipliers.to(distances.dtype) * (math.pi / self.cutoff)
        # sin(w r)/r = w · sinc(w r / π): finite and differentiable at r = 0, where a
        # division would give 0/0 (distances can be ~0 in clashing flow intermediates).
        return self.prefactor * w * torch.sinc(w * r / math.pi)

    def extra_repr(self) -> str:
        return f"num_basis={self.num_basis}, cutoff={self.cutoff}"


class CosineCutoff(nn.Module):
    """Smooth envelope ``½ (cos(π r / r_c) + 1)`` for r < r_c, else 0 (dimensionless)."""

    def __init__(self, cutoff: float) -> None:
        super().__init__()
        if cutoff <= 0:
            raise ValueError(f"cutoff must be positive, got {cutoff}")
        self.cutoff = float(cutoff)

    def forward(self, distances: torch.Tensor) -> torch.Tensor:
        """(E,) distances in Å → (E,) envelope values in [0, 1]."""
        value = 0.5 * (torch.cos(distances * (math.pi / self.cutoff)) + 1.0)
        return torch.where(distances < self.cutoff, value, torch.zeros_like(value))

    def extra_repr(self) -> str:
        return f"cutoff={self.cutoff}"
