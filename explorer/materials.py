"""Materials catalogue: built-in Li conductors, user structure files and supercell sizing.

Units: lengths in Å, angles in degrees, volumes in Å³. Structures cross this module's
boundary as :class:`ase.Atoms`. The catalogue lives in ``sample_data/structures``
(one CIF per material plus ``catalogue.json``, written by ``scripts/build_catalogue.py``).
"""

from __future__ import annotations

import functools
import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.neighborlist import neighbor_list

from explorer.cell import MIN_VOLUME, perpendicular_widths
from explorer.errors import (
    OverlappingAtomsError,
    UnknownMaterialError,
    UnreadableStructureError,
    ZeroVolumeCellError,
)

STRUCTURES_DIR = Path(__file__).resolve().parents[1] / "sample_data" / "structures"
CATALOGUE_FILE = STRUCTURES_DIR / "catalogue.json"
DEFAULT_MIN_DISTANCE = 0.5  # Å; closer pairs mean a broken or duplicated structure
DEFAULT_MIN_WIDTH = 9.0  # Å; perpendicular width rule of the LiFlow paper

# File suffix -> ASE format; anything else is left to ASE's own guess.
_FORMATS = {
    ".cif": "cif",
    ".vasp": "vasp",
    ".poscar": "vasp",
    ".extxyz": "extxyz",
    ".xyz": "extxyz",
}
_VASP_NAMES = ("POSCAR", "CONTCAR")


@dataclass(frozen=True)
class MaterialEntry:
    """One catalogue material.

    Attributes:
        name: short catalogue name, e.g. ``"LGPS"``.
        formula: reduced formula, e.g. ``"Li10GeP2S12"`` (also accepted as an alias).
        aliases: other accepted names.
        path: the CIF file.
        space_group_symbol, space_group_number: of the published structure.
        lattice: published (a, b, c, alpha, beta, gamma) in Å and degrees.
        n_atoms: atoms in the ordered cell of the CIF.
        reference: literature reference.
        source_note: where the numbers came from and how reliable they are.
        ordering: how partial occupancies were resolved ("fully ordered" if none).
        description: one line on the material.
    """

    name: str
    formula: str
    aliases: tuple[str, ...]
    path: Path
    space_group_symbol: str
    space_group_number: int
    lattice: tuple[float, float, float, float, float, float]
    n_atoms: int
    reference: str
    source_note: str
    ordering: str
    description: str

    @property
    def provenance(self) -> str:
        """How the coordinates were obtained, in one word, from ``source_note``.

        ``transcribed`` (copied from a refinement), ``symmetry`` (fixed by the
        space group; only the lattice constant is data), ``recalled`` (from
        memory of the paper, checked by bond lengths only) or ``model`` (built by
        a stated rule or relaxed with an MLIP; not the experimental coordinates).
        """
        note = self.source_note.lower()
        for word in ("model", "recalled", "transcribed"):
            if note.startswith(word):
                return word
        if "fixed by symmetry" in note or "ideal" in note:
            return "symmetry"
        return "transcribed" if "transcribed" in note else "model"


@functools.cache
def _catalogue() -> tuple[MaterialEntry, ...]:
    """Read catalogue.json once (first use, not import)."""
    try:
        raw = json.loads(CATALOGUE_FILE.read_text())
    except (OSError, ValueError) as exc:
        raise UnreadableStructureError(
            f"cannot read the materials catalogue {CATALOGUE_FILE}: {exc}"
        ) from exc
    return tuple(_entry_from_dict(item) for item in raw)


def _entry_from_dict(item: dict) -> MaterialEntry:
    lat = item["lattice"]
    return MaterialEntry(
        name=item["name"],
        formula=item["formula"],
        aliases=tuple(item.get("aliases", ())),
        path=STRUCTURES_DIR / item["file"],
        space_group_symbol=item["space_group"]["symbol"],
        space_group_number=int(item["space_group"]["number"]),
        lattice=(lat["a"], lat["b"], lat["c"], lat["alpha"], lat["beta"], lat["gamma"]),
        n_atoms=int(item["n_atoms"]),
        reference=item["reference"],
        source_note=item.get("source_note", ""),
        ordering=item["ordering"],
        description=item["description"],
    )


def list_materials() -> list[MaterialEntry]:
    """All catalogue materials, in catalogue order."""
    return list(_catalogue())


