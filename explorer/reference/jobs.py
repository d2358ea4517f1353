"""One reference-MD job from names: material -> supercell -> calculator -> H5MD.

The glue behind ``accelmd reference`` and ``make data``: everything here only
builds arguments for :func:`explorer.reference.md.run_md`.
"""

from __future__ import annotations

from pathlib import Path

from ase import Atoms

from explorer.materials import (
    DEFAULT_MIN_WIDTH,
    get_entry,
    load_material,
    load_structure,
    make_supercell,
)
from explorer.reference.calculators import (
    calculator_metadata,
    check_elements,
    make_calculator,
)
from explorer.reference.config import MDConfig
from explorer.reference.md import MDResult, run_md


def reference_atoms(
    material: str | Path,
    repeats: tuple[int, int, int] | None = None,
    min_width: float = DEFAULT_MIN_WIDTH,
) -> Atoms:
    """The simulation cell: a catalogue name or a structure file, then a supercell.

    ``repeats`` gives the diagonal supercell explicitly; otherwise the smallest
    one whose perpendicular widths are all ≥ ``min_width`` Å.
    """
    path = Path(material)
    if path.suffix and path.exists():
        atoms = load_structure(path)
        atoms.info["material"] = path.stem
    else:
        atoms = load_material(get_entry(str(material)).name)
    if repeats is None:
        return make_supercell(atoms, min_width=min_width)
    supercell = atoms.repeat(tuple(int(n) for n in repeats))
    supercell.info["supercell"] = tuple(int(n) for n in repeats)
    return supercell


def run_reference(
    material: str | Path,
    temperature_K: float,
    out: str | Path,
    *,
    production_ps: float = 25.0,
    timestep_fs: float = 2.0,
    every: int = 10,
    equilibration_ps: float = 2.0,
    ensemble: str = "nvt",
    seed: int = 0,
    mlip: str = "chgnet",
    model: str | None = None,
    device: str = "auto",
    allow_download: bool = False,
    repeats: tuple[int, int, int] | None = None,
    min_width: float = DEFAULT_MIN_WIDTH,
    resume: bool = True,
    progress: bool = True,
) -> MDResult:
    """Run (or resume) reference MD of a material at a temperature into an H5MD file.

    Units: K, ps, fs, Å. See :class:`MDConfig` for the protocol and
    :func:`run_md` for resuming and divergence handling.
    """
    config = MDConfig(
        temperature_K=temperature_K,
        ensemble=ensemble,
        timestep_fs=timestep_fs,
        production_ps=production_ps,
        equilibration_ps=equilibration_ps,
        every=every,
        seed=seed,
    )
    atoms = reference_atoms(material, repeats=repeats, min_width=min_width)
    calculator = make_calculator(mlip, device=device, model=model, allow_download=allow_download)
    check_elements(mlip, atoms, calculator)
    info = calculator_metadata(mlip, calculator, model=model)
    return run_md(atoms, calculator, config, out, info, resume=resume, progress=progress)
