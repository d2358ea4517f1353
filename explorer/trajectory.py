"""Trajectory: unwrapped positions with cell, species, times and metadata.

Units: positions in Å (unwrapped, LiFlow seed §IV.1), times in ps, velocities
in Å/ps, momenta in amu·Å/ps, energies in eV. Positions are stored as float32
(enough for Å-scale displacements over ns; see README), the rest as float64.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from explorer.errors import TrajectoryError


@dataclass
class Trajectory:
    """A sequence of frames of one system with a fixed set of atoms.

    Attributes:
        positions: (frames, atoms, 3) unwrapped Cartesian positions, Å.
        cell: (3, 3) lattice vectors as rows, Å (constant volume, as in NVT).
        numbers: (atoms,) atomic numbers.
        times_ps: (frames,) simulated time of each frame, ps.
        pbc: periodicity along each lattice vector.
        velocities: optional (frames, atoms, 3), Å/ps.
        momenta: optional (frames, atoms, 3), amu·Å/ps.
        energies: optional per-frame observables in eV, e.g.
            ``{"potential_energy": (frames,), "kinetic_energy": (frames,)}``.
        metadata: what produced the trajectory and with which parameters
            (JSON-serialisable values).
    """

    positions: np.ndarray
    cell: np.ndarray
    numbers: np.ndarray
    times_ps: np.ndarray
    pbc: np.ndarray = field(default_factory=lambda: np.ones(3, dtype=bool))
    velocities: np.ndarray | None = None
    momenta: np.ndarray | None = None
    energies: dict[str, np.ndarray] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.positions = np.asarray(self.positions, dtype=np.float32)
        if self.positions.ndim == 2:
            self.positions = self.positions[None]
        if self.positions.ndim != 3 or self.positions.shape[2] != 3:
            raise TrajectoryError(
                f"positions must have shape (frames, atoms, 3); got {self.positions.shape}"
            )
        n_frames, n_atoms, _ = self.positions.shape
        self.cell = np.asarray(self.cell, dtype=np.float64).reshape(3, 3)
        self.numbers = np.asarray(self.numbers, dtype=np.int64).reshape(-1)
        if self.numbers.shape != (n_atoms,):
            raise TrajectoryError(
                f"numbers has {self.numbers.size} entries but positions hold {n_atoms} atoms"
            )
        self.times_ps = np.asarray(self.times_ps, dtype=np.float64).reshape(-1)
        if self.times_ps.shape != (n_frames,):
            raise TrajectoryError(
                f"times_ps has {self.times_ps.size} entries but positions hold {n_frames} frames"
            )
        if n_frames > 1 and np.any(np.diff(self.times_ps) <= 0):
            raise TrajectoryError("times_ps must increase strictly from frame to frame")
        self.pbc = np.broadcast_to(np.asarray(self.pbc, dtype=bool), (3,)).copy()
        for name in ("velocities", "momenta"):
            value = getattr(self, name)
            if value is not None:
                value = np.asarray(value, dtype=np.float64)
                if value.shape != self.positions.shape:
                    raise TrajectoryError(
                        f"{name} must have shape {self.positions.shape}; got {value.shape}"
                    )
                setattr(self, name, value)
        checked = {}
        for key, value in dict(self.energies).items():
            value = np.asarray(value, dtype=np.float64).reshape(-1)
            if value.shape != (n_frames,):
                raise TrajectoryError(
                    f"energy {key!r} has {value.size} values but there are {n_frames} frames"
                )
            checked[key] = value
        self.energies = checked
        self.metadata = dict(self.metadata)

    # -- sizes -------------------------------------------------------------
    @property
    def n_frames(self) -> int:
        return int(self.positions.shape[0])

    @property
    def n_atoms(self) -> int:
        return int(self.positions.shape[1])

    def __len__(self) -> int:
        return self.n_frames

    @property
    def volume(self) -> float:
        """Cell volume, Å³."""
        return float(abs(np.linalg.det(self.cell)))

    @property
    def symbols(self) -> list[str]:
        return Atoms(numbers=self.numbers).get_chemical_symbols()

    @property
    def timestep_ps(self) -> float:
        """Median spacing between frames, ps."""
        if self.n_frames < 2:
            raise TrajectoryError("a single frame has no time step")
        return float(np.median(np.diff(self.times_ps)))

    def species_indices(self, symbol: str) -> np.ndarray:
        """Indices of the atoms of one element, e.g. ``"Li"``."""
        return np.flatnonzero(np.asarray(self.symbols) == symbol)

    # -- slicing and conversion -------------------------------------------
    def __getitem__(self, index: slice | int) -> Trajectory:
        """Frames by slice or index, as a new Trajectory sharing metadata."""
        if isinstance(index, (int, np.integer)):
            index = slice(int(index), int(index) + 1 if index != -1 else None)
        return Trajectory(
            positions=self.positions[index],
            cell=self.cell,
            numbers=self.numbers,
            times_ps=self.times_ps[index],
            pbc=self.pbc,
            velocities=None if self.velocities is None else self.velocities[index],
            momenta=None if self.momenta is None else self.momenta[index],
            energies={k: v[index] for k, v in self.energies.items()},
            metadata=self.metadata,
        )

    # -- files -------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write to ``.h5``/``.h5md`` (H5MD) or ``.extxyz``/``.xyz`` (extended XYZ)."""
        path = Path(path)
        if path.suffix.lower() in H5MD_SUFFIXES:
            from explorer.h5md import write_h5md

            return write_h5md(self, path)
        if path.suffix.lower() in XYZ_SUFFIXES:
            return write_extxyz(self, path)
        raise TrajectoryError(
            f"cannot write {path.name}: use one of {sorted(H5MD_SUFFIXES | XYZ_SUFFIXES)}"
        )

    def wrapped_positions(self) -> np.ndarray:
        """Positions wrapped into the cell along periodic directions, Å (for display)."""
        return wrap_positions(self.positions, self.cell, self.pbc)

    def to_atoms(self, index: int = -1, wrap: bool = False) -> Atoms:
        """One frame as ASE Atoms (unwrapped unless ``wrap``)."""
        pos = self.positions[index].astype(np.float64)
        if wrap:
            pos = wrap_positions(pos, self.cell, self.pbc)
        atoms = Atoms(numbers=self.numbers, positions=pos, cell=self.cell, pbc=self.pbc)
        if self.velocities is not None:
            # ASE velocities are Å/(ASE time unit); ASE momenta are amu·Å/(ASE time unit).
            from ase import units

            atoms.set_velocities(self.velocities[index] / (1000.0 * units.fs))
        elif self.momenta is not None:
            from ase import units

            atoms.set_momenta(self.momenta[index] / (1000.0 * units.fs))
        atoms.info["time_ps"] = float(self.times_ps[index])
        for key, values in self.energies.items():
            atoms.info[key] = float(values[index])
        return atoms

    def to_atoms_list(self, wrap: bool = False) -> list[Atoms]:
        """All frames as a list of ASE Atoms."""
        return [self.to_atoms(i, wrap=wrap) for i in range(self.n_frames)]

    @classmethod
    def from_atoms_list(
        cls,
        frames: list[Atoms],
        times_ps: np.ndarray | None = None,
        timestep_ps: float | None = None,
        metadata: Mapping[str, Any] | None = None,
        unwrap: bool = False,
    ) -> Trajectory:
        """Build a Trajectory from ASE frames (same atoms and cell in each).

        ``times_ps`` defaults to ``atoms.info["time_ps"]`` when every frame has
        it, else to ``timestep_ps * frame index``. With ``unwrap`` the
        positions are unwrapped under the minimum-image assumption (no atom
        moves more than half a cell between frames).
        """
        if not frames:
            raise TrajectoryError("no frames given")
        first = frames[0]
        for i, atoms in enumerate(frames):
            if len(atoms) != len(first) or np.any(atoms.numbers != first.numbers):
                raise TrajectoryError(f"frame {i} has different atoms than frame 0")
        positions = np.stack([a.get_positions() for a in frames])
        if unwrap:
            positions = unwrap_positions(positions, first.cell.array, first.pbc)
        if times_ps is None:
            if all("time_ps" in a.info for a in frames):
                times_ps = np.array([a.info["time_ps"] for a in frames], dtype=float)
            elif timestep_ps is not None:
                times_ps = timestep_ps * np.arange(len(frames))
            else:
                raise TrajectoryError("give times_ps or timestep_ps (frames carry no time_ps)")
        velocities = None
        if all(a.has("momenta") for a in frames):
            from ase import units

            velocities = np.stack([a.get_velocities() for a in frames]) * (1000.0 * units.fs)
        return cls(
            positions=positions,
            cell=first.cell.array,
            numbers=first.numbers,
            times_ps=times_ps,
            pbc=first.pbc,
            velocities=velocities,
            metadata=dict(metadata or {}),
        )


