"""Tests of the calculator factory: devices, names, classical potentials, CHGNet, safe MACE.

The MACE tests build a tiny random MACE model here (two elements, eight
channels), save it the way MACE releases are saved (a pickled module), and
check the safe path end to end: conversion with explicit trust, loading from
safetensors + JSON, refusal of pickles, and the offline/cached/download name
lookup without any network access.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import socket
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk

from explorer.device import resolve_device
from explorer.errors import CalculatorError, DeviceError, ExplorerError
from explorer.reference import calculators as calcs
from explorer.reference.calculators import (
    CALCULATOR_NAMES,
    calculator_metadata,
    check_elements,
    convert_mace_model,
    import_mace,
    make_calculator,
)
from explorer.reference.mace_model import _default_dtype

# e3nn scripts parts of every MACE block it builds and torch.jit warns each time.
pytestmark = pytest.mark.filterwarnings(
    "ignore:The TorchScript type system:UserWarning",
    "ignore:Converting a tensor with requires_grad:UserWarning",
    "ignore:`torch.jit.:DeprecationWarning",
)

HAS_CUDA = torch.cuda.is_available()
# Recorded before anything here imports mace, which sets this variable process-wide.
UNSAFE_LOAD_ENV = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"
UNSAFE_LOAD_AT_START = os.environ.get(UNSAFE_LOAD_ENV)


def li2s_primitive(rattle: float = 0.08, seed: int = 3) -> Atoms:
    """Antifluorite Li2S (a = 5.71 Å), 3-atom primitive cell, rattled off symmetry."""
    atoms = bulk("SLi2", "fluorite", a=5.71)
    atoms.rattle(stdev=rattle, seed=seed)
    return atoms


# --------------------------------------------------------------------------------------
# Devices
# --------------------------------------------------------------------------------------


def test_resolve_device_auto_and_cpu() -> None:
    assert resolve_device("auto") == ("cuda" if HAS_CUDA else "cpu")
    assert resolve_device() == resolve_device("auto")
    assert resolve_device(" CPU ") == "cpu"


@pytest.mark.skipif(HAS_CUDA, reason="checks the message shown when CUDA is absent")
@pytest.mark.parametrize("device", ["cuda", "cuda:0", "cuda:1"])
def test_resolve_device_cuda_without_cuda_raises(device: str) -> None:
    with pytest.raises(DeviceError, match="no CUDA"):
        resolve_device(device)


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "cuda:-1", "tpu", "", "cpu:0"])
def test_resolve_device_rejects_malformed(device: str) -> None:
    with pytest.raises(DeviceError, match="unknown device") as info:
        resolve_device(device)
    assert isinstance(info.value, ExplorerError)
    assert "cuda:N" in str(info.value)


# --------------------------------------------------------------------------------------
# Names, options, metadata
# --------------------------------------------------------------------------------------


def test_unknown_name_lists_available() -> None:
    with pytest.raises(CalculatorError, match="unknown calculator 'vasp'") as info:
        make_calculator("vasp")
    message = str(info.value)
    for name in ("chgnet", "mace", "emt", "lj"):
        assert name in message
    if calcs.available_calculators()["sevenn"] is not None:
        assert "pip install sevenn" in message


def test_names_are_case_insensitive_and_options_checked() -> None:
    assert isinstance(make_calculator("LJ"), calcs.LennardJones)
    with pytest.raises(CalculatorError, match=r"unknown option.*'lj'.*accepted: epsilon"):
        make_calculator("lj", temperature=300)
    with pytest.raises(CalculatorError, match="takes no model"):
        make_calculator("emt", model="x")
    with pytest.raises(CalculatorError, match="positive"):
        make_calculator("lj", sigma=-1.0)


def test_metadata_has_versions() -> None:
    import ase

    record = calculator_metadata("lj", make_calculator("lj", epsilon=0.01))
    assert set(record) == {"name", "package", "version", "model", "model_sha256", "device"}
    assert record["package"] == "ase" and record["version"] == ase.__version__
    assert "epsilon=0.01 eV" in record["model"] and record["device"] == "cpu"
    record = calculator_metadata("chgnet", None)
    assert record["version"] not in ("", "not installed")
    assert record["model"] == calcs.DEFAULT_CHGNET_MODEL
    assert all(isinstance(v, str) for v in record.values())


# --------------------------------------------------------------------------------------
# Classical potentials
# --------------------------------------------------------------------------------------


def test_lj_argon_dimer_at_minimum() -> None:
    """At r = 2^(1/6) σ the pair energy is −ε and the force vanishes."""
    calc = make_calculator("lj")
    eps, sigma = calcs.LJ_ARGON["epsilon"], calcs.LJ_ARGON["sigma"]
    r_min = 2 ** (1 / 6) * sigma
    # The smooth cutoff starts at ro = 0.66 rc = 1.65 σ > r_min, so it leaves
    # the minimum untouched (no energy shift, unlike a shifted potential).
    dimer = Atoms("Ar2", positions=[[0, 0, 0], [0, 0, r_min]], calculator=calc)
    assert dimer.get_potential_energy() == pytest.approx(-eps, abs=1e-12)
    assert np.abs(dimer.get_forces()).max() < 1e-10
    # Beyond the cutoff (2.5 σ) the atoms do not interact.
    dimer.positions[1, 2] = 2.5 * sigma + 0.01
    assert dimer.get_potential_energy() == pytest.approx(0.0, abs=1e-15)


def test_emt_rejects_lithium_clearly() -> None:
    atoms = li2s_primitive()
    with pytest.raises(CalculatorError, match="EMT has no parameters for Li, S"):
        check_elements("emt", atoms)
    atoms.calc = make_calculator("emt")
    with pytest.raises(CalculatorError, match="supports only Al, Cu"):
        atoms.get_potential_energy()
    copper = bulk("Cu", "fcc", a=3.6)
    copper.calc = make_calculator("emt")
    check_elements("emt", copper)
    assert np.isfinite(copper.get_potential_energy())


# --------------------------------------------------------------------------------------
# CHGNet (one model load for the module)
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chgnet_calc():
    return make_calculator("chgnet", device="cpu")


def test_chgnet_energy_forces_stress(chgnet_calc) -> None:
    atoms = bulk("SLi2", "fluorite", a=5.71, cubic=True)
    atoms.rattle(stdev=0.05, seed=2)
    atoms.calc = chgnet_calc
    energy = atoms.get_potential_energy()
    forces = atoms.get_forces()
    assert np.isfinite(energy) and -5.0 < energy / len(atoms) < -3.0  # eV/atom, Li2S ~ -4.1
    assert forces.shape == (len(atoms), 3) and np.all(np.isfinite(forces))
    assert np.abs(forces).max() > 1e-3  # rattled, so not all zero
    np.testing.assert_allclose(forces.sum(axis=0), 0.0, atol=1e-4)  # momentum conservation
    assert atoms.get_stress().shape == (6,)
    record = calculator_metadata("chgnet", chgnet_calc)
    assert record["model"] == "0.3.0" and record["device"] == "cpu"
    assert len(record["model_sha256"]) == 64
    check_elements("chgnet", atoms)


def test_chgnet_skips_stress_unless_asked_and_matches_stock_calculator(chgnet_calc) -> None:
    from chgnet.model.dynamics import CHGNetCalculator

    atoms = bulk("SLi2", "fluorite", a=5.71, cubic=True)
    atoms.rattle(stdev=0.05, seed=3)
    stock = atoms.copy()
    atoms.calc = chgnet_calc
    stock.calc = CHGNetCalculator(model=chgnet_calc.model, use_device="cpu")
    # An MD step asks only for forces; the lean calculator then leaves stress out...
    np.testing.assert_array_equal(atoms.get_forces(), stock.get_forces())
    assert "stress" not in chgnet_calc.results
    assert atoms.get_potential_energy() == stock.get_potential_energy()
    # ...and computes it, identical to the stock calculator, when it is requested.
    np.testing.assert_array_equal(atoms.get_stress(), stock.get_stress())
    assert atoms.get_magnetic_moments().shape == (len(atoms),)


def test_chgnet_rotation_invariance(chgnet_calc) -> None:
    atoms = li2s_primitive()
    atoms.calc = chgnet_calc
    energy, forces = atoms.get_potential_energy(), atoms.get_forces()
    rotated = atoms.copy()
    rotated.rotate(37.0, (1.0, 2.0, 3.0), rotate_cell=True)
    rotated.calc = chgnet_calc
    assert rotated.get_potential_energy() == pytest.approx(energy, abs=1e-4)
    # Forces turn with the structure: F' = R F, with R from the rotated positions.
    rot, *_ = np.linalg.lstsq(atoms.cell.array, rotated.cell.array, rcond=None)
    np.testing.assert_allclose(rotated.get_forces(), forces @ rot, atol=1e-3)


def test_chgnet_user_file_loads_weights_only(chgnet_calc, tmp_path: Path) -> None:
    """A user checkpoint is read with weights_only=True (here: the bundled weights re-saved)."""
    net = chgnet_calc.model
    checkpoint = tmp_path / "mine.pth.tar"
    torch.save({"model": net.as_dict()}, checkpoint)
    calc = make_calculator("chgnet", model=checkpoint, device="cpu")
    atoms = li2s_primitive()
    atoms.calc = calc
    reference = atoms.copy()
    reference.calc = chgnet_calc
    assert atoms.get_potential_energy() == pytest.approx(reference.get_potential_energy(), abs=1e-5)
    assert calculator_metadata("chgnet", calc)["model"] == str(checkpoint)


# --------------------------------------------------------------------------------------
# MACE: a tiny model built here
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_mace(tmp_path_factory):
    """(in-memory model, pickled .model path, converted safe directory)."""
    mace = import_mace()
    from e3nn import o3

    modules = mace.modules
    torch.manual_seed(12)
    with _default_dtype(torch.float64):
        model = modules.ScaleShiftMACE(
            r_max=4.0,
            num_bessel=2,
            num_polynomial_cutoff=5,
            max_ell=1,
            interaction_cls=modules.interaction_classes["RealAgnosticResidualInteractionBlock"],
            interaction_cls_first=modules.interaction_classes["RealAgnosticInteractionBlock"],
            num_interactions=2,
            num_elements=2,
            hidden_irreps=o3.Irreps("8x0e+8x1o"),
            MLP_irreps=o3.Irreps("4x0e"),
            atomic_energies=np.array([-1.91, -4.13]),  # eV, Li and S
            avg_num_neighbors=8.0,
            atomic_numbers=[3, 16],
            correlation=2,
            gate=torch.nn.functional.silu,
            radial_MLP=[8, 8],
            atomic_inter_scale=0.7,
            atomic_inter_shift=0.1,
        )
    root = tmp_path_factory.mktemp("mace")
    pickled = root / "tiny.model"
    torch.save(model, pickled)  # how MACE releases ship their models
    safe = convert_mace_model(pickled, root / "tiny-safe", trust_pickle=True)
    return model.eval(), pickled, safe


def in_memory_prediction(model, atoms: Atoms) -> tuple[float, np.ndarray]:
    calc = import_mace().calculators.MACECalculator(
        models=[copy.deepcopy(model)], device="cpu", default_dtype="float64"
    )
    probe = atoms.copy()
    probe.calc = calc
    return probe.get_potential_energy(), probe.get_forces()


def test_mace_safe_format_matches_in_memory_model(tiny_mace) -> None:
    model, _, safe = tiny_mace
    assert sorted(p.name for p in safe.iterdir()) == ["config.json", "model.safetensors"]
    config = json.loads((safe / "config.json").read_text())
    assert config["model_class"] == "ScaleShiftMACE" and config["dtype"] == "float64"
    assert config["atomic_numbers"] == [3, 16]
    calc = make_calculator("mace", model=safe, device="cpu")
    atoms = li2s_primitive()
    atoms.calc = calc
    energy, forces = in_memory_prediction(model, atoms)
    assert atoms.get_potential_energy() == pytest.approx(energy, abs=1e-6)
    np.testing.assert_allclose(atoms.get_forces(), forces, atol=1e-6)
    assert np.abs(forces).max() > 1e-4  # a random model on a rattled cell: forces are not nil
    record = calculator_metadata("mace", calc)
    assert record["package"] == "mace-torch" and record["model_sha256"] == config["weights_sha256"]
    check_elements("mace", atoms, calc)
    with pytest.raises(CalculatorError, match=r"trained on Z = \[3, 16\]"):
        check_elements("mace", Atoms("Cu"), calc)


def test_mace_forces_are_minus_energy_gradient(tiny_mace) -> None:
    _, _, safe = tiny_mace
    atoms = li2s_primitive()
    atoms.calc = make_calculator("mace", model=safe, device="cpu")
    forces = atoms.get_forces()
    step = 1e-4  # Å; central differences, float64
    numeric = np.zeros_like(forces)
    for i in range(len(atoms)):
        for k in range(3):
            shifted = []
            for sign in (1, -1):
                moved = atoms.copy()
                moved.calc = atoms.calc
                moved.positions[i, k] += sign * step
                shifted.append(moved.get_potential_energy())
            numeric[i, k] = -(shifted[0] - shifted[1]) / (2 * step)
    np.testing.assert_allclose(forces, numeric, atol=1e-4)


def test_mace_pickle_is_never_loaded_implicitly(tiny_mace, monkeypatch) -> None:
    _, pickled, _ = tiny_mace
    seen: list[object] = []
    real_load = torch.load

    def spy(*args, **kwargs):
        seen.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    with pytest.raises(CalculatorError, match="pickled torch model") as info:
        make_calculator("mace", model=pickled)
    assert "convert_mace_model" in str(info.value) and "trust_pickle=True" in str(info.value)
    with pytest.raises(CalculatorError, match="trust_pickle=True"):
        convert_mace_model(pickled, pickled.parent / "never")
    assert seen and all(flag is True for flag in seen)
    assert not (pickled.parent / "never").exists()


def test_mace_plain_state_dict_with_config(tiny_mace, tmp_path: Path) -> None:
    """A weights_only-loadable state dict next to our JSON config is accepted."""
    model, _, safe = tiny_mace
    torch.save(model.state_dict(), tmp_path / "weights.pt")
    config = json.loads((safe / "config.json").read_text())
    config.pop("weights_sha256")  # it describes the safetensors file
    (tmp_path / "weights.json").write_text(json.dumps(config))
    atoms = li2s_primitive()
    atoms.calc = make_calculator("mace", model=tmp_path / "weights.pt", device="cpu")
    assert atoms.get_potential_energy() == pytest.approx(in_memory_prediction(model, atoms)[0])
    (tmp_path / "weights.json").unlink()
    with pytest.raises(CalculatorError, match="no companion file"):
        make_calculator("mace", model=tmp_path / "weights.pt")


def test_mace_rejects_tampered_or_hostile_config(tiny_mace, tmp_path: Path) -> None:
    _, _, safe = tiny_mace
    copy_dir = tmp_path / "copy"
    shutil.copytree(safe, copy_dir)
    config = json.loads((copy_dir / "config.json").read_text())
    config["hyperparameters"]["interaction_cls"] = {"__type__": "class", "value": "os.system"}
    (copy_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(CalculatorError, match="unsupported value"):
        make_calculator("mace", model=copy_dir)
    shutil.copy(safe / "config.json", copy_dir / "config.json")
    with open(copy_dir / "model.safetensors", "r+b") as handle:
        handle.seek(-8, os.SEEK_END)
        last = handle.read(8)
        handle.seek(-8, os.SEEK_END)
        handle.write(bytes(b ^ 0xFF for b in last))  # corrupt one weight
    with pytest.raises(CalculatorError, match="SHA-256"):
        make_calculator("mace", model=copy_dir)
    with pytest.raises(CalculatorError, match="not accepted"):
        make_calculator("mace", model=safe, model_paths=str(safe))
    with pytest.raises(CalculatorError, match="exists and is not empty"):
        convert_mace_model(tiny_mace[1], safe, trust_pickle=True)


# --------------------------------------------------------------------------------------
# MACE by name: offline, cached, downloaded (network forbidden throughout)
# --------------------------------------------------------------------------------------


class NetworkUsed(AssertionError):
    """Raised by the network stubs; an AssertionError so no error handler swallows it."""


@pytest.fixture()
def no_network(monkeypatch, tmp_path: Path) -> Path:
    """Forbid sockets and mace's downloader; point the model cache at an empty directory."""
    foundations = import_mace().calculators.foundations_models

    def forbidden(*args, **kwargs):
        raise NetworkUsed(f"network access attempted: {args!r}")

    monkeypatch.setattr(foundations, "download_mace_mp_checkpoint", forbidden)
    monkeypatch.setattr(foundations, "_urlretrieve_with_timeout", forbidden)
    monkeypatch.setattr(urllib.request, "urlopen", forbidden)
    monkeypatch.setattr(socket, "create_connection", forbidden)
    monkeypatch.setattr(socket.socket, "connect", forbidden)
    cache = tmp_path / "cache"
    monkeypatch.setenv(calcs.MODEL_DIR_ENV, str(cache))
    return cache


