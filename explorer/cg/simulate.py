"""CG rollouts: the learned time-integrated dynamics of one polymer (MSGN paper §3, App. C).

One step advances the CG bead positions x (σ) by Δt (the training frame spacing, 2 τ for
the bundled data, i.e. 200 Langevin steps of the reference force field):

1. Dynamics GNN on the CG graph at t (CG bonds + radius edges) with the k most recent
   velocities gives the Gaussian N(μ, C ⊗ I₃) over the chain's accelerations, C = diag(s²)
   (+ B Bᵀ with correlated noise); draw a = μ + s ⊙ z₁ + B z₂ (z ~ N(0, I)).
2. Semi-implicit Euler: v_{t+Δt} = v_t + a Δt, x̂_{t+Δt} = x_t + v_{t+Δt} Δt.
3. Refinement strength S (0 = off): annealed Langevin dynamics with the Score GNN over the
   S smallest noise levels σ_i of the trained schedule, T_σ steps each (App. C,
   Algorithm 1): x ← x + ε G_NS(x, σ_i) / σ_i + √(2ε) z. Larger S means more levels.
4. The step's velocity is (x_{t+Δt} - x_t) / Δt (so refinement enters the history).
5. Rejection and divergence: a proposal with non-finite positions, a bead moving more than
   ``max_step`` σ (5) in one step, two CG beads closer than ``min_distance`` σ (0.3; the
   reference CG beads never come closer than ~0.5 σ), or two CG beads farther apart than
   the fully extended chain allows (:func:`~explorer.cg.data.contour_limits`, from the
   file's FENE R0; only with ``max_extension`` set, see below) is drawn again with fresh
   noise up to ``max_retries`` (5) times, then
   :class:`~explorer.errors.SimulationDiverged` names the step and the reason; a
   :class:`~explorer.session.Rollout` keeps the frames produced before. Rejecting
   overlaps acts as the hard core, and rejecting over-stretched chains as the FENE limit,
   that the learned Gaussian only approximates; the ``retries`` observable counts
   rejected draws. The stretch check is off by default and reported instead: the
   bundled model's rollouts pass the bound now and then, and rejecting those draws
   changes its trajectories (measured on the 8 test chains over 5,000 τ: ⟨R_g²⟩ r² 0.45
   → 0.17, and 2 chains stop after 6 rejected draws in a row).

Frames report CG bead positions (σ; in the ``positions`` field the session labels Å) at
``time_ps`` = simulated time in τ, with observables ``rg2_cg`` (mass-weighted CG R_g², σ²),
``rg2_fine`` (R_g²_CG plus the learned offset of App. C, σ²; the offset comes from the
step's own forward pass, i.e. the latent graph at t, one Δt behind the positions) and
``extension`` (the largest CG distance over its full-extension bound; above 1 no fine
configuration with FENE bonds could give these beads; NaN without the file's R0).

Initial state: the polymer's reference frame ``start_frame`` (coarse-grained). History
velocities come from the reference frames before it when the model's Δt is a whole number
of the file's frame spacings, else they are drawn from N(0, v_rms²), the isotropic velocity
scale of the training data (at Δt ≫ the momentum relaxation time successive CG velocities
are nearly uncorrelated, so this is close to the data's own distribution).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ase import Atoms

from explorer.analysis.polymer import radius_of_gyration_sq
from explorer.cg.data import CGPolymer, edge_limits, graph_edges, prepare_polymer
from explorer.cg.model import (
    DynamicsGNN,
    DynamicsOutput,
    EmbeddingGNN,
    ModelConfig,
    Scales,
    ScoreGNN,
    acceleration_noise,
    noise_schedule,
)
from explorer.cg.polymers import POLYMER_DIR, PolymerData, load_polymer
from explorer.cg.train import CGModules
from explorer.checkpoints import CHECKPOINT_DIR, CheckpointError, load_checkpoint
from explorer.errors import ExplorerError, MDConfigError, SimulationDiverged

__all__ = ["CGSimulator", "CGState", "UnknownBeadTypeError", "annealed_langevin"]


class UnknownBeadTypeError(ExplorerError, ValueError):
    """A polymer holds a bead type that the checkpoint never saw."""


@dataclass
class CGState:
    """A CG rollout state: x (M, 3) σ; v (k, M, 3) σ/τ, newest first; static graph data."""

    polymer: CGPolymer
    x: torch.Tensor
    v: torch.Tensor
    c: torch.Tensor
    weights: torch.Tensor
    generator: torch.Generator
    refinement: int
    langevin_steps: int
    step_size: float
    step: int = 0
    time_tau: float = 0.0
    rg2_offset: float = 0.0
    retries: int = 0


@torch.no_grad()
def annealed_langevin(
    score: ScoreGNN,
    c: torch.Tensor,
    weights: torch.Tensor,
    x: torch.Tensor,
    bond_matrix: torch.Tensor,
    sigmas: torch.Tensor,
    steps_per_level: int,
    step_size: float,
    cutoff: float,
    generator: torch.Generator,
) -> torch.Tensor:
    """Algorithm 1 (App. C) in the network's length units: for each σ_i, ``steps_per_level``
    updates x ← x + ε G_NS(x, σ_i) / σ_i + √(2ε) z."""
    for sigma in sigmas:
        level = torch.full((x.shape[0],), float(sigma), dtype=x.dtype)
        for _ in range(steps_per_level):
            edges, flag = graph_edges(x[None], bond_matrix, cutoff)
            eps = score(c, weights, x, level, edges, flag)
            z = torch.randn(x.shape, generator=generator, dtype=x.dtype)
            x = x + step_size * eps / sigma + (2.0 * step_size) ** 0.5 * z
    return x


class CGSimulator:
    """The CG family of the :class:`~explorer.session.Simulator` protocol (module doc).

    Args:
        modules: trained networks and data scales.
        bead_size: atoms per CG bead used in training (METIS).
        dt_tau: Δt of one step, τ.
        name: checkpoint name used in messages.
        polymer_dir: where polymer names are looked up.
        min_distance, max_step: rejection criteria in σ (module doc).
        max_retries: fresh draws of a rejected step before the rollout counts as diverged.
        max_extension: reject a step where two CG beads are farther apart than this
            multiple of their full-extension bound (1 = the FENE limit; the default ``inf``
            only reports it: the ``extension`` observable of every frame).
    """

    def __init__(
        self,
        modules: CGModules,
        bead_size: int,
        dt_tau: float,
        name: str = "custom",
        polymer_dir: Path = POLYMER_DIR,
        min_distance: float = 0.3,
        max_step: float = 5.0,
        max_retries: int = 5,
        max_extension: float = float("inf"),
    ) -> None:
        self.modules = modules
        modules.train(False)
        self.bead_size = int(bead_size)
        self.dt_tau = float(dt_tau)
        self.name = name
        self.polymer_dir = Path(polymer_dir)
        self.min_distance = float(min_distance)
        self.max_step = float(max_step)
        self.max_retries = int(max_retries)
        if not max_extension > 0:
            raise MDConfigError(f"max_extension must be > 0, got {max_extension}")
        self.max_extension = float(max_extension)

    @classmethod
    def from_checkpoint(
        cls, name: str | Path, directory: Path = CHECKPOINT_DIR, **kwargs: Any
    ) -> CGSimulator:
        """Load a ``family: cg`` checkpoint (sha256-checked safetensors)."""
        ckpt = load_checkpoint(name, directory)
        if ckpt.family != "cg":
            raise CheckpointError(f"{ckpt.name} is a {ckpt.family or 'unknown'} checkpoint, not cg")
        card = ckpt.card
        # Cards written before ``correlated_noise`` existed hold the paper's independent model.
        config = ModelConfig(**{"correlated_noise": False, **card["model"]})
        modules = CGModules(
            EmbeddingGNN(config), DynamicsGNN(config), ScoreGNN(config), config,
            Scales(**card["scales"]),
        )  # fmt: skip
        for key, module in modules.as_dict().items():
            module.load_state_dict(ckpt.state_dicts[key])
        return cls(modules, card["bead_size"], card["dt_tau"], name=ckpt.name, **kwargs)

    # -- polymers ------------------------------------------------------------
    def load(self, polymer: str | Path | PolymerData) -> CGPolymer:
        """Read and coarse-grain a polymer, refusing bead types the model never saw."""
        data = (
            polymer if isinstance(polymer, PolymerData) else load_polymer(polymer, self.polymer_dir)
        )
        n_types = self.modules.config.n_types
        unknown = sorted({int(t) for t in data.polymer.types if not 0 <= t < n_types})
        if unknown:
            raise UnknownBeadTypeError(
                f"{data.polymer.name}: bead types {unknown} are unknown to checkpoint "
                f"{self.name} (it knows types 0 … {n_types - 1})"
            )
        return prepare_polymer(data, self.bead_size)

    def polymer_atoms(self, polymer: str | Path, start_frame: int = 0) -> Atoms:
        """ASE Atoms of the CG beads of a polymer at a reference frame (σ, non-periodic).

        The beads are dummy atoms (number 0) with the CG masses; ``info["polymer"]`` names
        the polymer so that :meth:`prepare` finds its graph.
        """
        cg = self.load(polymer)
        atoms = Atoms(
            numbers=np.zeros(cg.n_beads, dtype=int),
            positions=cg.positions[start_frame],
            masses=cg.cg_masses.numpy().astype(float),
            pbc=False,
        )
        atoms.info["polymer"] = str(polymer)
        atoms.info["start_frame"] = int(start_frame)
        return atoms

    # -- protocol ------------------------------------------------------------
    def prepare(
        self,
        atoms: Atoms,
        polymer: str | Path | None = None,
        refinement: int = 0,
        seed: int = 0,
        start_frame: int | None = None,
        langevin_steps: int = 5,
        step_size: float = 1e-4,
        **_: Any,
    ) -> CGState:
        """Knobs: ``polymer`` name (default ``atoms.info["polymer"]``), ``refinement``
        strength S ≥ 0 (noise levels used), ``seed``, ``langevin_steps`` T_σ, ``step_size`` ε."""
        name = polymer if polymer is not None else atoms.info.get("polymer")
        if name is None:
            raise MDConfigError("say which polymer to simulate (knob 'polymer')")
        levels = self.modules.config.noise_levels
        if not 0 <= int(refinement) <= levels:
            raise MDConfigError(f"refinement must be between 0 and {levels}, got {refinement}")
        if langevin_steps < 1 or step_size <= 0:
            raise MDConfigError("langevin_steps must be ≥ 1 and step_size > 0")
        cg = self.load(name)
        start = int(atoms.info.get("start_frame", 0) if start_frame is None else start_frame)
        if not 0 <= start < cg.positions.shape[0]:
            raise MDConfigError(f"start_frame {start} outside the reference's frames")
        generator = torch.Generator().manual_seed(int(seed))
        k = self.modules.config.history
        x = torch.as_tensor(cg.positions[start], dtype=torch.float32)
        if len(atoms) == cg.n_beads:
            x = torch.as_tensor(atoms.positions, dtype=torch.float32)
        stride = round(self.dt_tau / cg.dt_tau)
        if stride >= 1 and abs(stride * cg.dt_tau - self.dt_tau) < 1e-6 and start >= k * stride:
            frames = cg.positions[start - k * stride : start + 1 : stride]
            window = torch.as_tensor(frames[::-1].copy())
            v = ((window[:-1] - window[1:]) / self.dt_tau).to(torch.float32)
        else:
            shape = (k, cg.n_beads, 3)
            v = self.modules.scales.velocity * torch.randn(shape, generator=generator)
        with torch.no_grad():
            c = self.modules.bead_embeddings(cg)
        state = CGState(
            cg, x, v, c, cg.cg_masses, generator, int(refinement), int(langevin_steps),
            float(step_size),
        )  # fmt: skip
        state.rg2_offset = self._rg2_offset(state)
        return state

    @torch.no_grad()
    def step(self, state: CGState) -> CGState:
        """One Δt: Gaussian acceleration, semi-implicit Euler, optional refinement, checks."""
        sc, cfg = self.modules.scales, self.modules.config
        poly = state.polymer
        out, edges = self._predict(state)
        for _ in range(self.max_retries + 1):
            z = torch.randn((2, *out.mean.shape), generator=state.generator)
            a = sc.acceleration * (out.mean + acceleration_noise(out, edges, z[0], z[1]))
            v_new = state.v[0] + a * self.dt_tau
            x_new = state.x + v_new * self.dt_tau
            if state.refinement > 0:
                sigmas = noise_schedule(cfg)[-state.refinement :] / sc.length
                x_new = sc.length * annealed_langevin(
                    self.modules.score, state.c, state.weights, x_new / sc.length,
                    poly.bond_matrix, sigmas, state.langevin_steps, state.step_size,
                    cfg.cutoff / sc.length, state.generator,
                )  # fmt: skip
            reason = self._problem(state, x_new)
            if not reason:
                break
            state.retries += 1
        else:
            raise SimulationDiverged(
                f"CG rollout of {state.polymer.name} diverged at step {state.step + 1} "
                f"(t = {state.time_tau + self.dt_tau:g} τ) after {self.max_retries + 1} draws: "
                f"{reason}",
                reason=reason,
                step=state.step + 1,
                time_ps=state.time_tau + self.dt_tau,
                frames_written=state.step + 1,
            )
        v_new = (x_new - state.x) / self.dt_tau
        state.v = torch.cat([v_new[None], state.v[:-1]])
        state.x = x_new
        state.step += 1
        state.time_tau = state.step * self.dt_tau
        # The App. C offset from this step's latent graph (at t): it varies slowly, and
        # reusing the pass halves the cost of a step compared with a second pass at t + Δt.
        state.rg2_offset = self._offset_from(out.pooled)
        return state

    def frame(self, state: CGState) -> Any:
        from explorer.session import Frame

        x = state.x.double().numpy()
        rg2 = float(radius_of_gyration_sq(x, state.weights.double().numpy())[0])
        return Frame(
            positions=x,
            time_ps=state.time_tau,
            observables={
                "rg2_cg": rg2,
                "rg2_fine": rg2 + state.rg2_offset,
                "extension": self._extension(state.polymer, state.x),
                "retries": float(state.retries),
            },
        )

    # -- internals -----------------------------------------------------------
    def _offset_from(self, pooled: torch.Tensor) -> float:
        sc = self.modules.scales
        if self.modules.dynamics.rg_head is None:
            return sc.rg2_offset_mean
        return sc.rg2_offset_mean + sc.rg2_offset_std * float(
            self.modules.dynamics.rg2_offset(pooled)[0]
        )

    @torch.no_grad()
    def _predict(self, state: CGState) -> tuple[DynamicsOutput, torch.Tensor]:
        """The Dynamics GNN's Gaussian at ``state`` (fixed priors included) and the edges
        of its CG graph."""
        poly = state.polymer
        edges, flag = graph_edges(state.x[None], poly.bond_matrix, self.modules.config.cutoff)
        graph = torch.zeros(poly.n_beads, dtype=torch.long)
        v = state.v.transpose(0, 1)
        out = self.modules.predict(
            state.c, state.weights, state.x, v, edges, flag, graph, 1, edge_limits(edges, poly)
        )
        return out, edges

    @torch.no_grad()
    def _rg2_offset(self, state: CGState) -> float:
        """The offset at the prepared state (one extra forward pass, at t = 0 only)."""
        return self._offset_from(self._predict(state)[0].pooled)

    @staticmethod
    def _extension(polymer: CGPolymer, x: torch.Tensor) -> float:
        """max over bead pairs of distance / full-extension bound (NaN without bounds)."""
        if polymer.distance_limits is None:
            return float("nan")
        return float((torch.cdist(x, x) / polymer.distance_limits).max())

    def _problem(self, state: CGState, x_new: torch.Tensor) -> str:
        """Why a proposed step is rejected ("" when it is fine)."""
        if not bool(torch.isfinite(x_new).all()):
            return "non-finite positions"
        moved = float((x_new - state.x).norm(dim=-1).max())
        if moved > self.max_step:
            return f"a bead moved {moved:.3g} σ in one step (limit {self.max_step:g} σ)"
        d = torch.cdist(x_new, x_new) + 1e9 * torch.eye(x_new.shape[0])
        closest = float(d.min())
        if closest < self.min_distance:
            return f"CG beads overlap ({closest:.3g} σ < {self.min_distance:g} σ)"
        limits = state.polymer.distance_limits
        if limits is not None and self.max_extension < float("inf"):
            d.fill_diagonal_(0.0)
            excess = d / (self.max_extension * limits)
            worst = int(torch.argmax(excess))
            if float(excess.flatten()[worst]) > 1.0:
                m, n = divmod(worst, x_new.shape[0])
                return (
                    f"the chain is stretched beyond full extension (CG beads {m} and {n} "
                    f"{float(d[m, n]):.3g} σ apart, at most "
                    f"{self.max_extension * float(limits[m, n]):.3g} σ with every bond at the "
                    "FENE limit)"
                )
        return ""
