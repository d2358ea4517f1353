"""The LiFlow reference dataset: which MLIP trajectories we generate, and where.

The plan follows the LiFlow paper's universal-MLIP protocol (seed 001 §IV.2):
minimised structures, NVT with a Nosé–Hoover chain (a velocity-scaling
thermostat, so diffusivities are not damped), 600/800/1000/1200 K, positions
recorded every 10 steps. Deviations, forced by 2 CPU cores and CHGNet's cost
here (~0.3–0.5 s per step for 50 atoms; ``bench/reference_md.py``):

* 2 fs time step instead of 1 fs: the fastest motion, Li–anion vibration at
  ≲ 15 THz (period ≳ 65 fs), is still sampled by > 30 steps per period, and
  2 fs is CHGNet's own MD default.
* 10 ps of production (after 2 ps of equilibration) instead of 25 ps; the
  runs are resumable, so ``make data`` with a longer ``PRODUCTION_PS`` extends
  them in place.
* The non-sulfide training material is the halide Li3InCl6 (2×1×2, 80 atoms,
  widths ≥ 11.1 Å), not the nitride Li3N: Li3N's dense lattice (11 Å³ per
  atom against 21 for Li3InCl6) gives CHGNet about 3× more bonds and angles
  per atom, 0.55 s per step for a 72-atom cell that is still under 9 Å along
  c, against 0.24 s per step for Li3InCl6 (measured here, one thread).
* Supercells of 50–84 atoms whose smallest perpendicular width is 7.7–11.1 Å
  (the paper asks ≥ 9 Å): each exception is stated in ``REFERENCE_RUNS``; all
  widths exceed 1.5 × CHGNet's 5 Å atom-graph cutoff, and finite-size effects
  on D at this size are small compared with the factor-of-ten differences
  between materials the models must learn.

File names are ``<catalogue name>_<T>K.h5`` in ``sample_data/reference/`` so
tools find a reference by material and temperature (:func:`reference_path`).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

REFERENCE_DIR = Path(__file__).resolve().parents[2] / "sample_data" / "reference"
TIMESTEP_FS = 2.0
EVERY = 10  # steps between frames: 20 fs, so one LiFlow step (1 ps) is 50 frames
EQUILIBRATION_PS = 2.0
PRODUCTION_PS = 10.0
TRAINING_TEMPERATURES_K = (600.0, 800.0, 1000.0, 1200.0)


@dataclass(frozen=True)
class ReferenceRun:
    """One reference trajectory of the dataset.

    Attributes:
        material: catalogue name.
        temperature_K: NVT target temperature, K.
        split: ``"train"`` or ``"heldout"`` (never used for training).
        repeats: diagonal supercell of the catalogue cell.
        note: why this supercell, if its smallest width is under 9 Å.
    """

    material: str
    temperature_K: float
    split: str
    repeats: tuple[int, int, int]
    note: str = ""

    @property
    def filename(self) -> str:
        return reference_filename(self.material, self.temperature_K)

    @property
    def seed(self) -> int:
        """A fixed seed per run, so ``make data`` regenerates the same trajectories."""
        return zlib.crc32(f"{self.material}@{self.temperature_K:g}".encode()) % (2**31)


_LGPS_NOTE = "unit cell, widths 8.7/8.7/12.6 Å (3 % under 9 Å; 2×2×1 would be 200 atoms)"
_BETA_NOTE = "2×1×1, widths 12.2/8.0/12.8 Å (11 % under 9 Å along b)"
_LIC_NOTE = "2×1×2, widths 12.1/11.1/12.0 Å; a model structure (ordered idealisation)"
_GAMMA_NOTE = "1×2×2, widths 7.7/13.1/12.3 Å (14 % under 9 Å along a)"
_LPS7311_NOTE = "2×1×1 of the reduced cell, widths 11.2/11.3/11.4 Å; a model structure"

_TRAINING = {
    "LGPS": ((1, 1, 1), _LGPS_NOTE),
    "Li3PS4-beta": ((2, 1, 1), _BETA_NOTE),
    "Li6PS5Cl": ((1, 1, 1), "unit cell, widths 9.85 Å"),
    "Li3InCl6": ((2, 1, 2), _LIC_NOTE),
}

REFERENCE_RUNS: tuple[ReferenceRun, ...] = (
    *(
        ReferenceRun(name, temperature, "train", repeats, note)
        for name, (repeats, note) in _TRAINING.items()
        for temperature in TRAINING_TEMPERATURES_K
    ),
    # Held out: an unseen temperature inside the training range (interpolation)
    # and two unseen materials (generalisation).
    ReferenceRun("LGPS", 900.0, "heldout", (1, 1, 1), _LGPS_NOTE),
    ReferenceRun("Li3PS4-gamma", 700.0, "heldout", (1, 2, 2), _GAMMA_NOTE),
    ReferenceRun("Li3PS4-gamma", 1100.0, "heldout", (1, 2, 2), _GAMMA_NOTE),
    ReferenceRun("Li7P3S11", 700.0, "heldout", (2, 1, 1), _LPS7311_NOTE),
    ReferenceRun("Li7P3S11", 1100.0, "heldout", (2, 1, 1), _LPS7311_NOTE),
)


def reference_filename(material: str, temperature_K: float) -> str:
    """``<catalogue name>_<T>K.h5``, e.g. ``LGPS_1000K.h5``."""
    return f"{material}_{round(temperature_K)}K.h5"


def reference_path(
    material: str, temperature_K: float, directory: Path = REFERENCE_DIR
) -> Path | None:
    """The bundled reference trajectory of a material at a temperature, if any."""
    path = directory / reference_filename(material, temperature_K)
    return path if path.exists() else None


def available_references(directory: Path = REFERENCE_DIR) -> dict[str, list[float]]:
    """Catalogue name -> temperatures (K) with a reference file present."""
    found: dict[str, list[float]] = {}
    for path in sorted(directory.glob("*_*K.h5")):
        name, _, temperature = path.stem.rpartition("_")
        try:
            found.setdefault(name, []).append(float(temperature.removesuffix("K")))
        except ValueError:
            continue
    return {name: sorted(temps) for name, temps in found.items()}


def generate_dataset(
    runs: tuple[ReferenceRun, ...] = REFERENCE_RUNS,
    out_dir: Path = REFERENCE_DIR,
    only: str | None = None,
    production_ps: float = PRODUCTION_PS,
    mlip: str = "chgnet",
    device: str = "auto",
    progress: bool = True,
) -> list[Path]:
    """Generate (or resume, or extend) every planned reference trajectory.

    ``only`` restricts to file names containing that text (e.g. ``"LGPS"``).
    Finished runs return at once, so calling this again is cheap; a longer
    ``production_ps`` extends finished runs in place.
    """
    from explorer.reference.jobs import run_reference

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for run in runs:
        if only and only not in run.filename:
            continue
        result = run_reference(
            run.material,
            run.temperature_K,
            out_dir / run.filename,
            production_ps=production_ps,
            timestep_fs=TIMESTEP_FS,
            every=EVERY,
            equilibration_ps=EQUILIBRATION_PS,
            seed=run.seed,
            mlip=mlip,
            device=device,
            repeats=run.repeats,
            progress=progress,
        )
        written.append(result.path)
    return written
