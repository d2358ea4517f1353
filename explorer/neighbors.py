"""Periodic radius graphs on torch tensors, for batches of structures (CPU and CUDA).

Convention (identical for every backend)
----------------------------------------
An edge ``e`` is a triple ``(i, j, S)``:

* ``i = edge_index[0, e]`` is the centre atom and ``j = edge_index[1, e]`` the neighbour,
  both global indices into the batched ``positions`` (N, 3);
* ``S = cell_shifts[e]`` (int64, 3) is the lattice translation, in units of the cell
  vectors (rows of the 3×3 cell), that brings the periodic image of ``j`` next to ``i``;
* ``vectors[e] = positions[j] − positions[i] + S @ cell[batch[i]]`` (Å), and
  ``distances[e] = |vectors[e]|`` with ``0 < distance < cutoff`` (strict).

The list is *full*: ``(j, i, −S)`` is present whenever ``(i, j, S)`` is. An atom is never
its own neighbour, except a periodic image of itself (``i == j`` with ``S ≠ 0``), which
happens in cells smaller than the cutoff. ``S`` is zero along non-periodic directions.
Every image within the cutoff is listed, so cutoffs larger than half the cell (or than the
whole cell) are handled. Positions need not be wrapped into the cell: ``S`` refers to the
positions as given. Edges are sorted by ``i``, then ``j``, then ``S`` (lexicographically),
so backends agree exactly, not only as sets.

Pairs are *found* without autograd (in float64); ``vectors`` and ``distances`` are then
recomputed with torch ops from ``positions``, ``cell``, the indices and the shifts, so they
are differentiable with respect to positions and cell whichever backend found the pairs.
A pair whose float64 distance is just below the cutoff can have a float32 distance that
rounds to the cutoff; such edges are kept.

Backends
--------
``"torch"``
    Pure torch, dense over the periodic images that can matter: along periodic axis k,
    ``n_k = ceil(cutoff / w_k)`` images on each side, with ``w_k = V / |a_i × a_j|`` the
    perpendicular width of the cell (positions are wrapped first, so this bound is exact
    for triclinic cells and any cutoff). Distances are screened with one batched matmul in
    float32 with a rigorous rounding margin and then confirmed in float64. Work is O(N² ·
    images) per structure, chunked to bound memory; structures of a batch are processed
    together (padded), so many small structures cost few kernel launches.
``"vesin"``
    ``vesin_torch.NeighborList`` (a cell list in C++/CUDA), called once per structure. On
    CPU it handles every case above (checked against ASE in the tests: triclinic, cutoff
    larger than the cell, mixed pbc, unwrapped positions). On CUDA vesin documents limits
    (cutoff at most half the cell for its brute-force kernel, a per-atom pair cap, and a
    reported partial-pbc bug, Luthaf/vesin#153), so there it is used only for fully periodic
    structures with ``cutoff ≤ min width / 2``; other structures, and any structure vesin
    refuses with an error, go to the torch backend instead of returning a wrong graph.
``"auto"``
    vesin on CPU, torch on CUDA.

Measured with ``OMP_NUM_THREADS=1 bench/bench_neighbors.py`` (one core of a shared 2-core
CPU, torch 2.13, vesin 0.6.2; random positions in triclinic cells at 0.05 atoms/Å³,
cutoff 5 Å; full ``radius_graph`` call in float64; median seconds, × = ASE time / time):

==============  ===========  ===============  ===============  =====================
N atoms         ASE          vesin            torch            bare vesin_torch call
==============  ===========  ===============  ===============  =====================
100             0.018        0.0021 (8.5×)    0.0049 (3.7×)    0.0004
400             0.053        0.0047 (11×)     0.025 (2.2×)     0.0015
1600            0.149        0.016 (9.3×)     0.41 (0.36×)     0.0055
6400            0.578        0.062 (9.3×)     6.2 (0.09×)      0.019
64 × 100 batch  1.45         0.13 (11×)       0.31 (4.7×)      –
==============  ===========  ===============  ===============  =====================

vesin is the fastest correct backend on CPU at every size (and the dense torch search
grows as N²), hence ``auto`` → vesin there. With two threads on that machine (busy with
other jobs) every time was 2–20× slower and noisier, the wrapper's small torch ops worst
(vesin 1.2–5× faster than ASE, torch 0.14–1.3×), but vesin still ranked first.
No GPU was available when this was written, so the CUDA choice (torch: exact by
construction, its cost O(N² · images) per structure) is not backed by a measurement; run
the bench on a GPU machine before changing it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from explorer.errors import NeighborListError

if TYPE_CHECKING:
    from ase import Atoms

__all__ = [
    "BACKENDS",
    "PeriodicGraph",
    "edge_vectors",
    "radius_graph",
    "radius_graph_from_atoms",
    "reverse_edges",
]

#: Names accepted by ``radius_graph(backend=...)``.
BACKENDS = ("auto", "torch", "vesin")

#: Candidate (atom, atom, image) triples screened at once by the torch backend; bounds its
#: transient memory to roughly 6 bytes per candidate (~100 MB).
CANDIDATE_BUDGET = 1 << 24

#: The torch backend refuses structures needing more periodic images than this (a cell that
#: is extremely thin compared with the cutoff would otherwise exhaust memory).
MAX_IMAGES = 1_000_000

# Periodic cell vectors whose normalised volume |det| / (|a||b||c|) is below this are
# treated as linearly dependent (angle between them below ~1e-9 rad).
_SINGULAR_TOLERANCE = 1e-9

# Relative rounding margin of the float32 screening of squared distances. The expansion
# |x|² + |y|² − 2 x·y in float32 errs by at most ~10 ε (|x| + |y|)²; 64 ε is safe.
_SCREEN_MARGIN = 64 * float(torch.finfo(torch.float32).eps)


@dataclass(frozen=True)
class PeriodicGraph:
    """A full periodic neighbour list of a batch of structures (see module docstring).

    Attributes:
        edge_index: (2, E) int64; row 0 the centre atom i, row 1 the neighbour j.
        cell_shifts: (E, 3) int64 lattice translations S (units of the cell vectors).
        vectors: (E, 3) ``r_j − r_i + S @ cell`` in Å, dtype of the positions.
        distances: (E,) |vectors| in Å.
        batch: (N,) int64 structure index of every atom.
        cutoff: the radius used, in Å.
        backend: which backend found the pairs (``"torch"``, ``"vesin"`` or
            ``"vesin+torch"`` when some structures fell back to torch).
    """

    edge_index: torch.Tensor
    cell_shifts: torch.Tensor
    vectors: torch.Tensor
    distances: torch.Tensor
    batch: torch.Tensor
    cutoff: float
    backend: str

    @property
    def num_edges(self) -> int:
        """Number of (directed) edges E."""
        return int(self.edge_index.shape[1])

    @property
    def num_nodes(self) -> int:
        """Number of atoms N in the batch."""
        return int(self.batch.shape[0])

    @property
    def edge_batch(self) -> torch.Tensor:
        """(E,) structure index of every edge (that of its centre atom)."""
        return self.batch[self.edge_index[0]]


# --------------------------------------------------------------------------- public API


def radius_graph(
    positions: torch.Tensor,
    cell: torch.Tensor,
    cutoff: float,
    batch: torch.Tensor | None = None,
    pbc: torch.Tensor | Sequence[bool] | np.ndarray | None = None,
    backend: str = "auto",
) -> PeriodicGraph:
    """Build the periodic radius graph of a batch of structures.

    Args:
        positions: (N, 3) Cartesian positions in Å (float32 or float64); the graph is built
            on their device and its tensors live there.
        cell: (3, 3) cell shared by all structures, or (B, 3, 3) one per structure; rows are
            the lattice vectors in Å. Cast to the dtype and device of ``positions``.
            Vectors along non-periodic directions are ignored and may be zero.
        cutoff: radius in Å (> 0); pairs with distance strictly below it are edges.
        batch: (N,) integer structure index of each atom, sorted (as in PyG). ``None``
            means a single structure.
        pbc: (3,) or (B, 3) booleans, periodicity along each cell vector; default all
            periodic. Non-periodic directions get no images.
        backend: ``"auto"``, ``"torch"`` or ``"vesin"`` (see module docstring).

    Returns:
        The :class:`PeriodicGraph`, edges sorted by (i, j, S).

    Raises:
        NeighborListError: non-positive or non-finite cutoff, bad shapes or dtypes,
            non-finite positions, unsorted or out-of-range ``batch``, a singular cell
            along periodic directions, or an unknown backend.
    """
    cutoff = _check_cutoff(cutoff)
    if backend not in BACKENDS:
        raise NeighborListError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
    positions = _check_positions(positions)
    device = positions.device
    batch, num_structures = _check_batch(batch, positions, cell)
    cell = _check_cell(cell, num_structures, positions)
    pbc_t = _check_pbc(pbc, num_structures, device)

    counts = torch.bincount(batch, minlength=num_structures)
    ptr = torch.zeros(num_structures + 1, dtype=torch.int64, device=device)
    ptr[1:] = torch.cumsum(counts, 0)

    with torch.no_grad():
        pos64 = positions.detach().to(torch.float64)
        cell64 = cell.detach().to(torch.float64)
        geometry = _CellGeometry(cell64, pbc_t, cutoff)
        search = _PairSearch(pos64, batch, counts.tolist(), ptr, cutoff, geometry)
        i, j, shifts, used = _find_pairs(search, _resolve_backend(backend, device))
        i, j, shifts = _sort_edges(i, j, shifts, positions.shape[0])

    edge_index = torch.stack([i, j])
    vectors = edge_vectors(positions, cell, edge_index, shifts, batch)
    return PeriodicGraph(
        edge_index=edge_index,
        cell_shifts=shifts,
        vectors=vectors,
        distances=torch.linalg.vector_norm(vectors, dim=-1),
        batch=batch,
        cutoff=cutoff,
        backend=used,
    )


def edge_vectors(
    positions: torch.Tensor,
    cell: torch.Tensor,
    edge_index: torch.Tensor,
    cell_shifts: torch.Tensor,
    batch: torch.Tensor | None = None,
) -> torch.Tensor:
    """Differentiable edge vectors ``r_j − r_i + S @ cell[batch[i]]`` in Å.

    Use it to recompute vectors of a fixed graph after positions or cell changed (e.g.
    with autograd for forces and stress).

    Args:
        positions: (N, 3) positions in Å.
        cell: (3, 3) or (B, 3, 3) cells in Å (rows are lattice vectors).
        edge_index: (2, E) int64 (centre, neighbour).
        cell_shifts: (E, 3) integer lattice translations.
        batch: (N,) structure index; needed only with a (B, 3, 3) cell and B > 1.

    Returns:
        (E, 3) tensor with the dtype of ``positions``.
    """
    i, j = edge_index[0], edge_index[1]
    shifts = cell_shifts.to(positions.dtype)
    cell = cell.to(positions.dtype)
    if cell.ndim == 2 or cell.shape[0] == 1:
        translations = shifts @ cell.reshape(-1, 3, 3)[0]
    else:
        if batch is None:
            raise NeighborListError("edge_vectors needs batch with a (B, 3, 3) cell and B > 1")
        translations = torch.einsum("ek,ekl->el", shifts, cell[batch[i]])
    return positions[j] - positions[i] + translations


def reverse_edges(graph: PeriodicGraph) -> torch.Tensor:
    """(E,) int64: for every edge ``e = (i, j, S)`` the index of its reverse ``(j, i, −S)``.

    Anything symmetric in the pair (a filter of the distance, an envelope) can then be
    computed on one edge of each pair and shared; ``vectors[reverse] == −vectors`` exactly.
    Relies on the full, (i, j, S)-sorted list of :func:`radius_graph`: the reverse keys are
    looked up by binary search. Eager only: the shift range and the check read tensor
    values (two host syncs).

    Raises:
        NeighborListError: an edge without its reverse (not a full list, or not sorted).
    """
    i, j = graph.edge_index[0], graph.edge_index[1]
    if i.numel() == 0:
        return torch.zeros(0, dtype=torch.int64, device=i.device)
    shifts = graph.cell_shifts.to(torch.int64)
    m = int(shifts.abs().max())
    base = 2 * m + 1  # S + m in [0, 2m]: a symmetric code, so −S has one too

    def key(a: torch.Tensor, b: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        code = ((s[:, 0] + m) * base + (s[:, 1] + m)) * base + (s[:, 2] + m)
        return (a * graph.num_nodes + b) * base**3 + code

    keys = key(i, j, shifts)  # increasing along the sorted list
    wanted = key(j, i, -shifts)
    reverse = torch.searchsorted(keys, wanted).clamp_(max=keys.numel() - 1)
    if not bool((keys[reverse] == wanted).all()):
        raise NeighborListError("reverse_edges needs the full, sorted list of radius_graph")
    return reverse


def radius_graph_from_atoms(
    atoms_or_list: Atoms | Sequence[Atoms],
    cutoff: float,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    backend: str = "auto",
) -> PeriodicGraph:
    """Radius graph of one ASE ``Atoms`` or of a batch of them (concatenated in order).

    The positions tensor is created here, so the returned vectors carry no useful
    gradient; build tensors yourself and call :func:`radius_graph` to differentiate.

    Args:
        atoms_or_list: an ``ase.Atoms`` or a sequence of them.
        cutoff: radius in Å.
        device: where the graph is built and stored.
        dtype: floating dtype of positions and cells.
        backend: see :func:`radius_graph`.
    """
    from ase import Atoms

    frames = [atoms_or_list] if isinstance(atoms_or_list, Atoms) else list(atoms_or_list)
    if not frames:
        raise NeighborListError("radius_graph_from_atoms needs at least one structure")
    positions = np.concatenate([np.asarray(a.positions, dtype=np.float64) for a in frames])
    cells = np.stack([np.asarray(a.cell.array, dtype=np.float64) for a in frames])
    pbcs = np.stack([np.asarray(a.pbc, dtype=bool) for a in frames])
    batch = np.repeat(np.arange(len(frames)), [len(a) for a in frames])
    return radius_graph(
        torch.as_tensor(positions, dtype=dtype, device=device),
        torch.as_tensor(cells, dtype=dtype, device=device),
        cutoff,
        batch=torch.as_tensor(batch, dtype=torch.int64, device=device),
        pbc=torch.as_tensor(pbcs, device=device),
        backend=backend,
    )


# --------------------------------------------------------------------------- validation


def _check_cutoff(cutoff: float) -> float:
    try:
        value = float(cutoff)
    except (TypeError, ValueError) as err:
        raise NeighborListError(f"cutoff must be a number in Å, got {cutoff!r}") from err
    if not math.isfinite(value) or value <= 0.0:
        raise NeighborListError(f"cutoff must be a finite positive radius in Å, got {value}")
    return value


def _check_positions(positions: torch.Tensor) -> torch.Tensor:
    if not isinstance(positions, torch.Tensor):
        raise NeighborListError(f"positions must be a torch.Tensor, got {type(positions)}")
    if positions.ndim != 2 or positions.shape[1] != 3:
        raise NeighborListError(f"positions must have shape (N, 3), got {tuple(positions.shape)}")
    if not positions.is_floating_point():
        raise NeighborListError(f"positions must be floating point, got {positions.dtype}")
    if not bool(torch.isfinite(positions).all()):
        bad = torch.nonzero(~torch.isfinite(positions).all(dim=1)).flatten()[:5].tolist()
        raise NeighborListError(f"positions are not finite for atoms {bad} (first ones)")
    return positions


def _check_batch(
    batch: torch.Tensor | None, positions: torch.Tensor, cell: torch.Tensor
) -> tuple[torch.Tensor, int]:
    """Validate ``batch``; return it as int64 on the positions' device, and B."""
    n_atoms = positions.shape[0]
    cell_structures = cell.shape[0] if isinstance(cell, torch.Tensor) and cell.ndim == 3 else None
    if batch is None:
        if cell_structures not in (None, 1):
            raise NeighborListError(
                f"cell holds {cell_structures} structures but no batch vector was given"
            )
        return torch.zeros(n_atoms, dtype=torch.int64, device=positions.device), 1
    if not isinstance(batch, torch.Tensor):
        raise NeighborListError(f"batch must be a torch.Tensor, got {type(batch)}")
    if batch.shape != (n_atoms,):
        raise NeighborListError(
            f"batch must have shape ({n_atoms},) like positions, got {tuple(batch.shape)}"
        )
    if batch.is_floating_point() or batch.is_complex() or batch.dtype == torch.bool:
        raise NeighborListError(f"batch must hold integers, got {batch.dtype}")
    batch = batch.to(device=positions.device, dtype=torch.int64)
    if n_atoms == 0:
        return batch, cell_structures or 1
    if bool((batch[1:] < batch[:-1]).any()):
        where = int(torch.nonzero(batch[1:] < batch[:-1])[0, 0]) + 1
        raise NeighborListError(
            f"batch must be sorted (non-decreasing); it decreases at atom {where}"
        )
    low, high = int(batch[0]), int(batch[-1])
    if low < 0:
        raise NeighborListError(f"batch holds a negative structure index {low}")
    if cell_structures is not None and high >= cell_structures:
        raise NeighborListError(
            f"batch refers to structure {high} but cell holds only {cell_structures} cells"
        )
    return batch, cell_structures if cell_structures is not None else high + 1


