"""Training data for LiFlow: time-separated pairs of frames from reference MD.

LiFlow learns p(x(τ + Δτ) | x(τ), T) as a distribution of *displacements*
(seed 001 §II.1, §IV.1): from an unwrapped reference trajectory every pair of
frames (i, i + k) with k · frame interval = Δτ (1 ps) is a training example
(x0 = frame i, d = frame i+k − frame i). Pairs from the last
``validation_fraction`` of each trajectory form the validation set, so that
validation frames never overlap the training window of the same trajectory.

Sampling is composition-balanced (seed 001 supplement B): each pair is
weighted inversely to the number of pairs sharing its reduced composition, so
every material is drawn equally often whatever its trajectory lengths.
Units: Å, ps, K.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from ase import Atoms

from explorer.errors import AnalysisError
from explorer.h5md import read_h5md
from explorer.trajectory import Trajectory

DELTA_PS = 1.0  # the LiFlow time step Δτ (seed 001 §IV.1)


@dataclass(frozen=True)
class PairSource:
    """One trajectory prepared for pair sampling."""

    name: str
    numbers: np.ndarray  # (atoms,)
    cell: np.ndarray  # (3, 3) Å
    positions: np.ndarray  # (frames, atoms, 3) unwrapped Å, float32
    temperature_K: float
    lag_frames: int
    composition: str

    @property
    def n_pairs(self) -> int:
        return max(0, self.positions.shape[0] - self.lag_frames)


@dataclass(frozen=True)
class PairBatch:
    """Pairs collated into one batched graph input (torch tensors).

    ``positions`` (N, 3) are the frames at τ, ``displacements`` (N, 3) the
    unwrapped moves to τ + Δτ, ``batch`` (N,) the structure index, ``cell``
    (B, 3, 3), ``temperature_K`` (B,).
    """

    numbers: torch.Tensor
    positions: torch.Tensor
    displacements: torch.Tensor
    cell: torch.Tensor
    temperature_K: torch.Tensor
    batch: torch.Tensor

    def to(self, device: str | torch.device) -> PairBatch:
        return PairBatch(*(getattr(self, f).to(device) for f in self.__dataclass_fields__))


def lag_in_frames(traj: Trajectory, delta_ps: float = DELTA_PS) -> int:
    """Frames per Δτ; the frame interval must divide Δτ (to 1 % of a frame)."""
    dt = traj.timestep_ps
    lag = round(delta_ps / dt)
    if lag < 1 or abs(lag * dt - delta_ps) > 0.01 * dt:
        raise AnalysisError(f"Δτ = {delta_ps} ps is not a whole number of frames of {dt:.4g} ps")
    return int(lag)


def source_from_trajectory(
    traj: Trajectory, name: str, delta_ps: float = DELTA_PS, temperature_K: float | None = None
) -> PairSource:
    """Prepare one trajectory; T from the argument or ``metadata['temperature_K']``."""
    temperature = temperature_K if temperature_K is not None else traj.metadata.get("temperature_K")
    if temperature is None:
        raise AnalysisError(f"{name}: no temperature_K in the metadata; give it explicitly")
    lag = lag_in_frames(traj, delta_ps)
    if traj.n_frames <= lag:
        raise AnalysisError(f"{name}: {traj.n_frames} frames hold no pair {lag} frames apart")
    formula = Atoms(numbers=traj.numbers).get_chemical_formula(mode="hill", empirical=True)
    return PairSource(
        name=name,
        numbers=traj.numbers.copy(),
        cell=traj.cell.copy(),
        positions=traj.positions,
        temperature_K=float(temperature),
        lag_frames=lag,
        composition=formula,
    )


def load_sources(paths: Sequence[str | Path], delta_ps: float = DELTA_PS) -> list[PairSource]:
    """Read reference H5MD files into pair sources (names = file stems)."""
    return [source_from_trajectory(read_h5md(p), Path(p).stem, delta_ps) for p in paths]


@dataclass(frozen=True)
class PairIndex:
    """All (source, start frame) pairs of one split, with sampling weights."""

    source: np.ndarray  # (pairs,) index into the sources
    start: np.ndarray  # (pairs,) first frame of the pair
    weights: np.ndarray  # (pairs,) composition-balanced, summing to 1

    def __len__(self) -> int:
        return int(self.source.size)


def split_pairs(
    sources: Sequence[PairSource], validation_fraction: float = 0.1
) -> tuple[PairIndex, PairIndex]:
    """Training and validation pairs: the last fraction of each trajectory validates.

    The tail is at least two Δτ long (so it holds at least Δτ worth of pairs).
    A pair belongs to validation when both of its frames lie in the tail, and
    to training when both lie before it; pairs straddling the boundary are
    dropped so the two sets share no frame.
    """
    if not 0.0 <= validation_fraction < 1.0:
        raise AnalysisError(f"validation_fraction must be in [0, 1); got {validation_fraction}")
    train, valid = [], []
    for k, src in enumerate(sources):
        n = src.positions.shape[0]
        # The tail must hold at least one Δτ of pairs, or a 10 % tail of a 10 ps
        # run (exactly one Δτ) would hold no validation pair at all.
        tail = max(round(validation_fraction * n), 2 * src.lag_frames) if validation_fraction else 0
        boundary = n - min(tail, n)
        starts = np.arange(src.n_pairs)
        ends = starts + src.lag_frames
        train.append((k, starts[ends < boundary]))
        valid.append((k, starts[starts >= boundary]))
    return _index(train, sources), _index(valid, sources)


def _index(parts: list[tuple[int, np.ndarray]], sources: Sequence[PairSource]) -> PairIndex:
    source = np.concatenate([np.full(s.size, k) for k, s in parts]) if parts else np.zeros(0)
    start = np.concatenate([s for _, s in parts]) if parts else np.zeros(0)
    source, start = source.astype(np.int64), start.astype(np.int64)
    compositions = [sources[k].composition for k in source]
    counts = Counter(compositions)
    weights = np.array([1.0 / counts[c] for c in compositions])
    weights = weights / weights.sum() if weights.size else weights
    return PairIndex(source, start, weights)


def sample_batch(
    sources: Sequence[PairSource],
    index: PairIndex,
    batch_size: int,
    rng: np.random.Generator,
    dtype: torch.dtype = torch.float32,
) -> PairBatch:
    """Draw ``batch_size`` pairs (with replacement, composition-balanced) and collate."""
    if len(index) == 0:
        raise AnalysisError("no pairs to sample from (trajectories too short for Δτ?)")
    picks = rng.choice(len(index), size=batch_size, p=index.weights)
    return collate(sources, [(int(index.source[p]), int(index.start[p])) for p in picks], dtype)


def collate(
    sources: Sequence[PairSource], pairs: Sequence[tuple[int, int]], dtype: torch.dtype
) -> PairBatch:
    """Concatenate pairs (source index, start frame) into one batched graph input."""
    numbers, positions, displacements, cells, temps, batch = [], [], [], [], [], []
    for b, (k, start) in enumerate(pairs):
        src = sources[k]
        x0 = src.positions[start].astype(np.float64)
        x1 = src.positions[start + src.lag_frames].astype(np.float64)
        numbers.append(src.numbers)
        positions.append(x0)
        displacements.append(x1 - x0)
        cells.append(src.cell)
        temps.append(src.temperature_K)
        batch.append(np.full(len(src.numbers), b))
    return PairBatch(
        numbers=torch.as_tensor(np.concatenate(numbers), dtype=torch.int64),
        positions=torch.as_tensor(np.concatenate(positions), dtype=dtype),
        displacements=torch.as_tensor(np.concatenate(displacements), dtype=dtype),
        cell=torch.as_tensor(np.stack(cells), dtype=dtype),
        temperature_K=torch.as_tensor(temps, dtype=dtype),
        batch=torch.as_tensor(np.concatenate(batch), dtype=torch.int64),
    )
