"""MACE models in accelmd's safe format: safetensors weights + JSON hyperparameters.

MACE releases ship ``.model`` files: pickled torch modules, which run
arbitrary code when loaded. This module never unpickles a file implicitly. It
loads MACE only from a directory holding ``model.safetensors`` (weights) and
``config.json`` (the hyperparameters that rebuild the module with mace's own
classes, from a fixed allow-list), or from a plain state dict that
``torch.load(weights_only=True)`` accepts plus such a config. A release file
becomes that directory once, through :func:`convert_mace_model` with an
explicit ``trust_pickle=True``. Foundation models by name (``"medium"``,
``"mace-mp-0b3-medium"``...) are looked up in the model cache
(``$ACCELMD_MODEL_DIR``, else ``~/.cache/accelmd/models``) and are downloaded
(with mace-torch's own downloader, from the official GitHub release) and
converted only when the caller passes ``allow_download=True``.

:func:`explorer.reference.calculators.make_calculator` (``"mace"``) is the
usual entry point; it builds its calculator with :func:`build_mace_calculator`.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.metadata
import io
import json
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
from ase import Atoms

from explorer import __version__ as _EXPLORER_VERSION
from explorer.checkpoints import sha256_of as _sha256
from explorer.errors import CalculatorError

if TYPE_CHECKING:
    import torch
    from ase.calculators.calculator import Calculator

__all__ = [
    "DEFAULT_MACE_MODEL",
    "MACE_CONFIG_FILE",
    "MACE_RELEASES_URL",
    "MACE_WEIGHTS_FILE",
    "MODEL_DIR_ENV",
    "build_mace_calculator",
    "convert_mace_model",
    "import_mace",
    "load_mace_module",
    "mace_model_names",
    "model_cache_dir",
]

#: MACE-MP-0 "medium" (128 channels, L=1), the model of the MACE-MP-0 paper.
DEFAULT_MACE_MODEL = "medium"
MACE_RELEASES_URL = "https://github.com/ACEsuit/mace-mp/releases"
MODEL_DIR_ENV = "ACCELMD_MODEL_DIR"
MACE_CONFIG_FILE = "config.json"
MACE_WEIGHTS_FILE = "model.safetensors"
_MACE_FORMAT = "accelmd-mace"
_MACE_FORMAT_VERSION = 1
#: mace-torch sets this at import time, which silently turns every later
#: ``torch.load`` in the process into a full unpickler; we undo it.
_TORCH_UNSAFE_ENV = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"


# --------------------------------------------------------------------------------------
# Small helpers (also used by explorer.reference.calculators)
# --------------------------------------------------------------------------------------


def _package_version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    """Swallow progress prints (CHGNet announces its parameter count and device)."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


# --------------------------------------------------------------------------------------
# Imports, names, cache
# --------------------------------------------------------------------------------------


def model_cache_dir() -> Path:
    """Directory of converted models: ``$ACCELMD_MODEL_DIR``, else ``~/.cache/accelmd/models``."""
    configured = os.environ.get(MODEL_DIR_ENV, "").strip()
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "accelmd" / "models"


def import_mace() -> ModuleType:
    """Import ``mace`` (calculators, modules, scripts_utils) and return the package.

    mace-torch sets ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` when imported, which
    would make every later ``torch.load`` without an explicit ``weights_only``
    a full unpickler. It needs the variable only while it imports e3nn (whose
    bundled constants file predates ``weights_only``), so we put the variable
    back as it was right after. Import mace through this function, first.
    """
    before = os.environ.get(_TORCH_UNSAFE_ENV)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD.*")
            import mace
            import mace.calculators
            import mace.calculators.foundations_models
            import mace.modules
            import mace.tools.scripts_utils
    except ImportError as exc:
        raise CalculatorError(f"mace-torch is not usable ({exc}): pip install mace-torch") from exc
    finally:
        if before is None:
            os.environ.pop(_TORCH_UNSAFE_ENV, None)
        else:
            os.environ[_TORCH_UNSAFE_ENV] = before
    return mace


def _e3nn_o3() -> ModuleType:
    import_mace()  # e3nn must first be imported the way mace does it (see import_mace)
    from e3nn import o3

    return o3


