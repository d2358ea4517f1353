"""Prior distributions of LiFlow displacements (isotropic, Maxwell–Boltzmann, adaptive).

LiFlow generates an atomic displacement ``d`` (Å, shape ``(N, 3)``) by flow matching from
a Gaussian prior with a per-atom diagonal covariance, ``d_i ~ N(0, σ_i² I₃)``. The per-atom
standard deviations ``σ_i`` (Å) are

* isotropic:          ``σ_i = s``                                  (``s`` in Å)
* Maxwell–Boltzmann:  ``σ_i = s · sqrt(k_B T / m_i)``
* adaptive (eq. 10):  ``σ_i = s_{g(i)}[c_g] · sqrt(k_B T / m_i)``

with ``k_B`` in eV/K, ``T`` in K and ``m_i`` in u (atomic mass units). In the short-time,
non-interacting limit a displacement is ``v τ`` with ``v`` Maxwell–Boltzmann distributed,
``v ~ N(0, k_B T / m I)``, so ``σ_i ∝ sqrt(k_B T / m_i)``. The scale ``s`` absorbs the time
and therefore has the implied unit Å·(u/eV)^½ that turns ``sqrt(k_B T / m)`` (in
(eV/u)^½) into a position (paper §IV.1 "Units": the scale converts into *positions*, i.e.
it multiplies ``σ``, not ``σ²``; the public LiFlow scale values 1, 5, 10 are on this
footing). In the adaptive prior the species group ``g`` is lithium (Z = 3) or frame (every
other element), and ``c_g ∈ {small, large}`` is the prior classifier's prediction for that
group; the classifier lives elsewhere, here the choice is an input.

On top of the paper's prior, two user-facing multipliers ``λ_Li`` and ``λ_frame`` scale the
*variance* of the Li and frame atoms respectively: ``σ_i² ← λ_{g(i)} · σ_i²``. They apply
to every prior kind. Doubling a multiplier doubles ``σ²`` (``σ`` grows by ``√2``).

All randomness goes through an explicit :class:`torch.Generator` so that runs are
reproducible and independent streams never share hidden global state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from ase.data import atomic_masses
from ase.units import kB

from explorer.errors import PriorError

__all__ = [
    "LITHIUM_Z",
    "PriorConfig",
    "PriorKind",
    "masses_of",
    "prior_std",
    "remove_center_of_mass",
    "sample_prior",
]

PriorKind = Literal["isotropic", "maxwell_boltzmann", "adaptive"]
_KINDS: tuple[str, ...] = ("isotropic", "maxwell_boltzmann", "adaptive")

LITHIUM_Z = 3
"""Atomic number of the mobile species; every other element is a frame atom."""

# A choice argument: one bool for all structures, or a bool/0-1 tensor of shape () or (B,).
Choice = bool | torch.Tensor | None


def _check_positive(name: str, value: float) -> None:
    try:  # accept numpy / 0-d torch scalars too, but not bools (True is not a scale)
        v = float(value)
    except (TypeError, ValueError):
        v = math.nan
    if isinstance(value, bool) or not (math.isfinite(v) and v > 0):
        raise PriorError(f"{name} must be a finite number > 0, got {value!r}")


@dataclass(frozen=True)
class PriorConfig:
    """Settings of a LiFlow prior.

    Attributes:
        kind: ``"isotropic"``, ``"maxwell_boltzmann"`` (the paper's P[uniform]) or
            ``"adaptive"`` (P[adaptive], eq. 10).
        scale: isotropic: ``σ`` in Å; Maxwell–Boltzmann: the multiplier ``s`` of
            ``sqrt(k_B T / m)`` in Å·(u/eV)^½. Unused by the adaptive kind.
        li_scales: adaptive ``(small, large)`` multipliers ``s`` for lithium atoms.
        frame_scales: adaptive ``(small, large)`` multipliers ``s`` for frame atoms.
        corrector_scale: multiplier ``s`` of the small uniform-scale Maxwell–Boltzmann prior
            of the Corrector (see :meth:`corrector`).
        corrector_max_noise: maximum noise scale (Å) with which the Corrector's training
            inputs are perturbed; kept here so that both Corrector numbers live together.

    Defaults. The text extraction of the paper lost the numbers of §IV.5 ("For the adaptive
    prior in the universal dataset, we set the scale hyperparameters as [...], based on the
    observation that lithium atoms are generally more diffusive than the frame atoms.").
    ``li_scales=(1, 10)`` and ``frame_scales=(1, 5)`` are the universal-dataset values of the
    public LiFlow release (its adaptive-prior default), consistent with that sentence (Li's
    large scale exceeds the frame's). At 800 K they give σ_Li ≈ 0.1 Å (small) / 1.0 Å
    (large). The Corrector numbers ("a maximum noise scale of [...] and a small uniform-scale
    Maxwell–Boltzmann prior with [...]") were not recoverable; 0.1 Å is the maximum noise
    scale the public release uses for its AIMD Correctors and 0.1 is a deliberately small
    Maxwell–Boltzmann multiplier (σ_Li ≈ 0.01 Å at 800 K). Treat both as tunable.
    """

    kind: PriorKind = "adaptive"
    scale: float = 1.0
    li_scales: tuple[float, float] = (1.0, 10.0)
    frame_scales: tuple[float, float] = (1.0, 5.0)
    corrector_scale: float = 0.1
    corrector_max_noise: float = 0.1

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise PriorError(f"unknown prior kind {self.kind!r}; expected one of {_KINDS}")
        _check_positive("scale", self.scale)
        for name in ("li_scales", "frame_scales"):
            pair = getattr(self, name)
            if len(pair) != 2:
                raise PriorError(f"{name} must be a (small, large) pair, got {pair!r}")
            for v in pair:
                _check_positive(name, v)
        _check_positive("corrector_scale", self.corrector_scale)
        _check_positive("corrector_max_noise", self.corrector_max_noise)

    def corrector(self) -> PriorConfig:
        """The Corrector's prior: uniform-scale Maxwell–Boltzmann with ``corrector_scale``."""
        return PriorConfig(
            kind="maxwell_boltzmann",
            scale=self.corrector_scale,
            li_scales=self.li_scales,
            frame_scales=self.frame_scales,
            corrector_scale=self.corrector_scale,
            corrector_max_noise=self.corrector_max_noise,
        )


def masses_of(numbers: torch.Tensor, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Atomic masses (u) of atomic numbers ``numbers`` (N,), from ``ase.data.atomic_masses``."""
    numbers = torch.as_tensor(numbers)
    if numbers.ndim != 1 or numbers.dtype.is_floating_point or numbers.dtype == torch.bool:
        raise PriorError(
            f"numbers must be a 1-D integer tensor, got shape {tuple(numbers.shape)} "
            f"and dtype {numbers.dtype}"
        )
    if numbers.numel() == 0:
        raise PriorError("numbers is empty: a structure needs at least one atom")
    bad = (numbers < 1) | (numbers >= len(atomic_masses))
    if bool(bad.any()):
        idx = torch.nonzero(bad).flatten()[:5].tolist()
        raise PriorError(f"invalid atomic numbers at atom indices {idx}")
    table = torch.as_tensor(atomic_masses, dtype=dtype, device=numbers.device)
    return table[numbers.long()]


def _check_batch(batch: torch.Tensor | None, n_atoms: int) -> torch.Tensor | None:
    if batch is None:
        return None
    batch = torch.as_tensor(batch)
    if batch.shape != (n_atoms,) or batch.dtype.is_floating_point or batch.dtype == torch.bool:
        raise PriorError(
            f"batch must be an integer tensor of shape ({n_atoms},), got shape "
            f"{tuple(batch.shape)} and dtype {batch.dtype}"
        )
    if n_atoms and int(batch.min()) < 0:
        raise PriorError("batch holds negative structure indices")
    return batch.long()


def _per_atom(
    name: str,
    value: float | torch.Tensor,
    batch: torch.Tensor | None,
    n_atoms: int,
    device: torch.device,
) -> torch.Tensor:
    """Broadcast a per-structure quantity (scalar or (B,)) to atoms, as float64 (N,)."""
    t = torch.as_tensor(value, dtype=torch.float64, device=device)
    if t.ndim == 0:
        return t.expand(n_atoms)
    if t.ndim != 1:
        raise PriorError(f"{name} must be a scalar or one value per structure (B,)")
    if batch is None:
        if t.numel() != 1:
            raise PriorError(
                f"{name} has {t.numel()} values (one per structure) but no batch vector "
                "says which atom belongs to which structure"
            )
        return t.expand(n_atoms)
    if n_atoms and int(batch.max()) >= t.numel():
        raise PriorError(
            f"{name} has {t.numel()} values but batch refers to structure {int(batch.max())}"
        )
    return t[batch]


def _validate_temperature(temperature_K: float | torch.Tensor) -> None:
    t = torch.as_tensor(temperature_K, dtype=torch.float64)
    if t.numel() == 0:
        raise PriorError("temperature_K is empty")
    if not bool(torch.isfinite(t).all()):
        raise PriorError(f"temperature must be finite, got {t.flatten().tolist()} K")
    if not bool((t > 0).all()):
        raise PriorError(f"temperature must be > 0 K, got {t.flatten().tolist()} K")


def _choice_per_atom(
    name: str, choice: Choice, batch: torch.Tensor | None, n_atoms: int, device: torch.device
) -> torch.Tensor:
    """Per-atom bool (N,) of a small/large choice given once or per structure."""
    if choice is None:
        raise PriorError(
            f"the adaptive prior needs {name} (the classifier's small/large choice); got None"
        )
    t = torch.as_tensor(choice, device=device)
    if t.dtype.is_floating_point or t.is_complex():
        raise PriorError(f"{name} must be bool or 0/1 integers, got dtype {t.dtype}")
    if t.dtype != torch.bool:
        if bool(((t != 0) & (t != 1)).any()):
            raise PriorError(f"{name} must hold only 0 (small) or 1 (large)")
        t = t.bool()
    return _per_atom(name, t, batch, n_atoms, device) > 0.5


def prior_std(
    numbers: torch.Tensor,
    temperature_K: float | torch.Tensor | None,
    config: PriorConfig,
    li_large: Choice = None,
    frame_large: Choice = None,
    li_multiplier: float = 1.0,
    frame_multiplier: float = 1.0,
    *,
    batch: torch.Tensor | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Per-atom prior standard deviation ``σ_i`` in Å, shape (N,).

    Equations (``g`` = Li or frame group of atom ``i``, ``λ_g`` its variance multiplier):

    * isotropic:          ``σ_i² = λ_g · s²``
    * maxwell_boltzmann:  ``σ_i² = λ_g · s² · k_B T_b / m_i``
    * adaptive:           ``σ_i² = λ_g · s_g[c_g]² · k_B T_b / m_i``

    Args:
        numbers: atomic numbers (N,).
        temperature_K: temperature in K, a scalar or one per structure (B,) together with
            ``batch``. Required (> 0, finite) for the Maxwell–Boltzmann kinds; validated but
            unused by the isotropic kind, where it may be None.
        config: the prior settings.
        li_large, frame_large: adaptive only: True/1 selects the large scale of that group,
            False/0 the small one; a bool, or a tensor of shape () or (B,) per structure.
            Ignored by the other kinds (so a caller may always pass the classifier output).
        li_multiplier, frame_multiplier: user multipliers ``λ`` of the Li / frame *variance*
            ``σ²`` (not of ``σ``); must be > 0.
        batch: structure index of each atom (N,), for several structures in one graph.
        dtype: floating dtype of the result (default: torch's default dtype). The arithmetic
            is done in float64.
    """
    _check_positive("li_multiplier", li_multiplier)
    _check_positive("frame_multiplier", frame_multiplier)
    masses = masses_of(numbers)
    numbers = torch.as_tensor(numbers)
    n_atoms, device = numbers.numel(), numbers.device
    batch = _check_batch(batch, n_atoms)
    is_li = numbers == LITHIUM_Z
    lam = torch.where(
        is_li,
        torch.tensor(float(li_multiplier), dtype=torch.float64, device=device),
        torch.tensor(float(frame_multiplier), dtype=torch.float64, device=device),
    )

    if temperature_K is not None:
        _validate_temperature(temperature_K)
    if config.kind == "isotropic":
        var = lam * config.scale**2
    else:
        if temperature_K is None:
            raise PriorError(f"the {config.kind} prior needs a temperature; got None")
        temp = _per_atom("temperature_K", temperature_K, batch, n_atoms, device)
        thermal = kB * temp / masses  # (eV/u): velocity variance of Maxwell–Boltzmann
        if config.kind == "maxwell_boltzmann":
            s = torch.full((n_atoms,), float(config.scale), dtype=torch.float64, device=device)
        else:
            li_big = _choice_per_atom("li_large", li_large, batch, n_atoms, device)
            fr_big = _choice_per_atom("frame_large", frame_large, batch, n_atoms, device)
            li_s = torch.tensor(config.li_scales, dtype=torch.float64, device=device)
            fr_s = torch.tensor(config.frame_scales, dtype=torch.float64, device=device)
            # index 0 = small, 1 = large
            s = torch.where(is_li, li_s[li_big.long()], fr_s[fr_big.long()])
        var = lam * s**2 * thermal
    return var.sqrt().to(dtype or torch.get_default_dtype())


def remove_center_of_mass(
    displacements: torch.Tensor, masses: torch.Tensor, batch: torch.Tensor | None = None
) -> torch.Tensor:
    """Subtract each structure's mass-weighted mean, so ``Σ_i m_i d_i = 0`` per structure.

    A net drift of the whole cell is unphysical for an isolated periodic system (momentum
    is conserved), and LiFlow corrects it; removing it from the prior keeps the flow from
    having to learn to cancel it.
    """
    n_atoms = displacements.shape[0]
    batch = _check_batch(batch, n_atoms)
    m = torch.as_tensor(masses, dtype=displacements.dtype, device=displacements.device)
    if m.shape != (n_atoms,):
        raise PriorError(f"masses must have shape ({n_atoms},), got {tuple(m.shape)}")
    if not bool((m > 0).all()):
        raise PriorError("masses must be > 0")
    if batch is None:
        com = (m[:, None] * displacements).sum(0) / m.sum()
        return displacements - com
    n_struct = int(batch.max()) + 1 if n_atoms else 0
    idx = batch[:, None].expand(-1, 3)
    zeros = displacements.new_zeros(n_struct, 3)
    weighted = zeros.scatter_add(0, idx, m[:, None] * displacements)
    total = m.new_zeros(n_struct).scatter_add(0, batch, m)
    com = weighted / total.clamp_min(torch.finfo(m.dtype).tiny)[:, None]
    return displacements - com[batch]


def sample_prior(
    std: torch.Tensor,
    generator: torch.Generator,
    batch: torch.Tensor | None = None,
    remove_com: bool = False,
    masses: torch.Tensor | None = None,
) -> torch.Tensor:
    """Draw displacements ``d_i = σ_i ε_i`` with ``ε_i ~ N(0, I₃)``; returns (N, 3) in Å.

    Args:
        std: per-atom ``σ_i`` (N,) from :func:`prior_std`.
        generator: source of randomness (its device must match ``std``'s).
        batch: structure index of each atom (N,); only used for centre-of-mass removal.
        remove_com: if True, subtract the per-structure mass-weighted mean displacement
            (:func:`remove_center_of_mass`). This projects out 3 degrees of freedom per
            structure, so per-atom variances shrink slightly (by ~``m_i / M`` for heavy
            atoms of small cells); off by default so the sample follows the stated prior.
        masses: atomic masses (N,) in u, required with ``remove_com``.
    """
    std = torch.as_tensor(std)
    if std.ndim != 1 or not std.dtype.is_floating_point:
        raise PriorError(f"std must be a 1-D floating tensor, got shape {tuple(std.shape)}")
    if not bool((torch.isfinite(std) & (std >= 0)).all()):
        raise PriorError("std must be finite and >= 0")
    noise = torch.randn((std.shape[0], 3), generator=generator, dtype=std.dtype, device=std.device)
    d = noise * std[:, None]
    if remove_com:
        if masses is None:
            raise PriorError("remove_com=True needs the atomic masses (see masses_of)")
        d = remove_center_of_mass(d, masses, batch)
    return d