H5MD_SUFFIXES = frozenset({".h5", ".h5md", ".hdf5"})
XYZ_SUFFIXES = frozenset({".extxyz", ".xyz"})


def load_trajectory(path: str | Path, timestep_ps: float | None = None) -> Trajectory:
    """Read a trajectory from H5MD, or from any multi-frame file ASE reads.

    Files other than H5MD hold wrapped positions in general; they are unwrapped
    under the minimum-image assumption. Their times come from ``time_ps`` in
    each frame's info (as written by :meth:`Trajectory.save`) or ``timestep_ps``.
    """
    from explorer.errors import TrajectoryFileError

    path = Path(path)
    if path.suffix.lower() in H5MD_SUFFIXES:
        from explorer.h5md import read_h5md

        return read_h5md(path)
    if not path.exists():
        raise TrajectoryFileError(f"{path}: no such file")
    import ase.io

    try:
        frames = ase.io.read(path, index=":")
    except Exception as exc:  # ASE raises many types for malformed input
        raise TrajectoryFileError(f"{path}: cannot parse as a trajectory: {exc}") from exc
    if not frames:
        raise TrajectoryFileError(f"{path}: no frames")
    return Trajectory.from_atoms_list(frames, timestep_ps=timestep_ps, unwrap=True)


def write_extxyz(traj: Trajectory, path: str | Path, wrap: bool = False) -> Path:
    """Write every frame to extended XYZ (positions unwrapped unless ``wrap``)."""
    import ase.io

    path = Path(path)
    ase.io.write(path, traj.to_atoms_list(wrap=wrap), format="extxyz")
    return path