def _check_cell(cell: torch.Tensor, num_structures: int, positions: torch.Tensor) -> torch.Tensor:
    """Return cell as (B, 3, 3) in the positions' dtype and device (keeps autograd)."""
    if not isinstance(cell, torch.Tensor):
        raise NeighborListError(f"cell must be a torch.Tensor, got {type(cell)}")
    if cell.shape not in ((3, 3), (num_structures, 3, 3)):
        raise NeighborListError(
            f"cell must have shape (3, 3) or ({num_structures}, 3, 3), got {tuple(cell.shape)}"
        )
    if not cell.is_floating_point():
        raise NeighborListError(f"cell must be floating point, got {cell.dtype}")
    cell = cell.to(dtype=positions.dtype, device=positions.device)
    if not bool(torch.isfinite(cell).all()):
        raise NeighborListError("cell holds non-finite values")
    return cell.expand(num_structures, 3, 3) if cell.ndim == 2 else cell


def _check_pbc(
    pbc: torch.Tensor | Sequence[bool] | np.ndarray | None,
    num_structures: int,
    device: torch.device,
) -> torch.Tensor:
    """Return pbc as a (B, 3) bool tensor on ``device``."""
    if pbc is None:
        return torch.ones(num_structures, 3, dtype=torch.bool, device=device)
    pbc_t = torch.as_tensor(np.asarray(pbc) if not isinstance(pbc, torch.Tensor) else pbc)
    if pbc_t.shape not in ((3,), (num_structures, 3)):
        raise NeighborListError(
            f"pbc must have shape (3,) or ({num_structures}, 3), got {tuple(pbc_t.shape)}"
        )
    if pbc_t.dtype != torch.bool:
        raise NeighborListError(f"pbc must hold booleans, got {pbc_t.dtype}")
    return pbc_t.to(device).expand(num_structures, 3).contiguous()