def _mace_release_urls() -> dict[str, str]:
    """mace-torch's table of official foundation-model URLs (reading it needs no network)."""
    return dict(import_mace().calculators.foundations_models.mace_mp_urls)


def _mace_aliases() -> dict[str, str]:
    """Lower-case alias -> mace-torch model key (e.g. 'mace-mp-0b3-medium' -> 'medium-0b3')."""
    aliases: dict[str, str] = {}
    for key, url in _mace_release_urls().items():
        aliases[key.lower()] = key
        aliases[Path(url).stem.lower()] = key
        match = re.fullmatch(r"(small|medium|large)(?:-(.+))?", key)
        if match:
            size, tag = match.group(1), match.group(2) or "0"
            family = f"mp-{tag}" if tag[0].isdigit() else tag
            aliases[f"mace-{family}-{size}"] = key
    return aliases


def mace_model_names() -> list[str]:
    """Foundation-model names accepted by ``make_calculator('mace', model=...)``."""
    return sorted(_mace_release_urls())


def _mace_key(name: str) -> str:
    aliases = _mace_aliases()
    key = aliases.get(name.strip().lower())
    if key is None:
        raise CalculatorError(
            f"unknown MACE model {name!r}: not a file and not a foundation-model name; "
            f"names: {', '.join(mace_model_names())} (or their release file names, e.g. "
            "'mace-mp-0b3-medium')"
        )
    return key


def _looks_like_path(text: str) -> bool:
    return (
        os.sep in text
        or "/" in text
        or Path(text).suffix.lower() in {".model", ".pt", ".pth", ".json", ".safetensors"}
    )


# --------------------------------------------------------------------------------------
# The safe format
# --------------------------------------------------------------------------------------


def _allowed_classes() -> dict[str, type]:
    modules = import_mace().modules
    return {**modules.interaction_classes, **modules.readout_classes}


def _allowed_functions() -> dict[str, Any]:
    return {name: fn for name, fn in import_mace().modules.gate_dict.items() if fn is not None}


def _model_classes() -> dict[str, type]:
    # Only ScaleShiftMACE: every MACE-MP/MPA/OMAT foundation model is one, and
    # mace's extract_config_mace_model describes it completely.
    return {"ScaleShiftMACE": import_mace().modules.ScaleShiftMACE}


def _encode_value(key: str, value: Any) -> Any:
    """Turn one hyperparameter into JSON, tagging the types JSON lacks."""
    import torch

    o3 = _e3nn_o3()

    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float, np.integer, np.floating)):
        return value.item() if isinstance(value, np.generic) else value
    if isinstance(value, o3.Irreps):
        return {"__type__": "irreps", "value": str(value)}
    if isinstance(value, (np.ndarray, torch.Tensor)):
        array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value
        return {"__type__": "array", "dtype": str(array.dtype), "value": array.tolist()}
    if isinstance(value, type):
        for name, cls in _allowed_classes().items():
            if value is cls:
                return {"__type__": "class", "value": name}
    elif callable(value):
        for name, fn in _allowed_functions().items():
            if value is fn:
                return {"__type__": "function", "value": name}
    if isinstance(value, (list, tuple)):
        return [_encode_value(key, item) for item in value]
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        return {"__type__": "dict", "value": {k: _encode_value(key, v) for k, v in value.items()}}
    raise CalculatorError(
        f"cannot store MACE hyperparameter {key!r} = {value!r} in the safe format "
        "(unsupported type or a class/function outside mace's standard set)"
    )


_ARRAY_DTYPES = frozenset({"float64", "float32", "int64", "int32", "bool"})


def _decode_value(key: str, value: Any) -> Any:
    """Inverse of :func:`_encode_value`; classes and functions come only from allow-lists."""
    o3 = _e3nn_o3()

    if isinstance(value, list):
        return [_decode_value(key, item) for item in value]
    if not isinstance(value, dict):
        return value
    kind, payload = value.get("__type__"), value.get("value")
    if kind == "irreps":
        return o3.Irreps(str(payload))
    if kind == "array" and value.get("dtype") in _ARRAY_DTYPES:
        return np.asarray(payload, dtype=value["dtype"])
    if kind == "class" and payload in _allowed_classes():
        return _allowed_classes()[payload]
    if kind == "function" and payload in _allowed_functions():
        return _allowed_functions()[payload]
    if kind == "dict" and isinstance(payload, dict):
        return {k: _decode_value(key, v) for k, v in payload.items()}
    raise CalculatorError(f"MACE config: hyperparameter {key!r} has an unsupported value {value!r}")


