"""Tests of the LiFlow priors: variances, adaptive choice, batching, symmetry, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from ase.data import atomic_masses
from ase.units import kB

from explorer.errors import ExplorerError, PriorError
from explorer.liflow.prior import (
    PriorConfig,
    masses_of,
    prior_std,
    remove_center_of_mass,
    sample_prior,
)

F64 = torch.float64
LI, P, S, GE = 3, 15, 16, 32


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _assert_variance(samples: torch.Tensor, expected_var: float, n_sigma: float = 5.0) -> None:
    """Sample variance of n zero-mean Gaussians has relative std sqrt(2/n) (chi-square)."""
    n = samples.numel()
    var = float((samples.double() ** 2).mean())  # mean is known to be 0
    tol = n_sigma * math.sqrt(2.0 / n)
    assert abs(var / expected_var - 1.0) < tol, (var, expected_var, tol)


def _mb_var(z: int, temperature: float, s: float) -> float:
    return s**2 * kB * temperature / atomic_masses[z]


# ---------------------------------------------------------------------------- variances


def test_maxwell_boltzmann_variance_per_element() -> None:
    n_per = 20_000
    elements = (LI, P, S, GE)
    numbers = torch.tensor(elements).repeat_interleave(n_per)
    cfg = PriorConfig(kind="maxwell_boltzmann", scale=3.0)
    std = prior_std(numbers, 800.0, cfg, dtype=F64)
    d = sample_prior(std, _gen(1))
    assert d.shape == (numbers.numel(), 3) and d.dtype == F64
    for z in elements:
        expected = _mb_var(z, 800.0, 3.0)
        assert torch.allclose(std[numbers == z] ** 2, torch.tensor(expected, dtype=F64))
        _assert_variance(d[numbers == z], expected)
    # lighter atoms move more: sigma ∝ m^-1/2
    ratio = float(std[numbers == LI][0] / std[numbers == GE][0])
    assert ratio == pytest.approx(math.sqrt(atomic_masses[GE] / atomic_masses[LI]))


def test_isotropic_variance_is_species_independent() -> None:
    numbers = torch.tensor([LI, S]).repeat_interleave(20_000)
    cfg = PriorConfig(kind="isotropic", scale=0.5)  # sigma = 0.5 Å
    std = prior_std(numbers, None, cfg, dtype=F64)
    assert torch.allclose(std, torch.full_like(std, 0.5))
    d = sample_prior(std, _gen(2))
    for z in (LI, S):
        _assert_variance(d[numbers == z], 0.25)


def test_isotropic_ignores_but_validates_temperature() -> None:
    cfg = PriorConfig(kind="isotropic", scale=0.5)
    a = prior_std(torch.tensor([3, 16]), 300.0, cfg)
    b = prior_std(torch.tensor([3, 16]), 1500.0, cfg)
    assert torch.equal(a, b)
    with pytest.raises(PriorError):
        prior_std(torch.tensor([3, 16]), -1.0, cfg)


def test_default_adaptive_scales_give_paper_magnitudes() -> None:
    # At 800 K the small/large Li priors are ~0.1 Å / ~1 Å.
    cfg = PriorConfig()
    assert cfg.kind == "adaptive"
    assert cfg.li_scales == (1.0, 10.0) and cfg.frame_scales == (1.0, 5.0)
    small = prior_std(torch.tensor([LI]), 800.0, cfg, li_large=False, frame_large=False)
    large = prior_std(torch.tensor([LI]), 800.0, cfg, li_large=True, frame_large=False)
    assert 0.09 < float(small) < 0.11 and 0.9 < float(large) < 1.1


# ---------------------------------------------------------------------------- adaptive


@pytest.mark.parametrize("li_large", [False, True])
@pytest.mark.parametrize("frame_large", [False, True])
def test_adaptive_picks_scale_per_group(li_large: bool, frame_large: bool) -> None:
    cfg = PriorConfig(kind="adaptive", li_scales=(0.7, 9.0), frame_scales=(0.3, 4.0))
    numbers = torch.tensor([LI, LI, P, S, GE])
    std = prior_std(numbers, 600.0, cfg, li_large=li_large, frame_large=frame_large, dtype=F64)
    s_li = cfg.li_scales[int(li_large)]
    s_fr = cfg.frame_scales[int(frame_large)]
    for i, z in enumerate(numbers.tolist()):
        s = s_li if z == LI else s_fr
        assert float(std[i]) ** 2 == pytest.approx(_mb_var(z, 600.0, s), rel=1e-12)


def test_adaptive_empirical_variance() -> None:
    numbers = torch.tensor([LI, S]).repeat_interleave(20_000)
    cfg = PriorConfig()
    std = prior_std(numbers, 1000.0, cfg, li_large=True, frame_large=False, dtype=F64)
    d = sample_prior(std, _gen(3))
    _assert_variance(d[numbers == LI], _mb_var(LI, 1000.0, 10.0))
    _assert_variance(d[numbers == S], _mb_var(S, 1000.0, 1.0))


def test_adaptive_choice_per_structure_and_as_int_tensor() -> None:
    cfg = PriorConfig()
    numbers = torch.tensor([LI, S, LI, S])
    batch = torch.tensor([0, 0, 1, 1])
    std = prior_std(
        numbers,
        800.0,
        cfg,
        li_large=torch.tensor([1, 0]),
        frame_large=torch.tensor([False, True]),
        batch=batch,
        dtype=F64,
    )
    expected = [
        _mb_var(LI, 800.0, 10.0),
        _mb_var(S, 800.0, 1.0),
        _mb_var(LI, 800.0, 1.0),
        _mb_var(S, 800.0, 5.0),
    ]
    assert torch.allclose(std**2, torch.tensor(expected, dtype=F64), rtol=1e-12)


def test_adaptive_requires_choices() -> None:
    with pytest.raises(PriorError, match="li_large"):
        prior_std(torch.tensor([LI, S]), 800.0, PriorConfig(), frame_large=True)
    with pytest.raises(PriorError, match="0 \\(small\\) or 1"):
        prior_std(torch.tensor([LI]), 800.0, PriorConfig(), li_large=torch.tensor(2), frame_large=0)


def test_choices_ignored_by_non_adaptive_kinds() -> None:
    cfg = PriorConfig(kind="maxwell_boltzmann", scale=2.0)
    a = prior_std(torch.tensor([LI, S]), 800.0, cfg)
    b = prior_std(torch.tensor([LI, S]), 800.0, cfg, li_large=True, frame_large=True)
    assert torch.equal(a, b)


# ---------------------------------------------------------------------------- multipliers


@pytest.mark.parametrize("kind", ["isotropic", "maxwell_boltzmann", "adaptive"])
def test_multipliers_scale_variance_linearly(kind: str) -> None:
    cfg = PriorConfig(kind=kind, scale=0.8)  # type: ignore[arg-type]
    numbers = torch.tensor([LI, P, S, LI])
    kw = {"li_large": True, "frame_large": False, "dtype": F64}
    base = prior_std(numbers, 700.0, cfg, **kw) ** 2
    for li_m, fr_m in [(2.0, 1.0), (1.0, 3.0), (0.25, 7.5)]:
        var = prior_std(numbers, 700.0, cfg, li_multiplier=li_m, frame_multiplier=fr_m, **kw) ** 2
        factor = torch.where(numbers == LI, li_m, fr_m).to(F64)
        assert torch.allclose(var, base * factor, rtol=1e-12)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_multiplier(bad: float) -> None:
    cfg = PriorConfig(kind="maxwell_boltzmann")
    with pytest.raises(PriorError, match="li_multiplier"):
        prior_std(torch.tensor([LI]), 800.0, cfg, li_multiplier=bad)


# ---------------------------------------------------------------------------- batching


def test_batched_temperatures_per_structure() -> None:
    n_per = 20_000
    temps = torch.tensor([300.0, 900.0, 1500.0])
    numbers = torch.full((3 * n_per,), LI)
    batch = torch.arange(3).repeat_interleave(n_per)
    cfg = PriorConfig(kind="maxwell_boltzmann", scale=1.5)
    std = prior_std(numbers, temps, cfg, batch=batch, dtype=F64)
    d = sample_prior(std, _gen(4), batch=batch)
    for b, t in enumerate(temps.tolist()):
        single = prior_std(torch.tensor([LI]), t, cfg, dtype=F64)
        assert torch.allclose(std[batch == b], single.expand(n_per))
        _assert_variance(d[batch == b], _mb_var(LI, t, 1.5))


def test_batch_shape_errors() -> None:
    cfg = PriorConfig(kind="maxwell_boltzmann")
    numbers = torch.tensor([LI, S, LI])
    with pytest.raises(PriorError, match="no batch vector"):
        prior_std(numbers, torch.tensor([300.0, 600.0]), cfg)
    with pytest.raises(PriorError, match="refers to structure 2"):
        prior_std(numbers, torch.tensor([300.0, 600.0]), cfg, batch=torch.tensor([0, 1, 2]))
    with pytest.raises(PriorError, match="batch must be"):
        prior_std(numbers, 300.0, cfg, batch=torch.tensor([0, 1]))


# ---------------------------------------------------------------------------- symmetry


def test_distribution_is_rotation_invariant() -> None:
    n = 60_000
    numbers = torch.full((n,), S)
    cfg = PriorConfig(kind="maxwell_boltzmann", scale=4.0)
    std = prior_std(numbers, 800.0, cfg, dtype=F64)
    d = sample_prior(std, _gen(5))
    var = _mb_var(S, 800.0, 4.0)
    cov = d.T @ d / n
    # isotropic covariance: sigma² I within sampling error (entry std ≈ var·sqrt(2/n))
    tol = 5 * var * math.sqrt(2.0 / n)
    assert torch.allclose(cov, var * torch.eye(3, dtype=F64), atol=tol)
    # a rotated sample has the same covariance, and projections on any axis the same variance
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=_gen(6), dtype=F64))
    rotated = d @ q.T
    assert torch.allclose(rotated.T @ rotated / n, var * torch.eye(3, dtype=F64), atol=2 * tol)
    axis = torch.nn.functional.normalize(torch.randn(3, generator=_gen(7), dtype=F64), dim=0)
    _assert_variance(d @ axis, var)


# ---------------------------------------------------------------------------- centre of mass


def test_com_removal_per_structure() -> None:
    numbers = torch.tensor([LI, LI, S, P, GE, LI, S, S])
    batch = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    temps = torch.tensor([600.0, 1200.0])
    masses = masses_of(numbers)
    std = prior_std(
        numbers, temps, PriorConfig(), li_large=True, frame_large=False, batch=batch, dtype=F64
    )
    d = sample_prior(std, _gen(8), batch=batch, remove_com=True, masses=masses)
    raw = sample_prior(std, _gen(8))
    for b in (0, 1):
        sel = batch == b
        com = (masses[sel, None] * d[sel]).sum(0)
        assert torch.allclose(com, torch.zeros(3, dtype=F64), atol=1e-12)
        assert not torch.allclose((masses[sel, None] * raw[sel]).sum(0), com)
    # removal is a shift per structure: relative displacements are unchanged
    assert torch.allclose(d[1] - d[0], raw[1] - raw[0])
    # without batch, one structure
    d1 = sample_prior(std, _gen(9), remove_com=True, masses=masses)
    assert torch.allclose((masses[:, None] * d1).sum(0), torch.zeros(3, dtype=F64), atol=1e-12)


def test_com_removal_needs_masses() -> None:
    std = torch.ones(4, dtype=F64)
    with pytest.raises(PriorError, match="masses"):
        sample_prior(std, _gen(), remove_com=True)
    with pytest.raises(PriorError, match="shape"):
        remove_center_of_mass(torch.zeros(4, 3, dtype=F64), torch.ones(3, dtype=F64))


# ---------------------------------------------------------------------------- determinism


def test_seeded_generator_is_deterministic() -> None:
    numbers = torch.tensor([LI, S, P, LI])
    std = prior_std(numbers, 800.0, PriorConfig(), li_large=False, frame_large=True)
    a = sample_prior(std, _gen(42))
    b = sample_prior(std, _gen(42))
    c = sample_prior(std, _gen(43))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert a.dtype == torch.get_default_dtype()


def test_masses_of_matches_ase() -> None:
    m = masses_of(torch.tensor([LI, S, GE]))
    assert m.tolist() == [atomic_masses[LI], atomic_masses[S], atomic_masses[GE]]


# ---------------------------------------------------------------------------- errors


@pytest.mark.parametrize("temp", [0.0, -300.0, float("nan"), float("inf"), float("-inf")])
def test_bad_temperature(temp: float) -> None:
    with pytest.raises(PriorError, match="temperature") as exc:
        prior_std(torch.tensor([LI]), temp, PriorConfig(kind="maxwell_boltzmann"))
    assert isinstance(exc.value, ExplorerError)


def test_bad_temperature_in_batch() -> None:
    with pytest.raises(PriorError, match="> 0 K"):
        prior_std(
            torch.tensor([LI, LI]),
            torch.tensor([800.0, 0.0]),
            PriorConfig(kind="maxwell_boltzmann"),
            batch=torch.tensor([0, 1]),
        )


def test_missing_temperature() -> None:
    with pytest.raises(PriorError, match="needs a temperature"):
        prior_std(torch.tensor([LI]), None, PriorConfig(kind="maxwell_boltzmann"))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kind": "gaussian"},
        {"scale": 0.0},
        {"scale": float("nan")},
        {"li_scales": (1.0,)},
        {"frame_scales": (1.0, -5.0)},
        {"corrector_scale": 0.0},
    ],
)
def test_bad_config(kwargs: dict) -> None:
    with pytest.raises(PriorError):
        PriorConfig(**kwargs)


@pytest.mark.parametrize(
    "numbers",
    [
        torch.tensor([0, 3]),
        torch.tensor([3, 200]),
        torch.tensor([3.0]),
        torch.tensor([], dtype=torch.long),
    ],
)
def test_bad_numbers(numbers: torch.Tensor) -> None:
    with pytest.raises(PriorError):
        prior_std(numbers, 800.0, PriorConfig(kind="maxwell_boltzmann"))


def test_corrector_prior_is_small_uniform_mb() -> None:
    cfg = PriorConfig()
    corr = cfg.corrector()
    assert corr.kind == "maxwell_boltzmann" and corr.scale == cfg.corrector_scale
    numbers = torch.tensor([LI, S])
    small = prior_std(numbers, 800.0, cfg, li_large=False, frame_large=False)
    assert bool((prior_std(numbers, 800.0, corr) < small).all())


def test_numpy_and_tensor_scalars_accepted() -> None:
    cfg = PriorConfig(kind="maxwell_boltzmann", scale=np.float32(2.0))
    a = prior_std(torch.tensor([LI]), 800.0, cfg, li_multiplier=torch.tensor(2.0))
    b = prior_std(torch.tensor([LI]), np.float64(800.0), cfg, li_multiplier=2)
    assert torch.allclose(a, b)
    with pytest.raises(PriorError):
        PriorConfig(scale=True)
    with pytest.raises(PriorError):
        PriorConfig(scale="big")  # type: ignore[arg-type]