def test_mace_name_offline_without_cache_explains(no_network: Path) -> None:
    with pytest.raises(CalculatorError) as info:
        make_calculator("mace", model="mace-mp-0b3-medium")
    message = str(info.value)
    assert "'medium-0b3'" in message and "nothing was downloaded" in message
    assert calcs.MACE_RELEASES_URL in message
    assert "mace-mp-0b3-medium.model" in message
    assert "convert_mace_model(" in message and "trust_pickle=True" in message
    assert "allow_download=True" in message and "--allow-download" in message
    assert str(no_network / "mace" / "medium-0b3") in message
    assert calcs.MODEL_DIR_ENV in message
    with pytest.raises(CalculatorError, match=r"unknown MACE model 'huge'.*medium"):
        make_calculator("mace", model="huge")


def test_mace_name_from_seeded_cache(tiny_mace, no_network: Path) -> None:
    model, _, safe = tiny_mace
    shutil.copytree(safe, no_network / "mace" / "medium")
    calc = make_calculator("mace", model="mace-mp-0-medium", device="cpu")
    atoms = li2s_primitive()
    atoms.calc = calc
    assert atoms.get_potential_energy() == pytest.approx(in_memory_prediction(model, atoms)[0])
    assert calculator_metadata("mace", calc)["model"] == "medium"