def _resolve_backend(backend: str, device: torch.device) -> str:
    if backend == "vesin" and not _vesin_available():
        raise NeighborListError("backend 'vesin' needs the vesin-torch package")
    if backend != "auto":
        return backend
    # Measured faster on CPU (module docstring); on CUDA torch until measured otherwise.
    return "vesin" if device.type == "cpu" and _vesin_available() else "torch"


def _vesin_available() -> bool:
    try:
        import vesin_torch  # noqa: F401
    except ImportError:
        return False
    return True


# --------------------------------------------------------------------------- cell geometry


class _CellGeometry:
    """Float64 geometry of a batch of cells: completed cells, widths and image counts.

    Non-periodic directions are replaced by unit vectors orthogonal to the periodic ones
    ("completed" cell): their own vectors may be zero or arbitrary, and orthogonal
    completion gives the tightest image bounds along the periodic directions.
    """

    def __init__(self, cell64: torch.Tensor, pbc: torch.Tensor, cutoff: float) -> None:
        self.cell = cell64
        self.pbc = pbc
        self.completed = _complete_cells(cell64, pbc)
        self._check_singular()
        self.widths = _perpendicular_widths(self.completed)
        # Along periodic axis k the images |s_k| ≤ ceil(cutoff / w_k) suffice once positions
        # are wrapped (fractional differences in [−1, 1]); the 1e-10 guards rounding of w.
        images = torch.ceil(cutoff / self.widths * (1.0 + 1e-10))
        self.images = torch.where(pbc, images, torch.zeros_like(images)).to(torch.int64)
        self.images_host: list[list[int]] = self.images.tolist()
        self.widths_host: list[list[float]] = self.widths.tolist()
        self.pbc_host: list[list[bool]] = pbc.tolist()

    def _check_singular(self) -> None:
        lengths = torch.linalg.vector_norm(self.completed, dim=-1).prod(dim=-1)
        ratio = torch.linalg.det(self.completed).abs() / lengths
        bad = ~(ratio > _SINGULAR_TOLERANCE)  # also catches NaN from zero vectors
        if bool(bad.any()):
            b = int(torch.nonzero(bad)[0, 0])
            raise NeighborListError(
                f"cell of structure {b} is singular along its periodic directions "
                f"(pbc={self.pbc[b].tolist()}, cell={self.cell[b].tolist()}); periodic "
                "cell vectors must be non-zero and linearly independent"
            )

    def fractional(self, pos64: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        """(N, 3) fractional coordinates in the completed cells."""
        inverse = torch.linalg.inv(self.completed)
        return torch.einsum("nk,nkl->nl", pos64, inverse[batch])


def _complete_cells(cell64: torch.Tensor, pbc: torch.Tensor) -> torch.Tensor:
    completed = cell64.clone()
    mixed = torch.nonzero(~pbc.all(dim=1)).flatten().tolist()
    for b in mixed:  # rare (slabs, wires, molecules): a Python loop is fine
        completed[b] = _complete_cell(cell64[b], pbc[b].tolist())
    return completed


def _complete_cell(cell: torch.Tensor, pbc: list[bool]) -> torch.Tensor:
    """Replace non-periodic vectors of one cell by an orthonormal complement."""
    periodic = [k for k in range(3) if pbc[k]]
    free = [k for k in range(3) if not pbc[k]]
    out = torch.eye(3, dtype=cell.dtype, device=cell.device)
    if len(periodic) == 2:
        out[periodic] = cell[periodic]
        normal = torch.linalg.cross(cell[periodic[0]], cell[periodic[1]])
        out[free[0]] = normal / torch.linalg.vector_norm(normal)  # NaN if dependent: caught
    elif len(periodic) == 1:
        axis = cell[periodic[0]]
        out[periodic[0]] = axis
        # Cross with the coordinate axis least aligned with the lattice vector.
        helper = torch.zeros_like(axis)
        helper[int(torch.argmin(axis.abs()))] = 1.0
        u = torch.linalg.cross(axis, helper)
        u = u / torch.linalg.vector_norm(u)
        v = torch.linalg.cross(axis, u)
        out[free[0]] = u
        out[free[1]] = v / torch.linalg.vector_norm(v)
    return out


def _perpendicular_widths(cells: torch.Tensor) -> torch.Tensor:
    """(B, 3) distances between opposite faces of each cell, ``V / |a_j × a_k|``, in Å."""
    a, b, c = cells[:, 0], cells[:, 1], cells[:, 2]
    areas = torch.stack(
        [
            torch.linalg.vector_norm(torch.linalg.cross(b, c), dim=-1),
            torch.linalg.vector_norm(torch.linalg.cross(c, a), dim=-1),
            torch.linalg.vector_norm(torch.linalg.cross(a, b), dim=-1),
        ],
        dim=1,
    )
    return torch.linalg.det(cells).abs()[:, None] / areas


# --------------------------------------------------------------------------- pair search


@dataclass
class _PairSearch:
    """Everything the backends need (float64, detached, on the positions' device)."""

    pos64: torch.Tensor
    batch: torch.Tensor
    counts: list[int]
    ptr: torch.Tensor
    cutoff: float
    geometry: _CellGeometry

    @property
    def num_structures(self) -> int:
        return len(self.counts)


_Pairs = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
# (i, j, S) and the name of the backend(s) that found them.
_NamedPairs = tuple[torch.Tensor, torch.Tensor, torch.Tensor, str]


def _find_pairs(search: _PairSearch, backend: str) -> _NamedPairs:
    """Unsorted (i, j, S) of all edges, and the name of the backend(s) used."""
    if backend == "torch":
        return (*_torch_pairs(search, range(search.num_structures)), "torch")
    return _vesin_pairs(search)


def _empty_pairs(device: torch.device) -> _Pairs:
    empty = torch.zeros(0, dtype=torch.int64, device=device)
    return empty, empty.clone(), torch.zeros(0, 3, dtype=torch.int64, device=device)


def _concat_pairs(parts: list[_Pairs], device: torch.device) -> _Pairs:
    if not parts:
        return _empty_pairs(device)
    return (
        torch.cat([p[0] for p in parts]),
        torch.cat([p[1] for p in parts]),
        torch.cat([p[2] for p in parts]),
    )


def _sort_edges(i: torch.Tensor, j: torch.Tensor, shifts: torch.Tensor, n_atoms: int) -> _Pairs:
    """Sort edges by (i, j, S) lexicographically with two stable sorts (no host sync)."""
    if i.numel() == 0:
        return i, j, shifts
    low = shifts.amin(dim=0)
    span = shifts.amax(dim=0) - low + 1
    rel = shifts - low
    shift_key = (rel[:, 0] * span[1] + rel[:, 1]) * span[2] + rel[:, 2]
    order = torch.argsort(shift_key, stable=True)
    pair_key = (i * n_atoms + j)[order]
    order = order[torch.argsort(pair_key, stable=True)]
    return i[order], j[order], shifts[order]


def _shift_grid(images: Sequence[int], device: torch.device) -> torch.Tensor:
    """(M, 3) int64 all shifts with ``|s_k| ≤ images[k]``."""
    axes = [torch.arange(-n, n + 1, dtype=torch.int64, device=device) for n in images]
    return torch.cartesian_prod(*axes).reshape(-1, 3)


def _group_structures(
    counts: Sequence[int], images: Sequence[Sequence[int]], structures: Sequence[int]
) -> list[list[int]]:
    """Greedily group consecutive structures so that each padded group stays in budget."""
    groups: list[list[int]] = []
    current: list[int] = []
    n_max, box = 0, [0, 0, 0]
    for b in structures:
        if counts[b] == 0:
            continue
        new_n = max(n_max, counts[b])
        new_box = [max(x, y) for x, y in zip(box, images[b], strict=True)]
        cost = (len(current) + 1) * new_n**2 * math.prod(2 * n + 1 for n in new_box)
        if current and cost > CANDIDATE_BUDGET:
            groups.append(current)
            current, new_n, new_box = [], counts[b], list(images[b])
        current.append(b)
        n_max, box = new_n, new_box
    if current:
        groups.append(current)
    return groups


def _torch_pairs(search: _PairSearch, structures: Sequence[int]) -> _Pairs:
    """Dense torch search over the given structures (see module docstring)."""
    geometry = search.geometry
    device = search.pos64.device
    for b in structures:
        n_images = math.prod(2 * n + 1 for n in geometry.images_host[b])
        if n_images > MAX_IMAGES:
            raise NeighborListError(
                f"structure {b} needs {n_images} periodic images for cutoff {search.cutoff} Å "
                f"(cell widths {geometry.widths_host[b]} Å); the cell is too thin"
            )
    # Wrap positions into the cell along periodic axes so that image bounds hold; remember
    # the integer wrap to express shifts for the positions as given.
    frac = geometry.fractional(search.pos64, search.batch)
    wrap = torch.where(geometry.pbc[search.batch], -torch.floor(frac), torch.zeros_like(frac))
    wrapped = search.pos64 + torch.einsum("nk,nkl->nl", wrap, geometry.cell[search.batch])

    parts = []
    for group in _group_structures(search.counts, geometry.images_host, structures):
        parts.append(_screen_group(search, wrapped, group))
    i, j, shifts = _concat_pairs(parts, device)

    # Confirm in float64 with the exact difference vectors; drop each atom's self pair.
    vec = wrapped[j] - wrapped[i]
    vec = vec + torch.einsum("ek,ekl->el", shifts.to(torch.float64), geometry.cell[search.batch[i]])
    keep = (vec * vec).sum(dim=-1) < search.cutoff**2
    keep &= (i != j) | (shifts != 0).any(dim=1)
    i, j, shifts = i[keep], j[keep], shifts[keep]
    wrap = wrap.to(torch.int64)
    return i, j, shifts + wrap[j] - wrap[i]


def _screen_group(search: _PairSearch, wrapped: torch.Tensor, group: list[int]) -> _Pairs:
    """Candidate pairs (a superset of the true ones) of a group of structures.

    Atoms are padded to ``n_max`` per structure and images to the group's common shift
    grid; ``|x − y|² < cutoff² + margin`` is evaluated as ``2 x·y − |y|² > |x|² − cutoff²
    − margin`` with one float32 batched matmul per chunk of centre atoms.
    """
    geometry = search.geometry
    device = wrapped.device
    structures = torch.tensor(group, dtype=torch.int64, device=device)
    counts = torch.tensor([search.counts[b] for b in group], dtype=torch.int64, device=device)
    n_max = max(search.counts[b] for b in group)
    box = [max(geometry.images_host[b][k] for b in group) for k in range(3)]
    grid = _shift_grid(box, device)  # (M, 3)
    n_grid = grid.shape[0]
    valid_image = (grid.abs()[None] <= geometry.images[structures][:, None, :]).all(dim=-1)

    local = torch.arange(n_max, dtype=torch.int64, device=device)
    valid_atom = local[None, :] < counts[:, None]  # (G, n_max)
    start = search.ptr[structures]
    atom = torch.where(valid_atom, start[:, None] + local[None, :], start[:, None])
    cells = geometry.cell[structures]
    # Centre each structure on its cell so that float32 magnitudes (and the margin) stay small.
    centre = 0.5 * torch.where(geometry.pbc[structures, :, None], cells, 0.0).sum(dim=1)
    x = wrapped[atom] - centre[:, None, :]  # (G, n_max, 3)
    translations = torch.einsum("mk,gkl->gml", grid.to(torch.float64), cells)
    y = (x[:, :, None, :] + translations[:, None, :, :]).reshape(len(group), -1, 3)
    valid_y = (valid_atom[:, :, None] & valid_image[:, None, :]).reshape(len(group), -1)

    radius_x = torch.linalg.vector_norm(x, dim=-1).amax(dim=1)
    radius_y = torch.linalg.vector_norm(y, dim=-1).amax(dim=1)
    margin = _SCREEN_MARGIN * (radius_x + radius_y) ** 2 + 1e-12
    x32, y32 = x.to(torch.float32), y.to(torch.float32)
    yy = (y32 * y32).sum(dim=-1).masked_fill(~valid_y, math.inf)  # invalid: never a hit
    rhs = (x32 * x32).sum(dim=-1) - (search.cutoff**2 + margin[:, None]).to(torch.float32)
    rhs = rhs.masked_fill(~valid_atom, math.inf)
    y32_t = y32.transpose(1, 2)

    rows = max(1, CANDIDATE_BUDGET // max(1, len(group) * y.shape[1]))
    parts = []
    for r0 in range(0, n_max, rows):
        lhs = torch.baddbmm(-yy[:, None, :], x32[:, r0 : r0 + rows], y32_t, alpha=2.0)
        g, r, c = torch.nonzero(lhs > rhs[:, r0 : r0 + rows, None], as_tuple=True)
        base = start[g]
        parts.append(
            (base + r0 + r, base + torch.div(c, n_grid, rounding_mode="floor"), c % n_grid)
        )
    i = torch.cat([p[0] for p in parts])
    j = torch.cat([p[1] for p in parts])
    return i, j, grid[torch.cat([p[2] for p in parts])]


def _vesin_pairs(search: _PairSearch) -> _NamedPairs:
    """vesin per structure; structures vesin cannot handle (safely) go to torch."""
    from vesin_torch import NeighborList

    geometry = search.geometry
    device = search.pos64.device
    calculator = NeighborList(cutoff=search.cutoff, full_list=True)
    ptr = search.ptr.tolist()
    parts: list[_Pairs] = []
    fallback: list[int] = []
    for b, count in enumerate(search.counts):
        if count == 0:
            continue
        if device.type != "cpu" and not _vesin_cuda_safe(geometry, b, search.cutoff):
            fallback.append(b)
            continue
        try:
            i, j, shifts = calculator.compute(
                search.pos64[ptr[b] : ptr[b + 1]].contiguous(),
                geometry.cell[b].contiguous(),
                geometry.pbc[b].contiguous(),
                "ijS",
            )
        except RuntimeError:  # vesin refused (e.g. too many pairs per atom on CUDA)
            fallback.append(b)
            continue
        parts.append(
            (i.to(torch.int64) + ptr[b], j.to(torch.int64) + ptr[b], shifts.to(torch.int64))
        )
    used = "vesin"
    if fallback:
        parts.append(_torch_pairs(search, fallback))
        used = "vesin+torch" if len(fallback) < sum(c > 0 for c in search.counts) else "torch"
    return (*_concat_pairs(parts, device), used)


def _vesin_cuda_safe(geometry: _CellGeometry, b: int, cutoff: float) -> bool:
    """vesin's CUDA kernels are trusted only for fully periodic cells under half-width."""
    return all(geometry.pbc_host[b]) and 2.0 * cutoff <= min(geometry.widths_host[b])
