"""H5MD files: trajectories that h5py or MDAnalysis read without our code.

Layout (H5MD 1.1, https://www.nongnu.org/h5md/h5md.html)::

    h5md/                      version [1, 1]; author/, creator/ (name, version)
    particles/all/
        box/                   attrs dimension=3, boundary=["periodic"|"none"] * 3
            edges/{value,step,time}  (frames, 3, 3) lattice vectors as rows, Å; the
                               cell is fixed (NVT) but stored per frame because
                               MDAnalysis reads ``edges/value`` per frame
        species                (atoms,) atomic numbers
        mass                   (atoms,) amu
        position/{value,step,time}   (frames, atoms, 3) float32 unwrapped Å; step; ps
        velocity/{value,step,time}   optional, float32 Å/ps
        momentum/{value,step,time}   optional, float32 amu·Å/ps (an extension; H5MD
                               allows them)
    observables/<name>/{value,step,time}   per-frame scalars: energies in eV,
                               others in the unit of ``OBSERVABLE_UNITS``
    parameters/                attrs: metadata (scalars as attrs, all of it as JSON
                               in the ``accelmd_metadata`` attribute)
    accelmd_restart/           optional: the full simulation state after the last
                               frame (float64 positions, momenta, thermostat, RNG)
                               so that an interrupted run continues exactly

Every time-dependent group is resizable along its first axis so a running
simulation can append frame by frame (``H5MDWriter``); a reader takes the
shortest complete length, so a file caught mid-append or cut by a crash still
reads up to its last whole frame.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from ase.data import atomic_masses

from explorer import __version__
from explorer.errors import TrajectoryError, TrajectoryFileError
from explorer.trajectory import Trajectory

H5MD_VERSION = (1, 1)
PARTICLES = "particles/all"
BOX_EDGES = f"{PARTICLES}/box/edges"
OBSERVABLES = "observables"
PARAMETERS = "parameters"
METADATA_ATTR = "accelmd_metadata"
RESTART = "accelmd_restart"  # not part of H5MD; readers ignore unknown root groups
UNITS = {"position": "Angstrom", "velocity": "Angstrom ps-1", "momentum": "amu Angstrom ps-1"}
TIME_UNIT = "ps"
ENERGY_UNIT = "eV"
# Units of observables that are not energies (the default); matched by name.
OBSERVABLE_UNITS = {"temperature": "K", "max_displacement_A": "Angstrom", "step": "", "retries": ""}
_VECTOR_ELEMENTS = ("position", "velocity", "momentum")
# No HDF5 file locks, so that a trajectory can be read (by the UI, or by
# `accelmd analyze`) while a simulation still appends to it. Each append is
# flushed and readers take the shortest complete length, so they see whole
# frames. The flags must agree within a process, hence one setting for all.
# There is one writer per file by design (resume continues the same file).
_LOCKING = False


class H5MDWriter:
    """Append frames to an H5MD file while a simulation runs.

    ``mode="w"`` creates (or overwrites) the file; ``mode="a"`` reopens an
    existing file of ours to continue it (resumable runs): the atoms must match
    and any partially written last frame is dropped. Every ``append`` is flushed,
    so frames survive a crash of the writing process.
    """

    def __init__(
        self,
        path: str | Path,
        numbers: np.ndarray,
        cell: np.ndarray,
        pbc: np.ndarray | bool = True,
        metadata: Mapping[str, Any] | None = None,
        mode: str = "w",
        masses: np.ndarray | None = None,
        expected_frames: int | None = None,
    ) -> None:
        if mode not in ("w", "a"):
            raise ValueError(f"mode must be 'w' or 'a', not {mode!r}")
        # HDF5 allocates whole chunks: sizing them to a known run length (up to ~1 MiB)
        # keeps a short trajectory from carrying a partly empty last chunk.
        self._frames_hint = None if expected_frames is None else max(1, int(expected_frames))
        self.path = Path(path)
        self.numbers = np.asarray(numbers, dtype=np.int64).reshape(-1)
        self.cell = np.asarray(cell, dtype=np.float64).reshape(3, 3)
        self.pbc = np.broadcast_to(np.asarray(pbc, dtype=bool), (3,)).copy()
        if mode == "a" and holds_frames(self.path):
            self._file = _open(self.path, "r+")
            self._check_same_system()
            self.n_frames = _trim_to_complete_frames(self._file)
            if metadata:
                _write_metadata(self._file, {**read_metadata_from(self._file), **metadata})
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = h5py.File(self.path, "w", locking=_LOCKING)
            masses = atomic_masses[self.numbers] if masses is None else masses
            _write_skeleton(self._file, self.numbers, np.asarray(masses), self.cell, self.pbc)
            _write_metadata(self._file, dict(metadata or {}))
            _create_time_series(
                self._file, BOX_EDGES, (3, 3), np.float64, UNITS["position"], self._frames_hint
            )
            self.n_frames = 0
        self._file.flush()

    # -- context manager ---------------------------------------------------
    def __enter__(self) -> H5MDWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._file.id.valid:
            self._file.close()

    def append(
        self,
        positions: np.ndarray,
        time_ps: float,
        step: int | None = None,
        velocities: np.ndarray | None = None,
        momenta: np.ndarray | None = None,
        energies: Mapping[str, float] | None = None,
    ) -> None:
        """Append one frame (positions in Å, time in ps) and flush it to disk."""
        n_atoms = self.numbers.size
        step = self.n_frames if step is None else int(step)
        arrays = {"position": positions, "velocity": velocities, "momentum": momenta}
        for name, value in arrays.items():
            if value is None:
                if name != "position" and name in self._file[PARTICLES]:
                    raise TrajectoryError(f"this file records {name}; every frame must give it")
                continue
            value = np.asarray(value, dtype=np.float64)
            if value.shape != (n_atoms, 3):
                raise TrajectoryError(f"{name} must have shape ({n_atoms}, 3); got {value.shape}")
            if not np.all(np.isfinite(value)):
                raise TrajectoryError(f"{name} of frame {self.n_frames} is not finite")
            group = self._vector_group(name, n_atoms)
            _append_row(group, value, step, time_ps)
        for key, value in (energies or {}).items():
            _append_row(self._observable_group(key), float(value), step, time_ps)
        _append_row(self._file[BOX_EDGES], self.cell, step, time_ps)
        self.n_frames += 1
        self._file.flush()

    def append_trajectory(self, traj: Trajectory, steps: np.ndarray | None = None) -> None:
        """Append every frame of a Trajectory."""
        for i in range(traj.n_frames):
            self.append(
                traj.positions[i],
                traj.times_ps[i],
                step=None if steps is None else int(steps[i]),
                velocities=None if traj.velocities is None else traj.velocities[i],
                momenta=None if traj.momenta is None else traj.momenta[i],
                energies={k: v[i] for k, v in traj.energies.items()},
            )

    def write_restart(self, state: Mapping[str, Any]) -> None:
        """Store the state needed to continue the run after the current frame.

        Arrays become datasets, scalars and strings attributes; the previous
        state is replaced. ``n_frames`` is recorded so that a resume can drop
        frames written after the state was saved.
        """
        if RESTART in self._file:
            del self._file[RESTART]
        group = self._file.create_group(RESTART)
        group.attrs["n_frames"] = self.n_frames
        for key, value in state.items():
            if isinstance(value, (str, bool, int, float, np.integer, np.floating)):
                group.attrs[key] = value
            else:
                group.create_dataset(key, data=np.asarray(value))
        self._file.flush()

    def truncate(self, n_frames: int) -> None:
        """Drop every frame from index ``n_frames`` on (e.g. back to a restart point)."""
        if not 0 <= n_frames <= self.n_frames:
            raise TrajectoryError(f"cannot truncate {self.n_frames} frames to {n_frames}")
        for group in _time_series_groups(self._file):
            for name in ("value", "step", "time"):
                if name in group:
                    group[name].resize(n_frames, axis=0)
        self.n_frames = n_frames
        self._file.flush()

    def update_metadata(self, **metadata: Any) -> None:
        """Merge keys into the stored metadata (e.g. a run's final status)."""
        _write_metadata(self._file, {**read_metadata_from(self._file), **metadata})
        self._file.flush()

    # -- internals ---------------------------------------------------------
    def _check_same_system(self) -> None:
        stored = read_system(self._file, self.path)
        if not np.array_equal(stored["numbers"], self.numbers):
            raise TrajectoryFileError(
                f"{self.path}: cannot continue this file, it holds different atoms"
            )
        if not np.allclose(stored["cell"], self.cell, atol=1e-6):
            raise TrajectoryFileError(f"{self.path}: cannot continue this file, its cell differs")

    def _vector_group(self, name: str, n_atoms: int) -> h5py.Group:
        path = f"{PARTICLES}/{name}"
        if path not in self._file:
            if self.n_frames > 0:
                raise TrajectoryError(f"{name} must be given from the first frame on")
            # float32 like the positions: 7 significant digits are far below thermal
            # noise and halve the files; the restart state keeps float64 for exact resumes.
            _create_time_series(
                self._file, path, (n_atoms, 3), np.float32, UNITS[name], self._frames_hint
            )
        return self._file[path]

    def _observable_group(self, key: str) -> h5py.Group:
        path = f"{OBSERVABLES}/{key}"
        if path not in self._file:
            if self.n_frames > 0:
                raise TrajectoryError(f"observable {key!r} must be given from the first frame on")
            unit = OBSERVABLE_UNITS.get(key, ENERGY_UNIT)
            _create_time_series(self._file, path, (), np.float64, unit, self._frames_hint)
        return self._file[path]


def write_h5md(traj: Trajectory, path: str | Path) -> Path:
    """Write a whole Trajectory to an H5MD file; returns the path."""
    with H5MDWriter(path, traj.numbers, traj.cell, traj.pbc, traj.metadata) as writer:
        writer.append_trajectory(traj)
    return Path(path)


def read_h5md(path: str | Path, frames: slice | None = None) -> Trajectory:
    """Read an H5MD trajectory (ours, or any H5MD with ``particles/all``).

    Raises :class:`TrajectoryFileError` for a missing, truncated, corrupt or
    foreign (non-H5MD) file, with the reason in the message.
    """
    path = Path(path)
    frames = slice(None) if frames is None else frames
    with _open(path, "r") as f:
        system = read_system(f, path)
        n_frames = _complete_length(f)
        if n_frames == 0:
            raise TrajectoryFileError(f"{path}: the file holds no complete frame")
        particles = f[PARTICLES]
        index = range(n_frames)[frames]
        sel = slice(index.start, index.stop, index.step) if len(index) else slice(0, 0)
        try:
            positions = particles["position/value"][:n_frames][sel]
            times = particles["position/time"][:n_frames][sel]
            optional = {
                name: particles[f"{name}/value"][:n_frames][sel]
                for name in ("velocity", "momentum")
                if f"{name}/value" in particles
            }
            energies = {
                key: group["value"][:n_frames][sel]
                for key, group in f.get(OBSERVABLES, {}).items()
                if isinstance(group, h5py.Group) and "value" in group
            }
        except (OSError, KeyError) as exc:
            raise TrajectoryFileError(f"{path}: cannot read frames ({exc})") from exc
        metadata = read_metadata_from(f)
    return Trajectory(
        positions=positions,
        cell=system["cell"],
        numbers=system["numbers"],
        times_ps=times,
        pbc=system["pbc"],
        velocities=optional.get("velocity"),
        momenta=optional.get("momentum"),
        energies=energies,
        metadata=metadata,
    )


def read_restart(path: str | Path) -> dict[str, Any] | None:
    """The saved simulation state of an H5MD file, or None if it has none.

    Keys are those given to :meth:`H5MDWriter.write_restart`, plus ``n_frames``.
    """
    path = Path(path)
    with _open(path, "r") as f:
        group = f.get(RESTART)
        if group is None:
            return None
        state: dict[str, Any] = {key: _from_attr(value) for key, value in group.attrs.items()}
        state.update({key: group[key][()] for key in group})
    return state


def h5md_frame_count(path: str | Path) -> int:
    """Number of complete frames in an H5MD file (cheap: reads no arrays)."""
    with _open(Path(path), "r") as f:
        read_system(f, Path(path))
        return _complete_length(f)


def holds_frames(path: str | Path) -> bool:
    """Whether ``path`` is an H5MD file with at least one complete frame.

    A file of ours that crashed before its first frame counts as absent (it is
    rewritten); anything else that exists but is not H5MD raises, so that
    continuing a run never overwrites a foreign file.
    """
    path = Path(path)
    if not path.exists():
        return False
    with _open(path, "r") as f:
        if "h5md" not in f:
            raise TrajectoryFileError(f"{path}: exists and is not an H5MD file; not overwriting")
        return _complete_length(f) > 0


def repack_h5md(src: str | Path, dst: str | Path) -> Path:
    """Copy a finished H5MD file to ``dst`` with every time series in chunks of its own
    length; returns ``dst``.

    Lossless: groups, attributes, dtypes and values are copied unchanged, the datasets
    stay resizable, and only the chunking changes. A writer that did not know the run's
    frame count uses 64-frame value chunks and 1024-frame step/time chunks, so a short
    run carries the empty remainder of its last chunk (e.g. 47 frames of float64
    momenta for 256 atoms in a 64-frame chunk: 393 KB for 289 KB of data).
    """
    src, dst = Path(src), Path(dst)
    if src.resolve() == dst.resolve():
        raise TrajectoryFileError(f"{src}: repack into another file, not over the source")
    with _open(src, "r") as f_in, h5py.File(dst, "w") as f_out:
        f_out.attrs.update(dict(f_in.attrs))

        def copy(name: str, obj: h5py.Dataset | h5py.Group) -> None:
            if isinstance(obj, h5py.Group):
                f_out.require_group(name).attrs.update(dict(obj.attrs))
                return
            data = obj[()]
            resizable = obj.maxshape[:1] == (None,)
            chunks = (max(1, obj.shape[0]), *obj.shape[1:]) if resizable else obj.chunks
            out = f_out.create_dataset(
                name, data=data, dtype=obj.dtype, chunks=chunks, maxshape=obj.maxshape
            )
            out.attrs.update(dict(obj.attrs))

        f_in.visititems(copy)
    return dst


def read_system(f: h5py.File, path: Path) -> dict[str, np.ndarray]:
    """Atomic numbers, cell and pbc of an open H5MD file."""
    if "h5md" not in f:
        raise TrajectoryFileError(f"{path}: not an H5MD file (no 'h5md' group)")
    if f"{PARTICLES}/position/value" not in f:
        raise TrajectoryFileError(
            f"{path}: no complete frame (H5MD file without '{PARTICLES}/position/value')"
        )
    particles = f[PARTICLES]
    if "species" not in particles:
        raise TrajectoryFileError(f"{path}: no '{PARTICLES}/species' (atomic numbers)")
    box = particles.get("box")
    if box is None or "edges" not in box:
        raise TrajectoryFileError(f"{path}: no '{PARTICLES}/box/edges' (cell)")
    edges = box["edges"]
    if isinstance(edges, h5py.Group):
        if edges["value"].shape[0] == 0:
            raise TrajectoryFileError(f"{path}: the file holds no complete frame")
        edges = edges["value"][0]
    else:
        edges = edges[()]
    edges = np.asarray(edges, dtype=np.float64)
    cell = np.diag(edges) if edges.shape == (3,) else edges.reshape(3, 3)
    boundary = [_as_str(b) for b in box.attrs.get("boundary", ["periodic"] * 3)]
    return {
        "numbers": np.asarray(particles["species"][()], dtype=np.int64),
        "cell": cell,
        "pbc": np.array([b == "periodic" for b in boundary]),
    }


def read_metadata_from(f: h5py.File) -> dict[str, Any]:
    """Metadata stored under ``parameters/`` of an open file."""
    group = f.get(PARAMETERS)
    if group is None:
        return {}
    if METADATA_ATTR in group.attrs:
        return json.loads(_as_str(group.attrs[METADATA_ATTR]))
    return {key: _from_attr(value) for key, value in group.attrs.items()}


# -- helpers ----------------------------------------------------------------
def _open(path: Path, mode: str) -> h5py.File:
    """Open without HDF5's file lock (see ``_LOCKING``)."""
    if not path.exists():
        raise TrajectoryFileError(f"{path}: no such file")
    try:
        return h5py.File(path, mode, locking=_LOCKING)
    except OSError as exc:
        raise TrajectoryFileError(
            f"{path}: not a readable HDF5/H5MD file (truncated or corrupt?): {exc}"
        ) from exc


def _write_skeleton(
    f: h5py.File, numbers: np.ndarray, masses: np.ndarray, cell: np.ndarray, pbc: np.ndarray
) -> None:
    h5md = f.create_group("h5md")
    h5md.attrs["version"] = np.array(H5MD_VERSION, dtype=np.int32)
    h5md.create_group("author").attrs["name"] = "accelmd-explorer"
    creator = h5md.create_group("creator")
    creator.attrs["name"] = "accelmd-explorer"
    creator.attrs["version"] = __version__
    particles = f.create_group(PARTICLES)
    box = particles.create_group("box")
    box.attrs["dimension"] = 3
    box.attrs["boundary"] = np.array(
        [b"periodic" if p else b"none" for p in pbc], dtype=h5py.string_dtype("ascii", 8)
    )
    particles.create_dataset("species", data=numbers.astype(np.int32))
    particles.create_dataset("mass", data=np.asarray(masses, dtype=np.float64)).attrs["unit"] = (
        "amu"
    )


def _chunk_frames(shape: tuple[int, ...], dtype: type, frames_hint: int | None) -> tuple[int, int]:
    """Frames per chunk of a value dataset and of its step/time datasets.

    Without a hint: 64 frames (at most ~1 MiB). With the run's frame count: the whole run
    in one chunk when it fits in 1 MiB, so no chunk is left partly empty.
    """
    frame_bytes = max(1, np.dtype(dtype).itemsize * int(np.prod(shape, dtype=int)))
    cap = max(1, (1 << 20) // frame_bytes)
    if frames_hint is None:
        return min(64, cap), 1024
    return min(frames_hint, cap), min(frames_hint, 1024)


def _create_time_series(
    f: h5py.File,
    path: str,
    shape: tuple[int, ...],
    dtype: type,
    unit: str,
    frames_hint: int | None = None,
) -> None:
    group = f.create_group(path)
    chunk_frames, scalar_chunk = _chunk_frames(shape, dtype, frames_hint)
    value = group.create_dataset(
        "value",
        shape=(0, *shape),
        maxshape=(None, *shape),
        dtype=dtype,
        chunks=(chunk_frames, *shape),
    )
    value.attrs["unit"] = unit
    group.create_dataset(
        "step", shape=(0,), maxshape=(None,), dtype=np.int64, chunks=(scalar_chunk,)
    )
    time = group.create_dataset(
        "time", shape=(0,), maxshape=(None,), dtype=np.float64, chunks=(scalar_chunk,)
    )
    time.attrs["unit"] = TIME_UNIT


def _append_row(group: h5py.Group, value: Any, step: int, time_ps: float) -> None:
    n = group["value"].shape[0]
    for name, item in (("value", value), ("step", step), ("time", time_ps)):
        dataset = group[name]
        dataset.resize(n + 1, axis=0)
        dataset[n] = item


def _time_series_groups(f: h5py.File) -> list[h5py.Group]:
    names = [f"{PARTICLES}/{name}" for name in _VECTOR_ELEMENTS] + [BOX_EDGES]
    groups = [f[name] for name in names if isinstance(f.get(name), h5py.Group)]
    groups += [g for g in f.get(OBSERVABLES, {}).values() if isinstance(g, h5py.Group)]
    return groups


def _complete_length(f: h5py.File) -> int:
    """Frames present in every time series (a crash may leave one ahead)."""
    lengths = [
        g[name].shape[0]
        for g in _time_series_groups(f)
        for name in ("value", "step", "time")
        if name in g
    ]
    return min(lengths) if lengths else 0


def _trim_to_complete_frames(f: h5py.File) -> int:
    n = _complete_length(f)
    for group in _time_series_groups(f):
        for name in ("value", "step", "time"):
            if name in group and group[name].shape[0] != n:
                group[name].resize(n, axis=0)
    return n


def _write_metadata(f: h5py.File, metadata: Mapping[str, Any]) -> None:
    group = f.require_group(PARAMETERS)
    for key in list(group.attrs):
        del group.attrs[key]
    text = json.dumps(metadata, default=_jsonable, sort_keys=True)
    group.attrs[METADATA_ATTR] = text
    for key, value in json.loads(text).items():
        # Scalars also as plain attributes so h5ls/h5py users see them directly.
        if isinstance(value, (bool, int, float, str)):
            group.attrs[key] = value


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"metadata value {value!r} of type {type(value).__name__} is not JSON")


def _as_str(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _from_attr(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value
