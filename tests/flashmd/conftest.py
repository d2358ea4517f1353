"""Shared fixtures of the FlashMD tests: a small LJ argon system and exact reference data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms, units
from ase.build import bulk
from ase.md.velocitydistribution import Stationary, thermalize_momenta
from ase.md.verlet import VelocityVerlet
from torch import nn

from explorer.flashmd.model import FlashMDConfig
from explorer.flashmd.systems import argon_calculator
from explorer.flashmd.train import TrainConfig, train
from explorer.h5md import write_h5md
from explorer.trajectory import Trajectory


def small_argon(seed: int = 0, temperature_K: float = 94.4) -> Atoms:
    """32 argon atoms (fcc 2×2×2 at ρ* = 0.8442, rattled) with MB momenta, LJ attached."""
    a = (32 / 0.8442) ** (1 / 3) * 3.4 / 2
    atoms = bulk("Ar", "fcc", a=a, cubic=True).repeat((2, 2, 2))
    atoms.rattle(0.05, seed=seed)
    thermalize_momenta(atoms, temperature_K=temperature_K, rng=np.random.default_rng(seed))
    Stationary(atoms)
    atoms.calc = argon_calculator()
    return atoms


class VerletStub(nn.Module):
    """A stand-in "FlashMD model" that is exact physics: ``substeps`` velocity-Verlet
    steps of 1 fs with the argon LJ potential, in the model's predict() interface. The
    integrators must then reproduce ASE's VelocityVerlet; an independent reference."""

    def __init__(self, substeps: int, kick: float = 1.0) -> None:
        super().__init__()
        self.config = FlashMDConfig(elements=(18,), stride_fs=float(substeps))
        self.substeps = substeps
        self.kick = kick  # > 1 injects energy: an imperfect model for the filter tests
        self.dummy = nn.Parameter(torch.zeros(1, dtype=torch.float64))

    def predict(self, numbers, positions, momenta, masses, cell, batch=None, pbc=None,
                constrain=True):  # fmt: skip
        atoms = Atoms(numbers.numpy(), positions.numpy(), cell=cell.numpy(), pbc=pbc.numpy())
        atoms.set_momenta(momenta.numpy() / units.fs)
        atoms.calc = argon_calculator()
        VelocityVerlet(atoms, timestep=1.0 * units.fs).run(self.substeps)
        dq = atoms.positions - positions.numpy()
        p_new = atoms.get_momenta() * units.fs * self.kick
        return torch.as_tensor(dq), torch.as_tensor(p_new)


@pytest.fixture
def verlet_stub() -> type[VerletStub]:
    return VerletStub


@pytest.fixture
def argon32() -> Atoms:
    return small_argon()


def nve_trajectory(path: Path, n_frames: int = 12, every: int = 4, seed: int = 0) -> Path:
    """A small NVE reference trajectory (1 fs VV, frame every ``every`` fs) as H5MD."""
    atoms = small_argon(seed)
    dyn = VelocityVerlet(atoms, timestep=1.0 * units.fs)
    positions, momenta = [], []
    for _ in range(n_frames):
        positions.append(atoms.positions.copy())
        momenta.append(atoms.get_momenta() * 1000.0 * units.fs)  # amu·Å/ps
        dyn.run(every)
    traj = Trajectory(
        positions=np.array(positions),
        cell=atoms.cell[:],
        numbers=atoms.numbers,
        times_ps=np.arange(n_frames) * every * 1e-3,
        momenta=np.array(momenta),
        metadata={"temperature_K": 94.4},
    )
    return write_h5md(traj, path)


@pytest.fixture
def argon_files(tmp_path: Path) -> dict[str, Path]:
    """Tiny train / val trajectories (separate runs), frames every 4 fs."""
    return {
        "train": nve_trajectory(tmp_path / "train.h5", n_frames=14, seed=1),
        "val": nve_trajectory(tmp_path / "val.h5", n_frames=8, seed=2),
    }


SMALL = FlashMDConfig(elements=(18,), stride_fs=8.0, num_features=8, num_rbf=6, num_layers=1,
                      cutoff=5.0)  # fmt: skip


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> dict:
    """A tiny run (30 steps) on tiny data; the checkpoint and its history."""
    root = tmp_path_factory.mktemp("flashmd_train")
    files = {
        "train": nve_trajectory(root / "train.h5", n_frames=14, seed=1),
        "val": nve_trajectory(root / "val.h5", n_frames=8, seed=2),
    }
    config = TrainConfig(model=SMALL, batch_size=2, lr=3e-3, max_steps=30, eval_every=15,
                         decay_every=20, energy_structures=2, seed=0)  # fmt: skip
    result = train([files["train"]], [files["val"]], config, out_name="flashmd_tiny",
                   out_dir=root, progress=False)  # fmt: skip
    return {"root": root, "files": files, "config": config, "result": result}
