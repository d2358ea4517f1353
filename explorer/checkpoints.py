"""Bundled checkpoints: safetensors weights plus a JSON model card, sha256-verified.

A checkpoint ``NAME`` is two files in a directory (by default
``sample_data/checkpoints/``): ``NAME.safetensors`` holding every module's
weights under ``<module>.<parameter>`` keys, and ``NAME.json``, the model card
(family, module configs, element vocabulary, training data and command,
validation metrics, date) that also records the weights' sha256. Loading
checks the hash before reading a tensor and never unpickles anything.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from explorer.errors import ExplorerError

CHECKPOINT_DIR = Path(__file__).resolve().parents[1] / "sample_data" / "checkpoints"
WEIGHTS_SUFFIX = ".safetensors"
CARD_SUFFIX = ".json"


class CheckpointError(ExplorerError, ValueError):
    """A checkpoint is missing, corrupt, or does not match its model card."""


@dataclass(frozen=True)
class Checkpoint:
    """Loaded weights (per module) and the model card."""

    name: str
    card: dict[str, Any]
    state_dicts: dict[str, dict[str, torch.Tensor]]

    @property
    def family(self) -> str:
        return str(self.card.get("family", ""))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_checkpoint(
    name: str,
    modules: dict[str, torch.nn.Module],
    card: dict[str, Any],
    directory: Path = CHECKPOINT_DIR,
) -> Path:
    """Write ``NAME.safetensors`` and ``NAME.json``; returns the card path.

    ``card`` must be JSON-serialisable; ``weights_file`` and ``weights_sha256``
    are filled in here.
    """
    tensors = {
        f"{module}.{key}": value.detach().cpu().contiguous()
        for module, net in modules.items()
        for key, value in net.state_dict().items()
    }
    return _write_checkpoint(name, tensors, card, directory)


def _write_checkpoint(
    name: str, tensors: dict[str, torch.Tensor], card: Mapping[str, Any], directory: Path
) -> Path:
    if not name or "/" in name or name.startswith("."):
        raise CheckpointError(f"invalid checkpoint name {name!r}")
    directory.mkdir(parents=True, exist_ok=True)
    weights = directory / f"{name}{WEIGHTS_SUFFIX}"
    save_file(tensors, str(weights), metadata={"name": name})
    card = {
        **card,
        "name": name,
        "weights_file": weights.name,
        "weights_sha256": sha256_of(weights),
    }
    card_path = directory / f"{name}{CARD_SUFFIX}"
    card_path.write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
    return card_path


def resolve(name_or_path: str | Path, directory: Path = CHECKPOINT_DIR) -> Path:
    """The card path of a bundled name, or of a given ``.json``/``.safetensors`` path."""
    path = Path(name_or_path)
    if path.suffix in (CARD_SUFFIX, WEIGHTS_SUFFIX):
        card = path.with_suffix(CARD_SUFFIX)
    else:
        card = directory / f"{name_or_path}{CARD_SUFFIX}"
    if not card.exists():
        available = ", ".join(c.stem for c in sorted(directory.glob(f"*{CARD_SUFFIX}")))
        raise CheckpointError(
            f"no checkpoint {str(name_or_path)!r} (looked for {card}); "
            f"bundled: {available or 'none'}"
        )
    return card


def read_card(name_or_path: str | Path, directory: Path = CHECKPOINT_DIR) -> dict[str, Any]:
    """The model card (JSON) of a checkpoint, without loading weights."""
    path = resolve(name_or_path, directory)
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: model card is not valid JSON ({exc})") from exc


def load_checkpoint(name_or_path: str | Path, directory: Path = CHECKPOINT_DIR) -> Checkpoint:
    """Verify the sha256 recorded in the card, then read the weights (safetensors only)."""
    card_path = resolve(name_or_path, directory)
    card = read_card(card_path)
    weights = card_path.with_name(card.get("weights_file", card_path.stem + WEIGHTS_SUFFIX))
    if not weights.exists():
        raise CheckpointError(f"{card_path.name}: weights file {weights.name} is missing")
    digest = sha256_of(weights)
    if digest != card.get("weights_sha256"):
        raise CheckpointError(
            f"{weights.name}: sha256 {digest[:12]}… does not match the model card "
            f"({str(card.get('weights_sha256'))[:12]}…); the file is corrupt or was replaced"
        )
    tensors = load_file(str(weights))
    state_dicts: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        module, _, parameter = key.partition(".")
        state_dicts.setdefault(module, {})[parameter] = value
    return Checkpoint(name=card.get("name", card_path.stem), card=card, state_dicts=state_dicts)


def update_card(
    name_or_path: str | Path, updates: dict[str, Any], directory: Path = CHECKPOINT_DIR
) -> Path:
    """Merge ``updates`` into a checkpoint's model card; the weights are not touched.

    Used to add evaluation results after training. The weights' sha256 is verified
    first, so a card is never attached to weights it does not describe.
    """
    card_path = resolve(name_or_path, directory)
    card = load_checkpoint(card_path).card
    _refuse_protected_keys(updates)
    card.update(updates)
    card_path.write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
    return card_path


def _refuse_protected_keys(updates: Mapping[str, Any]) -> None:
    """The card keys that tie it to its weights are written only with the weights."""
    protected = {"name", "weights_file", "weights_sha256"} & set(updates)
    if protected:
        raise CheckpointError(f"cannot update {', '.join(sorted(protected))} of a model card")


def copy_checkpoint(
    source: str | Path,
    name: str,
    directory: Path = CHECKPOINT_DIR,
    card_updates: Mapping[str, Any] | None = None,
) -> Path:
    """Install checkpoint ``source`` (name or card path) as ``name`` in ``directory``.

    The weights are verified, then written again under the new name with every tensor
    unchanged; the card is the source's plus ``card_updates``. Returns the new card path.
    """
    checkpoint = load_checkpoint(source)
    tensors = {
        f"{module}.{key}": value
        for module, state in checkpoint.state_dicts.items()
        for key, value in state.items()
    }
    _refuse_protected_keys(card_updates or {})
    return _write_checkpoint(name, tensors, {**checkpoint.card, **(card_updates or {})}, directory)


def card_headline(card: dict[str, Any]) -> str:
    """One line per checkpoint: family, what it was trained on, its headline metrics.

    LiFlow: the evaluation against reference MD (log10 MSD_Li MAE, Spearman ρ, RDF MAE,
    stable %) or, before evaluation, the best validation loss (Å²); FlashMD: validation
    RMSE of positions (Å) and energy (meV/atom); CG: ⟨Rg²⟩ r² of the model and of the
    short-MD baseline on the test polymers. Then the recommended knobs, if any.
    """
    family = str(card.get("family", "?"))
    kind = f" {card['kind']}" if card.get("kind") else ""
    trained = card.get("materials") or card.get("system")
    if not trained and card.get("training_files"):
        trained = f"{len(card['training_files'])} reference files"
    if isinstance(trained, list | tuple):
        trained = ", ".join(str(t) for t in trained)
    temps = card.get("training_temperatures_K") or []
    where = f" at {min(temps):g}–{max(temps):g} K" if temps else ""
    head = f"{card.get('name', '?')}: {family}{kind}, trained on {trained or '?'}{where}"
    metrics = card.get("validation_metrics") or {}
    summary = (card.get("evaluation") or {}).get("summary") or {}
    if family == "liflow" and summary:
        detail = (
            f"log10 MSD_Li MAE {_num(summary.get('mae_log10_msd_li'))}, "
            f"Spearman {_num(summary.get('spearman_li'))}, RDF MAE {_num(summary.get('rdf_mae'))}, "
            f"stable {_num(100 * (summary.get('stable_fraction') or 0), '.0f')} %"
        )
    elif family == "flashmd" and metrics:
        detail = (
            f"validation RMSE q {_num(metrics.get('rmse_q'), '.3g')} Å, "
            f"E {_num(metrics.get('rmse_energy_meV_per_atom'), '.3g')} meV/atom"
        )
    elif family == "cg" and metrics:
        detail = (
            f"⟨Rg²⟩ r² {_num(metrics.get('model_r2'), '.2f')} "
            f"(short MD {_num(metrics.get('short_md_r2'), '.2f')})"
        )
    else:
        loss = card.get("best_val_loss", card.get("best_val_nll"))
        detail = f"best validation loss {_num(loss, '.4g')}"
    recommended = recommended_knobs_text(card)
    return f"{head}; {detail}" + (f"; {recommended}" if recommended else "")


def recommended_knobs_text(card: Mapping[str, Any]) -> str:
    """``"recommended prior scale frame 0.7, …"`` from a card's ``recommended_knobs`` (the
    knob defaults its evaluation ran with), then ``"full Corrector flows below 900 K"``
    from its ``full_corrector_flow_below_K``; "" when it has neither."""
    knobs = card.get("recommended_knobs") or {}
    parts = (
        ["recommended " + ", ".join(f"{k.replace('_', ' ')} {v:g}" for k, v in knobs.items())]
        if knobs
        else []
    )
    if card.get("full_corrector_flow_below_K") is not None:
        parts.append(f"full Corrector flows below {card['full_corrector_flow_below_K']:g} K")
    return "; ".join(parts)


def _num(value: Any, fmt: str = ".3f") -> str:
    try:
        return format(float(value), fmt)
    except (TypeError, ValueError):
        return "n/a"


def list_checkpoints(directory: Path = CHECKPOINT_DIR) -> list[dict[str, Any]]:
    """Model cards of every checkpoint in ``directory`` (sorted by name)."""
    return [read_card(p) for p in sorted(directory.glob(f"*{CARD_SUFFIX}"))]