def wrap_positions(
    positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray | bool = True
) -> np.ndarray:
    """Wrap Cartesian positions (..., 3) into the cell along periodic axes, Å."""
    cell = np.asarray(cell, dtype=np.float64)
    pbc = np.broadcast_to(np.asarray(pbc, dtype=bool), (3,))
    frac = np.asarray(positions, dtype=np.float64) @ np.linalg.inv(cell)
    frac[..., pbc] -= np.floor(frac[..., pbc])
    return (frac @ cell).astype(np.asarray(positions).dtype, copy=False)


def unwrap_positions(
    positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray | bool = True
) -> np.ndarray:
    """Unwrap a (frames, atoms, 3) sequence of wrapped positions, Å.

    Each frame-to-frame jump is replaced by its minimum-image equivalent, so
    this is exact only if no atom moves more than half a cell width between
    consecutive frames (LiFlow seed §IV.1).
    """
    positions = np.asarray(positions, dtype=np.float64)
    if positions.ndim != 3:
        raise TrajectoryError(f"positions must be (frames, atoms, 3); got {positions.shape}")
    cell = np.asarray(cell, dtype=np.float64)
    pbc = np.broadcast_to(np.asarray(pbc, dtype=bool), (3,))
    if not pbc.any():  # an isolated molecule or polymer: nothing wraps (and no cell)
        return positions.copy()
    frac = positions @ np.linalg.inv(cell)
    steps = np.diff(frac, axis=0)
    steps[..., pbc] -= np.round(steps[..., pbc])
    frac = np.concatenate([frac[:1], frac[:1] + np.cumsum(steps, axis=0)], axis=0)
    return frac @ cell