def _keys(entry: MaterialEntry) -> set[str]:
    """Lower-case names under which an entry can be found (name, formulas, aliases)."""
    keys = {entry.name, entry.formula, *entry.aliases, _reduced_formula(entry.formula)}
    return {key.lower() for key in keys}


@functools.cache
def _reduced_formula(formula: str) -> str:
    """Pymatgen's reduced formula, so 'Li10Ge(PS6)2' also answers to 'Li10GeP2S12'."""
    from pymatgen.core import Composition

    try:
        return Composition(formula).reduced_formula
    except ValueError:
        return formula


def get_entry(name: str) -> MaterialEntry:
    """Catalogue entry by name, formula or alias (case-insensitive).

    A formula shared by several polymorphs (e.g. ``Li3PS4``) is ambiguous and
    raises, naming the polymorphs, rather than silently picking one.

    Raises:
        UnknownMaterialError: nothing (or more than one entry) matches; the message
            lists the candidates.
    """
    wanted = name.strip().lower()
    entries = _catalogue()
    by_name = [e for e in entries if wanted in {e.name.lower(), *(a.lower() for a in e.aliases)}]
    if len(by_name) == 1:
        return by_name[0]
    matches = [e for e in entries if wanted in _keys(e)]
    if not matches:
        # A formula written another way (e.g. 'PS4Li3') still names the same composition.
        reduced = _reduced_formula(name.strip()).lower()
        matches = [e for e in entries if reduced in _keys(e)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        names = ", ".join(e.name for e in matches)
        raise UnknownMaterialError(f"{name!r} is ambiguous: choose one of {names}")
    available = ", ".join(entry.name for entry in entries)
    raise UnknownMaterialError(f"unknown material {name!r}; available: {available}")


def load_material(name: str) -> Atoms:
    """The validated ordered cell of a catalogue material; ``info['material']`` is its name."""
    entry = get_entry(name)
    atoms = load_structure(entry.path, format="cif")
    atoms.info["material"] = entry.name
    return atoms


def load_structure(path: str | Path, format: str | None = None) -> Atoms:
    """Read a CIF, POSCAR/CONTCAR/.vasp, extxyz or xyz file and validate it.

    The format is taken from ``format`` or the file name; CIFs that ASE cannot read are
    retried with pymatgen. Only the first frame of a multi-frame file is used.

    Raises:
        UnreadableStructureError: missing, empty or unparsable file, or no atoms.
        ZeroVolumeCellError, OverlappingAtomsError: see :func:`validate_structure`.
    """
    path = Path(path)
    if not path.is_file():
        raise UnreadableStructureError(f"{path}: no such file")
    if path.stat().st_size == 0 or not path.read_bytes().strip():
        raise UnreadableStructureError(f"{path}: file is empty")
    fmt = format or _guess_format(path)
    atoms = _read(path, fmt)
    if len(atoms) == 0:
        raise UnreadableStructureError(f"{path}: the file holds no atoms")
    try:
        return validate_structure(atoms)
    except (ZeroVolumeCellError, OverlappingAtomsError) as exc:
        raise type(exc)(f"{path}: {exc}") from None


def _guess_format(path: Path) -> str | None:
    if path.name.upper().startswith(_VASP_NAMES):
        return "vasp"
    return _FORMATS.get(path.suffix.lower())


def _read(path: Path, fmt: str | None) -> Atoms:
    from ase.io import read

    try:
        return read(path, format=fmt, index=0)
    except Exception as ase_error:  # ASE raises many types; the message is what matters
        if fmt == "cif":
            _raise_if_flat_cif(path)
            return _read_cif_with_pymatgen(path, ase_error)
        raise UnreadableStructureError(
            f"{path}: cannot parse as {fmt or 'any known format'}: {_describe(ase_error)}"
        ) from ase_error


def _describe(exc: Exception) -> str:
    """An exception's message, or its type when the message is empty."""
    return str(exc) or type(exc).__name__


def _raise_if_flat_cif(path: Path) -> None:
    """Raise ZeroVolumeCellError when a CIF that parsers reject declares a flat cell.

    Parsers fail on a singular cell with unhelpful messages (division by zero, singular
    matrix); the declared cell parameters say what is really wrong.
    """
    from ase.geometry import cellpar_to_cell
    from ase.io.cif import parse_cif

    try:
        for block in parse_cif(str(path)):
            names = [f"_cell_length_{x}" for x in "abc"]
            names += [f"_cell_angle_{x}" for x in ("alpha", "beta", "gamma")]
            cellpar = [float(block[name]) for name in names]
            cell = cellpar_to_cell(cellpar)
            volume = abs(float(np.linalg.det(cell)))
            if not math.isfinite(volume) or volume < MIN_VOLUME:
                break
        else:
            return
    except Exception:  # an unparsable CIF is reported by the caller
        return
    raise ZeroVolumeCellError(
        f"{path}: cell parameters {cellpar} (Å, degrees) give volume {volume:.3g} Å³"
    )


def _read_cif_with_pymatgen(path: Path, ase_error: Exception) -> Atoms:
    from pymatgen.io.ase import AseAtomsAdaptor
    from pymatgen.io.cif import CifParser

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the failure is reported in our message
            structure = CifParser(path).parse_structures(primitive=False)[0]
    except Exception as exc:
        raise UnreadableStructureError(
            f"{path}: cannot parse CIF (ASE: {_describe(ase_error)}; pymatgen: {_describe(exc)})"
        ) from exc
    return AseAtomsAdaptor.get_atoms(structure)


def validate_structure(atoms: Atoms, min_distance: float = DEFAULT_MIN_DISTANCE) -> Atoms:
    """Check cell and interatomic distances (periodic images included); return ``atoms``.

    Raises:
        UnreadableStructureError: no atoms.
        ZeroVolumeCellError: a periodic cell with (near) zero volume.
        OverlappingAtomsError: two atoms closer than ``min_distance`` Å.
    """
    if len(atoms) == 0:
        raise UnreadableStructureError("the structure holds no atoms")
    cell = np.asarray(atoms.cell[:], dtype=float)
    if any(atoms.pbc):
        volume = abs(float(np.linalg.det(cell)))
        if not math.isfinite(volume) or volume < MIN_VOLUME:
            raise ZeroVolumeCellError(
                f"cell {np.round(cell, 4).tolist()} (Å, rows = lattice vectors) has volume "
                f"{volume:.3g} Å³; a periodic structure needs three independent vectors"
            )
    _check_overlaps(atoms, min_distance)
    return atoms


def _check_overlaps(atoms: Atoms, min_distance: float) -> None:
    """Raise on the closest pair below ``min_distance`` (neighbour list, so O(N))."""
    first, second, distance = neighbor_list("ijd", atoms, min_distance)
    if len(distance) == 0:
        return
    k = int(np.argmin(distance))
    i, j = sorted((int(first[k]), int(second[k])))
    symbols = atoms.get_chemical_symbols()
    where = "a periodic image of " if i == j else ""
    raise OverlappingAtomsError(
        f"atoms {i} ({symbols[i]}) and {where}{j} ({symbols[j]}) are {distance[k]:.3f} Å "
        f"apart, closer than the minimum of {min_distance} Å"
    )


def supercell_repeats(cell, min_width: float = DEFAULT_MIN_WIDTH) -> tuple[int, int, int]:
    """Smallest diagonal repeats (n1, n2, n3) giving every perpendicular width >= min_width.

    Repeating along a_i multiplies only the i-th width by n_i, so each repeat is
    independent: n_i = ceil(min_width / width_i).
    """
    widths = perpendicular_widths(cell)
    # The tiny slack stops 9.000000001 / 9.0 from asking for one more repeat.
    return tuple(max(1, math.ceil(min_width / w - 1e-9)) for w in widths)


def make_supercell(atoms: Atoms, min_width: float = DEFAULT_MIN_WIDTH) -> Atoms:
    """Diagonal supercell of ``atoms`` with every perpendicular width >= ``min_width`` Å.

    ``info['supercell']`` holds the repeats.
    """
    repeats = supercell_repeats(atoms.cell[:], min_width)
    supercell = atoms.repeat(repeats)
    supercell.info["supercell"] = repeats
    return supercell


__all__ = [
    "CATALOGUE_FILE",
    "DEFAULT_MIN_DISTANCE",
    "DEFAULT_MIN_WIDTH",
    "STRUCTURES_DIR",
    "MaterialEntry",
    "get_entry",
    "list_materials",
    "load_material",
    "load_structure",
    "make_supercell",
    "perpendicular_widths",
    "supercell_repeats",
    "validate_structure",
]
