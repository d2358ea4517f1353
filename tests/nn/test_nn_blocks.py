"""Radial basis, cutoff and embeddings of explorer.nn."""

from __future__ import annotations

import math

import pytest
import torch

from explorer.errors import UnknownElementError
from explorer.nn import BesselRBF, CosineCutoff, SinusoidalEmbedding, SpeciesEmbedding


def test_bessel_basis_matches_formula_and_vanishes_at_cutoff() -> None:
    rc = 5.5
    rbf = BesselRBF(20, rc).double()
    r = torch.tensor([0.3, 1.0, 2.7, 5.0], dtype=torch.float64)
    n = torch.arange(1, 21, dtype=torch.float64)
    expected = math.sqrt(2 / rc) * torch.sin(n * math.pi * r[:, None] / rc) / r[:, None]
    torch.testing.assert_close(rbf(r), expected)
    near = rbf(torch.tensor([rc - 1e-7, rc], dtype=torch.float64))
    assert near.abs().max() < 1e-5
    at_zero = rbf(torch.zeros(1, dtype=torch.float64))  # limit n π / rc, no NaN
    torch.testing.assert_close(at_zero[0], math.sqrt(2 / rc) * n * math.pi / rc)


def test_trainable_bessel_frequencies() -> None:
    assert len(list(BesselRBF(4, 5.0, trainable=True).parameters())) == 1
    assert len(list(BesselRBF(4, 5.0).parameters())) == 0


def test_cosine_cutoff_goes_smoothly_to_zero() -> None:
    cut = CosineCutoff(5.0)
    r = torch.tensor([0.0, 2.5, 5.0 - 1e-6, 5.0, 6.0], dtype=torch.float64, requires_grad=True)
    values = cut(r)
    torch.testing.assert_close(values[:2], torch.tensor([1.0, 0.5], dtype=torch.float64))
    assert values[2] < 1e-10 and values[3] == 0 and values[4] == 0
    (grad,) = torch.autograd.grad(values.sum(), r)
    assert grad[2].abs() < 1e-5 and grad[3] == 0 and grad[4] == 0


def test_sinusoidal_embedding_is_deterministic_given_seed() -> None:
    a, b, c = (SinusoidalEmbedding(16, seed=s) for s in (7, 7, 8))
    torch.testing.assert_close(a.frequencies, b.frequencies)
    assert not torch.equal(a.frequencies, c.frequencies)
    assert "frequencies" in a.state_dict() and a.frequencies.requires_grad is False
    assert a(torch.tensor([0.1, 0.5])).shape == (2, 16)
    with pytest.raises(ValueError):
        SinusoidalEmbedding(15)


def test_species_embedding_vocabulary() -> None:
    emb = SpeciesEmbedding([3, 15, 16], 8)
    assert emb.index(torch.tensor([16, 3, 15])).tolist() == [2, 0, 1]
    with pytest.raises(UnknownElementError, match=r"Ge \(Z=32\)"):
        emb(torch.tensor([3, 32]))
    with pytest.raises(UnknownElementError):
        emb(torch.tensor([500]))
