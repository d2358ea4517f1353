"""Small pure functions behind the explorer's controls (no UI library imported).

Which reference MD matches a (material, temperature), the one-line summary and the
mismatch warnings of a model card, the default supercell, the text of a structure and
of a rollout's progress, and reading an uploaded structure file. The Jupyter widgets
(:mod:`widgets.liflow_tab`) and the Panel app call them; the tests check them directly.
Candidates for ``explorer`` once a second user appears (see the report of issue 7).
"""

from __future__ import annotations

import math
import tempfile
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ase import Atoms
from ase.data import atomic_numbers, chemical_symbols

from explorer.cell import perpendicular_widths
from explorer.checkpoints import recommended_knobs_text
from explorer.errors import StructureError, UnreadableStructureError
from explorer.materials import DEFAULT_MIN_WIDTH, load_structure, supercell_repeats
from explorer.reference.dataset import REFERENCE_DIR, REFERENCE_RUNS, available_references
from explorer.session import Progress

#: Upload bound: structure files of interest are kilobytes; 5 MB stops accidents.
MAX_UPLOAD_BYTES = 5 * 1024 * 1024
#: Suffixes accepted for uploads (POSCAR/CONTCAR are recognised by name).
UPLOAD_SUFFIXES = (".cif", ".vasp", ".poscar", ".extxyz", ".xyz")
UPLOAD_NAMES = ("POSCAR", "CONTCAR")


# -- model cards ------------------------------------------------------------------------


def card_elements(card: Mapping[str, Any]) -> list[str]:
    """Element symbols a LiFlow card's models know (card ``elements`` or model configs)."""
    numbers = card.get("elements")
    if not numbers:
        models = card.get("models") or {}
        config = models.get("propagator") or card.get("model") or {}
        numbers = config.get("elements") or []
    return [chemical_symbols[int(z)] if not isinstance(z, str) else z for z in numbers]


def card_temperatures(card: Mapping[str, Any]) -> list[float]:
    """Training temperatures of a card, K (empty when the card does not say)."""
    return [float(t) for t in card.get("training_temperatures_K") or []]


def _range_text(temps: Sequence[float]) -> str:
    if not temps:
        return "unknown temperatures"
    low, high = min(temps), max(temps)
    return f"{low:g} K" if low == high else f"{low:g}–{high:g} K"


def card_summary(card: Mapping[str, Any]) -> str:
    """One line: what a checkpoint was trained on and how it scored in validation.

    Uses the bundled cards' ``materials``, ``training_temperatures_K``, ``elements`` and
    ``evaluation.summary`` (log10 MSD_Li MAE, Spearman, RDF MAE, stable fraction) and
    ``recommended_knobs``; cards written by ``accelmd train liflow`` fall back to training
    files and validation loss.
    """
    name = card.get("name", "?")
    if card.get("family") == "demo":
        return f"{name}: {card.get('description', 'demo model')}"
    trained_on = ", ".join(card.get("materials") or []) or ", ".join(
        f.get("name", "?") for f in card.get("training_files") or []
    )
    parts = [f"{name}: trained on {trained_on or 'unrecorded data'}"]
    temps = card_temperatures(card)
    if temps:
        parts[0] += f" at {_range_text(temps)}"
    elements = card_elements(card)
    if elements:
        parts[0] += f" ({'/'.join(elements)})"
    summary = (card.get("evaluation") or {}).get("summary") or {}
    metrics = []
    if summary.get("mae_log10_msd_li") is not None:
        metrics.append(f"log10 MSD_Li MAE {summary['mae_log10_msd_li']:.2f}")
    if summary.get("spearman_li") is not None:
        metrics.append(f"Spearman {summary['spearman_li']:.2f}")
    if summary.get("rdf_mae") is not None:
        metrics.append(f"RDF MAE {summary['rdf_mae']:.3f}")
    if summary.get("stable_fraction") is not None:
        metrics.append(f"stable {100 * summary['stable_fraction']:.0f} %")
    if not metrics and card.get("best_val_loss") is not None:
        metrics.append(f"best validation loss {card['best_val_loss']:.3g} Å²")
    if metrics:
        parts.append("validation: " + ", ".join(metrics))
    recommended = recommended_knobs_text(card)  # the validation above ran with these
    return "; ".join([*parts, recommended] if recommended else parts)


