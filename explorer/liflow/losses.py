"""Conditional flow-matching examples and loss of the LiFlow Propagator and Corrector.

Flow matching with the linear interpolant (LiFlow §II.1): for a prior displacement ``d0``
(Å) and a data displacement ``d1`` (Å), at flow time ``t ∈ [0, 1]``

    d_t = (1 − t) d0 + t d1,        u = d_t' = d1 − d0                       (Å per unit t)

and the network ``v_θ(d_t, t | x, T)`` regresses the conditional flow (eq. 2):

    L = E_{x, d0, d1, t} [ ‖v_θ(d_t, t | x, T) − (d1 − d0)‖² ]               (Å²)

(squared norm over x, y, z; mean over atoms). The two models differ in what they condition
on and which displacement they generate (§IV.5, Algorithms 1–2):

* Propagator: condition ``x = x(τ)``, data ``d1 = x(τ + Δτ) − x(τ)``, prior from the
  configured kind (isotropic / Maxwell–Boltzmann / adaptive);
* Corrector: a true frame ``x1`` is perturbed, ``x̃ = x1 + ε`` with ``ε_i ~ N(0, σ² I₃)`` and
  one ``σ ~ U(0, σ_max]`` per structure; condition ``x = x̃``, data ``d1 = −ε`` (the move back
  to the clean frame), prior the small uniform-scale Maxwell–Boltzmann prior
  (:meth:`PriorConfig.corrector`).

Centre of mass. Reference MD keeps the CoM fixed and LiFlow inference removes CoM drift after
each step, so prior samples and the Corrector noise are drawn with their per-structure
mass-weighted mean removed (``remove_com``). For the noise this matters: a rigid shift of all
atoms is invisible to the translation-invariant network, so its ``−ε`` part would be an
unlearnable target. The Propagator's data displacements are used as recorded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from explorer.liflow.data import PairBatch
from explorer.liflow.model import FlowModel, edge_halves
from explorer.liflow.prior import (
    Choice,
    PriorConfig,
    masses_of,
    prior_std,
    remove_center_of_mass,
    sample_prior,
)

__all__ = [
    "FlowExample",
    "corrector_example",
    "flow_matching_loss",
    "flow_matching_target",
    "propagator_example",
]


@dataclass(frozen=True)
class FlowExample:
    """One batched flow-matching regression problem (all lengths in Å).

    ``positions`` is the conditioning structure (x(τ) or x̃), ``d_t`` the interpolated
    displacement, ``target`` the conditional flow ``d1 − d0``, ``flow_time`` (B,),
    ``temperature_K`` (B,), ``cell`` (B, 3, 3), ``batch`` (N,). ``d0``/``d1`` are kept for
    inspection.
    """

    numbers: torch.Tensor
    positions: torch.Tensor
    cell: torch.Tensor
    temperature_K: torch.Tensor
    batch: torch.Tensor
    flow_time: torch.Tensor
    d0: torch.Tensor
    d1: torch.Tensor
    d_t: torch.Tensor
    target: torch.Tensor


def flow_matching_target(
    d0: torch.Tensor, d1: torch.Tensor, t: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Linear interpolant and its velocity: ``d_t = (1 − t) d0 + t d1``, ``u = d1 − d0``.

    Args:
        d0: prior displacements (N, 3) in Å.
        d1: data displacements (N, 3) in Å.
        t: flow time per atom (N,) (or a scalar) in [0, 1].

    Returns:
        ``(d_t, u)``, both (N, 3) in Å (``u`` per unit flow time).
    """
    t = torch.as_tensor(t, dtype=d0.dtype, device=d0.device)
    t = t.reshape(-1, 1) if t.ndim else t
    return (1.0 - t) * d0 + t * d1, d1 - d0


