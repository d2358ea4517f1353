"""Graph-clustering coarse-graining (MSGN paper §3, eq. 1): METIS groups of bonded beads.

METIS (pymetis) partitions the fine bond graph into M = round(N / bead_size) groups of
roughly equal size with few cut bonds, so every group is bonded-connected and its atoms
stay close. For group C_m (eq. 1):

    c_m = mean_{i ∈ C_m} c_i        (learned type embedding; done in the model)
    w_m = Σ_{i ∈ C_m} w_i           (mass, bead-mass units)
    x_m = Σ_{i ∈ C_m} w_i x_i / w_m (centre of mass, σ)

CG bonds join groups m ≠ n when any fine bond joins an atom of C_m and one of C_n; radius
edges join every pair of CG beads closer than a connectivity radius r (single chains in
implicit solvent are not periodic, so no images are needed). The mapping is a transform
built outside the networks (STYLE.md 5).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from explorer.errors import ExplorerError

__all__ = ["CGMapping", "CoarseningError", "coarsen", "metis_groups", "radius_edges"]


class CoarseningError(ExplorerError, ValueError):
    """A bond graph cannot be partitioned into CG beads of the requested size."""


def metis_groups(n_atoms: int, bonds: np.ndarray, bead_size: int, seed: int = 0) -> np.ndarray:
    """(N,) group index in 0 … M-1 of every atom, M = max(1, round(N / bead_size)).

    Raises :class:`CoarseningError` when METIS leaves a group empty or disconnected (e.g. a
    bead size larger than the molecule, or a bond graph in several pieces).
    """
    import pymetis

    bonds = np.asarray(bonds, dtype=np.int64).reshape(-1, 2)
    if n_atoms < 1:
        raise CoarseningError("the polymer has no beads")
    if bead_size < 1 or bead_size > n_atoms:
        raise CoarseningError(
            f"cannot group {n_atoms} beads into CG beads of {bead_size}: "
            f"the bead size must be between 1 and {n_atoms}"
        )
    if bonds.size and (bonds.min() < 0 or bonds.max() >= n_atoms):
        raise CoarseningError(f"bond indices must lie in [0, {n_atoms}); got {bonds.max()}")
    n_groups = max(1, round(n_atoms / bead_size))
    if n_groups == 1:
        return np.zeros(n_atoms, dtype=np.int64)
    adjacency: list[list[int]] = [[] for _ in range(n_atoms)]
    for i, j in bonds:
        adjacency[i].append(int(j))
        adjacency[j].append(int(i))
    if any(not nbrs for nbrs in adjacency):
        lonely = [i for i, nbrs in enumerate(adjacency) if not nbrs][:5]
        raise CoarseningError(f"beads {lonely} have no bond; METIS needs a connected chain")
    # METIS's contiguity is a heuristic on branched chains: repair stray pieces, and retry
    # a few seeds (deterministically) when a repair empties a group.
    first = np.zeros(0, dtype=np.int64)
    for attempt in range(20):
        options = pymetis.Options()
        options.seed = int(seed) + attempt
        options.contig = 1
        _, parts = pymetis.part_graph(n_groups, adjacency=adjacency, options=options)
        groups = _make_connected(np.asarray(parts, dtype=np.int64), adjacency)
        if attempt == 0:
            first = groups
        sizes = np.bincount(groups, minlength=n_groups)
        if np.all(sizes > 0):
            break
    else:
        # Small groups (bead size 2 on a 40-bead chain) defeat METIS on every seed: it
        # leaves a part empty. Split the largest groups instead of giving up.
        groups = _fill_empty(first, n_groups, adjacency)
        sizes = np.bincount(groups, minlength=n_groups)
    if not np.all(sizes > 0):
        raise CoarseningError(
            f"METIS could not split {n_atoms} beads into {n_groups} connected groups of "
            f"~{bead_size} (group sizes {sizes.tolist()}); choose another bead size"
        )
    return _relabel_along_chain(groups)


def _fill_empty(groups: np.ndarray, n_groups: int, adjacency: list[list[int]]) -> np.ndarray:
    """Give every empty group the far half of the largest group (two connected halves).

    The largest group is ordered breadth-first from one of its ends, so both halves stay
    bonded-connected on a chain; stray pieces on branched graphs are repaired afterwards.
    """
    groups = groups.copy()
    for empty in np.flatnonzero(np.bincount(groups, minlength=n_groups) == 0):
        sizes = np.bincount(groups, minlength=n_groups)
        largest = int(np.argmax(sizes))
        if sizes[largest] < 2:
            break
        members = np.flatnonzero(groups == largest).tolist()
        order = _breadth_first(members, adjacency)
        groups[order[len(order) // 2 :]] = empty
        groups = _make_connected(groups, adjacency)
    return groups


def _breadth_first(members: list[int], adjacency: list[list[int]]) -> list[int]:
    """Members of a connected group in breadth-first order from its best-connected end."""
    inside = set(members)
    inner_degree = {a: sum(b in inside for b in adjacency[a]) for a in members}
    start = min(members, key=lambda a: (inner_degree[a], a))
    order = _reachable(start, inside, adjacency)
    reached = set(order)
    return order + [a for a in members if a not in reached]


def _reachable(start: int, inside: set[int], adjacency: list[list[int]]) -> list[int]:
    """Atoms of ``inside`` bond-connected to ``start``, in breadth-first order."""
    order, seen = [start], {start}
    for a in order:
        for b in adjacency[a]:
            if b in inside and b not in seen:
                seen.add(b)
                order.append(b)
    return order


def _components(members: list[int], adjacency: list[list[int]]) -> list[list[int]]:
    """Bond-connected pieces of a set of atoms, largest first."""
    inside, seen, pieces = set(members), set(), []
    for start in members:
        if start not in seen:
            piece = _reachable(start, inside, adjacency)
            seen.update(piece)
            pieces.append(piece)
    return sorted(pieces, key=len, reverse=True)


def _make_connected(groups: np.ndarray, adjacency: list[list[int]]) -> np.ndarray:
    """Move stray pieces of a group into a bonded neighbouring group.

    METIS's ``contig`` option is a heuristic; on branched chains it can leave a side chain
    in a group it is not bonded to. Each such piece joins the smallest group it is bonded
    to, so every CG bead is a bonded cluster (the premise of §3's coarse-graining).
    """
    groups = groups.copy()
    for _ in range(len(groups)):
        moved = False
        for m in range(int(groups.max()) + 1):
            pieces = _components(np.flatnonzero(groups == m).tolist(), adjacency)
            for piece in pieces[1:]:
                outside = {int(groups[b]) for a in piece for b in adjacency[a]} - {m}
                target = min(outside, key=lambda g: int((groups == g).sum()))
                groups[piece] = target
                moved = True
        if not moved:
            break
    return groups


def _relabel_along_chain(groups: np.ndarray) -> np.ndarray:
    """Number groups by their first atom so that CG bead order follows the chain."""
    _, first = np.unique(groups, return_index=True)
    rank = np.argsort(np.argsort(first))
    return rank[groups]


@dataclass(frozen=True)
class CGMapping:
    """A fine → CG map: ``groups`` (N,), CG ``masses`` (M,), ``bonds`` (E, 2) with m < n."""

    groups: np.ndarray
    masses: np.ndarray
    fine_masses: np.ndarray
    bonds: np.ndarray

    @property
    def n_beads(self) -> int:
        return int(self.masses.size)

    @property
    def n_atoms(self) -> int:
        return int(self.groups.size)

    def weights(self) -> np.ndarray:
        """(M, N) matrix W with x_CG = W x_fine (rows: w_i / w_m of the group's atoms)."""
        w = np.zeros((self.n_beads, self.n_atoms))
        w[self.groups, np.arange(self.n_atoms)] = self.fine_masses / self.masses[self.groups]
        return w

    def positions(self, fine: np.ndarray) -> np.ndarray:
        """Centres of mass (..., M, 3) of fine positions (..., N, 3) (eq. 1)."""
        return np.einsum("mn,...nd->...md", self.weights(), np.asarray(fine, dtype=np.float64))


def coarsen(
    n_atoms: int,
    bonds: np.ndarray,
    masses: np.ndarray | None = None,
    bead_size: int = 4,
    seed: int = 0,
) -> CGMapping:
    """METIS groups, CG masses (sum) and CG bonds of a fine bond graph."""
    masses = np.ones(n_atoms) if masses is None else np.asarray(masses, dtype=np.float64)
    groups = metis_groups(n_atoms, bonds, bead_size, seed)
    n_groups = int(groups.max()) + 1
    cg_masses = np.bincount(groups, weights=masses, minlength=n_groups)
    bonds = np.asarray(bonds, dtype=np.int64).reshape(-1, 2)
    pairs = np.sort(groups[bonds], axis=1)
    pairs = np.unique(pairs[pairs[:, 0] != pairs[:, 1]], axis=0).reshape(-1, 2)
    return CGMapping(groups=groups, masses=cg_masses, fine_masses=masses, bonds=pairs)


def radius_edges(positions: np.ndarray, cutoff: float) -> np.ndarray:
    """(E, 2) ordered pairs (m, n), m ≠ n, with |x_m - x_n| < cutoff (non-periodic)."""
    x = np.asarray(positions, dtype=np.float64)
    d = np.linalg.norm(x[:, None] - x[None], axis=-1)
    m, n = np.nonzero((d < cutoff) & ~np.eye(len(x), dtype=bool))
    return np.stack([m, n], axis=1)