def model_warnings(
    card: Mapping[str, Any], atoms: Atoms | None, temperatures_K: Sequence[float]
) -> list[str]:
    """Why a (checkpoint, structure, temperature) combination should not be trusted.

    Unseen elements (the rollout would fail), temperatures outside the training range
    (LiFlow extrapolates poorly in T) and a material the model was not trained on.
    """
    if card.get("family") == "demo":
        return []
    problems = []
    if atoms is not None:
        known = set(card_elements(card))
        unseen = sorted(set(atoms.get_chemical_symbols()) - known, key=atomic_numbers.get)
        if known and unseen:
            problems.append(
                f"element(s) {', '.join(unseen)} are not in the vocabulary of "
                f"{card.get('name')} ({'/'.join(sorted(known, key=atomic_numbers.get))}): "
                "the rollout will refuse this structure"
            )
        materials = card.get("materials") or []
        material = atoms.info.get("material")
        if materials and material and material not in materials:
            problems.append(
                f"{card.get('name')} was not trained on {material} (only on "
                f"{', '.join(materials)}): expect transfer errors"
            )
    temps = card_temperatures(card)
    outside = [t for t in temperatures_K if temps and not min(temps) <= t <= max(temps)]
    if outside:
        problems.append(
            f"{', '.join(f'{t:g} K' for t in outside)} outside the training range "
            f"{_range_text(temps)}: LiFlow extrapolates poorly in temperature"
        )
    return problems


def default_card_index(cards: Sequence[Mapping[str, Any]], material: str | None) -> int:
    """The checkpoint trained on ``material``, else a multi-material one, else the first."""
    for i, card in enumerate(cards):
        if material and material in (card.get("materials") or []):
            return i
    for i, card in enumerate(cards):
        if len(card.get("materials") or []) > 1:
            return i
    return 0


# -- references and structures -----------------------------------------------------------


def matching_reference(
    material: str | None, temperature_K: float, directory: Path = REFERENCE_DIR
) -> Path | None:
    """The bundled reference MD of a catalogue material at this temperature (K), if any.

    References are stored per rounded temperature (``LGPS_800K.h5``); a temperature
    within 0.5 K of one matches it, nothing else does (D changes by tens of % per 50 K).
    """
    if not material:
        return None
    path = Path(directory) / f"{material}_{round(temperature_K)}K.h5"
    return path if path.exists() else None


def reference_note(
    material: str | None, temperature_K: float, directory: Path = REFERENCE_DIR
) -> str:
    """Where the overlay comes from, or which temperatures would have one."""
    path = matching_reference(material, temperature_K, directory)
    if path is not None:
        return f"reference MD overlay: {path.name}"
    temps = available_references(directory).get(material or "", [])
    if temps:
        listed = ", ".join(f"{t:g}" for t in temps)
        return f"no reference MD for {material} at {temperature_K:g} K (available: {listed} K)"
    return f"no reference MD for {material or 'this structure'}"


def default_repeats(atoms: Atoms, min_width: float = DEFAULT_MIN_WIDTH) -> tuple[int, int, int]:
    """The supercell of the reference dataset for a catalogue material, else the width rule.

    Using the reference's supercell keeps the first run small (50–84 atoms) and its RDF
    directly comparable with the overlay.
    """
    material = atoms.info.get("material")
    for run in REFERENCE_RUNS:
        if run.material == material:
            return tuple(run.repeats)
    return supercell_repeats(atoms.cell[:], min_width)