@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype) -> Iterator[None]:
    """Build modules in the stored precision, so no float64 weight passes through float32."""
    import torch

    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def _dtype_name(module: torch.nn.Module) -> str:
    import torch

    dtype = next(module.parameters()).dtype
    names = {torch.float64: "float64", torch.float32: "float32"}
    if dtype not in names:
        raise CalculatorError(f"MACE model parameters are {dtype}; expected float32 or float64")
    return names[dtype]


def _build_mace_module(config: Mapping[str, Any]) -> torch.nn.Module:
    """Instantiate the (untrained) MACE module that ``config`` describes."""
    import torch

    if config.get("format") != _MACE_FORMAT or config.get("format_version") != _MACE_FORMAT_VERSION:
        raise CalculatorError(
            f"not an accelmd MACE config (format {config.get('format')!r}, "
            f"version {config.get('format_version')!r}; expected {_MACE_FORMAT!r} "
            f"version {_MACE_FORMAT_VERSION})"
        )
    cls = _model_classes().get(str(config.get("model_class")))
    if cls is None:
        raise CalculatorError(
            f"MACE config: model class {config.get('model_class')!r} is not supported "
            f"(supported: {', '.join(_model_classes())})"
        )
    dtype = {"float64": torch.float64, "float32": torch.float32}.get(str(config.get("dtype")))
    if dtype is None:
        raise CalculatorError(f"MACE config: dtype {config.get('dtype')!r} is not float32/float64")
    raw = config.get("hyperparameters")
    if not isinstance(raw, dict):
        raise CalculatorError("MACE config: 'hyperparameters' is missing")
    kwargs = {key: _decode_value(key, value) for key, value in raw.items()}
    try:
        with _default_dtype(dtype), warnings.catch_warnings():
            # e3nn scripts some blocks; torch.jit warns about its annotations each time.
            warnings.filterwarnings("ignore", message="The TorchScript type system")
            module = cls(**kwargs)
    except (TypeError, ValueError, AssertionError, KeyError) as exc:
        raise CalculatorError(f"MACE config does not build a {cls.__name__}: {exc}") from exc
    return module.to(dtype)