def test_mace_allow_download_converts_into_cache(tiny_mace, no_network, monkeypatch) -> None:
    """With allow_download, mace's downloader is called once and its file converted."""
    model, pickled, _ = tiny_mace
    foundations = import_mace().calculators.foundations_models
    requested: list[str] = []

    def fake_download(name: str) -> str:
        requested.append(name)
        return str(pickled)

    monkeypatch.setattr(foundations, "download_mace_mp_checkpoint", fake_download)
    calc = make_calculator("mace", model="small", allow_download=True, device="cpu")
    assert requested == ["small"]
    assert (no_network / "mace" / "small" / "model.safetensors").is_file()
    atoms = li2s_primitive()
    atoms.calc = calc
    assert atoms.get_potential_energy() == pytest.approx(in_memory_prediction(model, atoms)[0])
    make_calculator("mace", model="small", allow_download=True, device="cpu")
    assert requested == ["small"]  # second time from the cache


def test_import_mace_restores_torch_load_safety() -> None:
    """mace sets TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD on import; import_mace puts it back."""
    import_mace()
    assert os.environ.get(UNSAFE_LOAD_ENV) == UNSAFE_LOAD_AT_START


def test_calculator_names_constant() -> None:
    assert CALCULATOR_NAMES[0] == calcs.DEFAULT_CALCULATOR == "chgnet"
    assert set(calcs.available_calculators()) == set(CALCULATOR_NAMES)
