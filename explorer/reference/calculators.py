"""One factory for the energy/force calculators that drive reference MD.

:func:`make_calculator` returns an ASE calculator; every one of them reports
energies in eV, forces in eV/Å and stresses in eV/Å³ (ASE's units), and reads
positions and cells in Å.

=========  ===============================================================
name       what it is (source)
=========  ===============================================================
``chgnet`` CHGNet universal potential (Deng et al., Nat. Mach. Intell. 2023;
           ``pip install chgnet``). Its PyPI package ships the pretrained
           weights, so it works offline. Default.
``mace``   MACE-MP-0 and related foundation models (Batatia et al., 2023;
           ``pip install mace-torch``), loaded only from our safe format
           (safetensors weights + JSON hyperparameters), see
           :mod:`explorer.reference.mace_model`.
``emt``    ASE's effective-medium theory (Jacobsen, Stoltze, Nørskov 1996):
           Al, Cu, Ag, Au, Ni, Pd, Pt and ASE's test parameters for H, C, N, O.
``lj``     ASE's Lennard-Jones pair potential, argon parameters by default.
``sevenn`` SevenNet (Park et al., 2024), only when ``sevenn`` is installed.
=========  ===============================================================

The MACE-specific parts (the safe model format, conversion of pickled release
files, foundation-model names and the model cache) live in
:mod:`explorer.reference.mace_model`; its public names are re-exported here.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator
from ase.calculators.emt import EMT
from ase.calculators.emt import parameters as _EMT_PARAMETERS
from ase.calculators.lj import LennardJones

from explorer.device import resolve_device
from explorer.errors import CalculatorError
from explorer.reference.mace_model import (
    DEFAULT_MACE_MODEL,
    MACE_CONFIG_FILE,
    MACE_RELEASES_URL,
    MACE_WEIGHTS_FILE,
    MODEL_DIR_ENV,
    _package_version,
    _quiet_stdout,
    _sha256,
    build_mace_calculator,
    convert_mace_model,
    import_mace,
    load_mace_module,
    mace_model_names,
    model_cache_dir,
)

__all__ = [
    "CALCULATOR_NAMES",
    "DEFAULT_CALCULATOR",
    "DEFAULT_MACE_MODEL",
    "EMT_ELEMENTS",
    "LJ_ARGON",
    "MACE_CONFIG_FILE",
    "MACE_RELEASES_URL",
    "MACE_WEIGHTS_FILE",
    "MODEL_DIR_ENV",
    "available_calculators",
    "calculator_metadata",
    "check_elements",
    "convert_mace_model",
    "import_mace",
    "load_mace_module",
    "mace_model_names",
    "make_calculator",
    "model_cache_dir",
]

#: Every name :func:`make_calculator` knows, installed or not.
CALCULATOR_NAMES: tuple[str, ...] = ("chgnet", "mace", "emt", "lj", "sevenn")
DEFAULT_CALCULATOR = "chgnet"

#: Distribution that provides each calculator, and how to install it.
_PACKAGES: dict[str, str] = {
    "chgnet": "chgnet",
    "mace": "mace-torch",
    "emt": "ase",
    "lj": "ase",
    "sevenn": "sevenn",
}
_IMPORT_NAMES: dict[str, str] = {
    "chgnet": "chgnet",
    "mace": "mace",
    "emt": "ase",
    "lj": "ase",
    "sevenn": "sevenn",
}

#: CHGNet models shipped inside the ``chgnet`` wheel (``CHGNet.load(model_name=...)``).
CHGNET_BUNDLED_MODELS: tuple[str, ...] = ("0.3.0", "0.2.0", "r2scan")
DEFAULT_CHGNET_MODEL = "0.3.0"
#: The highest atomic number in CHGNet's element embedding (H to Pu).
CHGNET_MAX_Z = 94

#: Argon (Rowley, Nicholson & Parsonage 1975 style values): ε in eV, σ in Å.
LJ_ARGON: dict[str, float] = {"epsilon": 0.0104, "sigma": 3.40}
#: Cutoff in units of σ when ``rc`` is not given.
LJ_CUTOFF_SIGMAS = 2.5
#: Elements that ASE's EMT has parameters for.
EMT_ELEMENTS: tuple[str, ...] = tuple(_EMT_PARAMETERS)

_CHGNET_OPTIONS = frozenset({"stress_weight", "on_isolated_atoms", "return_site_energies"})
_MACE_OPTIONS = frozenset(
    {
        "default_dtype",
        "head",
        "compute_atomic_stresses",
        "compile_mode",
        "fullgraph",
        "enable_cueq",
        "enable_oeq",
    }
)
_LJ_OPTIONS = frozenset({"epsilon", "sigma", "rc", "ro", "smooth"})
_EMT_OPTIONS = frozenset({"asap_cutoff"})

#: Attribute under which :func:`make_calculator` leaves the provenance record.
_METADATA_ATTR = "accelmd_metadata"


# --------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------


def available_calculators() -> dict[str, str | None]:
    """Map each name in :data:`CALCULATOR_NAMES` to ``None`` if usable, else an install hint."""
    return {name: _missing_package_hint(name) for name in CALCULATOR_NAMES}


def make_calculator(
    name: str = DEFAULT_CALCULATOR,
    *,
    device: str = "auto",
    model: str | os.PathLike[str] | None = None,
    allow_download: bool = False,
    **options: Any,
) -> Calculator:
    """Build an ASE calculator by name (energies in eV, forces in eV/Å, stress in eV/Å³).

    Args:
        name: one of :data:`CALCULATOR_NAMES` (case-insensitive).
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` for the ML
            potentials (see :func:`explorer.device.resolve_device`); ignored by
            ``emt`` and ``lj``, which run on the CPU.
        model: which weights. ``chgnet``: a bundled version
            (:data:`CHGNET_BUNDLED_MODELS`, default ``"0.3.0"``) or a CHGNet
            checkpoint file that loads with ``torch.load(weights_only=True)``.
            ``mace``: a foundation-model name (:func:`mace_model_names`, default
            ``"medium"``) or a path to a model in the safe format (see
            :func:`load_mace_module`). ``sevenn``: a pretrained model name.
            Must be ``None`` for ``emt`` and ``lj``.
        allow_download: let ``mace`` fetch a named foundation model that is not
            in :func:`model_cache_dir` yet. Off by default: nothing touches the
            network unless the caller says so.
        **options: calculator-specific settings. ``lj``: ``epsilon`` (eV),
            ``sigma`` (Å), ``rc`` (Å, default 2.5σ), ``ro`` (Å), ``smooth``
            (default True). ``emt``: ``asap_cutoff``. ``chgnet``:
            ``stress_weight``, ``on_isolated_atoms``, ``return_site_energies``.
            ``mace``: ``default_dtype`` (``"float32"``/``"float64"``, default:
            the stored dtype), ``head``, ``compute_atomic_stresses``,
            ``compile_mode``, ``fullgraph``, ``enable_cueq``, ``enable_oeq``.

    Raises:
        CalculatorError: unknown name (the message lists the available ones),
            calculator not installed, unknown option, model missing or unsafe.
        DeviceError: an invalid device or CUDA requested without CUDA.
    """
    key = _canonical_name(name)
    hint = _missing_package_hint(key)
    if hint is not None:
        raise CalculatorError(f"calculator {key!r} is not installed: {hint}")
    return _FACTORIES[key](device, model, allow_download, dict(options))


def calculator_metadata(
    name: str,
    calc: Calculator | None = None,
    model: str | os.PathLike[str] | None = None,
) -> dict[str, str]:
    """Describe a calculator well enough to reproduce a run (stored in H5MD metadata).

    Returns ``{"name", "package", "version", "model", "model_sha256", "device"}``,
    all strings. With a calculator from :func:`make_calculator` the record it
    carries is returned (the resolved model, the SHA-256 of the weights file
    where there is one, and the device it runs on). Without one, the record
    is assembled from ``name`` and ``model``; ``device`` is then ``"cpu"`` for
    ``emt``/``lj`` and ``"unknown"`` otherwise, and ``model_sha256`` is empty.
    """
    key = _canonical_name(name)
    record = getattr(calc, _METADATA_ATTR, None) if calc is not None else None
    if isinstance(record, Mapping) and record.get("name") == key:
        return dict(record)
    if key in ("emt", "lj"):
        # Building these is instant and gives the exact default parameters.
        return calculator_metadata(key, make_calculator(key))
    defaults = {"chgnet": DEFAULT_CHGNET_MODEL, "mace": DEFAULT_MACE_MODEL, "sevenn": "7net-0"}
    model_text = str(model) if model is not None else defaults[key]
    return _metadata(key, model_text, "unknown")


def check_elements(name: str, atoms: Atoms, calc: Calculator | None = None) -> None:
    """Raise :class:`CalculatorError` if calculator ``name`` cannot treat all of ``atoms``.

    Meant to be called by the MD runner before the first step, so that an
    unsupported element fails with a clear message instead of a ``KeyError``
    deep inside the potential. ``emt`` knows :data:`EMT_ELEMENTS`; ``chgnet``
    Z = 1 to 94; ``mace`` the elements the model was trained on (needs
    ``calc``); ``lj`` applies the same ε and σ to every element.
    """
    key = _canonical_name(name)
    symbols = sorted(set(atoms.get_chemical_symbols()))
    numbers = sorted(set(int(z) for z in atoms.numbers))
    if key == "emt":
        bad = [s for s in symbols if s not in EMT_ELEMENTS]
        if bad:
            raise CalculatorError(
                f"EMT has no parameters for {', '.join(bad)}; it supports only "
                f"{', '.join(EMT_ELEMENTS)}. Use an ML potential such as 'chgnet' "
                "for Li conductors"
            )
    elif key == "chgnet":
        bad_z = [z for z in numbers if not 1 <= z <= CHGNET_MAX_Z]
        if bad_z:
            raise CalculatorError(f"CHGNet covers Z = 1..{CHGNET_MAX_Z}; got Z = {bad_z}")
    elif key == "mace" and calc is not None and hasattr(calc, "z_table"):
        known = {int(z) for z in calc.z_table.zs}
        bad_z = [z for z in numbers if z not in known]
        if bad_z:
            raise CalculatorError(
                f"this MACE model was trained on Z = {sorted(known)}; it cannot treat Z = {bad_z}"
            )


# --------------------------------------------------------------------------------------
# Names, options, metadata
# --------------------------------------------------------------------------------------


def _canonical_name(name: str) -> str:
    key = str(name).strip().lower()
    if key not in CALCULATOR_NAMES:
        raise CalculatorError(f"unknown calculator {name!r}; {_names_summary()}")
    return key


def _names_summary() -> str:
    status = available_calculators()
    usable = [n for n, hint in status.items() if hint is None]
    text = f"available: {', '.join(usable)}"
    missing = [f"{n} ({hint})" for n, hint in status.items() if hint is not None]
    if missing:
        text += f"; not installed: {', '.join(missing)}"
    return text


def _missing_package_hint(name: str) -> str | None:
    if importlib.util.find_spec(_IMPORT_NAMES[name]) is not None:
        return None
    return f"pip install {_PACKAGES[name]}"


def _metadata(key: str, model: str, device: str, sha256: str = "") -> dict[str, str]:
    return {
        "name": key,
        "package": _PACKAGES[key],
        "version": _package_version(_PACKAGES[key]),
        "model": model,
        "model_sha256": sha256,
        "device": device,
    }


def _tag(calc: Calculator, record: dict[str, str]) -> Calculator:
    setattr(calc, _METADATA_ATTR, record)
    return calc


def _check_options(key: str, options: Mapping[str, Any], allowed: frozenset[str]) -> None:
    unknown = sorted(set(options) - allowed)
    if unknown:
        accepted = ", ".join(sorted(allowed)) or "none"
        raise CalculatorError(
            f"unknown option(s) for {key!r}: {', '.join(unknown)}; accepted: {accepted}"
        )


def _no_model(key: str, model: object) -> None:
    if model is not None:
        raise CalculatorError(f"calculator {key!r} takes no model (got {model!r})")


# --------------------------------------------------------------------------------------
# Classical potentials (ASE)
# --------------------------------------------------------------------------------------


class _CheckedEMT(EMT):
    """ASE's EMT that names the unsupported elements instead of raising a bare error."""

    def initialize(self, atoms: Atoms) -> None:
        check_elements("emt", atoms)
        super().initialize(atoms)


def _make_emt(
    device: str, model: object, allow_download: bool, options: dict[str, Any]
) -> Calculator:
    _no_model("emt", model)
    _check_options("emt", options, _EMT_OPTIONS)
    calc = _CheckedEMT(**options)
    return _tag(calc, _metadata("emt", "EMT (ASE built-in parameters)", "cpu"))


def _positive(key: str, value: object) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise CalculatorError(f"lj option {key} must be a number, got {value!r}") from None
    if not np.isfinite(number) or number <= 0:
        raise CalculatorError(f"lj option {key} must be positive and finite, got {value!r}")
    return number


def _make_lj(
    device: str, model: object, allow_download: bool, options: dict[str, Any]
) -> Calculator:
    _no_model("lj", model)
    _check_options("lj", options, _LJ_OPTIONS)
    epsilon = _positive("epsilon", options.get("epsilon", LJ_ARGON["epsilon"]))
    sigma = _positive("sigma", options.get("sigma", LJ_ARGON["sigma"]))
    rc = _positive("rc", options.get("rc", LJ_CUTOFF_SIGMAS * sigma))
    ro = options.get("ro")
    if ro is not None and not 0 < _positive("ro", ro) < rc:
        raise CalculatorError(f"lj option ro must lie in (0, rc={rc}), got {ro!r}")
    # Smooth cutoff by default: with a plain truncation the force jumps at rc and
    # NVE energy drifts, which is what reference MD must not do.
    smooth = bool(options.get("smooth", True))
    calc = LennardJones(epsilon=epsilon, sigma=sigma, rc=rc, ro=ro, smooth=smooth)
    described = (
        f"LennardJones(epsilon={epsilon:g} eV, sigma={sigma:g} Å, rc={rc:g} Å, "
        f"ro={'0.66 rc' if ro is None else f'{float(ro):g} Å'}, smooth={smooth})"
    )
    return _tag(calc, _metadata("lj", described, "cpu"))


# --------------------------------------------------------------------------------------
# CHGNet
# --------------------------------------------------------------------------------------


def _make_chgnet(
    device: str, model: object, allow_download: bool, options: dict[str, Any]
) -> Calculator:
    _check_options("chgnet", options, _CHGNET_OPTIONS)
    resolved = resolve_device(device)
    with _quiet_stdout():
        net, label, sha = _load_chgnet(model, resolved)
        calc = _lean_chgnet_class()(model=net, use_device=resolved, **options)
    return _tag(calc, _metadata("chgnet", label, resolved, sha))


def _lean_chgnet_class() -> type:
    """A CHGNetCalculator that evaluates only what was asked for.

    The stock calculator always runs task ``"efsm"``: the stress is a second
    backward pass through the network, which doubles the cost of an MD step
    that never reads it (measured 0.35 → 0.17 s per LGPS step on one core).
    Stress and magnetic moments are still computed whenever requested.
    """
    from chgnet.model.dynamics import CHGNetCalculator

    class LeanCHGNetCalculator(CHGNetCalculator):
        def calculate(self, atoms=None, properties=None, system_changes=None, task=None):
            if task is None:
                wanted = set(properties or ("energy", "forces"))
                task = "efsm" if wanted & {"stress", "magmoms"} else "ef"
            super().calculate(atoms, properties, system_changes, task=task)

    return LeanCHGNetCalculator


def _load_chgnet(model: object, device: str) -> tuple[Any, str, str]:
    """Return (CHGNet module, model label, weights SHA-256 or "")."""
    from chgnet.model import CHGNet

    name = DEFAULT_CHGNET_MODEL if model is None else str(model)
    if name in CHGNET_BUNDLED_MODELS:
        # The checkpoint ships inside the chgnet wheel, so it is as trusted as
        # the chgnet code itself; CHGNet.load reads it with its own loader.
        net = CHGNet.load(model_name=name, use_device=device, verbose=False)
        return net, name, _bundled_chgnet_sha256(name)
    path = Path(name).expanduser()
    if not path.is_file():
        raise CalculatorError(
            f"CHGNet model {name!r} is neither a bundled version "
            f"({', '.join(CHGNET_BUNDLED_MODELS)}) nor an existing file"
        )
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # the unpickler raises several types; all mean "refused"
        raise CalculatorError(
            f"{path} does not load with torch.load(weights_only=True) ({type(exc).__name__}); "
            "accelmd does not unpickle user files. Save the model as "
            "{'model': {'model_args': ..., 'state_dict': ...}} of plain tensors and numbers"
        ) from None
    record = state.get("model", state) if isinstance(state, Mapping) else None
    if not isinstance(record, Mapping) or not {"model_args", "state_dict"} <= set(record):
        raise CalculatorError(
            f"{path} is not a CHGNet checkpoint: expected a 'model' entry holding "
            "'model_args' and 'state_dict'"
        )
    try:
        net = CHGNet.from_dict(dict(record)).to(device)
    except (TypeError, KeyError, RuntimeError) as exc:
        raise CalculatorError(f"{path}: cannot rebuild CHGNet from it: {exc}") from exc
    return net, str(path), _sha256(path)


def _bundled_chgnet_sha256(name: str) -> str:
    """SHA-256 of the checkpoint in the chgnet wheel, so metadata pins the exact weights."""
    spec = importlib.util.find_spec("chgnet")
    if spec is None or spec.origin is None:
        return ""
    files = sorted((Path(spec.origin).parent / "pretrained" / name).glob("*.pth.tar"))
    return _sha256(files[0]) if len(files) == 1 else ""


# --------------------------------------------------------------------------------------
# SevenNet (optional)
# --------------------------------------------------------------------------------------


def _make_sevenn(
    device: str, model: object, allow_download: bool, options: dict[str, Any]
) -> Calculator:
    name = "7net-0" if model is None else str(model)
    if Path(name).expanduser().exists() or os.sep in name:
        # SevenNet reads checkpoint files with a full unpickler; only its
        # pretrained names (files inside its own package) are accepted here.
        raise CalculatorError(
            "sevenn: only pretrained model names (e.g. '7net-0') are accepted, not files, "
            "because SevenNet checkpoints are pickles"
        )
    resolved = resolve_device(device)
    from sevenn.calculator import SevenNetCalculator  # type: ignore[import-not-found]

    with _quiet_stdout():
        calc = SevenNetCalculator(model=name, device=resolved, **options)
    return _tag(calc, _metadata("sevenn", name, resolved))


# --------------------------------------------------------------------------------------
# MACE (see explorer.reference.mace_model)
# --------------------------------------------------------------------------------------


def _make_mace(
    device: str, model: object, allow_download: bool, options: dict[str, Any]
) -> Calculator:
    dangerous = sorted({"model_paths", "model_path", "models"} & set(options))
    if dangerous:
        raise CalculatorError(
            f"mace option(s) {', '.join(dangerous)} are not accepted (they would load "
            "pickles); pass model= a safe-format path or a foundation-model name"
        )
    _check_options("mace", options, _MACE_OPTIONS)
    resolved = resolve_device(device)
    calc, label, sha = build_mace_calculator(
        model, resolved, allow_download=allow_download, **options
    )
    return _tag(calc, _metadata("mace", label, resolved, sha))


_FACTORIES = {
    "chgnet": _make_chgnet,
    "mace": _make_mace,
    "emt": _make_emt,
    "lj": _make_lj,
    "sevenn": _make_sevenn,
}
