"""Trajectory container, H5MD files (read by h5py/MDAnalysis too) and extxyz."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from ase import Atoms

from explorer.errors import TrajectoryError, TrajectoryFileError
from explorer.h5md import H5MDWriter, h5md_frame_count, read_h5md, repack_h5md, write_h5md
from explorer.trajectory import (
    Trajectory,
    load_trajectory,
    unwrap_positions,
    wrap_positions,
)

CELL = np.array([[6.0, 0.0, 0.0], [1.5, 5.5, 0.0], [-0.7, 1.2, 7.0]])


def random_trajectory(rng: np.random.Generator, frames: int = 5, atoms: int = 7) -> Trajectory:
    steps = rng.normal(scale=0.8, size=(frames, atoms, 3))
    start = rng.uniform(size=(atoms, 3)) @ CELL
    return Trajectory(
        positions=start + np.cumsum(steps, axis=0),
        cell=CELL,
        numbers=rng.choice([3, 15, 16], size=atoms),
        times_ps=0.5 * np.arange(frames),
        velocities=rng.normal(size=(frames, atoms, 3)),
        energies={"potential_energy": rng.normal(size=frames)},
        metadata={"producer": "test", "temperature_K": 800.0, "supercell": [2, 1, 1]},
    )


def test_shapes_are_checked():
    with pytest.raises(TrajectoryError, match="numbers"):
        Trajectory(np.zeros((2, 3, 3)), CELL, [1, 1], [0.0, 1.0])
    with pytest.raises(TrajectoryError, match="times_ps"):
        Trajectory(np.zeros((2, 3, 3)), CELL, [1, 1, 1], [0.0])
    with pytest.raises(TrajectoryError, match="increase"):
        Trajectory(np.zeros((2, 3, 3)), CELL, [1, 1, 1], [1.0, 1.0])


def test_positions_are_float32_and_slicing_keeps_everything():
    traj = random_trajectory(np.random.default_rng(0))
    assert traj.positions.dtype == np.float32
    part = traj[1:4]
    assert part.n_frames == 3
    np.testing.assert_array_equal(part.times_ps, traj.times_ps[1:4])
    np.testing.assert_array_equal(part.velocities, traj.velocities[1:4])
    assert traj[-1].n_frames == 1 and traj[-1].times_ps[0] == traj.times_ps[-1]


def test_wrap_then_unwrap_recovers_small_steps():
    rng = np.random.default_rng(1)
    traj = random_trajectory(rng, frames=20)
    wrapped = wrap_positions(traj.positions.astype(float), CELL)
    frac = wrapped @ np.linalg.inv(CELL)
    assert frac.min() >= 0 and frac.max() < 1
    unwrapped = unwrap_positions(wrapped, CELL)
    # Same start, then identical displacements: the unwrapped path is restored.
    np.testing.assert_allclose(
        unwrapped - unwrapped[0], traj.positions - traj.positions[0], atol=1e-4
    )


def test_unwrap_without_periodicity_keeps_positions_even_without_a_cell():
    positions = np.random.default_rng(3).normal(scale=20.0, size=(4, 5, 3))
    back = unwrap_positions(positions, np.zeros((3, 3)), pbc=False)
    np.testing.assert_array_equal(back, positions)
    assert back is not positions


def test_h5md_round_trip(tmp_path):
    traj = random_trajectory(np.random.default_rng(2))
    path = write_h5md(traj, tmp_path / "t.h5")
    back = read_h5md(path)
    np.testing.assert_array_equal(back.positions, traj.positions)
    np.testing.assert_allclose(back.cell, traj.cell)
    np.testing.assert_array_equal(back.numbers, traj.numbers)
    np.testing.assert_allclose(back.times_ps, traj.times_ps)
    np.testing.assert_allclose(back.velocities, traj.velocities)
    np.testing.assert_allclose(back.energies["potential_energy"], traj.energies["potential_energy"])
    assert back.metadata == traj.metadata
    assert h5md_frame_count(path) == traj.n_frames


def test_h5md_layout_readable_with_plain_h5py(tmp_path):
    traj = random_trajectory(np.random.default_rng(3))
    path = traj.save(tmp_path / "t.h5md")
    with h5py.File(path, "r") as f:
        assert tuple(f["h5md"].attrs["version"]) == (1, 1)
        value = f["particles/all/position/value"]
        assert value.dtype == np.float32 and value.shape == (traj.n_frames, traj.n_atoms, 3)
        assert f["particles/all/position/time"].attrs["unit"] == "ps"
        np.testing.assert_allclose(f["particles/all/box/edges/value"][0], CELL)
        np.testing.assert_array_equal(f["particles/all/species"][()], traj.numbers)
        assert f["parameters"].attrs["temperature_K"] == 800.0


def test_h5md_readable_with_mdanalysis(tmp_path):
    mda = pytest.importorskip("MDAnalysis")
    from MDAnalysis.coordinates.H5MD import H5MDReader
    from MDAnalysis.lib.mdamath import triclinic_vectors

    traj = random_trajectory(np.random.default_rng(4))
    path = traj.save(tmp_path / "t.h5md")
    reader = H5MDReader(str(path))
    assert reader.n_frames == traj.n_frames
    for i, ts in enumerate(reader):
        np.testing.assert_allclose(ts.positions, traj.positions[i], atol=1e-5)
        np.testing.assert_allclose(ts.time, traj.times_ps[i])
        np.testing.assert_allclose(triclinic_vectors(ts.dimensions), CELL, atol=1e-4)
    universe = mda.Universe.empty(traj.n_atoms, trajectory=True)
    universe.load_new(str(path), format="H5MD")
    assert universe.trajectory.n_frames == traj.n_frames


def test_streaming_append_and_resume(tmp_path):
    traj = random_trajectory(np.random.default_rng(5), frames=6)
    path = tmp_path / "stream.h5"
    with H5MDWriter(path, traj.numbers, traj.cell, metadata={"run": 1}) as writer:
        for i in range(3):
            writer.append(traj.positions[i], traj.times_ps[i], energies={"e": float(i)})
            # Each appended frame is on disk before the next one is produced.
            assert h5md_frame_count(path) == i + 1
    with H5MDWriter(path, traj.numbers, traj.cell, mode="a", metadata={"resumed": True}) as w:
        assert w.n_frames == 3
        for i in range(3, 6):
            w.append(traj.positions[i], traj.times_ps[i], energies={"e": float(i)})
    back = read_h5md(path)
    np.testing.assert_array_equal(back.positions, traj.positions)
    np.testing.assert_allclose(back.energies["e"], np.arange(6.0))
    assert back.metadata == {"run": 1, "resumed": True}


def test_expected_frames_size_the_chunks_and_a_longer_run_still_appends(tmp_path):
    """A known run length gives one chunk per series (no partly empty chunk on disk);
    appending past it (a resumed run made longer) still works."""
    traj = random_trajectory(np.random.default_rng(6), frames=7)
    path = tmp_path / "sized.h5"
    with H5MDWriter(path, traj.numbers, traj.cell, expected_frames=5) as writer:
        for i in range(7):
            writer.append(traj.positions[i], traj.times_ps[i], momenta=traj.positions[i],
                          energies={"e": float(i)})  # fmt: skip
    with h5py.File(path, "r") as f:
        n_atoms = len(traj.numbers)
        assert f["particles/all/position/value"].chunks == (5, n_atoms, 3)
        assert f["particles/all/momentum/value"].dtype == np.float32
        assert f["particles/all/position/time"].chunks == (5,)
        assert f["observables/e/value"].chunks == (5,)
    back = read_h5md(path)
    np.testing.assert_array_equal(back.positions, traj.positions)
    np.testing.assert_allclose(back.momenta, traj.positions, rtol=1e-6)
    with H5MDWriter(tmp_path / "default.h5", traj.numbers, traj.cell) as writer:
        writer.append(traj.positions[0], 0.0)
    with h5py.File(tmp_path / "default.h5", "r") as f:
        assert f["particles/all/position/value"].chunks[0] == 64


def test_repack_is_lossless_shrinks_short_runs_and_stays_appendable(tmp_path):
    traj = random_trajectory(np.random.default_rng(8), frames=9, atoms=40)
    path = tmp_path / "default_chunks.h5"
    with H5MDWriter(path, traj.numbers, traj.cell, metadata={"run": 7}) as writer:
        for i in range(9):
            writer.append(traj.positions[i], traj.times_ps[i], energies={"e": float(i)},
                          momenta=traj.velocities[i])  # fmt: skip
    packed = repack_h5md(path, tmp_path / "packed.h5")
    assert packed.stat().st_size < 0.5 * path.stat().st_size

    def contents(file: h5py.File) -> dict:
        out = {"/": dict(file.attrs)}
        file.visititems(lambda name, obj: out.__setitem__(
            name, (obj[()], obj.dtype, obj.maxshape, dict(obj.attrs))
            if isinstance(obj, h5py.Dataset) else dict(obj.attrs)))  # fmt: skip
        return out

    with h5py.File(path, "r") as a, h5py.File(packed, "r") as b:
        before, after = contents(a), contents(b)
        assert b["particles/all/position/value"].chunks == (9, 40, 3)
        assert b["particles/all/position/time"].chunks == (9,)
    assert before.keys() == after.keys()
    for key, value in before.items():
        if isinstance(value, tuple):
            np.testing.assert_array_equal(after[key][0], value[0])
            assert after[key][1:3] == value[1:3]
            assert repr(sorted(after[key][3].items())) == repr(sorted(value[3].items()))
        else:
            assert repr(sorted(after[key].items())) == repr(sorted(value.items()))
    back = read_h5md(packed)
    np.testing.assert_array_equal(back.positions, traj.positions)
    assert back.metadata == {"run": 7}
    with H5MDWriter(packed, traj.numbers, traj.cell, mode="a") as writer:
        writer.append(traj.positions[-1] + 1.0, traj.times_ps[-1] + 1.0, energies={"e": 9.0},
                      momenta=traj.velocities[-1])  # fmt: skip
    assert h5md_frame_count(packed) == 10
    with pytest.raises(TrajectoryFileError, match="not over the source"):
        repack_h5md(path, path)


def test_resume_drops_a_partially_written_frame(tmp_path):
    traj = random_trajectory(np.random.default_rng(6), frames=4)
    path = write_h5md(traj[:3], tmp_path / "t.h5")
    with h5py.File(path, "r+") as f:  # a crash between the position and time writes
        f["particles/all/position/value"].resize(4, axis=0)
    assert read_h5md(path).n_frames == 3
    with H5MDWriter(path, traj.numbers, traj.cell, mode="a") as writer:
        assert writer.n_frames == 3
        writer.append(
            traj.positions[3],
            traj.times_ps[3],
            velocities=traj.velocities[3],
            energies={"potential_energy": 0.0},
        )
    assert read_h5md(path).n_frames == 4


def test_resume_refuses_other_atoms(tmp_path):
    traj = random_trajectory(np.random.default_rng(7))
    path = write_h5md(traj, tmp_path / "t.h5")
    with pytest.raises(TrajectoryFileError, match="different atoms"):
        H5MDWriter(path, traj.numbers[::-1] + 1, traj.cell, mode="a")


def test_nonfinite_frames_are_refused(tmp_path):
    writer = H5MDWriter(tmp_path / "t.h5", [1, 1], CELL)
    with pytest.raises(TrajectoryError, match="not finite"):
        writer.append(np.array([[0, 0, 0], [np.nan, 0, 0]]), 0.0)
    writer.close()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        (b"", "not a readable"),
        (b"garbage, not HDF5" * 10, "not a readable"),
    ],
)
def test_bad_files_raise_clear_errors(tmp_path, content, message):
    path = tmp_path / "bad.h5"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(TrajectoryFileError, match=message):
        read_h5md(path)


def test_truncated_file_raises(tmp_path):
    traj = random_trajectory(np.random.default_rng(8), frames=50, atoms=50)
    path = write_h5md(traj, tmp_path / "t.h5")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(TrajectoryFileError, match="truncated"):
        read_h5md(path)


def test_foreign_hdf5_raises(tmp_path):
    path = tmp_path / "foreign.h5"
    with h5py.File(path, "w") as f:
        f["data"] = np.arange(3)
    with pytest.raises(TrajectoryFileError, match="not an H5MD"):
        read_h5md(path)


def test_extxyz_export_and_atoms_list(tmp_path):
    traj = random_trajectory(np.random.default_rng(9))
    frames = traj.to_atoms_list()
    assert all(isinstance(a, Atoms) for a in frames)
    np.testing.assert_allclose(frames[2].positions, traj.positions[2], atol=1e-6)
    path = traj.save(tmp_path / "t.extxyz")
    back = load_trajectory(path)
    np.testing.assert_allclose(back.times_ps, traj.times_ps)
    np.testing.assert_allclose(back.positions, traj.positions, atol=1e-4)
    np.testing.assert_allclose(back.velocities, traj.velocities, atol=1e-6)
    wrapped = Trajectory.from_atoms_list(traj.to_atoms_list(wrap=True), unwrap=True)
    np.testing.assert_allclose(
        wrapped.positions - wrapped.positions[0], traj.positions - traj.positions[0], atol=1e-4
    )


def test_resume_of_a_file_without_frames_starts_afresh(tmp_path):
    path = tmp_path / "empty.h5"
    H5MDWriter(path, [1, 1], CELL).close()
    with pytest.raises(TrajectoryFileError, match="no complete frame"):
        read_h5md(path)
    with H5MDWriter(path, [1, 1], CELL, mode="a") as writer:
        assert writer.n_frames == 0
        writer.append(np.zeros((2, 3)), 0.0)
    assert read_h5md(path).n_frames == 1


def test_resume_never_overwrites_a_foreign_file(tmp_path):
    path = tmp_path / "foreign.h5"
    with h5py.File(path, "w") as f:
        f["data"] = np.arange(3)
    with pytest.raises(TrajectoryFileError, match="not overwriting"):
        H5MDWriter(path, [1, 1], CELL, mode="a")


def test_restart_state_round_trip_and_truncate(tmp_path):
    from explorer.h5md import read_restart

    traj = random_trajectory(np.random.default_rng(10), frames=5)
    path = tmp_path / "run.h5"
    with H5MDWriter(path, traj.numbers, traj.cell) as writer:
        for i in range(3):
            writer.append(traj.positions[i], traj.times_ps[i])
        momenta = np.random.default_rng(0).normal(size=(traj.n_atoms, 3))
        writer.write_restart({"momenta": momenta, "step": 30, "thermostat": "nhc"})
        writer.append(traj.positions[3], traj.times_ps[3])
    state = read_restart(path)
    assert state["n_frames"] == 3 and state["step"] == 30 and state["thermostat"] == "nhc"
    np.testing.assert_array_equal(state["momenta"], momenta)
    with H5MDWriter(path, traj.numbers, traj.cell, mode="a") as writer:
        writer.truncate(state["n_frames"])
    assert read_restart(write_h5md(traj, tmp_path / "plain.h5")) is None
    assert read_h5md(path).n_frames == 3


def test_a_file_can_be_read_while_it_is_being_written(tmp_path):
    traj = random_trajectory(np.random.default_rng(11), frames=4)
    path = tmp_path / "live.h5"
    with H5MDWriter(path, traj.numbers, traj.cell) as writer:
        for i in range(4):
            writer.append(traj.positions[i], traj.times_ps[i])
            live = read_h5md(path)  # the writer still holds the file open
            assert live.n_frames == i + 1
            np.testing.assert_array_equal(live.positions, traj.positions[: i + 1])
