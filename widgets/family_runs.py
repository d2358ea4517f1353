"""UI-free parts of the FlashMD and CG tabs, shared by Jupyter and Panel.

The Jupyter tabs (:mod:`widgets.flashmd_tab`, :mod:`widgets.cg_tab`) and the Panel tabs
(:mod:`widgets.app_flashmd`, :mod:`widgets.app_cg`) create their own widgets; what a run
needs besides widgets lives here: the checkpoint and polymer lists, the card defaults of
the knobs, the functions that build a :class:`~explorer.session.Rollout`, the reference
data and the figures and summary lines of the live views, and :class:`FlashMDRun` /
:class:`CGRun`, the halves of the tabs that do not depend on the widget library (they
read and set the controls' ``.value`` only). No widget import here.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
from ase import Atoms

from explorer.analysis.msd import MSDResult, msd
from explorer.analysis.polymer import contact_map, mean_internal_distance
from explorer.analysis.rdf import RDFResult, overlap_score, rdf, sparse_pairs
from explorer.checkpoints import CHECKPOINT_DIR, list_checkpoints
from explorer.errors import ExplorerError
from explorer.session import Progress, Rollout
from explorer.trajectory import Trajectory
from widgets import figures
from widgets.controller import WARNING, Message
from widgets.helpers import _duration
from widgets.live import RDF_BIN_A, _or_none

# -- FlashMD -----------------------------------------------------------------------------

FLASHMD_SYSTEMS = ("argon", "al110")
SYSTEM_LABELS = {"argon": "liquid argon (256 Ar, LJ)", "al110": "Al(110) slab (240 Al, EMT)"}
TEST_FRAME, FRESH = "test", "fresh"
THERMOSTAT_OPTIONS = (("none (NVE)", "none"), ("Langevin", "langevin"), ("Bussi (SVR)", "bussi"))
DEFAULT_TEMPERATURES_K = {"argon": 94.4, "al110": 700.0}


@dataclass(frozen=True)
class FlashMDReference:
    """The held-out test trajectory of a system, its MSD and (periodic cells) RDF."""

    path: Path
    traj: Trajectory
    temperature_K: float | None
    msd: MSDResult | None
    rdf: RDFResult | None


@functools.lru_cache(maxsize=8)
def _reference_cached(path: str, mtime_ns: int) -> FlashMDReference:
    from explorer.h5md import read_h5md

    traj = read_h5md(path)
    temperature = traj.metadata.get("temperature_K")
    periodic = bool(np.all(traj.pbc))
    return FlashMDReference(
        path=Path(path),
        traj=traj,
        temperature_K=float(temperature) if temperature is not None else None,
        msd=_or_none(msd, traj),
        rdf=_or_none(rdf, traj, bin_width=RDF_BIN_A, discard_fraction=0.0) if periodic else None,
    )


def reference_path(system: str, data_dir: Path | None = None) -> Path | None:
    """The first held-out test trajectory of a FlashMD system, or None."""
    from explorer.flashmd.systems import DATA_DIR, system_files

    files = system_files(system, "test", Path(data_dir) if data_dir else DATA_DIR)
    return files[0] if files else None


def flashmd_reference(system: str, data_dir: Path | None = None) -> FlashMDReference | None:
    """The analysed test trajectory of ``system`` (cached per file version), or None."""
    path = reference_path(system, data_dir)
    if path is None:
        return None
    return _reference_cached(str(path), path.stat().st_mtime_ns)


@functools.lru_cache(maxsize=4)
def _fresh_atoms(system: str) -> Atoms:
    from explorer.cli_flashmd import flashmd_start_atoms

    return flashmd_start_atoms(system)


def flashmd_start(system: str, start: str, data_dir: Path | None = None) -> Atoms:
    """The start structure: test-trajectory frame 0 with momenta, or a fresh build."""
    if start == TEST_FRAME:
        path = reference_path(system, data_dir)
        if path is None:
            raise ExplorerError(
                f"no test trajectory of {system} in {data_dir or 'sample_data/flashmd'}; "
                "choose the fresh start or run `accelmd flashmd-data`"
            )
        from explorer.cli_flashmd import flashmd_start_atoms

        return flashmd_start_atoms(str(path))
    return _fresh_atoms(system).copy()


def flashmd_cards(directory: Path = CHECKPOINT_DIR) -> list[dict[str, Any]]:
    """Model cards of the FlashMD checkpoints in ``directory`` (unreadable ones skipped)."""
    try:
        cards = list_checkpoints(Path(directory))
    except ExplorerError:
        return []
    return [c for c in cards if c.get("family") == "flashmd"]


def _card_system(card: dict[str, Any]) -> str | None:
    system = card.get("system")
    if system is None and card.get("materials"):
        system = card["materials"][0]
    return system


def _stride(card: dict[str, Any]) -> float:
    return float(card.get("stride_fs") or card.get("model", {}).get("stride_fs") or 0.0)


def flashmd_checkpoint_options(cards: list[dict[str, Any]], system: str) -> list[tuple[str, int]]:
    """(label, index into ``cards``) of the checkpoints of ``system``, shortest stride first."""
    options = [
        (f"{c.get('name')} (stride {_stride(c):g} fs)", i)
        for i, c in enumerate(cards)
        if _card_system(c) == system
    ]
    options.sort(key=lambda o: _stride(cards[o[1]]))
    return options


def flashmd_card_defaults(card: dict[str, Any]) -> dict[str, Any]:
    """Knob values a card recommends: the two filters always, thermostat and T if given."""
    knobs = card.get("recommended_knobs") or {}
    out: dict[str, Any] = {
        "energy_conservation": bool(knobs.get("energy_conservation", True)),
        "random_rotation": bool(knobs.get("random_rotation", False)),
    }
    if knobs.get("thermostat") in dict(THERMOSTAT_OPTIONS).values():
        out["thermostat"] = knobs["thermostat"]
    if knobs.get("temperature_K"):
        out["temperature_K"] = float(knobs["temperature_K"])
    return out


def flashmd_steps_text(n_steps: int, card: dict[str, Any] | None) -> str:
    stride = _stride(card) if card is not None else 0.0
    return f"= {n_steps * stride / 1000:g} ps simulated"


def no_flashmd_checkpoint_text(system: str, directory: Path) -> str:
    return (
        f"No FlashMD checkpoint for {system} in {directory}; train one with "
        f"<code>accelmd train flashmd --system {system}</code>."
    )


def build_flashmd_rollout(
    name: str,
    system: str,
    start: str,
    device: str,
    knobs: dict[str, Any],
    n_steps: int,
    checkpoint_dir: Path,
    data_dir: Path | None = None,
    producer: str = "widgets.FlashMDTab",
) -> Rollout:
    """Load the checkpoint, build the start structure, return an unstarted Rollout."""
    from explorer.flashmd.simulate import FlashMDSimulator

    simulator = FlashMDSimulator.from_checkpoint(name, device=device, directory=checkpoint_dir)
    atoms = flashmd_start(system, start, data_dir)
    metadata = {
        "producer": producer,
        "checkpoint": simulator.name,
        "stride_fs": simulator.stride_fs,
        "material": atoms.info.get("material"),
        "temperature_K": knobs["temperature_K"],
    }
    return Rollout(simulator, atoms, n_steps, knobs, metadata=metadata)


def flashmd_target_K(knobs: Mapping[str, Any]) -> float | None:
    """The thermostat target of a run, None without a thermostat (NVE)."""
    return knobs["temperature_K"] if knobs.get("thermostat", "none") != "none" else None


def flashmd_figures(
    traj: Trajectory, reference: FlashMDReference | None, target_K: float | None
) -> tuple[dict[str, go.Figure], dict | None]:
    """Fresh temperature, energy, RDF and MSD figures of a FlashMD trajectory, and the
    RDF overlap with the reference (None when there is none)."""
    ref = reference
    temperature = traj.energies.get("temperature")
    out = {
        "temperature": figures.temperature_figure(traj.times_ps, temperature, target_K),
        "energy": figures.energy_figure(traj.times_ps, traj.energies, traj.n_atoms),
    }
    model_msd = _or_none(msd, traj) if traj.n_frames >= 2 else None
    out["msd"] = figures.msd_figure(
        model_msd,
        ref.msd if ref else None,
        species=sorted(set(traj.symbols)),
        title="MSD (reference: held-out test trajectory, dashed)",
    )
    overlap, sparse = None, []
    if np.all(traj.pbc):
        model_rdf = _or_none(rdf, traj, bin_width=RDF_BIN_A)
        if model_rdf is not None and ref is not None and ref.rdf is not None:
            overlap = _or_none(overlap_score, model_rdf, ref.rdf)
            sparse = _or_none(sparse_pairs, model_rdf, ref.rdf) or []
        out["rdf"] = figures.rdf_figure(model_rdf, ref.rdf if ref else None, overlap, sparse=sparse)
        if overlap is not None:  # the summary line quotes the well-sampled pairs only
            overlap = {k: v for k, v in overlap.items() if k not in sparse} or None
    else:
        fig = figures.rdf_figure(None)
        fig.layout.annotations = []
        out["rdf"] = figures._empty_note(
            fig, "no RDF: the cell is not periodic in every direction (a slab); see the MSD"
        )
    return out, overlap


def flashmd_summary(traj: Trajectory, target_K: float | None, overlap: dict | None) -> str:
    """Mean temperature, total-energy drift (NVE) and the RDF overlap, one line."""
    parts = [f"{traj.n_frames - 1} strides, {float(traj.times_ps[-1]):g} ps"]
    temperature = traj.energies.get("temperature")
    if temperature is not None and temperature.size > 1:
        parts.append(f"⟨T⟩ = {float(np.mean(temperature[1:])):.1f} K")
    total = traj.energies.get("total_energy")
    nve = target_K is None
    if nve and total is not None and total.size > 2 and np.all(np.isfinite(total)):
        slope = np.polyfit(traj.times_ps, total, 1)[0]
        parts.append(f"NVE energy drift {slope / traj.n_atoms * 1e3:.3g} meV/atom/ps")
    if overlap:
        parts.append(f"RDF overlap with the test trajectory {min(overlap.values()):.3f}")
    return "; ".join(parts)


class FlashMDRun:
    """The FlashMD tab apart from its widgets: card, knobs, Rollout builder, reference, views.

    Mixed into :class:`widgets.flashmd_tab.FlashMDTab` (Jupyter) and
    :class:`widgets.app_flashmd.FlashMDApp` (Panel), before their
    :class:`~widgets.controller.RolloutController` base. The front-end provides the
    controls ``system``, ``start_from``, ``checkpoint`` (index into ``cards``),
    ``thermostat``, ``temperature``, ``time_constant``, ``energy_conservation``,
    ``random_rotation``, ``n_steps``, ``seed`` and ``device``.
    """

    producer = "widgets.FlashMDTab"

    def _init_flashmd(self, checkpoint_dir: Path, data_dir: Path | None) -> None:
        self.checkpoint_dir = Path(checkpoint_dir)
        self.data_dir = Path(data_dir) if data_dir else None
        self.cards = flashmd_cards(self.checkpoint_dir)
        self.reference: FlashMDReference | None = None
        self.overlap: dict | None = None
        self._target_K: float | None = None
        self._run_system = "argon"

    @property
    def card(self) -> dict[str, Any] | None:
        index = self.checkpoint.value
        return None if index is None else self.cards[index]

    def knobs(self) -> dict[str, Any]:
        """The knob values as ``FlashMDSimulator.prepare`` names them."""
        return {
            "temperature_K": float(self.temperature.value),
            "thermostat": self.thermostat.value,
            "time_constant_fs": float(self.time_constant.value),
            "energy_conservation": bool(self.energy_conservation.value),
            "random_rotation": bool(self.random_rotation.value),
            "seed": int(self.seed.value),
        }

    def _apply_card_defaults(self, card: dict[str, Any]) -> None:
        """Set the filters (and thermostat, temperature where given) the card recommends."""
        for name, value in flashmd_card_defaults(card).items():
            control = self.temperature if name == "temperature_K" else getattr(self, name)
            control.value = value

    def _make_builder(self) -> Callable[[], Rollout]:
        card = self.card
        if card is None:
            raise ExplorerError(f"no FlashMD checkpoint for {self.system.value}")
        self._run_system = self.system.value
        return functools.partial(
            build_flashmd_rollout, card.get("name"), self.system.value, self.start_from.value,
            self.device.value, self.knobs(), int(self.n_steps.value), self.checkpoint_dir,
            self.data_dir, self.producer,
        )  # fmt: skip

    def _load_reference(self, rollout: Rollout) -> None:
        """Driver thread: the thermostat target and the reference trajectory of a new run."""
        self._target_K = flashmd_target_K(rollout.knobs)
        try:
            self.reference = flashmd_reference(self._run_system, self.data_dir)
        except (ExplorerError, OSError) as exc:  # a broken reference must not stop a run
            self.reference = None
            note = Message(f"reference trajectory unreadable: {exc}", WARNING)
            self._post(functools.partial(self._show, note))

    def build_figures(self, traj: Trajectory) -> dict[str, go.Figure]:
        """Fresh temperature, energy, RDF and MSD figures of a FlashMD trajectory."""
        out, self.overlap = flashmd_figures(traj, self.reference, self._target_K)
        return out

    def summary_text(self, traj: Trajectory) -> str:
        """Mean temperature, total-energy drift and the RDF overlap, one line."""
        return flashmd_summary(traj, self._target_K, self.overlap)


# -- CG polymers -------------------------------------------------------------------------

DEFAULT_CG_CHECKPOINT = "cg-polymers"
CONTACT_CUTOFF_SIGMA = 3.0  # as accelmd eval cg


def polymer_dir_default() -> Path:
    from explorer.cg.polymers import POLYMER_DIR

    return POLYMER_DIR


def cg_cards(directory: Path = CHECKPOINT_DIR) -> list[dict[str, Any]]:
    """Model cards of the CG checkpoints in ``directory`` (none when it is unreadable)."""
    try:
        cards = list_checkpoints(Path(directory))
    except ExplorerError:
        return []
    return [c for c in cards if c.get("family") == "cg"]


def default_cg_index(cards: list[dict[str, Any]]) -> int | None:
    names = [c.get("name") for c in cards]
    if not names:
        return None
    return names.index(DEFAULT_CG_CHECKPOINT) if DEFAULT_CG_CHECKPOINT in names else 0


def polymer_options(directory: Path, validation: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """(label, name) of every polymer file in ``directory``: held-out test polymers first."""
    names = sorted(p.stem for p in Path(directory).glob("*.h5"))

    def label(name: str) -> str:
        if name.startswith("test_II"):
            return f"{name} (class II, held-out test polymer)"
        if name in validation:
            return f"{name} (class I, validation)"
        if name.startswith("train_I"):
            return f"{name} (class I, training)"
        return name

    names.sort(key=lambda n: (not n.startswith("test_"), n))
    return [(label(n), n) for n in names]


def no_cg_checkpoint_text(directory: Path) -> str:
    return f"No CG checkpoint in {directory}; train one with <code>accelmd train cg</code>."


def no_polymer_text(directory: Path) -> str:
    return f"No polymer file in {directory}; run <code>accelmd data --cg</code>."


def cg_card_settings(card: dict[str, Any]) -> tuple[int, float, tuple[str, ...]]:
    """(most refinement noise levels, CG time step in τ, validation polymers) of a card."""
    return (
        int(card.get("model", {}).get("noise_levels", 10)),
        float(card.get("dt_tau", 2.0)),
        tuple(card.get("validation_polymers") or ()),
    )


def polymer_summary(polymer_dir: Path, name: str) -> str:
    """From ``reference_observables.json`` when present (no file is coarse-grained)."""
    path = Path(polymer_dir) / "reference_observables.json"
    try:
        entry = json.loads(path.read_text())["polymers"][name]
    except (OSError, KeyError, ValueError, TypeError):
        return ""
    return (
        f"{entry.get('n_beads', '?')} beads, reference {entry.get('length_tau', 0):g} τ: "
        f"⟨R_g²⟩ = {entry.get('mean_rg2', float('nan')):.2f} ± "
        f"{entry.get('std_rg2', float('nan')):.2f} σ², t_R = "
        f"{entry.get('t_relax_tau', float('nan')):.3g} τ"
    )


def cg_steps_text(n_steps: int, dt_tau: float) -> str:
    return f"= {n_steps * dt_tau:g} τ simulated"


def cg_progress_text(progress: Progress) -> str:
    """Like :func:`widgets.helpers.progress_text`, in τ."""
    text = (
        f"{progress.status} · {progress.steps_done}/{progress.n_steps} steps · "
        f"{progress.simulated_ps:g} τ simulated · wall {_duration(progress.wall_s)}"
    )
    if progress.eta_s is not None:
        text += f" · ETA {_duration(progress.eta_s)}"
    return text


@dataclass(frozen=True)
class PolymerReference:
    """The long reference of one polymer at the CG level: R_g² (fine, σ²) series, R(s),
    contact map and the CG bonds."""

    name: str
    rg2: np.ndarray
    r_s: tuple[np.ndarray, np.ndarray]
    contacts: np.ndarray
    bonds: np.ndarray
    masses: np.ndarray
    length_tau: float

    @property
    def mean_rg2(self) -> float:
        return float(np.mean(self.rg2))

    @property
    def std_rg2(self) -> float:
        return float(np.std(self.rg2))


def polymer_reference(simulator: Any, name: str) -> PolymerReference:
    """Coarse-grain a polymer's reference with the simulator's mapping and analyse it."""
    cg = simulator.load(name)
    positions = np.asarray(cg.positions, dtype=float)
    bond_matrix = np.asarray(cg.bond_matrix)
    return PolymerReference(
        name=name,
        rg2=np.asarray(cg.rg2_fine, dtype=float),
        r_s=mean_internal_distance(positions),
        contacts=contact_map(positions, CONTACT_CUTOFF_SIGMA),
        bonds=np.argwhere(np.triu(bond_matrix)),
        masses=np.asarray(cg.cg_masses, dtype=float),
        length_tau=float((positions.shape[0] - 1) * cg.dt_tau),
    )


def build_cg_rollout(
    name: str,
    knobs: dict[str, Any],
    n_steps: int,
    checkpoint_dir: Path,
    polymer_dir: Path,
    simulator_options: dict[str, Any] | None = None,
    references: dict[tuple[str, str], PolymerReference] | None = None,
    producer: str = "widgets.CGTab",
) -> tuple[Rollout, PolymerReference, float]:
    """An unstarted Rollout of ``knobs["polymer"]``, its reference (cached in
    ``references``) and the CG time step in τ."""
    from explorer.cg.simulate import CGSimulator

    simulator = CGSimulator.from_checkpoint(
        name, checkpoint_dir, polymer_dir=polymer_dir, **(simulator_options or {})
    )
    atoms = simulator.polymer_atoms(knobs["polymer"])
    cache = references if references is not None else {}
    key = (f"{simulator.name}:{polymer_dir}", knobs["polymer"])
    if key not in cache:
        cache[key] = polymer_reference(simulator, knobs["polymer"])
    metadata = {
        "producer": producer,
        "checkpoint": simulator.name,
        "polymer": knobs["polymer"],
        "dt_tau": simulator.dt_tau,
        "length_unit": "sigma",
        "time_unit": "tau",
    }
    rollout = Rollout(simulator, atoms, n_steps, knobs, metadata=metadata)
    return rollout, cache[key], float(simulator.dt_tau)


def cg_figures(
    times_tau: np.ndarray,
    observables: Mapping[str, np.ndarray],
    positions: np.ndarray,
    reference: PolymerReference | None,
) -> dict[str, go.Figure]:
    """Fresh R_g² trace, histogram, R(s) and contact-map figures of a CG rollout."""
    ref = reference
    rg2 = observables.get("rg2_fine")
    out = {
        "rg2": figures.rg2_trace_figure(
            times_tau,
            rg2,
            observables.get("rg2_cg"),
            ref.mean_rg2 if ref else None,
            ref.std_rg2 if ref else None,
        ),
        "histogram": figures.rg2_histogram_figure(rg2, ref.rg2 if ref else None),
    }
    model_rs = mean_internal_distance(positions) if positions.shape[1] > 1 else None
    out["r_s"] = figures.internal_distance_figure(model_rs, ref.r_s if ref else None)
    out["contacts"] = figures.contact_map_figure(
        contact_map(positions, CONTACT_CUTOFF_SIGMA),
        ref.contacts if ref else None,
        CONTACT_CUTOFF_SIGMA,
    )
    return out


def cg_summary(observables: Mapping[str, np.ndarray], reference: PolymerReference | None) -> str:
    rg2 = observables.get("rg2_fine")
    if rg2 is None or rg2.size == 0:
        return ""
    text = f"{rg2.size - 1} steps; ⟨R_g²⟩ = {float(np.mean(rg2)):.2f} σ²"
    if reference is not None:
        text += (
            f" (long MD {reference.mean_rg2:.2f} ± {reference.std_rg2:.2f} σ² "
            f"over {reference.length_tau:g} τ)"
        )
    retries = observables.get("retries")
    if retries is not None and retries.size and retries[-1] > 0:
        text += f"; {int(retries[-1])} rejected draws"
    extension = observables.get("extension")
    if extension is not None and extension.size and np.isfinite(extension).all():
        stretched = float(np.mean(extension > 1.0))
        if stretched > 0:  # states no fine chain with FENE bonds could coarse-grain to
            text += f"; {100 * stretched:.0f} % of frames stretched beyond full extension"
    return text


def cg_beads_frame(
    positions: np.ndarray, reference: PolymerReference | None, index: int, dt_tau: float
) -> go.Figure:
    """The CG beads of frame ``index`` of a run."""
    return figures.cg_beads_figure(
        positions,
        reference.bonds if reference else None,
        title=f"CG beads, frame {index} (t = {index * dt_tau:g} τ)",
    )


class CGRun:
    """The CG tab apart from its widgets: card, knobs, Rollout builder, progress, views.

    Mixed into :class:`widgets.cg_tab.CGTab` (Jupyter) and :class:`widgets.app_cg.CGApp`
    (Panel), before their :class:`~widgets.controller.RolloutController` base. The
    front-end provides the controls ``checkpoint`` (index into ``cards``), ``polymer``,
    ``refinement``, ``langevin_steps``, ``n_steps`` and ``seed``.
    """

    producer = "widgets.CGTab"

    def _init_cg(
        self,
        checkpoint_dir: Path,
        polymer_dir: Path | None,
        simulator_options: dict[str, Any] | None,
    ) -> None:
        self.checkpoint_dir = Path(checkpoint_dir)
        self.polymer_dir = Path(polymer_dir) if polymer_dir else polymer_dir_default()
        self.simulator_options = dict(simulator_options or {})
        self.cards = cg_cards(self.checkpoint_dir)
        self.reference: PolymerReference | None = None
        self._references: dict[tuple[str, str], PolymerReference] = {}
        self._dt_tau = 2.0
        self._frames: list[np.ndarray] = []

    @property
    def card(self) -> dict[str, Any] | None:
        index = self.checkpoint.value
        return None if index is None else self.cards[index]

    def knobs(self) -> dict[str, Any]:
        """The knob values as ``CGSimulator.prepare`` names them."""
        return {
            "polymer": self.polymer.value,
            "refinement": int(self.refinement.value),
            "langevin_steps": int(self.langevin_steps.value),
            "seed": int(self.seed.value),
        }

    def _make_builder(self) -> Callable[[], Rollout]:
        card = self.card
        if card is None:
            raise ExplorerError(f"no CG checkpoint in {self.checkpoint_dir}")
        if self.polymer.value is None:
            raise ExplorerError(f"no polymer to simulate in {self.polymer_dir}")
        knobs, n_steps, name = self.knobs(), int(self.n_steps.value), card.get("name")

        def build() -> Rollout:
            rollout, self.reference, self._dt_tau = build_cg_rollout(
                name, knobs, n_steps, self.checkpoint_dir, self.polymer_dir,
                self.simulator_options, self._references, self.producer,
            )  # fmt: skip
            return rollout

        return build

    def _progress_text(self, progress: Progress) -> str:
        return cg_progress_text(progress)

    def build_figures(
        self, times_tau: np.ndarray, observables: Mapping[str, np.ndarray], positions: np.ndarray
    ) -> dict[str, go.Figure]:
        """Fresh R_g² trace, histogram, R(s) and contact-map figures of a CG rollout."""
        return cg_figures(times_tau, observables, positions, self.reference)

    def summary_text(self, observables: Mapping[str, np.ndarray]) -> str:
        return cg_summary(observables, self.reference)
