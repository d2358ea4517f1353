"""FlashMD training pairs from NVE reference trajectories (FlashMD App B.3, App H).

A pair is a state (q, p) at τ and its target (q', p') at τ + Δτ, Δτ = ``stride_fs``, taken
from an H5MD trajectory that records momenta (``run_md`` with ``ensemble="nve"``). With
frames every δ fs the stride is k = Δτ / δ frames and every start frame gives one pair
(overlapping windows; App H takes 25 per trajectory, we take all of them). Each pair is
also added time-reversed, (q', −p') → (q, −p), which is an exact NVE pair too because
Hamiltonian dynamics is reversible (App B.3, following Zheng et al.).

Train, validation and test sets come from *separate* trajectories (the caller passes the
files of each split), as in App H. Units inside: Å, amu, fs, momenta amu·Å/fs (the files
store amu·Å/ps).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from ase.data import atomic_masses

from explorer.errors import AnalysisError
from explorer.h5md import read_h5md
from explorer.trajectory import Trajectory

__all__ = [
    "FS_PER_PS",
    "PairBatch",
    "StatePair",
    "collate",
    "load_pairs",
    "pairs_from_trajectory",
    "stride_in_frames",
    "target_scales",
]

FS_PER_PS = 1000.0


@dataclass(frozen=True)
class StatePair:
    """One training example; positions Å, momenta amu·Å/fs, masses amu, cell Å."""

    numbers: np.ndarray  # (N,)
    masses: np.ndarray  # (N,)
    cell: np.ndarray  # (3, 3)
    pbc: np.ndarray  # (3,)
    positions: np.ndarray  # (N, 3) at τ
    momenta: np.ndarray  # (N, 3) at τ
    next_positions: np.ndarray  # (N, 3) at τ + Δτ (unwrapped, continuous with positions)
    next_momenta: np.ndarray  # (N, 3) at τ + Δτ
    source: str = ""

    def reversed(self) -> StatePair:
        """The time-reversed pair (q', −p') → (q, −p)."""
        return StatePair(
            self.numbers,
            self.masses,
            self.cell,
            self.pbc,
            self.next_positions,
            -self.next_momenta,
            self.positions,
            -self.momenta,
            self.source + " (reversed)",
        )


@dataclass(frozen=True)
class PairBatch:
    """Pairs concatenated into one graph batch (torch tensors, units of :class:`StatePair`)."""

    numbers: torch.Tensor
    masses: torch.Tensor
    cell: torch.Tensor  # (B, 3, 3)
    pbc: torch.Tensor  # (B, 3)
    positions: torch.Tensor
    momenta: torch.Tensor
    next_positions: torch.Tensor
    next_momenta: torch.Tensor
    batch: torch.Tensor  # (N,)

    @property
    def num_structures(self) -> int:
        return int(self.cell.shape[0])

    def targets(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Mass-scaled targets (App A.2): Δq̃ = Δq √m (√amu·Å), p̃' = p' / √m (√amu·Å/fs)."""
        sqrt_m = torch.sqrt(self.masses).unsqueeze(-1)
        return (self.next_positions - self.positions) * sqrt_m, self.next_momenta / sqrt_m


def stride_in_frames(traj: Trajectory, stride_fs: float) -> int:
    """Frames per stride; the frame interval must divide the stride (to 1 %)."""
    interval_fs = traj.timestep_ps * FS_PER_PS
    k = round(stride_fs / interval_fs)
    if k < 1 or abs(k * interval_fs - stride_fs) > 0.01 * interval_fs:
        raise AnalysisError(
            f"stride {stride_fs:g} fs is not a whole number of frame intervals ({interval_fs:g} fs)"
        )
    return int(k)