def _example(
    batch: PairBatch,
    positions: torch.Tensor,
    d0: torch.Tensor,
    d1: torch.Tensor,
    generator: torch.Generator,
) -> FlowExample:
    """Draw ``t ~ U(0, 1)`` per structure and interpolate."""
    n_struct = batch.cell.shape[0]
    t = torch.rand(n_struct, generator=generator, dtype=d0.dtype, device=d0.device)
    d_t, target = flow_matching_target(d0, d1, t[batch.batch])
    return FlowExample(
        numbers=batch.numbers,
        positions=positions,
        cell=batch.cell,
        temperature_K=batch.temperature_K,
        batch=batch.batch,
        flow_time=t,
        d0=d0,
        d1=d1,
        d_t=d_t,
        target=target,
    )


def _prior_sample(
    batch: PairBatch,
    prior: PriorConfig,
    generator: torch.Generator,
    li_large: Choice,
    frame_large: Choice,
    remove_com: bool,
) -> torch.Tensor:
    dtype = batch.positions.dtype
    std = prior_std(
        batch.numbers, batch.temperature_K, prior, li_large, frame_large, batch=batch.batch
    ).to(dtype)
    masses = masses_of(batch.numbers, dtype)
    return sample_prior(std, generator, batch.batch, remove_com=remove_com, masses=masses)


def propagator_example(
    batch: PairBatch,
    prior: PriorConfig,
    generator: torch.Generator,
    li_large: Choice = None,
    frame_large: Choice = None,
    remove_com: bool = True,
) -> FlowExample:
    """Algorithm 1: ``d0 ~ prior``, ``d1 = x(τ+Δτ) − x(τ)``, condition on ``x(τ)``.

    ``li_large``/``frame_large`` are the adaptive prior's small/large choices (bool or (B,)),
    ignored by the other prior kinds. Random draws: d0 first, then t.
    """
    d0 = _prior_sample(batch, prior, generator, li_large, frame_large, remove_com)
    return _example(batch, batch.positions, d0, batch.displacements, generator)


def corrector_example(
    batch: PairBatch,
    prior: PriorConfig,
    generator: torch.Generator,
    noise_max_A: float,
    remove_com: bool = True,
) -> FlowExample:
    """Algorithm 2: denoise ``x̃ = x1 + ε`` back to the true frame ``x1 = x(τ+Δτ)``.

    ``σ ~ U(0, noise_max_A]`` per structure (Å), ``ε_i ~ N(0, σ² I₃)``, ``d1 = −ε``, and
    ``d0`` from ``prior.corrector()`` (small uniform-scale Maxwell–Boltzmann prior).
    Random draws: σ, ε, d0, then t.
    """
    dtype, device = batch.positions.dtype, batch.positions.device
    x1 = batch.positions + batch.displacements
    n_struct = batch.cell.shape[0]
    # 1 − U[0, 1) lies in (0, 1], so σ ∈ (0, noise_max].
    u = torch.rand(n_struct, generator=generator, dtype=dtype, device=device)
    sigma = noise_max_A * (1.0 - u)
    eps = torch.randn(x1.shape, generator=generator, dtype=dtype, device=device)
    eps = eps * sigma[batch.batch, None]
    if remove_com:
        eps = remove_center_of_mass(eps, masses_of(batch.numbers, dtype), batch.batch)
    d0 = _prior_sample(batch, prior.corrector(), generator, None, None, remove_com)
    return _example(batch, x1 + eps, d0, -eps, generator)


def flow_matching_loss(
    model: FlowModel, example: FlowExample, forward: Callable[..., torch.Tensor] | None = None
) -> torch.Tensor:
    """Eq. 2: mean over atoms of ``‖v_θ(d_t, t | x, T) − (d1 − d0)‖²`` (Å²).

    The radius graph is built once on the conditioning positions. ``forward`` evaluates
    the network in place of ``model`` (e.g. its compiled form, :mod:`explorer.nn.compiled`).
    """
    graph = model.build_graph(example.positions, example.cell, example.batch)
    v = (forward if forward is not None else model)(
        example.numbers,
        example.positions,
        example.d_t,
        example.cell,
        example.temperature_K,
        example.flow_time,
        example.batch,
        graph,
        halves=edge_halves(graph),  # eager: data-dependent, kept out of a compiled forward
    )
    return ((v - example.target) ** 2).sum(-1).mean()
