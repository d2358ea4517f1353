"""Benchmark of explorer.neighbors backends against ASE's neighbour list (not a test).

Usage::

    .venv/bin/python bench/bench_neighbors.py [--sizes 100 400 1600 6400] [--cutoff 5]

Systems: random positions in mildly triclinic cells at 0.05 atoms/Å³ (a typical density of
Li-ion conductors), cutoff 5 Å (LiFlow's radius). Times are medians of several runs, in
seconds, of the full ``radius_graph`` call (validation, search, sort, differentiable
vectors) on float64 tensors; the ASE baseline (``primitive_neighbor_list("ijS")`` on NumPy
arrays) is measured in the same run and ratios are ``ASE time / backend time`` (> 1 is
faster than ASE). Set ``OMP_NUM_THREADS=1`` for a single-core comparison (ASE is
single-threaded; vesin and torch use every core by default). "vesin raw" is the bare
``vesin_torch`` call, to show our overhead. A batch of 64 × 100-atom structures (a training
batch) is timed too; with CUDA, also on GPU.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from ase.neighborlist import primitive_neighbor_list

from explorer.neighbors import radius_graph

DENSITY = 0.05  # atoms / Å³


def random_system(n_atoms: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random positions (n, 3) in a mildly triclinic cell (3, 3) of the given density, Å."""
    length = (n_atoms / DENSITY) ** (1.0 / 3.0)
    cell = np.diag([length] * 3) + 0.15 * length * rng.uniform(-1, 1, size=(3, 3))
    cell *= (n_atoms / DENSITY / abs(np.linalg.det(cell))) ** (1.0 / 3.0)  # keep the density
    return rng.random((n_atoms, 3)) @ cell, cell


def median_time(func: Callable[[], object], sync: bool, budget_s: float = 1.0) -> float:
    """Median wall time of ``func`` in s: a warm-up, then up to 20 runs within ``budget_s``.

    A call slower than the budget is timed once more only (the 6400-atom dense search).
    """
    times: list[float] = []
    for _ in range(21):
        if sync:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        func()
        if sync:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
        spent = sum(times[1:])
        if len(times) > 1 and (spent > budget_s or (len(times) > 3 and spent > budget_s / 2)):
            break
    return statistics.median(times[1:])


def bench_single(n_atoms: int, cutoff: float, devices: list[str], rng: np.random.Generator) -> None:
    positions, cell = random_system(n_atoms, rng)
    pbc = np.array([True, True, True])
    n_ref = len(primitive_neighbor_list("i", pbc, cell, positions, cutoff))
    t_ase = median_time(lambda: primitive_neighbor_list("ijS", pbc, cell, positions, cutoff), False)
    print(f"N={n_atoms:6d}  edges={n_ref:8d}  ase            {t_ase:9.4f} s   1.00x")
    for device in devices:
        pos_t = torch.tensor(positions, device=device)
        cell_t = torch.tensor(cell, device=device)
        sync = device == "cuda"
        for backend in ("vesin", "torch"):
            graph = radius_graph(pos_t, cell_t, cutoff, backend=backend)
            assert graph.num_edges == n_ref, (backend, graph.num_edges, n_ref)
            t = median_time(
                lambda b=backend, p=pos_t, c=cell_t: radius_graph(p, c, cutoff, backend=b), sync
            )
            label = f"{backend} ({device}, {graph.backend})"
            print(f"{'':29s}{label:28s} {t:9.4f} s  {t_ase / t:6.2f}x")
        if device == "cpu":
            from vesin_torch import NeighborList

            calc = NeighborList(cutoff=cutoff, full_list=True)
            pbc_t = torch.tensor(pbc)
            t = median_time(
                lambda f=calc.compute, p=pos_t, c=cell_t, k=pbc_t: f(p, c, k, "ijS"), False
            )
            print(f"{'':29s}{'vesin raw (cpu)':28s} {t:9.4f} s  {t_ase / t:6.2f}x")


def bench_batch(n_structures: int, n_atoms: int, cutoff: float, devices: list[str]) -> None:
    rng = np.random.default_rng(1)
    systems = [random_system(n_atoms, rng) for _ in range(n_structures)]
    positions = np.concatenate([p for p, _ in systems])
    cells = np.stack([c for _, c in systems])
    pbc = np.array([True, True, True])

    def ase_all() -> None:
        for pos, cell in systems:
            primitive_neighbor_list("ijS", pbc, cell, pos, cutoff)

    t_ase = median_time(ase_all, False)
    print(f"batch {n_structures} x {n_atoms} atoms      ase (loop)     {t_ase:9.4f} s   1.00x")
    batch = torch.repeat_interleave(torch.arange(n_structures), n_atoms)
    for device in devices:
        pos_t, cell_t = torch.tensor(positions, device=device), torch.tensor(cells, device=device)
        batch_t = batch.to(device)
        for backend in ("vesin", "torch"):
            t = median_time(
                lambda b=backend, p=pos_t, c=cell_t, i=batch_t: radius_graph(
                    p, c, cutoff, batch=i, backend=b
                ),
                device == "cuda",
            )
            label = f"{backend} ({device})"
            print(f"{'':29s}{label:28s} {t:9.4f} s  {t_ase / t:6.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 400, 1600, 6400])
    parser.add_argument("--cutoff", type=float, default=5.0, help="radius in Å")
    parser.add_argument("--cpu-only", action="store_true", help="skip CUDA even if available")
    args = parser.parse_args()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() and not args.cpu_only else [])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, devices {devices}")
    print(f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '(unset)')}")
    if "cuda" in devices:
        print(f"GPU: {torch.cuda.get_device_name()}")
    rng = np.random.default_rng(0)
    for n_atoms in args.sizes:
        bench_single(n_atoms, args.cutoff, devices, rng)
    bench_batch(64, 100, args.cutoff, devices)


if __name__ == "__main__":
    main()