def with_repeats(atoms: Atoms, repeats: Sequence[int]) -> Atoms:
    """Diagonal supercell; keeps ``info['material']`` and records ``info['supercell']``."""
    reps = tuple(max(1, int(n)) for n in repeats)
    supercell = atoms.repeat(reps)
    supercell.info["material"] = atoms.info.get("material")
    supercell.info["supercell"] = reps
    return supercell


def structure_summary(atoms: Atoms) -> str:
    """Composition, atom count, cell lengths/angles (Å, °) and perpendicular widths."""
    counts = Counter(atoms.get_chemical_symbols())
    order = sorted(counts, key=atomic_numbers.get)
    composition = " ".join(f"{s}{counts[s]}" for s in order)
    a, b, c, alpha, beta, gamma = atoms.cell.cellpar()
    widths = perpendicular_widths(atoms.cell[:])
    li = counts.get("Li", 0)
    return (
        f"{composition} · {len(atoms)} atoms ({li} Li) · a, b, c = {a:.2f}, {b:.2f}, {c:.2f} Å; "
        f"α, β, γ = {alpha:.1f}, {beta:.1f}, {gamma:.1f}° · widths "
        f"{', '.join(f'{w:.1f}' for w in widths)} Å · V = {atoms.cell.volume:.0f} Å³"
    )


def atoms_from_upload(name: str, content: bytes, max_bytes: int = MAX_UPLOAD_BYTES) -> Atoms:
    """Parse an uploaded CIF/POSCAR/extxyz with the CLI's loader; ``info['material']`` = stem.

    Raises:
        UnreadableStructureError: too large, unsupported name, or unparsable (the message
            names the file and says why); the structure checks of
            :func:`explorer.materials.load_structure` apply too.
    """
    safe = Path(name).name or "upload"
    if len(content) > max_bytes:
        raise UnreadableStructureError(
            f"{safe}: {len(content) / 1e6:.1f} MB is over the upload limit of "
            f"{max_bytes / 1e6:.1f} MB"
        )
    suffix = Path(safe).suffix.lower()
    if suffix not in UPLOAD_SUFFIXES and not safe.upper().startswith(UPLOAD_NAMES):
        raise UnreadableStructureError(
            f"{safe}: unsupported file type; upload a CIF, POSCAR/CONTCAR/.vasp or extxyz file"
        )
    with tempfile.TemporaryDirectory(prefix="accelmd-upload-") as tmp:
        path = Path(tmp) / safe
        path.write_bytes(bytes(content))
        try:
            atoms = load_structure(path)
        except StructureError as exc:  # name the user's file, not our temporary copy
            raise type(exc)(str(exc).replace(str(path), safe)) from None
    atoms.info["material"] = None  # an uploaded file is never a catalogue material
    atoms.info["source"] = safe
    return atoms


# -- progress --------------------------------------------------------------------------


def _duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "–"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, sec = divmod(round(seconds), 60)
    return f"{minutes} min {sec:02d} s"


def progress_text(progress: Progress) -> str:
    """``running · 12/50 steps · 12 ps simulated · wall 3.4 s · ETA 10.2 s``."""
    text = (
        f"{progress.status} · {progress.steps_done}/{progress.n_steps} steps · "
        f"{progress.simulated_ps:g} ps simulated · wall {_duration(progress.wall_s)}"
    )
    if progress.eta_s is not None:
        text += f" · ETA {_duration(progress.eta_s)}"
    return text


def parse_temperatures(text: str) -> list[float]:
    """``"600, 800 1000"`` → [600.0, 800.0, 1000.0]; raises ValueError with the bad token."""
    values = []
    for token in text.replace(",", " ").split():
        try:
            value = float(token)
        except ValueError:
            raise ValueError(f"{token!r} is not a temperature in K") from None
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"temperatures must be > 0 K; got {token}")
        values.append(value)
    if not values:
        raise ValueError("give at least one temperature, e.g. 600, 800, 1000")
    return sorted(set(values))


def steps_label(n_steps: int, time_step_ps: float) -> str:
    """``20 steps = 20 ps simulated``."""
    return f"= {n_steps * time_step_ps:g} ps simulated"
