"""LiFlow rollouts: alternate Propagator and Corrector flow integration (LiFlow §II.2, §IV.5).

One LiFlow step advances unwrapped positions x (Å) by the time step Δτ (1 ps unless the
checkpoint card says otherwise):

1. Propagator: d ~ prior(σ_P), then N Euler steps of the flow, t_k = k / N,
   ``d ← d + (1/N) · u_P(d, t_k | x, T)``;  x' = x + d.
2. Corrector (strength s ∈ [0, 1]): c ~ prior(σ_C) and the same Euler loop with u_C
   conditioned on x'; x'' = x' + s · c. s = 0 switches the Corrector off (it is not run),
   s = 1 applies the trained Corrector at full flow, and in between the structure is the
   linear interpolation (1 − s) · x' + s · (x' + c) between the uncorrected and the fully
   corrected structure, so |x'' − x'| = s · |c| grows monotonically with s. With
   ``corrector_every`` = k the Correctors (2 and 2b) run only on steps k, 2k, … (the
   official test script's ``corrector_every``; the paper's PPPC schedule is k = 4).
2b. Fine Corrector (when the checkpoint has one; not in the paper): a second Corrector,
   trained on smaller noise (σ ≤ 0.2 Å instead of 0.5 Å), runs the same way on x'' and
   its correction is scaled by the same s: x''' = x'' + s · c_fine. The coarse Corrector
   has to reach errors of tenths of an Å to keep rollouts stable, and its own draws then
   leave stiff bonds (P–S, Ge–S) spread by about 0.1 Å; the fine one pulls those back
   (LGPS, 25-ps rollouts at 600–1200 K: RDF ∫|Δg| dr 0.65 → 0.45 Å, all stable, Li MSD
   unchanged; the fine Corrector alone after the Propagator: 0.69 Å). It is a two-level
   version of the annealed denoising of score models.
2c. Flow steps. The Propagator integrates its flow in N Euler steps; a lone Corrector in
   ⌈N · CORRECTOR_FLOW_FRACTION⌉ (5 of the default 10), and where a fine Corrector shares
   the correction, each of the two in ⌈N · TWO_LEVEL_FLOW_FRACTION⌉ (3 of 10: 16 network
   evaluations a step instead of 30 at N each). Their flows, from a small prior to nearby
   data, are short and nearly straight, and the paper found Corrector flow steps could be
   cut without changing diffusivities (its Fig. S2). Measured on the bundled checkpoints
   (3 seeds × 25 ps, same weights, RDF MAE of eq. 18): from 10 steps each to 5 each
   (the fine Corrector first, then the Corrector) LGPS 0.082 → 0.081 → 0.078, Li3PS4-β
   0.104 → 0.099 → 0.097, Li6PS5Cl 0.094 → 0.092 → 0.089, Li3InCl6 (no fine Corrector)
   0.107 → 0.099, log10 MSD_Li errors moved ≤ 0.014; then from 5 + 5 to 3 + 3 (with
   the 2,000-step Correctors, 2026-12-06) LGPS 0.081 → 0.078 (log10 MSD_Li error 0.205 →
   0.213), Li3PS4-β 0.093 → 0.095 (0.075 → 0.071), Li6PS5Cl 0.070 → 0.067 (0.058 →
   0.050), liflow_multi on its four materials 0.078 → 0.079 (0.153 → 0.165), all within
   the seed-to-seed spread, every rollout stable; Li3InCl6's then lone Corrector at 3
   steps went 0.099 → 0.105 (it has had a fine Corrector, so 3 + 3, since its rebuild).
2d. A card may set ``full_corrector_flow_below_K``: structures below that temperature get
   N Euler steps in each Corrector instead (the checkpoint's own choice, measured on its
   evaluation; README). At low T the structure's distribution is sharp and the
   Correctors' three steps left ``liflow_Li3InCl6``'s first RDF peak 0.1 Å too far out
   (600 K RDF MAE 0.100 → 0.063 with N steps), while at 1000–1200 K, N steps made it
   worse (0.063 / 0.118 → 0.082 / 0.176). A batch with structures on both sides of the
   threshold runs them as separate graphs (each with its step count); the draws and
   results are those of the structures run alone.
3. The mass-weighted centre-of-mass drift of the total step Δ = x'' − x is removed,
   Δ ← Δ − Σ m_i Δ_i / Σ m_i (per structure), and x ← x + Δ.
4. Divergence check: a non-finite Δ, a per-atom |Δ_i| above ``max_step_A`` (10 Å), or two
   atoms closer than ``min_distance_A`` (0.5 Å) after the step rejects the proposal of
   that structure; it is drawn again up to ``max_retries`` (3) times, then
   :class:`~explorer.errors.SimulationDiverged` names the step and the reason. A redraw
   renews the prior noise ε only of the offending atoms (the clashing pair, the atom that
   jumped) and of every atom within ``resample_radius_A`` (4 Å) of them, and keeps the
   rest: the official test script re-draws the whole structure, which works for training
   size cells but not for large supercells, where some pair among thousands of atoms
   comes too close in almost every draw (LGPS 4×4×4, 3,200 atoms: 4 whole draws in a row
   rejected at step 1). Displacements beyond the networks' reach (3 layers × 5 Å) do not
   depend on the renewed noise, so there the redraw is whole-structure rejection
   sampling restricted to where the draw failed; closer in, the kept noise makes it an
   approximation. A non-finite proposal renews the whole structure's noise.

Corrector start. The paper starts both flows from a prior draw (§IV.5), and so does this
module by default (``corrector_start="sample"``). The authors' test script starts the
Correctors at the prior's mean instead (no draw is added: a deterministic denoising from
the uncorrected structure); ``corrector_start="mean"`` does that. Measured on the bundled
checkpoints (3 seeds × 25 ps, RDF MAE of eq. 18; Corrector 10, fine Corrector 5 steps):
Li3PS4-β 0.099 → 0.083, Li6PS5Cl 0.092 → 0.080, LGPS 0.081 → 0.071 but 1 of 12 rollouts
unstable (1 of 24 with 6 seeds), Li3InCl6 0.107 → 0.130 (600 K: 0.26), ``liflow_multi``
0.078 → 0.099 on its training materials; so sampling stays the default.

The Propagator prior σ_P is the card's prior (adaptive, Maxwell–Boltzmann or isotropic)
with the user's variance multipliers λ_Li, λ_frame (``σ² ← λ σ²``, 1 = as trained); the
adaptive prior's small/large scale of each group is chosen per structure and temperature
by the checkpoint's prior classifier (LiFlow §IV.3) when it bundles one, else fixed by the
card's ``prior_choice``; the
Corrector prior σ_C is the card's small uniform Maxwell–Boltzmann prior, not scaled by the
knobs. Several structures (replicas, temperatures) can run in one graph with
:meth:`LiFlowSimulator.prepare_batch`; on the CPU its networks run over groups of
structures of at most ``cpu_group_atoms`` atoms, which are faster there than one large
graph (same draws, same result).
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ase import Atoms
from ase.data import chemical_symbols

from explorer.checkpoints import CHECKPOINT_DIR, CheckpointError, load_checkpoint
from explorer.device import resolve_device
from explorer.errors import MDConfigError, SimulationDiverged, UnknownElementError
from explorer.liflow.classifier import FEATURE_DIM, PriorSelector
from explorer.liflow.model import FlowModel, FlowModelConfig, edge_halves
from explorer.liflow.prior import (
    LITHIUM_Z,
    PriorConfig,
    masses_of,
    prior_std,
    remove_center_of_mass,
    sample_prior,
)
from explorer.neighbors import PeriodicGraph, radius_graph
from explorer.nn.compiled import maybe_compile
from explorer.session import Frame

__all__ = ["LiFlowSimulator", "LiFlowState", "integrate_flow"]

_log = logging.getLogger(__name__)
#: Neighbour-search radius of the clash check (Å); pairs closer than ``min_distance_A``
#: are filtered from it.
_CLASH_SEARCH_A = 2.0
#: The Correctors integrate their flows in these fractions of the flow steps (module doc,
#: 2c): a lone Corrector in ⌈N / 2⌉, the Corrector and the fine Corrector in ⌈3N / 10⌉ each.
CORRECTOR_FLOW_FRACTION = Fraction(1, 2)
TWO_LEVEL_FLOW_FRACTION = Fraction(3, 10)
#: Default ``cpu_group_atoms``: largest group of structures evaluated as one graph on the
#: CPU (atoms). Per atom, a compiled LGPS step on one core here costs 0.58 ms at 200
#: atoms, 0.73 at 400 and 0.81 at 800: the (edges, 3, features) tensors of a large
#: graph no longer fit the caches. A batch of 4 × 200 atoms as one graph took 5.5× one
#: structure's step (README, Speed).
CPU_GROUP_ATOMS = 256


@torch.no_grad()
def integrate_flow(
    model: torch.nn.Module,
    numbers: torch.Tensor,
    positions: torch.Tensor,
    cell: torch.Tensor,
    temperature_K: torch.Tensor | float,
    std: torch.Tensor,
    generator: torch.Generator,
    flow_steps: int,
    batch: torch.Tensor | None = None,
    graph: PeriodicGraph | None = None,
    forward: Callable[..., torch.Tensor] | None = None,
    noise: torch.Tensor | None = None,
    geometry: Callable[..., tuple[torch.Tensor, ...]] | None = None,
) -> torch.Tensor:
    """Generate one displacement (N, 3) in Å by Euler integration of a LiFlow flow.

    ``d_0 = σ ε`` (ε ~ N(0, I); ``noise`` gives ε (N, 3), else it is drawn), then for
    k = 0 … N−1 with t_k = k / N:
    ``d ← d + (1/N) · model(numbers, positions, d, cell, T, t_k, batch, graph)``.
    ``graph`` (the radius graph of ``positions``) is built once when absent and reused for
    every flow step; ``std`` sets the dtype and device of the result. ``forward``
    evaluates the network in place of ``model`` and ``geometry`` its ``current_geometry``
    (e.g. compiled, :mod:`explorer.nn.compiled`).
    """
    if flow_steps < 1:
        raise MDConfigError(f"flow_steps must be >= 1, got {flow_steps}")
    if graph is None:
        graph = radius_graph(positions, cell, model.config.cutoff, batch=batch)
    net = forward if forward is not None else model
    # The terms of x alone (its unit vectors, envelope and filters) and the species and
    # temperature features serve every flow step.
    current = (geometry or model.current_geometry)(positions, cell, graph, edge_halves(graph))
    conditioning = model.node_conditioning(numbers, temperature_K, graph.batch, positions)
    d = sample_prior(std, generator) if noise is None else std[:, None] * noise.to(std.dtype)
    dt = 1.0 / flow_steps
    # Flow times as 0-d tensors, not Python floats: torch.compile specialises on float
    # arguments, so each t_k compiled a graph of its own, and past its recompile limit
    # (8) the remaining flow steps ran eagerly. float64 keeps the values of k * dt.
    times = torch.arange(flow_steps, dtype=torch.float64, device=std.device) * dt
    for k in range(flow_steps):
        d = d + dt * net(
            numbers, positions, d, cell, temperature_K, times[k], batch, graph, current,
            conditioning,
        )  # fmt: skip
    return d


@dataclass
class LiFlowState:
    """A LiFlow rollout state; tensors live on one device.

    ``positions`` (N, 3) unwrapped Å in float64; ``batch`` (N,) structure index or None;
    ``temperatures_K`` (B,); ``std_propagator`` / ``std_corrector`` (N,) prior σ in Å;
    ``step`` LiFlow steps done; ``time_ps`` = step · ``time_step_ps``.
    """

    numbers: torch.Tensor
    positions: torch.Tensor
    cell: torch.Tensor
    pbc: torch.Tensor
    masses: torch.Tensor
    batch: torch.Tensor | None
    temperatures_K: torch.Tensor
    std_propagator: torch.Tensor
    std_corrector: torch.Tensor
    generator: torch.Generator
    flow_steps: int
    corrector_strength: float
    time_step_ps: float
    step: int = 0
    time_ps: float = 0.0
    max_displacement_A: float = 0.0
    retries: int = 0
    prior_choices: tuple[dict[str, bool], ...] = ()
    corrector_start: str = "sample"
    corrector_every: int = 1


#: Where the Correctors' flows start (module doc, "Corrector start").
CORRECTOR_STARTS = ("sample", "mean")
# The knobs a card may recommend (``recommended_knobs``) and their neutral defaults.
RECOMMENDABLE_KNOBS: dict[str, Any] = {
    "prior_scale_li": 1.0,
    "prior_scale_frame": 1.0,
    "flow_steps": 10,
}


class LiFlowSimulator:
    """The LiFlow family of the :class:`~explorer.session.Simulator` protocol (module doc).

    Args:
        propagator, corrector: trained :class:`FlowModel` s (corrector may be None).
        prior: the Propagator prior settings (its :meth:`PriorConfig.corrector` is the
            Corrector prior).
        li_large, frame_large: the adaptive prior's small/large choice per group, used
            when there is no ``selector``.
        selector: the prior classifier choosing small/large per structure and temperature.
        time_step_ps: Δτ of one LiFlow step in ps.
        training_temperatures_K: temperatures seen in training (for the extrapolation
            warning); None skips the check.
        name: checkpoint name used in messages.
        max_step_A, min_distance_A, max_retries: divergence criteria (module doc).
        resample_radius_A: a redraw renews the noise of atoms within this distance of
            the offending ones (module doc), Å.
        fine_corrector: optional second Corrector trained on smaller noise (module doc,
            step 2b); needs ``corrector``.
        compile: evaluate the networks through ``torch.compile`` (3.6× faster flow
            steps for 800 atoms on one CPU core here, after about a minute of compiling
            per module and graph size class: for long or benchmark runs, not the
            interactive first frame).
        recommended_knobs: defaults of the knobs in :data:`RECOMMENDABLE_KNOBS` measured
            to work best for this checkpoint (the card's ``recommended_knobs``), used
            where a caller does not set them; a knob's own meaning does not change
            (a prior scale of 1 is still the trained prior).
        full_corrector_flow_below_K: structures below this temperature (K) get the
            full N Euler steps in each Corrector (module doc, 2d; None = never).
        cpu_group_atoms: on the CPU, the networks of a batch run over groups of
            consecutive structures of at most this many atoms (a larger structure runs
            alone; None = one graph for the whole batch, as on a GPU): the draws and the
            result are those of one graph, and a CPU is faster on several small graphs
            than on one large one (:data:`CPU_GROUP_ATOMS`).
    """

    def __init__(
        self,
        propagator: FlowModel,
        corrector: FlowModel | None = None,
        prior: PriorConfig | None = None,
        li_large: bool = True,
        frame_large: bool = False,
        time_step_ps: float = 1.0,
        training_temperatures_K: Sequence[float] | None = None,
        name: str = "custom",
        max_step_A: float = 10.0,
        min_distance_A: float = 0.5,
        max_retries: int = 3,
        selector: PriorSelector | None = None,
        compile: bool = False,
        resample_radius_A: float = 4.0,
        fine_corrector: FlowModel | None = None,
        recommended_knobs: dict[str, Any] | None = None,
        cpu_group_atoms: int | None = CPU_GROUP_ATOMS,
        full_corrector_flow_below_K: float | None = None,
    ) -> None:
        if cpu_group_atoms is not None and cpu_group_atoms < 1:
            raise MDConfigError(f"cpu_group_atoms must be >= 1 or None, got {cpu_group_atoms}")
        self.cpu_group_atoms = cpu_group_atoms
        below = full_corrector_flow_below_K
        if below is not None and not (math.isfinite(below) and below > 0):
            raise MDConfigError(
                f"full_corrector_flow_below_K must be a temperature > 0 K, got {below!r}"
            )
        self.full_corrector_flow_below_K = None if below is None else float(below)
        self.recommended_knobs = _checked_recommended_knobs(recommended_knobs, name)
        self.propagator = propagator.eval()
        self.corrector = corrector.eval() if corrector is not None else None
        if fine_corrector is not None and corrector is None:
            raise MDConfigError("a fine Corrector runs after the Corrector; give both")
        self.fine_corrector = fine_corrector.eval() if fine_corrector is not None else None
        # Keyed by id: the wrapper shares the module's parameters, so .to() moves both.
        self._compile = bool(compile)
        self._forwards = {id(m): maybe_compile(m, compile, _log.info) for m in self._flow_models()}
        # The current structure's edge terms, once per flow: eager they cost a third of a
        # compiled flow step each (LGPS 200 atoms: 11.3 ms against 3.7 ms compiled).
        self._geometries = {
            id(m): maybe_compile(m.current_geometry, compile, _log.info)
            for m in self._flow_models()
        }
        self.prior = prior if prior is not None else PriorConfig()
        self.li_large, self.frame_large = bool(li_large), bool(frame_large)
        self.time_step_ps = float(time_step_ps)
        temps = training_temperatures_K
        self.training_temperatures_K = tuple(float(t) for t in temps) if temps else None
        self.name = name
        self.max_step_A, self.min_distance_A = float(max_step_A), float(min_distance_A)
        self.max_retries = int(max_retries)
        if not resample_radius_A >= 0:
            raise MDConfigError(f"resample_radius_A must be >= 0, got {resample_radius_A}")
        self.resample_radius_A = float(resample_radius_A)
        self.selector = selector.eval() if selector is not None else None

    @classmethod
    def from_checkpoint(
        cls,
        name_or_path: str | Path,
        device: str = "auto",
        directory: Path = CHECKPOINT_DIR,
        compile: bool = False,
    ) -> LiFlowSimulator:
        """Build the models from a ``family: "liflow"`` card and load the weights (strict).

        Card fields: ``model`` (FlowModelConfig kwargs shared by both modules) or
        ``models: {"propagator": ..., "corrector": ..., "corrector_fine": ...}``; ``prior``
        (PriorConfig kwargs);
        optional ``prior_choice: {"li_large", "frame_large"}``, ``time_step_ps`` (1.0),
        ``training_temperatures_K``, ``recommended_knobs`` and
        ``full_corrector_flow_below_K``. Weights: modules
        ``propagator`` and, optionally, ``corrector``, ``corrector_fine`` and ``selector``
        (the prior classifier, card field ``selector``).
        """
        ckpt = load_checkpoint(name_or_path, directory)
        if ckpt.family != "liflow":
            raise CheckpointError(f"{ckpt.name}: family {ckpt.family!r} is not 'liflow'")
        if "propagator" not in ckpt.state_dicts:
            raise CheckpointError(f"{ckpt.name}: the weights hold no 'propagator' module")
        dev = resolve_device(device)
        card = ckpt.card
        models = {
            key: _build_model(ckpt.name, card, key, ckpt.state_dicts[key]).to(dev)
            for key in ("propagator", "corrector", "corrector_fine")
            if key in ckpt.state_dicts
        }
        prior = _prior_config(card.get("prior") or {})
        choice = card.get("prior_choice") or {}
        return cls(
            models["propagator"],
            models.get("corrector"),
            prior,
            li_large=choice.get("li_large", True),
            frame_large=choice.get("frame_large", False),
            time_step_ps=float(card.get("time_step_ps", 1.0)),
            training_temperatures_K=card.get("training_temperatures_K"),
            name=ckpt.name,
            selector=_build_selector(ckpt.name, card, ckpt.state_dicts.get("selector")),
            compile=compile,
            fine_corrector=models.get("corrector_fine"),
            recommended_knobs=card.get("recommended_knobs"),
            full_corrector_flow_below_K=card.get("full_corrector_flow_below_K"),
        )

    def knob_default(self, name: str, value: Any = None) -> Any:
        """``value`` where given, else this checkpoint's recommended ``name``, else the
        knob's neutral default (:data:`RECOMMENDABLE_KNOBS`)."""
        if value is not None:
            return value
        return self.recommended_knobs.get(name, RECOMMENDABLE_KNOBS[name])

    # -- protocol --------------------------------------------------------------------
    def prepare(self, atoms: Atoms, temperature_K: float, **knobs: Any) -> LiFlowState:
        """Initial state of one structure; knobs as in :meth:`prepare_batch`."""
        return self.prepare_batch([atoms], [temperature_K], **knobs)

    def prepare_batch(
        self,
        atoms_list: Sequence[Atoms],
        temperatures_K: Sequence[float],
        prior_scale_li: float | None = None,
        prior_scale_frame: float | None = None,
        corrector_strength: float = 1.0,
        flow_steps: int | None = None,
        seed: int = 0,
        device: str | None = None,
        prior_choices: Sequence[dict[str, bool]] | None = None,
        corrector_start: str = "sample",
        corrector_every: int = 1,
    ) -> LiFlowState:
        """Initial state of B structures rolled out together (one graph, per-structure T).

        Args:
            atoms_list: B periodic structures (positions taken as unwrapped, Å).
            temperatures_K: B temperatures in K (> 0; outside the training range warns).
            prior_scale_li, prior_scale_frame: multipliers λ of the Propagator prior
                variance σ² of Li / frame atoms (1 = as trained; None: the checkpoint's
                recommended value, else 1).
            corrector_strength: s ∈ [0, 1] (module doc); ignored without a Corrector.
            flow_steps: Euler steps N per flow integration (None: the checkpoint's
                recommended value, else 10).
            seed: seed of the rollout's torch.Generator.
            device: move the models there first ("auto", "cpu", "cuda[:N]").
            prior_choices: B ``{"li": large, "frame": large}`` for the adaptive prior,
                instead of :meth:`prior_choices` (the classifier's, one CHGNet pass per
                new structure, or the card's).
            corrector_start: ``"sample"`` (the Correctors' flows start from a draw of
                their prior, as trained and as the paper describes) or ``"mean"`` (from
                the prior's mean, zero displacement, as the authors' test script does).
            corrector_every: k; the Correctors run on every k-th step only (steps k, 2k,
                …; 1 = every step), the paper's PPPC schedule for k = 4 (its Fig. S2).
        """
        if len(atoms_list) != len(temperatures_K) or not atoms_list:
            raise MDConfigError("need one temperature per structure and at least one structure")
        prior_scale_li = self.knob_default("prior_scale_li", prior_scale_li)
        prior_scale_frame = self.knob_default("prior_scale_frame", prior_scale_frame)
        flow_steps = self.knob_default("flow_steps", flow_steps)
        _check_knobs(corrector_strength, flow_steps, corrector_start, corrector_every)
        temps = [self._check_temperature(float(t)) for t in temperatures_K]
        if device is not None:
            self._to(resolve_device(device))
        dev, dtype = _param(self.propagator)
        numbers = torch.as_tensor(np.concatenate([a.numbers for a in atoms_list]), device=dev)
        self._check_elements(numbers)
        without_li = [b for b, a in enumerate(atoms_list) if LITHIUM_Z not in a.numbers]
        if without_li:
            warnings.warn(
                f"structure(s) {without_li} hold no Li: LiFlow's Li prior (and its training "
                "on Li conductors) does not apply; every atom gets the frame prior",
                stacklevel=2,
            )
        batch = None
        if len(atoms_list) > 1:
            sizes = torch.tensor([len(a) for a in atoms_list], device=dev)
            batch = torch.repeat_interleave(torch.arange(len(atoms_list), device=dev), sizes)
        t = torch.tensor(temps, dtype=torch.float64, device=dev)
        std_kw = dict(batch=batch, dtype=dtype)
        if prior_choices is None:
            choices = self.prior_choices(atoms_list, temps)
        else:
            try:
                choices = [{"li": bool(c["li"]), "frame": bool(c["frame"])} for c in prior_choices]
            except (KeyError, TypeError) as exc:
                raise MDConfigError(
                    'prior_choices needs one {"li": bool, "frame": bool} per structure'
                ) from exc
            if len(choices) != len(atoms_list):
                raise MDConfigError(
                    f"{len(choices)} prior choices for {len(atoms_list)} structures"
                )
        li_large = torch.tensor([c["li"] for c in choices], device=dev)
        frame_large = torch.tensor([c["frame"] for c in choices], device=dev)
        if batch is None:
            li_large, frame_large = li_large[0], frame_large[0]
        std_p = prior_std(
            numbers, t, self.prior, li_large, frame_large,
            prior_scale_li, prior_scale_frame, **std_kw,
        )  # fmt: skip
        std_c = prior_std(numbers, t, self.prior.corrector(), **std_kw)
        positions = torch.as_tensor(np.concatenate([a.positions for a in atoms_list]))
        cells = torch.as_tensor(np.stack([a.cell[:] for a in atoms_list]), dtype=dtype)
        return LiFlowState(
            numbers=numbers,
            positions=positions.to(dev, torch.float64),
            cell=(cells[0] if batch is None else cells).to(dev),
            pbc=torch.as_tensor(np.stack([a.pbc for a in atoms_list]), device=dev),
            masses=masses_of(numbers),
            batch=batch,
            temperatures_K=t.to(dtype),
            std_propagator=std_p,
            std_corrector=std_c,
            generator=torch.Generator(device=dev).manual_seed(int(seed)),
            flow_steps=int(flow_steps),
            corrector_strength=float(corrector_strength),
            time_step_ps=self.time_step_ps,
            prior_choices=tuple(choices),
            corrector_start=corrector_start,
            corrector_every=int(corrector_every),
        )

    def prior_choices(
        self, atoms_list: Sequence[Atoms], temperatures_K: Sequence[float]
    ) -> list[dict[str, bool]]:
        """The adaptive prior's ``{"li": large, "frame": large}`` for each structure.

        From the bundled classifier when there is one (CHGNet features of the structure
        and its temperature), else the card's fixed choice.
        """
        if self.selector is None:
            return [self._card_choice() for _ in atoms_list]
        return [
            {**self._card_choice(), **self.selector.predict(atoms, float(t))}
            for atoms, t in zip(atoms_list, temperatures_K, strict=True)
        ]

    def step(self, state: LiFlowState) -> LiFlowState:
        """One Propagator–Corrector step (module doc); a new state, the old is untouched.

        Raises:
            SimulationDiverged: every one of 1 + ``max_retries`` proposals was rejected.
        """
        # Structures of a batch are accepted one by one: only the structures whose step
        # was rejected are drawn again (as a smaller batch), so one unstable replica
        # neither costs a whole batch per re-sample nor waits for a draw that suits all;
        # within a rejected structure only the noise around the offending atoms is renewed.
        noise = self._draw_noise(state, state.numbers.shape[0])
        pending = torch.ones_like(state.temperatures_K, dtype=torch.bool)
        step_delta = torch.zeros_like(state.positions)
        reason = ""
        for attempt in range(self.max_retries + 1):
            sub, atoms = _structures(state, pending)
            atom_ids = atoms.nonzero().squeeze(1)
            delta = self.propose(sub, noise=tuple(n[atoms] for n in noise))
            bad, reason, offenders = self._rejected_structures(sub, delta, atom_ids)
            accepted = (~bad)[_structure_index(sub)]
            step_delta[atoms] = torch.where(
                accepted[:, None], delta.to(step_delta.dtype), step_delta[atoms]
            )
            pending[pending.clone()] = bad  # of the pending structures, the rejected ones
            if not bool(pending.any()):
                return replace(
                    state,
                    positions=state.positions + step_delta,
                    step=state.step + 1,
                    time_ps=(state.step + 1) * state.time_step_ps,
                    max_displacement_A=float(torch.linalg.vector_norm(step_delta, dim=-1).max()),
                    retries=attempt,
                )
            renew = atom_ids[self._redraw_region(sub, offenders)]
            for eps, fresh in zip(noise, self._draw_noise(state, len(renew)), strict=True):
                eps[renew] = fresh
        step = state.step + 1
        raise SimulationDiverged(
            f"LiFlow ({self.name}) diverged at step {step} (t = {step * state.time_step_ps:g} "
            f"ps): {reason}, after {self.max_retries} re-samples with new noise",
            reason=reason,
            step=step,
            time_ps=step * state.time_step_ps,
        )

    def frame(self, state: LiFlowState) -> Frame:
        """Unwrapped positions (N, 3) float64 Å, time in ps, the last step's max |Δ_i| (Å)."""
        return Frame(
            positions=state.positions.detach().cpu().numpy().astype(np.float64),
            time_ps=float(state.time_ps),
            observables={
                "max_displacement_A": state.max_displacement_A,
                "retries": float(state.retries),
            },
        )

    def correct(self, atoms: Atoms, temperature_K: float, seed: int = 0) -> Atoms:
        """``atoms`` after one full-strength correction (steps 2 and 2b of the module doc).

        A copy with positions x + c (Å), c drawn from the Corrector's prior and carried
        through its flow conditioned on x at ``temperature_K`` (K), then, with a fine
        Corrector, its correction of x + c added the same way; mass-weighted centre
        of mass kept; as many Euler flow steps each as in a rollout's default step
        (module doc, 2c). On a structure that needs no correction (an MD frame) a good Corrector
        moves atoms little and keeps the RDF;
        :func:`explorer.liflow.evaluate.corrector_rdf_bias` measures that.

        Raises:
            MDConfigError: the checkpoint has no Corrector.
        """
        if self.corrector is None:
            raise MDConfigError(f"checkpoint {self.name} has no Corrector")
        # The Propagator's prior is not used here: a fixed choice skips the classifier.
        state = self.prepare(atoms, temperature_K, seed=seed, prior_choices=[self._card_choice()])
        _, dtype = _param(self.corrector)
        x = state.positions.to(dtype)
        args = (state.numbers, state.cell, state.temperatures_K)
        c = torch.zeros_like(x)
        for model in self._flow_models()[1:]:  # the Corrector, then the fine one
            noise = torch.randn(x.shape, generator=state.generator, dtype=dtype, device=x.device)
            c = c + self._flow(model, x + c, state.std_corrector, state, args, noise)
        c = remove_center_of_mass(c, state.masses, state.batch)
        corrected = atoms.copy()
        corrected.positions = (state.positions + c.to(torch.float64)).cpu().numpy()
        return corrected

    # -- internals -------------------------------------------------------------------
    def propose(
        self, state: LiFlowState, noise: tuple[torch.Tensor, ...] | None = None
    ) -> torch.Tensor:
        """A proposed total step Δ (N, 3) in Å, CoM drift removed (not yet checked).

        ``noise``: the standard-normal prior draws ε (N, 3) of the Propagator and, when
        they run, the Corrector and the fine Corrector (:meth:`_draw_noise`); drawn here
        when absent. On the CPU a batch runs in groups of structures (``cpu_group_atoms``);
        the noise is drawn for the whole batch first, so the grouping changes no draw.
        """
        if noise is None:
            noise = self._draw_noise(state, state.numbers.shape[0])
        groups = self._structure_groups(state)
        if len(groups) == 1:
            return self._propose_graph(state, noise)
        delta = torch.empty_like(noise[0])
        for keep in groups:
            sub, atoms = _structures(state, keep)
            delta[atoms] = self._propose_graph(sub, tuple(eps[atoms] for eps in noise))
        return delta

    def _structure_groups(self, state: LiFlowState) -> list[torch.Tensor]:
        """(B,) masks of the structure groups whose networks run as one graph: all of
        them, except on the CPU with ``cpu_group_atoms`` set (consecutive structures,
        at most that many atoms per group unless one structure alone has more), and
        apart by Corrector flow steps when structures differ in them (module doc, 2d)."""
        full = (self._full_corrector_flow(state) & self._runs_corrector(state)).tolist()
        on_cpu = state.positions.device.type == "cpu"
        grouped = self.cpu_group_atoms is not None and state.batch is not None and on_cpu
        budget = self.cpu_group_atoms if grouped else None
        counts = torch.bincount(_structure_index(state), minlength=len(full)).tolist()
        groups = []
        for kind in (False, True):  # each Corrector step count on its own
            members = [i for i, f in enumerate(full) if f == kind]
            groups += _packed(members, counts, budget)
        masks = torch.zeros((len(groups), len(full)), dtype=torch.bool)
        for mask, members in zip(masks, groups, strict=True):
            mask[members] = True
        return list(masks.to(state.temperatures_K.device))

    def _full_corrector_flow(self, state: LiFlowState) -> torch.Tensor:
        """(B,) whether each structure's Correctors get the full N flow steps (module
        doc, 2d)."""
        below = self.full_corrector_flow_below_K
        if below is None:
            return torch.zeros_like(state.temperatures_K, dtype=torch.bool)
        return state.temperatures_K < below

    def _propose_graph(self, state: LiFlowState, noise: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """:meth:`propose` for the structures of ``state`` as one graph."""
        _, dtype = _param(self.propagator)
        x = state.positions.to(dtype)
        args = (state.numbers, state.cell, state.temperatures_K)
        d = self._flow(self.propagator, x, state.std_propagator, state, args, noise[0])
        s = state.corrector_strength
        if self._runs_corrector(state):
            for model, eps in zip(self._flow_models()[1:], noise[1:], strict=True):
                if not bool(torch.isfinite(d).all()):
                    break  # rejected anyway; a flow on NaN positions only costs time
                c = self._flow(model, x + d, state.std_corrector, state, args, eps)
                d = d + s * c
        return remove_center_of_mass(d, state.masses, state.batch)

    def _card_choice(self) -> dict[str, bool]:
        """The card's fixed adaptive-prior choice (the classifier's fallback)."""
        return {"li": self.li_large, "frame": self.frame_large}

    def _runs_corrector(self, state: LiFlowState) -> bool:
        """Whether the Correctors run in the step from ``state`` (step + 1 is a multiple
        of ``corrector_every``; strength > 0)."""
        due = (state.step + 1) % state.corrector_every == 0
        return self.corrector is not None and state.corrector_strength > 0 and due

    def _draw_noise(self, state: LiFlowState, n_atoms: int) -> tuple[torch.Tensor, ...]:
        """ε ~ N(0, I) of shape (n_atoms, 3) for the Propagator and, if they run, the
        Corrector and the fine Corrector (zeros for those with ``corrector_start="mean"``)."""
        _, dtype = _param(self.propagator)
        n_flows = len(self._flow_models()) if self._runs_corrector(state) else 1
        draws = tuple(
            torch.randn(
                (n_atoms, 3), generator=state.generator, dtype=dtype, device=state.positions.device
            )
            for _ in range(n_flows)
        )
        if state.corrector_start == "mean":
            # Drawn all the same, so the Propagator sees the same random stream either way.
            return draws[:1] + tuple(torch.zeros_like(eps) for eps in draws[1:])
        return draws

    def _flow_models(self) -> tuple[FlowModel, ...]:
        """Propagator, then the Corrector and the fine Corrector where present."""
        return tuple(filter(None, (self.propagator, self.corrector, self.fine_corrector)))

    def _redraw_region(self, state: LiFlowState, offenders: torch.Tensor) -> torch.Tensor:
        """(N,) mask of the atoms whose noise a redraw renews: the ``offenders`` and
        every atom within ``resample_radius_A`` of one (periodic images included)."""
        region = offenders.clone()
        if self.resample_radius_A > 0 and bool(offenders.any()):
            graph = radius_graph(
                state.positions, state.cell.to(torch.float64), self.resample_radius_A,
                state.batch, _graph_pbc(state),
            )  # fmt: skip
            src, dst = graph.edge_index
            region[dst[offenders[src]]] = True
        return region

    def _flow(
        self,
        model: FlowModel,
        x: torch.Tensor,
        std: torch.Tensor,
        state: LiFlowState,
        args: tuple,
        noise: torch.Tensor,
    ) -> torch.Tensor:
        numbers, cell, temps = args
        if cell.dim() == 3 and self._compile:
            # A batch's cells (B, 3, 3): without this, torch.compile specialises B = 1 (a
            # re-sample of one structure) apart from B > 1 and compiles the networks again,
            # mid-rollout.
            torch._dynamo.decorators.mark_unbacked(cell, 0)
        graph = model.build_graph(x, cell, state.batch, _graph_pbc(state))
        return integrate_flow(
            model, numbers, x, cell, temps, std, state.generator, self.flow_steps_of(model, state),
            state.batch, graph, self._forwards.get(id(model)), noise,
            self._geometries.get(id(model)),
        )  # fmt: skip

    def flow_steps_of(self, model: FlowModel, state: LiFlowState) -> int:
        """Euler steps of ``model``'s flow: the state's N for the Propagator; for the
        Correctors ⌈N · CORRECTOR_FLOW_FRACTION⌉, or ⌈N · TWO_LEVEL_FLOW_FRACTION⌉ each
        when a fine Corrector shares the correction (at least 1; module doc, 2c), and N
        for structures below ``full_corrector_flow_below_K`` (2d)."""
        if model is self.propagator:
            return state.flow_steps
        full = self._full_corrector_flow(state)
        if bool(full.any()):
            if not bool(full.all()):  # _structure_groups keeps them apart
                raise MDConfigError("structures on both sides of full_corrector_flow_below_K")
            return state.flow_steps
        two_level = self.fine_corrector is not None
        fraction = TWO_LEVEL_FLOW_FRACTION if two_level else CORRECTOR_FLOW_FRACTION
        return max(1, math.ceil(state.flow_steps * fraction))

    def _rejected_structures(
        self, state: LiFlowState, delta: torch.Tensor, atom_ids: torch.Tensor
    ) -> tuple[torch.Tensor, str, torch.Tensor]:
        """Which structures' proposed step is rejected (B,) bool, the first reason (naming
        atoms by ``atom_ids``, their indices in the whole batch), and the offending atoms
        (N,) bool: every atom of a structure with a non-finite Δ, atoms moved too far,
        both atoms of a close pair."""
        structure = _structure_index(state)
        bad = torch.zeros_like(state.temperatures_K, dtype=torch.bool)
        offenders = torch.zeros_like(structure, dtype=torch.bool)
        reasons = []
        finite = torch.isfinite(delta).all(dim=-1)
        if not bool(finite.all()):
            bad[structure[~finite]] = True
            offenders |= bad[structure]
            reasons.append("non-finite displacement (NaN/inf) predicted")
        norms = torch.nan_to_num(torch.linalg.vector_norm(delta, dim=-1), nan=0.0)
        too_far = norms > self.max_step_A
        if bool(too_far.any()):
            bad[structure[too_far]] = True
            offenders |= too_far
            worst = int(norms.argmax())
            reasons.append(
                f"atom {int(atom_ids[worst])} moved {float(norms[worst]):.2f} Å in one step "
                f"(bound {self.max_step_A:g} Å)"
            )
        new = state.positions + torch.nan_to_num(delta).to(torch.float64)
        cell = state.cell.to(torch.float64)
        # Searched with a longer cutoff and filtered: vesin's cell list is slow for tiny
        # cutoffs (LGPS 200 atoms: 4.7 ms at 0.5 Å, 0.5 ms at 2 Å), the pairs are the same.
        search = max(self.min_distance_A, _CLASH_SEARCH_A)
        found = radius_graph(new, cell, search, state.batch, _graph_pbc(state))
        near = found.distances < self.min_distance_A
        pairs, distances = found.edge_index[:, near], found.distances[near]
        if pairs.shape[1]:
            bad[structure[pairs[0]]] = True
            offenders[pairs.flatten()] = True
            i, j = (int(atom_ids[v]) for v in pairs[:, 0])
            reasons.append(
                f"atoms {i} and {j} are {float(distances[0]):.3f} Å apart "
                f"(minimum {self.min_distance_A:g} Å)"
            )
        return bad, (reasons[0] if reasons else ""), offenders

    def _check_temperature(self, t: float) -> float:
        if not (math.isfinite(t) and t > 0):
            raise MDConfigError(f"temperature must be a finite number > 0 K, got {t!r}")
        rng = self.training_temperatures_K
        if rng and not min(rng) <= t <= max(rng):
            warnings.warn(
                f"{t:g} K is outside the training temperatures of {self.name} "
                f"({min(rng):g}–{max(rng):g} K): LiFlow extrapolates poorly in T (too much, "
                "fictitious diffusion at low T; instabilities at high T)",
                stacklevel=3,
            )
        return t

    def _check_elements(self, numbers: torch.Tensor) -> None:
        for model in self._flow_models():
            known = set(model.config.elements)
            unknown = sorted(set(numbers.tolist()) - known)
            if unknown:
                names = ", ".join(_symbol(z) for z in unknown)
                raise UnknownElementError(
                    f"element(s) {names} are not in the vocabulary of LiFlow checkpoint "
                    f"{self.name!r} (it knows {', '.join(_symbol(z) for z in sorted(known))})"
                )

    def _to(self, device: str) -> None:
        for model in self._flow_models():
            model.to(device)


def _checked_recommended_knobs(knobs: dict[str, Any] | None, name: str) -> dict[str, Any]:
    """A card's ``recommended_knobs``, checked: known names, usable values."""
    knobs = dict(knobs or {})
    unknown = sorted(set(knobs) - set(RECOMMENDABLE_KNOBS))
    if unknown:
        raise CheckpointError(
            f"{name}: recommended_knobs names {unknown}; known: {sorted(RECOMMENDABLE_KNOBS)}"
        )
    for key, value in knobs.items():
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if key == "flow_steps" and not (number and isinstance(value, int) and value >= 1):
            raise CheckpointError(
                f"{name}: recommended flow_steps must be an integer >= 1, got {value!r}"
            )
        if key != "flow_steps" and not (number and 0.0 < float(value) < math.inf):
            raise CheckpointError(f"{name}: recommended {key} must be > 0, got {value!r}")
    return {k: v if k == "flow_steps" else float(v) for k, v in knobs.items()}


def _check_knobs(
    corrector_strength: float, flow_steps: int, corrector_start: str, corrector_every: int
) -> None:
    if not 0.0 <= float(corrector_strength) <= 1.0:
        raise MDConfigError(f"corrector_strength must lie in [0, 1], got {corrector_strength}")
    for name, value in (("flow_steps", flow_steps), ("corrector_every", corrector_every)):
        if isinstance(value, bool) or int(value) != value or value < 1:
            raise MDConfigError(f"{name} must be an integer >= 1, got {value}")
    if corrector_start not in CORRECTOR_STARTS:
        raise MDConfigError(
            f"corrector_start must be one of {CORRECTOR_STARTS}, got {corrector_start!r}"
        )


def _structures(state: LiFlowState, keep: torch.Tensor) -> tuple[LiFlowState, torch.Tensor]:
    """The state restricted to the structures where ``keep`` (B,) is true, and the (N,)
    mask of their atoms; the state itself when it keeps them all."""
    if bool(keep.all()):
        return state, torch.ones_like(state.numbers, dtype=torch.bool)
    atoms = keep[state.batch]
    renumbered = torch.cumsum(keep.long(), 0) - 1
    sub = replace(
        state,
        numbers=state.numbers[atoms],
        positions=state.positions[atoms],
        cell=state.cell[keep],
        pbc=state.pbc[keep],
        masses=state.masses[atoms],
        batch=renumbered[state.batch[atoms]],
        temperatures_K=state.temperatures_K[keep],
        std_propagator=state.std_propagator[atoms],
        std_corrector=state.std_corrector[atoms],
    )
    return sub, atoms


def _packed(members: list[int], sizes: list[int], budget: int | None) -> list[list[int]]:
    """``members`` in order, packed greedily into runs of total ``sizes`` at most
    ``budget`` (a member larger than it alone); one run without a budget; none if empty."""
    runs: list[list[int]] = []
    total = 0
    for i in members:
        if not runs or (budget is not None and total + sizes[i] > budget):
            runs.append([])
            total = 0
        runs[-1].append(i)
        total += sizes[i]
    return runs


def _structure_index(state: LiFlowState) -> torch.Tensor:
    """(N,) structure index of every atom (zeros for a single structure)."""
    if state.batch is not None:
        return state.batch
    return torch.zeros(state.positions.shape[0], dtype=torch.long, device=state.positions.device)


def _graph_pbc(state: LiFlowState) -> torch.Tensor:
    return state.pbc[0] if state.batch is None else state.pbc


def _param(model: torch.nn.Module) -> tuple[torch.device, torch.dtype]:
    p = next(model.parameters())
    return p.device, p.dtype


def _symbol(z: int) -> str:
    return chemical_symbols[z] if 0 < z < len(chemical_symbols) else f"Z={z}"


def _build_model(name: str, card: dict, key: str, state_dict: dict) -> FlowModel:
    cfg = (card.get("models") or {}).get(key) or card.get("model")
    if cfg is None:
        raise CheckpointError(f"{name}: the card has no model config for the {key}")
    model = FlowModel(FlowModelConfig(**cfg))
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{name}: {key} weights do not match its config ({exc})") from exc
    return model.eval()


def _build_selector(name: str, card: dict, state_dict: dict | None) -> PriorSelector | None:
    if state_dict is None:
        return None
    info = card.get("selector") or {}
    selector = PriorSelector(int(info.get("in_dim", FEATURE_DIM)), info.get("thresholds_A2_ps"))
    try:
        selector.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{name}: prior classifier weights do not match ({exc})") from exc
    return selector.eval()


def _prior_config(fields: dict) -> PriorConfig:
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}
    return PriorConfig(**fields)