def pairs_from_trajectory(
    traj: Trajectory, stride_fs: float, time_reversal: bool = True, name: str = ""
) -> list[StatePair]:
    """Every (frame i, frame i + k) pair of an NVE trajectory with momenta, plus reversals."""
    if traj.momenta is None:
        raise AnalysisError(
            f"{name or 'trajectory'} records no momenta; FlashMD needs NVE runs with momenta "
            "(run_md with ensemble='nve' records them)"
        )
    k = stride_in_frames(traj, stride_fs)
    if traj.n_frames <= k:
        raise AnalysisError(f"{name}: {traj.n_frames} frames hold no pair {k} frames apart")
    masses = atomic_masses[traj.numbers].astype(np.float64)
    momenta = traj.momenta / FS_PER_PS
    pairs = []
    for i in range(traj.n_frames - k):
        pair = StatePair(
            traj.numbers,
            masses,
            traj.cell,
            traj.pbc,
            traj.positions[i].astype(np.float64),
            momenta[i],
            traj.positions[i + k].astype(np.float64),
            momenta[i + k],
            f"{name}[{i}]",
        )
        pairs.append(pair)
        if time_reversal:
            pairs.append(pair.reversed())
    return pairs


def load_pairs(
    paths: Sequence[str | Path], stride_fs: float, time_reversal: bool = True
) -> list[StatePair]:
    """Pairs of every file (H5MD), in order."""
    pairs: list[StatePair] = []
    for path in paths:
        traj = read_h5md(path)
        pairs.extend(pairs_from_trajectory(traj, stride_fs, time_reversal, Path(path).name))
    if not pairs:
        raise AnalysisError("no FlashMD training pairs: give at least one trajectory")
    return pairs


def target_scales(
    pairs: Sequence[StatePair], free_flight_stride_fs: float | None = None
) -> tuple[float, float]:
    """(s_q, s_p): root-mean-square of Δq̃ and of p̃' over all atoms and components.

    The targets are vectors of zero mean (isotropy), so the RMS is their standard
    deviation (App B.1). With ``free_flight_stride_fs`` (Δτ in fs), the RMS of the
    residuals Δq̃ − p̃Δτ and p̃' − p̃ that a free-flight-baseline model predicts.
    """

    def targets(pair: StatePair) -> tuple[np.ndarray, np.ndarray]:
        sqrt_m = np.sqrt(pair.masses)[:, None]
        dq = (pair.next_positions - pair.positions) * sqrt_m
        pt = pair.next_momenta / sqrt_m
        if free_flight_stride_fs is not None:
            p_tilde = pair.momenta / sqrt_m
            dq, pt = dq - free_flight_stride_fs * p_tilde, pt - p_tilde
        return dq, pt

    per_pair = [targets(pair) for pair in pairs]
    dq = np.concatenate([q for q, _ in per_pair])
    pt = np.concatenate([p for _, p in per_pair])
    return float(np.sqrt(np.mean(dq**2))), float(np.sqrt(np.mean(pt**2)))


def collate(
    pairs: Sequence[StatePair],
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> PairBatch:
    """Concatenate pairs into one batched graph input on ``device``."""

    def cat(name: str) -> torch.Tensor:
        values = np.concatenate([getattr(p, name) for p in pairs])
        return torch.as_tensor(values, dtype=dtype, device=device)

    sizes = torch.tensor([len(p.numbers) for p in pairs], device=device)
    numbers = np.concatenate([p.numbers for p in pairs])
    return PairBatch(
        numbers=torch.as_tensor(numbers, dtype=torch.int64, device=device),
        masses=cat("masses"),
        cell=torch.as_tensor(np.stack([p.cell for p in pairs]), dtype=dtype, device=device),
        pbc=torch.as_tensor(np.stack([p.pbc for p in pairs]), dtype=torch.bool, device=device),
        positions=cat("positions"),
        momenta=cat("momenta"),
        next_positions=cat("next_positions"),
        next_momenta=cat("next_momenta"),
        batch=torch.repeat_interleave(torch.arange(len(pairs), device=device), sizes),
    )
