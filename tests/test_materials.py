"""Tests of the materials catalogue, structure loading/validation and the supercell rule."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from ase import Atoms
from ase.io import read, write
from pymatgen.core import Composition, Structure
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

from explorer import materials
from explorer.errors import (
    OverlappingAtomsError,
    UnknownMaterialError,
    UnreadableStructureError,
    ZeroVolumeCellError,
)

ENTRIES = materials.list_materials()
NAMES = [entry.name for entry in ENTRIES]
RAW_CATALOGUE = {item["name"]: item for item in json.loads(materials.CATALOGUE_FILE.read_text())}

# Published space groups that the ordered CIF must keep (no partial occupancy to break them).
FULLY_ORDERED_SPACE_GROUPS = {
    "Li2S": 225,  # Fm-3m
    "Li3N": 191,  # P6/mmm
    "Li3OCl": 221,  # Pm-3m
    "Li3PS4-gamma": 31,  # Pmn2_1
    "LLZO": 142,  # I4_1/acd
    "Li3PO4-gamma": 62,  # Pnma (Pmnb setting)
    "Li3PO4-beta": 31,  # Pmn2_1
    "Li3InCl6": 12,  # C2/m (ordered idealisation)
    "Li7P3S11": 2,  # P-1 (model, inversion imposed)
}


# --- the catalogue files ------------------------------------------------------------------


def test_catalogue_has_at_least_ten_materials():
    assert len(ENTRIES) >= 10
    assert len(set(NAMES)) == len(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_cif_opens_in_ase_and_pymatgen_and_contains_li(name):
    entry = materials.get_entry(name)
    atoms = read(entry.path, format="cif")
    structure = Structure.from_file(entry.path)
    assert len(atoms) == len(structure) == entry.n_atoms
    assert "Li" in atoms.get_chemical_symbols()
    assert structure.is_ordered


@pytest.mark.parametrize("name", NAMES)
def test_cif_min_periodic_distance_independent_check(name):
    structure = Structure.from_file(materials.get_entry(name).path)
    # pymatgen's neighbour search includes periodic images (and self-images).
    _, _, _, distances = structure.get_neighbor_list(0.5)
    assert len(distances) == 0, f"pairs closer than 0.5 Å: {distances}"
    # The shortest distance is also sensible for an ionic solid.
    dm = structure.distance_matrix + np.eye(len(structure)) * 1e6
    assert dm.min() > 1.4


@pytest.mark.parametrize("name", NAMES)
def test_cif_composition_matches_catalogue_formula(name):
    entry = materials.get_entry(name)
    structure = Structure.from_file(entry.path)
    built = structure.composition.reduced_composition
    assert built.almost_equals(Composition(entry.formula).reduced_composition)


@pytest.mark.parametrize("name", NAMES)
def test_cif_is_charge_balanced(name):
    entry = materials.get_entry(name)
    structure = Structure.from_file(entry.path)
    oxidation = RAW_CATALOGUE[name]["oxidation_states"]
    charge = sum(oxidation[site.specie.symbol] for site in structure)
    assert charge == 0
    # Independent of our recorded states: pymatgen finds a neutral assignment too.
    assert structure.composition.oxi_state_guesses(max_sites=-1)


@pytest.mark.parametrize("name", sorted(FULLY_ORDERED_SPACE_GROUPS))
def test_space_group_of_fully_ordered_materials(name):
    structure = Structure.from_file(materials.get_entry(name).path)
    number = SpacegroupAnalyzer(structure, symprec=1e-3).get_space_group_number()
    assert number == FULLY_ORDERED_SPACE_GROUPS[name]
    assert materials.get_entry(name).space_group_number == number


def test_entries_carry_metadata():
    for entry in ENTRIES:
        assert entry.reference and entry.description and entry.ordering
        assert len(entry.lattice) == 6 and all(v > 0 for v in entry.lattice)
        assert 0 < entry.n_atoms <= 200
        assert entry.path.parent == materials.STRUCTURES_DIR


def test_sample_data_is_small():
    total = sum(p.stat().st_size for p in materials.STRUCTURES_DIR.iterdir())
    assert total < 2 * 1024**2


# --- lookup -------------------------------------------------------------------------------


def test_lookup_by_name_formula_alias_and_case():
    assert materials.get_entry("LGPS").name == "LGPS"
    assert materials.get_entry("Li10GeP2S12").name == "LGPS"
    assert materials.get_entry("lgps").name == "LGPS"
    assert materials.get_entry("li7la3zr2o12").name == "LLZO"
    assert materials.get_entry("gamma-Li3PS4").name == "Li3PS4-gamma"
    assert materials.get_entry("li3ps4-BETA").name == "Li3PS4-beta"
    assert materials.get_entry("argyrodite").name == "Li6PS5Cl"
    # A formula written in another element order names the same composition.
    assert materials.get_entry("NLi3").name == "Li3N"


def test_formula_of_several_polymorphs_is_ambiguous():
    with pytest.raises(UnknownMaterialError, match=r"ambiguous.*Li3PS4-gamma.*Li3PS4-beta"):
        materials.get_entry("Li3PS4")
    with pytest.raises(UnknownMaterialError, match="ambiguous"):
        materials.get_entry("S4PLi3")


def test_unknown_material_lists_available_names():
    with pytest.raises(UnknownMaterialError) as info:
        materials.get_entry("unobtainium")
    message = str(info.value)
    assert "unobtainium" in message
    for name in NAMES:
        assert name in message


def test_load_material_sets_info_and_validates():
    atoms = materials.load_material("li3n")
    assert isinstance(atoms, Atoms)
    assert atoms.info["material"] == "Li3N"
    assert len(atoms) == 4
    assert atoms.cell.volume == pytest.approx(3.648**2 * np.sqrt(3) / 2 * 3.875, rel=1e-4)


# --- supercell rule -----------------------------------------------------------------------


def _brute_force_repeats(cell: np.ndarray, min_width: float) -> tuple[int, int, int]:
    """Smallest (by each axis) diagonal repeats, found by scanning all combinations."""
    best = None
    for reps in itertools.product(range(1, 13), repeat=3):
        widths = materials.perpendicular_widths(cell * np.array(reps)[:, None])
        if np.all(widths >= min_width - 1e-9):
            if best is None or sum(reps) < sum(best):
                best = reps
    return best


def test_perpendicular_widths_of_orthorhombic_and_hexagonal_cells():
    np.testing.assert_allclose(materials.perpendicular_widths(np.diag([2.0, 3.0, 4.0])), [2, 3, 4])
    hexagonal = Atoms(cell=[3.0, 3.0, 5.0, 90, 90, 120]).cell[:]
    np.testing.assert_allclose(
        materials.perpendicular_widths(hexagonal), [3 * np.sqrt(3) / 2] * 2 + [5.0]
    )


@pytest.mark.parametrize("seed", range(6))
def test_supercell_repeats_random_triclinic_against_brute_force(seed):
    rng = np.random.default_rng(seed)
    lengths = rng.uniform(3.0, 12.0, 3)
    angles = rng.uniform(60.0, 120.0, 3)
    cell = Atoms(cell=[*lengths, *angles]).cell[:]
    if abs(np.linalg.det(cell)) < 1.0:
        pytest.skip("degenerate random cell")
    min_width = float(rng.uniform(6.0, 15.0))
    repeats = materials.supercell_repeats(cell, min_width)
    widths = materials.perpendicular_widths(cell * np.array(repeats)[:, None])
    assert np.all(widths >= min_width - 1e-9)
    for axis in range(3):  # one fewer along any axis violates the rule
        if repeats[axis] > 1:
            fewer = list(repeats)
            fewer[axis] -= 1
            assert materials.perpendicular_widths(cell * np.array(fewer)[:, None])[axis] < min_width
    assert repeats == _brute_force_repeats(cell, min_width)


def test_make_supercell_records_repeats_and_default_width():
    atoms = materials.load_material("Li3N")
    supercell = materials.make_supercell(atoms)
    assert supercell.info["supercell"] == materials.supercell_repeats(atoms.cell[:], 9.0)
    assert len(supercell) == len(atoms) * int(np.prod(supercell.info["supercell"]))
    assert np.all(materials.perpendicular_widths(supercell.cell[:]) >= 9.0)


# --- round trips and user files -----------------------------------------------------------


@pytest.mark.parametrize(("filename", "fmt"), [("POSCAR", "vasp"), ("lgps.extxyz", "extxyz")])
def test_round_trip_poscar_and_extxyz(tmp_path, filename, fmt):
    original = materials.load_material("LGPS")
    path = tmp_path / filename
    write(path, original, format=fmt)
    loaded = materials.load_structure(path)
    assert loaded.get_chemical_symbols() == original.get_chemical_symbols()
    np.testing.assert_allclose(loaded.cell[:], original.cell[:], atol=1e-5)
    np.testing.assert_allclose(loaded.positions, original.positions, atol=1e-5)


def test_load_structure_with_explicit_format(tmp_path):
    path = tmp_path / "structure.data"
    write(path, materials.load_material("Li2S"), format="vasp")
    assert len(materials.load_structure(path, format="vasp")) == 12


# --- bad input ----------------------------------------------------------------------------


def test_missing_file_raises_unreadable(tmp_path):
    missing = tmp_path / "nope.cif"
    with pytest.raises(UnreadableStructureError, match="no such file") as info:
        materials.load_structure(missing)
    assert str(missing) in str(info.value)


def test_empty_file_raises_unreadable(tmp_path):
    path = tmp_path / "empty.cif"
    path.write_text("  \n")
    with pytest.raises(UnreadableStructureError, match="empty") as info:
        materials.load_structure(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("filename", ["garbage.cif", "garbage.extxyz", "POSCAR"])
def test_garbage_text_raises_unreadable(tmp_path, filename):
    path = tmp_path / filename
    path.write_text("this is not a crystal structure\n12 apples and 3 pears\n")
    with pytest.raises(UnreadableStructureError) as info:
        materials.load_structure(path)
    assert str(path) in str(info.value)


ZERO_VOLUME_CIF = """data_flat
_cell_length_a 4.0
_cell_length_b 4.0
_cell_length_c 4.0
_cell_angle_alpha 90
_cell_angle_beta 90
_cell_angle_gamma 90
_symmetry_space_group_name_H-M 'P 1'
loop_
_atom_site_label
_atom_site_type_symbol
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
Li1 Li 0.0 0.0 0.0
S1 S 0.5 0.5 0.5
"""


@pytest.mark.parametrize(
    "edit",
    [
        ("_cell_angle_gamma 90", "_cell_angle_gamma 180"),  # a and b collinear
        ("_cell_length_c 4.0", "_cell_length_c 0.0"),  # parsers fail: flat cell
    ],
)
def test_zero_volume_cif_raises(tmp_path, edit):
    path = tmp_path / "flat.cif"
    path.write_text(ZERO_VOLUME_CIF.replace(*edit))
    with pytest.raises(ZeroVolumeCellError) as info:
        materials.load_structure(path)
    assert "volume" in str(info.value) and str(path) in str(info.value)


def test_zero_volume_atoms_raise_with_cell_and_volume():
    atoms = Atoms("LiS", positions=[[0, 0, 0], [1, 1, 0]], cell=[[3, 0, 0], [0, 3, 0], [3, 3, 0]])
    atoms.pbc = True
    with pytest.raises(ZeroVolumeCellError, match="volume") as info:
        materials.validate_structure(atoms)
    assert "[3.0, 3.0, 0.0]" in str(info.value)


def test_overlapping_atoms_message_names_indices_symbols_distance():
    atoms = Atoms(
        "LiSLi",
        positions=[[0, 0, 0], [2.0, 2.0, 2.0], [2.3, 2.0, 2.0]],
        cell=[6, 6, 6],
        pbc=True,
    )
    with pytest.raises(OverlappingAtomsError) as info:
        materials.validate_structure(atoms)
    message = str(info.value)
    assert "1 (S)" in message and "2 (Li)" in message
    assert "0.300" in message and "0.5" in message


def test_overlap_across_periodic_boundary_is_found(tmp_path):
    atoms = Atoms("Li2", positions=[[0.1, 1, 1], [5.8, 1, 1]], cell=[6, 6, 6], pbc=True)
    path = tmp_path / "overlap.extxyz"
    write(path, atoms, format="extxyz")
    with pytest.raises(OverlappingAtomsError, match=r"0\.300"):
        materials.load_structure(path)


def test_min_distance_threshold_is_a_parameter():
    atoms = Atoms("Li2", positions=[[0, 0, 0], [1.0, 0, 0]], cell=[5, 5, 5], pbc=True)
    materials.validate_structure(atoms)  # 1.0 Å passes the default 0.5 Å
    with pytest.raises(OverlappingAtomsError):
        materials.validate_structure(atoms, min_distance=1.5)


def test_validation_is_fast_on_a_thousand_atoms():
    import time

    big = materials.load_material("Li6PS5Cl").repeat((3, 3, 3))
    assert len(big) > 1000
    start = time.perf_counter()
    materials.validate_structure(big)
    assert time.perf_counter() - start < 5.0


def test_li7p3s11_model_keeps_p2s7_and_ps4_anions():
    entry = materials.get_entry("Li7P3S11")
    assert entry.source_note.startswith("model:")
    assert materials.get_entry("70Li2S-30P2S5").name == "Li7P3S11"
    structure = Structure.from_file(entry.path)
    symbols = np.array([site.specie.symbol for site in structure])
    dm = structure.distance_matrix
    bonded = dm[np.ix_(symbols == "P", symbols == "S")] < 2.4
    assert np.all(bonded.sum(axis=1) == 4)  # every P tetrahedral
    p_per_s = bonded.sum(axis=0)
    # per cell: two P2S7 (one bridging S each) and two PS4, no free S
    assert (p_per_s == 2).sum() == 2 and (p_per_s == 1).sum() == 20
    li_s = dm[np.ix_(symbols == "Li", symbols == "S")]
    assert li_s.min() > 2.3 and np.all((li_s < 3.0).sum(axis=1) >= 3)


def test_provenance_is_stated_for_every_entry():
    kinds = {entry.name: entry.provenance for entry in materials.list_materials()}
    assert set(kinds.values()) <= {"transcribed", "symmetry", "recalled", "model"}
    assert kinds["LGPS"] == "transcribed" and kinds["Li7P3S11"] == "model"
    assert kinds["Li3N"] == "symmetry"