def load_mace_module(path: str | os.PathLike[str]) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Load a MACE model from the safe format without unpickling anything.

    ``path`` is one of: a directory with ``config.json`` and
    ``model.safetensors`` (what :func:`convert_mace_model` writes); the
    ``.safetensors`` file or the ``.json`` file of such a pair (a sibling
    ``<stem>.json``/``<stem>.safetensors`` or the directory's standard names);
    or a plain state-dict file that ``torch.load(weights_only=True)`` accepts,
    next to a ``<stem>.json`` or ``config.json``. Returns the module in eval
    mode (float32 or float64 as stored) and the parsed config.

    Raises :class:`CalculatorError` for a pickled module (with the conversion
    recipe), a missing config or weights file, or weights that do not match.
    """
    source = Path(path).expanduser()
    if not source.exists():
        raise CalculatorError(f"MACE model {source} does not exist")
    config_path, weights = _locate_mace_files(source)
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CalculatorError(f"{config_path}: unreadable MACE config: {exc}") from exc
    if not isinstance(config, dict):
        raise CalculatorError(f"{config_path}: a MACE config must be a JSON object")
    state = weights() if callable(weights) else _read_safetensors(weights, config)
    module = _build_mace_module(config)
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CalculatorError(
            f"MACE weights do not fit the model described by {config_path}: {exc}"
        ) from exc
    return module.eval(), config


def _locate_mace_files(source: Path) -> tuple[Path, Any]:
    """Find (config path, weights path or a callable returning a loaded state dict)."""
    if source.is_dir():
        config, weights = source / MACE_CONFIG_FILE, source / MACE_WEIGHTS_FILE
        missing = [p.name for p in (config, weights) if not p.is_file()]
        if missing:
            raise CalculatorError(
                f"MACE model directory {source} lacks {', '.join(missing)}; a model directory "
                f"holds {MACE_CONFIG_FILE} and {MACE_WEIGHTS_FILE} (see convert_mace_model)"
            )
        return config, weights
    suffix = source.suffix.lower()
    if suffix == ".safetensors":
        return _sibling(source, ".json", MACE_CONFIG_FILE), source
    if suffix == ".json":
        return source, _sibling(source, ".safetensors", MACE_WEIGHTS_FILE)
    state = _state_dict_or_refuse(source)
    return _sibling(source, ".json", MACE_CONFIG_FILE), lambda: state


def _sibling(source: Path, suffix: str, standard: str) -> Path:
    for candidate in (source.with_suffix(suffix), source.parent / standard):
        if candidate.is_file():
            return candidate
    raise CalculatorError(
        f"no companion file for MACE model {source}: expected "
        f"{source.with_suffix(suffix).name} or {standard} next to it"
    )


def _state_dict_or_refuse(source: Path) -> dict[str, torch.Tensor]:
    """Load a plain state dict safely, or explain how to convert a pickled model."""
    import torch

    try:
        state = torch.load(source, map_location="cpu", weights_only=True)
    except Exception:  # weights-only unpickling refused a global: a pickled module
        raise CalculatorError(_pickle_refusal(source)) from None
    if (
        isinstance(state, Mapping)
        and state
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items())
    ):
        return dict(state)
    raise CalculatorError(
        f"{source} loads safely but is not a state dict of tensors; "
        "convert the model with convert_mace_model"
    )


def _pickle_refusal(source: Path) -> str:
    return (
        f"{source} is a pickled torch model (like the MACE-MP release files). Loading a "
        "pickle runs code from the file, so accelmd never does it implicitly. If you trust "
        "the file, convert it once into the safe format (safetensors weights + JSON config):\n"
        "    from explorer.reference.calculators import convert_mace_model\n"
        f"    convert_mace_model({str(source)!r}, 'my-mace-model', trust_pickle=True)\n"
        "then use make_calculator('mace', model='my-mace-model')."
    )


def _read_safetensors(path: Path, config: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    expected = config.get("weights_sha256")
    if expected and _sha256(path) != expected:
        raise CalculatorError(
            f"{path} does not match the SHA-256 recorded in its config; the weights were "
            "changed or belong to another model"
        )
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError) as exc:
        raise CalculatorError(f"{path}: unreadable safetensors file: {exc}") from exc


# --------------------------------------------------------------------------------------
# Conversion from a trusted pickle
# --------------------------------------------------------------------------------------


def convert_mace_model(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    trust_pickle: bool = False,
    overwrite: bool = False,
) -> Path:
    """Convert a pickled MACE model (a release ``.model`` file) into the safe format.

    This is the only place where accelmd unpickles a file, and only with
    ``trust_pickle=True``: unpickling runs code from the file, so do it only for
    files from a source you trust (e.g. the official MACE-MP releases). The
    module's hyperparameters come from mace's ``extract_config_mace_model``;
    the module is rebuilt from them with mace's classes, given the original
    weights, and checked to predict the same energies and forces as the
    original on a small probe structure before anything is written.

    Writes the directory ``dst`` with ``config.json`` and ``model.safetensors``
    and returns its path. Raises :class:`CalculatorError` without
    ``trust_pickle``, if ``dst`` exists and is not empty (unless ``overwrite``),
    or if the model is not a ScaleShiftMACE that round-trips exactly.
    """
    source, target = Path(src).expanduser(), Path(dst).expanduser()
    if not trust_pickle:
        raise CalculatorError(
            f"converting {source} means unpickling it, which runs code from the file; "
            "pass trust_pickle=True if you trust its source"
        )
    if not source.is_file():
        raise CalculatorError(f"MACE model file {source} does not exist")
    if target.exists() and any(target.iterdir()) and not overwrite:
        raise CalculatorError(f"{target} exists and is not empty; pass overwrite=True")
    original = _unpickle_mace(source)
    config = _config_from_module(original)
    config["source"] = {"file": source.name, "sha256": _sha256(source)}
    rebuilt = _build_mace_module(config)
    rebuilt.load_state_dict(original.state_dict(), strict=False)
    _check_same_predictions(original, rebuilt.eval())
    return _write_safe_model(target, config, rebuilt.state_dict(), overwrite)


def _unpickle_mace(source: Path) -> torch.nn.Module:
    import torch

    import_mace()  # the pickle names mace classes; they must be importable
    try:
        # Explicit trust was given by the caller (trust_pickle=True).
        obj = torch.load(source, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise CalculatorError(f"{source}: cannot load as a torch model: {exc}") from exc
    if not isinstance(obj, torch.nn.Module):
        raise CalculatorError(
            f"{source} holds a {type(obj).__name__}, not a MACE module; "
            "convert_mace_model needs a saved model (torch.save(model, path))"
        )
    return obj.eval()


def _config_from_module(module: torch.nn.Module) -> dict[str, Any]:
    import torch

    mace = import_mace()
    name = type(module).__name__
    if name not in _model_classes():
        raise CalculatorError(
            f"cannot convert a {name}; supported: {', '.join(_model_classes())} "
            "(all MACE-MP foundation models are ScaleShiftMACE)"
        )
    raw = mace.tools.scripts_utils.extract_config_mace_model(module)
    if "error" in raw:
        raise CalculatorError(f"mace cannot describe this model: {raw['error']}")
    if raw.get("cueq_config") is not None:
        raise CalculatorError(
            "this model uses cuEquivariance kernels; convert it back to e3nn first "
            "(mace-torch: mace_cueq_to_e3nn)"
        )
    return {
        "format": _MACE_FORMAT,
        "format_version": _MACE_FORMAT_VERSION,
        "model_class": name,
        "dtype": _dtype_name(module),
        "r_max_A": float(raw["r_max"]),
        "atomic_numbers": [int(z) for z in torch.as_tensor(raw["atomic_numbers"]).tolist()],
        "heads": list(raw.get("heads", ["Default"])),
        "converted_with": {
            "mace-torch": _package_version("mace-torch"),
            "torch": _package_version("torch"),
            "accelmd-explorer": _EXPLORER_VERSION,
        },
        "hyperparameters": {key: _encode_value(key, value) for key, value in raw.items()},
    }


def _probe_atoms(atomic_numbers: list[int]) -> Atoms:
    """A small rattled periodic cell with up to four of the model's elements."""
    zs = atomic_numbers[:4]
    grid = np.array([[i, j, k] for i in range(2) for j in range(2) for k in range(2)], float)
    atoms = Atoms(
        numbers=[zs[i % len(zs)] for i in range(len(grid))],
        positions=2.6 * grid,
        cell=np.eye(3) * 5.2,
        pbc=True,
    )
    atoms.rattle(stdev=0.1, seed=7)
    return atoms


def _check_same_predictions(original: torch.nn.Module, rebuilt: torch.nn.Module) -> None:
    """Refuse to write a conversion that does not reproduce the original model."""
    calculator_cls = import_mace().calculators.MACECalculator
    dtype = _dtype_name(original)
    atoms = _probe_atoms([int(z) for z in original.atomic_numbers.tolist()])
    results = []
    for module in (original, rebuilt):
        heads = list(getattr(module, "heads", ["Default"]))
        with _quiet_stdout():
            calc = calculator_cls(
                models=[copy.deepcopy(module)], device="cpu", default_dtype=dtype, head=heads[0]
            )
        probe = atoms.copy()
        probe.calc = calc
        results.append((probe.get_potential_energy(), probe.get_forces()))
    (e0, f0), (e1, f1) = results
    tol = (1e-7 if dtype == "float64" else 1e-4) * max(1.0, abs(e0))
    if abs(e0 - e1) > tol or not np.allclose(f0, f1, atol=tol, rtol=0):
        raise CalculatorError(
            "the rebuilt MACE model does not reproduce the original "
            f"(energy {e0:.8f} vs {e1:.8f} eV); this model is not supported by the converter"
        )


def _write_safe_model(
    target: Path, config: dict[str, Any], state: Mapping[str, torch.Tensor], overwrite: bool
) -> Path:
    """Write weights then config into a temporary sibling and move it into place."""
    from safetensors.torch import save_file

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        weights = staging / MACE_WEIGHTS_FILE
        # Clones: safetensors refuses tensors that share storage.
        save_file({k: v.detach().cpu().contiguous().clone() for k, v in state.items()}, weights)
        config = {**config, "weights_sha256": _sha256(weights)}
        (staging / MACE_CONFIG_FILE).write_text(json.dumps(config, indent=1), encoding="utf-8")
        if target.exists():
            if overwrite:
                shutil.rmtree(target)
            else:
                target.rmdir()  # empty (checked by the caller)
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


# --------------------------------------------------------------------------------------
# The calculator
# --------------------------------------------------------------------------------------


def build_mace_calculator(
    model: object,
    device: str,
    *,
    allow_download: bool = False,
    **options: Any,
) -> tuple[Calculator, str, str]:
    """Build mace's ``MACECalculator`` from a safe-format model.

    ``model`` is a foundation-model name (:func:`mace_model_names`, default
    :data:`DEFAULT_MACE_MODEL`) or a path that :func:`load_mace_module`
    accepts; ``device`` is an already resolved torch device. ``options`` go to
    ``MACECalculator`` unchecked (:func:`~explorer.reference.calculators.make_calculator`
    checks them); ``default_dtype`` defaults to the stored dtype. Returns
    (calculator, model label for metadata, weights SHA-256 or ``""``).
    """
    directory, label = _resolve_mace_model(model, allow_download)
    module, config = load_mace_module(directory)
    options.setdefault("default_dtype", config["dtype"])
    calculator_cls = import_mace().calculators.MACECalculator
    try:
        calc = calculator_cls(models=[module], device=device, **options)
    except (ValueError, AssertionError) as exc:
        raise CalculatorError(f"MACE calculator: {exc}") from exc
    return calc, label, str(config.get("weights_sha256", ""))


def _resolve_mace_model(model: object, allow_download: bool) -> tuple[Path, str]:
    """Return (path for load_mace_module, label for metadata)."""
    text = DEFAULT_MACE_MODEL if model is None else os.fspath(model)  # type: ignore[arg-type]
    path = Path(text).expanduser()
    if path.exists():
        return path, str(path.resolve())
    if isinstance(model, os.PathLike) or _looks_like_path(text):
        raise CalculatorError(f"MACE model file {text} does not exist")
    key = _mace_key(text)
    cached = model_cache_dir() / "mace" / key
    if (cached / MACE_CONFIG_FILE).is_file():
        return cached, key
    if not allow_download:
        raise CalculatorError(_offline_message(key, cached))
    _download_and_convert(key, cached)
    return cached, key


def _offline_message(key: str, cached: Path) -> str:
    url = _mace_release_urls()[key]
    file_name = Path(url).name
    return (
        f"MACE foundation model {key!r} is not in the local model cache ({cached}) and "
        "downloads are off, so nothing was downloaded. Either:\n"
        f"  1. allow the download: make_calculator('mace', model={key!r}, "
        "allow_download=True), or --allow-download on the accelmd command line; or\n"
        f"  2. download {url}\n"
        f"     (release page: {MACE_RELEASES_URL}) and convert it once into the safe format "
        "(this unpickles the file: do it only for a file you trust):\n"
        "         from explorer.reference.calculators import convert_mace_model\n"
        f"         convert_mace_model({file_name!r}, {str(cached)!r}, trust_pickle=True)\n"
        f"     after which model={key!r} loads offline (or pass the converted directory as "
        "model=).\n"
        f"The model cache is {model_cache_dir()}; set {MODEL_DIR_ENV} to use another directory."
    )


def _download_and_convert(key: str, cached: Path) -> None:
    """Fetch the official release with mace-torch's downloader and convert it into the cache."""
    foundations = import_mace().calculators.foundations_models
    try:
        downloaded = foundations.download_mace_mp_checkpoint(key)
    except (OSError, RuntimeError, ValueError) as exc:
        raise CalculatorError(
            f"downloading MACE model {key!r} failed: {exc}\n{_offline_message(key, cached)}"
        ) from exc
    # The caller allowed fetching the official release over HTTPS; that is the
    # trust decision convert_mace_model asks for.
    convert_mace_model(downloaded, cached, trust_pickle=True, overwrite=True)
