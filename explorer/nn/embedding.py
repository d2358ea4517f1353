"""Node input embeddings: atomic species and continuous scalars (LiFlow §IV.4, eq. 13).

* :class:`SpeciesEmbedding` — a learnable table ``h(Z) ∈ R^F`` over a fixed vocabulary
  of atomic numbers; an element outside the vocabulary raises
  :class:`~explorer.errors.UnknownElementError` instead of silently sharing a row.
* :class:`SinusoidalEmbedding` — random Fourier features of a scalar x (eq. 13):

      ψ(x) = Linear([sin(2π w_1 x), …, sin(2π w_K x), cos(2π w_1 x), …, cos(2π w_K x)]),

  with frequencies w_k ~ N(0, 1) drawn once from a seeded generator and stored as a
  buffer (saved with the model, never trained).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from explorer.errors import UnknownElementError

__all__ = ["SinusoidalEmbedding", "SpeciesEmbedding"]

# Highest atomic number the lookup table covers (oganesson).
_MAX_Z = 118


def _symbol(z: int) -> str:
    try:
        from ase.data import chemical_symbols

        return chemical_symbols[z] if 0 < z < len(chemical_symbols) else "?"
    except ImportError:  # ase is a dependency, but the name is only cosmetic here
        return "?"


class SpeciesEmbedding(nn.Module):
    """Learnable embedding of atomic numbers restricted to a vocabulary.

    Args:
        elements: atomic numbers the model knows (order defines table rows).
        num_features: F, the embedding width.
    """

    def __init__(self, elements: Sequence[int], num_features: int) -> None:
        super().__init__()
        elements = [int(z) for z in elements]
        if not elements or len(set(elements)) != len(elements):
            raise ValueError(f"elements must be non-empty and unique, got {elements}")
        if min(elements) < 1 or max(elements) > _MAX_Z:
            raise ValueError(f"atomic numbers must lie in 1..{_MAX_Z}, got {elements}")
        self.elements = tuple(elements)
        lookup = torch.full((_MAX_Z + 1,), -1, dtype=torch.int64)
        lookup[torch.tensor(elements)] = torch.arange(len(elements))
        self.register_buffer("lookup", lookup, persistent=False)
        self.table = nn.Embedding(len(elements), num_features)

    def index(self, numbers: torch.Tensor) -> torch.Tensor:
        """(N,) atomic numbers → (N,) rows of the table; raises on unknown elements."""
        numbers = numbers.to(torch.int64)
        in_range = (numbers >= 0) & (numbers <= _MAX_Z)
        rows = torch.where(in_range, self.lookup[numbers.clamp(0, _MAX_Z)], -1)
        if bool((rows < 0).any()):
            bad = sorted({int(z) for z in numbers[rows < 0].tolist()})
            names = ", ".join(f"{_symbol(z)} (Z={z})" for z in bad)
            raise UnknownElementError(
                f"element(s) {names} not in the model's vocabulary; it knows Z = "
                f"{list(self.elements)}"
            )
        return rows

    def forward(self, numbers: torch.Tensor) -> torch.Tensor:
        """(N,) atomic numbers → (N, F) features."""
        return self.table(self.index(numbers))


class SinusoidalEmbedding(nn.Module):
    """Random-Fourier-feature embedding of a scalar (LiFlow eq. 13).

    Args:
        num_features: F, the output width; F // 2 frequencies are drawn (F must be even).
        seed: seed of the generator drawing w_k ~ N(0, 1); same seed, same frequencies.
        scale: x is divided by this before encoding (e.g. 1000 K for temperatures) so
            that standard-normal frequencies see an O(1) argument.
    """

    def __init__(self, num_features: int, seed: int = 0, scale: float = 1.0) -> None:
        super().__init__()
        if num_features < 2 or num_features % 2:
            raise ValueError(f"num_features must be even and >= 2, got {num_features}")
        if not math.isfinite(scale) or scale <= 0:
            raise ValueError(f"scale must be positive, got {scale}")
        generator = torch.Generator().manual_seed(int(seed))
        freqs = torch.randn(num_features // 2, generator=generator, dtype=torch.float64)
        self.register_buffer("frequencies", freqs.to(torch.get_default_dtype()))
        self.scale = float(scale)
        self.linear = nn.Linear(num_features, num_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(...,) scalars → (..., F) features."""
        angle = 2.0 * math.pi * (x / self.scale).unsqueeze(-1) * self.frequencies.to(x.dtype)
        return self.linear(torch.cat([torch.sin(angle), torch.cos(angle)], dim=-1))

    def extra_repr(self) -> str:
        return f"frequencies={self.frequencies.numel()}, scale={self.scale}"
