"""What a Run button starts: model choices, the demo model and temperature replicas.

A :class:`ModelChoice` turns one entry of the model picker (a LiFlow checkpoint card or
the demo model) into a simulator and the knobs its ``prepare`` takes. Arrhenius mode
runs several temperatures as one :class:`~explorer.session.Rollout` through
:class:`ReplicaSimulator`: LiFlow's ``prepare_batch`` puts every replica in one graph
(one forward pass per flow step for all temperatures); simulators without it are
stepped replica after replica. :class:`LiFlowRun` is the half of the LiFlow tabs
(Jupyter and Panel) that does not depend on the widget library. No UI library is
imported here.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
from ase import Atoms
from ase.units import kB

from explorer.checkpoints import CHECKPOINT_DIR, list_checkpoints
from explorer.errors import ExplorerError
from explorer.session import Frame, Rollout, Simulator
from explorer.testing import BrownianSimulator
from explorer.trajectory import Trajectory
from widgets.helpers import (
    card_temperatures,
    default_card_index,
    model_warnings,
    parse_temperatures,
    reference_note,
)
from widgets.live import FIGURE_NAMES, LiveAnalysis, arrhenius_analysis

#: The knobs of the LiFlow tab, as ``LiFlowSimulator.prepare`` names them.
LIFLOW_KNOBS = (
    "temperature_K",
    "prior_scale_li",
    "prior_scale_frame",
    "corrector_strength",
    "flow_steps",
    "seed",
    "device",
)

#: The two run modes of the LiFlow tabs.
SINGLE, ARRHENIUS = "single temperature", "Arrhenius (several T)"
ARRHENIUS_FIGURE = "arrhenius"  # D(T) of all replicas, built in Arrhenius mode

# Demo model: Li random walk with an Arrhenius D(T); numbers typical of a fast Li
# conductor (D ≈ 1e-4 cm²/s at 1000 K, Ea = 0.2 eV), so the plots look familiar.
DEMO_D_1000K_A2_PS = 0.5
DEMO_EA_EV = 0.2


def demo_diffusivity(temperature_K: float) -> float:
    """D_Li(T) = D(1000 K) · exp(−Ea/k_B · (1/T − 1/1000 K)) of the demo model, Å²/ps."""
    return DEMO_D_1000K_A2_PS * float(np.exp(-DEMO_EA_EV / kB * (1 / temperature_K - 1e-3)))


@dataclass
class ModelChoice:
    """One entry of the model picker.

    Attributes:
        label: text in the picker.
        card: the model card (``family``, ``name``, … as in ``explorer.checkpoints``).
        path: the card file of a checkpoint (None for the demo model).
        time_step_ps: simulated ps per model step.
        delay_s: demo only: wall seconds per step (so Stop can be tried).
        factory: builds the simulator for a device instead of loading ``path`` (a model
            made in the notebook, or a test double).
    """

    label: str
    card: dict[str, Any]
    path: Path | None = None
    time_step_ps: float = 1.0
    delay_s: float = 0.0
    factory: Callable[[str], Simulator] | None = None
    _cache: dict[str, Simulator] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def is_demo(self) -> bool:
        return self.card.get("family") == "demo"

    def simulator(self, device: str = "auto") -> Simulator:
        """The simulator (built once per device and cached: loading weights takes time)."""
        with self._lock:
            if device not in self._cache:
                if self.factory is not None:
                    self._cache[device] = self.factory(device)
                elif self.is_demo:
                    self._cache[device] = BrownianSimulator(delay_s=self.delay_s)
                else:
                    path = Path(self.path)  # type: ignore[arg-type]
                    self._cache[device] = shared_liflow_simulator(
                        str(path.resolve()), path.stat().st_mtime_ns, device
                    )
            return self._cache[device]

    def prepare_knobs(self, knobs: Mapping[str, Any]) -> dict[str, Any]:
        """The UI's knobs (:data:`LIFLOW_KNOBS`) as this model's ``prepare`` takes them.

        The demo model only uses the temperature (through :func:`demo_diffusivity`),
        the seed, and the time step.
        """
        if self.is_demo:
            return {
                "D_A2_ps": {"Li": demo_diffusivity(float(knobs["temperature_K"]))},
                "step_ps": self.time_step_ps,
                "seed": int(knobs.get("seed", 0)),
            }
        return {key: knobs[key] for key in LIFLOW_KNOBS if key in knobs}


def demo_choice(delay_s: float = 0.05) -> ModelChoice:
    """The demo model: Li random walks with an Arrhenius D(T); not a trained model."""
    card = {
        "name": "demo",
        "family": "demo",
        "description": (
            "Li random walk with D(T) = 0.5 Å²/ps · exp(−0.2 eV/k_B (1/T − 1/1000 K)), "
            "frame atoms fixed; NOT LiFlow, only for trying the interface"
        ),
    }
    return ModelChoice("demo: Li random walk (not a trained model)", card, delay_s=delay_s)


@functools.lru_cache(maxsize=8)
def shared_liflow_simulator(path: str, mtime_ns: int, device: str) -> Simulator:
    """A checkpoint's simulator, loaded once per server process and shared by sessions.

    Rollout state lives in each rollout's ``LiFlowState``, never in the simulator, and
    the networks are only evaluated, so concurrent sessions may share one. The file's
    modification time is part of the key: a retrained checkpoint is loaded afresh.
    """
    from explorer.liflow.simulate import LiFlowSimulator

    del mtime_ns  # only a cache key
    return LiFlowSimulator.from_checkpoint(path, device=device)


def liflow_choices(directory: Path = CHECKPOINT_DIR) -> list[ModelChoice]:
    """A choice per ``family: "liflow"`` checkpoint card in ``directory``, sorted by name."""
    choices = []
    for card in list_checkpoints(Path(directory)):
        if card.get("family") != "liflow":
            continue
        name = card.get("name", "?")
        choices.append(
            ModelChoice(
                label=name,
                card=card,
                path=Path(directory) / f"{name}.json",
                time_step_ps=float(card.get("time_step_ps", 1.0)),
            )
        )
    return choices


# -- several temperatures in one rollout ------------------------------------------------


def stack_replicas(atoms: Atoms, n: int) -> Atoms:
    """``n`` copies of a structure in one Atoms (same cell; replicas never interact)."""
    stacked = atoms.copy()
    for _ in range(n - 1):
        stacked += atoms
    stacked.info.update(atoms.info)
    stacked.info["replicas"] = n
    return stacked


def split_replicas(traj: Trajectory, temperatures_K: Sequence[float]) -> list[Trajectory]:
    """One Trajectory per replica of a :class:`ReplicaSimulator` rollout, in order."""
    n = len(temperatures_K)
    size = traj.n_atoms // n
    parts = []
    for b, temperature in enumerate(temperatures_K):
        part = slice(b * size, (b + 1) * size)
        parts.append(
            Trajectory(
                positions=traj.positions[:, part],
                cell=traj.cell,
                numbers=traj.numbers[part],
                times_ps=traj.times_ps,
                pbc=traj.pbc,
                metadata={**traj.metadata, "temperature_K": float(temperature)},
            )
        )
    return parts


class ReplicaSimulator:
    """Several replicas of one structure, each with its own knobs, as one Simulator.

    The Rollout's atoms are :func:`stack_replicas` of the structure; ``prepare`` takes
    ``replicas`` (one knob dict per replica). When the base simulator has
    ``prepare_batch`` (LiFlow) and the replicas differ only in temperature, they run in
    one batched graph; otherwise each replica is stepped in turn. Frames concatenate the
    replicas' positions in order.
    """

    def __init__(self, base: Simulator) -> None:
        self.base = base

    def prepare(self, atoms: Atoms, replicas: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        n = len(replicas)
        size = len(atoms) // n
        parts = [atoms[b * size : (b + 1) * size] for b in range(n)]
        shared = {k: v for k, v in replicas[0].items() if k != "temperature_K"}
        same = all({k: v for k, v in r.items() if k != "temperature_K"} == shared for r in replicas)
        if hasattr(self.base, "prepare_batch") and same:
            temps = [float(r["temperature_K"]) for r in replicas]
            return {"batched": self.base.prepare_batch(parts, temps, **shared)}
        return {
            "states": [
                self.base.prepare(p, **dict(r)) for p, r in zip(parts, replicas, strict=True)
            ]
        }

    def step(self, state: dict[str, Any]) -> dict[str, Any]:
        if "batched" in state:
            return {"batched": self.base.step(state["batched"])}
        return {"states": [self.base.step(s) for s in state["states"]]}

    def frame(self, state: dict[str, Any]) -> Frame:
        if "batched" in state:
            return self.base.frame(state["batched"])
        frames = [self.base.frame(s) for s in state["states"]]
        return Frame(
            positions=np.concatenate([f.positions for f in frames]),
            time_ps=frames[0].time_ps,
        )


def build_run(
    choice: ModelChoice,
    atoms: Atoms,
    knobs: Mapping[str, Any],
    temperatures_K: Sequence[float] | None = None,
) -> tuple[Simulator, Atoms, dict[str, Any]]:
    """(simulator, atoms, prepare knobs) for a Rollout: one temperature, or replicas.

    With ``temperatures_K`` (Arrhenius mode) every replica gets the knobs with its own
    temperature; the returned atoms are the stacked replicas.
    """
    simulator = choice.simulator(str(knobs.get("device", "auto")))
    if not temperatures_K:
        return simulator, atoms, choice.prepare_knobs(knobs)
    replicas = [choice.prepare_knobs({**knobs, "temperature_K": t}) for t in temperatures_K]
    if not choice.is_demo:
        for replica in replicas:  # prepare_batch takes the device once, not per replica
            replica.setdefault("device", knobs.get("device", "auto"))
    stacked = stack_replicas(atoms, len(temperatures_K))
    return ReplicaSimulator(simulator), stacked, {"replicas": replicas}


def liflow_prior_choices(
    simulator: Simulator, atoms: Atoms, temperatures_K: Sequence[float]
) -> tuple[list[dict[str, bool]], str] | None:
    """The adaptive prior's ``{"li": large, "frame": large}`` per temperature, as the run
    will use it, and where it comes from (``"classifier"`` or ``"card"``); None for other
    priors and for simulators without one (the demo). The classifier's CHGNet features are
    cached per structure, so asking again at run start costs a small MLP pass."""
    base = getattr(simulator, "base", simulator)  # a ReplicaSimulator wraps the model
    choose = getattr(base, "prior_choices", None)
    if choose is None or getattr(getattr(base, "prior", None), "kind", None) != "adaptive":
        return None
    choices = choose([atoms] * len(temperatures_K), [float(t) for t in temperatures_K])
    return choices, "classifier" if getattr(base, "selector", None) is not None else "card"


def prior_choice_text(choice: Mapping[str, bool], from_classifier: bool) -> str:
    """``"prior: Li large, frame small (classifier)"`` for a summary line."""
    size = {True: "large", False: "small"}
    source = "classifier" if from_classifier else "card"
    return f"prior: Li {size[bool(choice['li'])]}, frame {size[bool(choice['frame'])]} ({source})"


def build_liflow_rollout(
    choice: ModelChoice,
    atoms: Atoms,
    knobs: Mapping[str, Any],
    temperatures_K: Sequence[float] | None,
    n_steps: int,
    producer: str = "widgets.LiFlowTab",
) -> Rollout:
    """An unstarted Rollout of ``choice`` on ``atoms``: one temperature, or replicas."""
    simulator, run_atoms, prepare_knobs = build_run(choice, atoms, knobs, temperatures_K)
    metadata = {
        "producer": producer,
        "model": choice.card.get("name"),
        "material": atoms.info.get("material"),
        "supercell": list(atoms.info.get("supercell", (1, 1, 1))),
        "temperature_K": list(temperatures_K) if temperatures_K else knobs["temperature_K"],
    }
    temps = list(temperatures_K) if temperatures_K else [float(knobs["temperature_K"])]
    prior = liflow_prior_choices(simulator, atoms, temps)
    if prior is not None:  # shown next to D_Li and stored with downloads
        choices, metadata["prior_choice_source"] = prior
        metadata["prior_choice"] = choices if temperatures_K else choices[0]
    return Rollout(simulator, run_atoms, n_steps, prepare_knobs, metadata=metadata)


class LiFlowRun:
    """The LiFlow tab apart from its widgets: knobs, temperatures, Rollout builder, analysis.

    Mixed into :class:`widgets.liflow_tab.LiFlowTab` (Jupyter) and
    :class:`widgets.app_liflow.LiFlowApp` (Panel), before their
    :class:`~widgets.controller.RolloutController` base. The front-end provides
    ``choices``, ``choice`` (None when there is none), ``atoms``, ``reference_dir`` and
    the controls ``model`` (index into ``choices``), ``temperature``, ``prior_scale_li``,
    ``prior_scale_frame``, ``corrector_strength``, ``flow_steps``, ``seed``, ``device``,
    ``n_steps``, ``mode``, ``temperatures``, ``replica``, ``plane`` and ``log_msd``.

    Attributes:
        analysis: the live analysis of the shown replica (None until frames arrive).
    """

    producer = "widgets.LiFlowTab"

    def _init_liflow(self, reference_dir: Path) -> None:
        self.reference_dir = Path(reference_dir)
        self.analysis: LiveAnalysis | None = None
        self._temperatures: list[float] = []
        self._n_atoms = 0

    def knobs(self) -> dict[str, Any]:
        """The knob values as ``LiFlowSimulator.prepare`` names them (K, ints, floats)."""
        return {
            "temperature_K": float(self.temperature.value),
            "prior_scale_li": float(self.prior_scale_li.value),
            "prior_scale_frame": float(self.prior_scale_frame.value),
            "corrector_strength": float(self.corrector_strength.value),
            "flow_steps": int(self.flow_steps.value),
            "seed": int(self.seed.value),
            "device": self.device.value,
        }

    def select_default_model(self) -> None:
        """The checkpoint trained on the current material (else a multi-material one)."""
        if self.choices and self.atoms is not None:
            cards = [c.card for c in self.choices]
            self.model.value = default_card_index(cards, self.atoms.info.get("material"))

    def _apply_card_knobs(self) -> None:
        """Set the prior-scale and flow-step controls to the model's recommended values
        (its card's ``recommended_knobs``), the neutral ones where it recommends none."""
        from explorer.liflow.simulate import RECOMMENDABLE_KNOBS

        recommended = (self.choice.card.get("recommended_knobs") if self.choice else None) or {}
        for name, neutral in RECOMMENDABLE_KNOBS.items():
            control = getattr(self, name, None)
            if control is not None:
                control.value = recommended.get(name, neutral)

    def _card_temperature(self) -> float | None:
        """The middle training temperature of the model: inside the range it knows."""
        temps = card_temperatures(self.choice.card) if self.choice is not None else []
        return sorted(temps)[(len(temps) - 1) // 2] if temps else None

    def _run_temperatures(self) -> list[float]:
        """The temperatures Run would simulate ([] while the Arrhenius list is invalid)."""
        if getattr(self, "mode", None) is None:  # the knobs are not built yet
            return []
        if self.mode.value == ARRHENIUS:
            try:
                return parse_temperatures(self.temperatures.value)
            except ValueError:
                return []
        return [float(self.temperature.value)]

    def _warnings_and_notes(self) -> tuple[list[str], list[str]]:
        """Why not to trust this (model, structure, T), and the reference MD per T."""
        temps = self._run_temperatures()
        material = self.atoms.info.get("material") if self.atoms is not None else None
        warnings = model_warnings(self.choice.card, self.atoms, temps) if self.choice else []
        return warnings, [reference_note(material, t, self.reference_dir) for t in temps]

    def _make_builder(self) -> Callable[[], Rollout]:
        choice = self.choice
        if choice is None or self.atoms is None:
            raise ExplorerError("choose a material and a model first")
        temps = None
        if self.mode.value == ARRHENIUS:
            try:
                temps = parse_temperatures(self.temperatures.value)
            except ValueError as exc:
                raise ExplorerError(str(exc)) from None
        knobs = self.knobs()
        self._temperatures = temps or [knobs["temperature_K"]]
        return functools.partial(
            build_liflow_rollout, choice, self.atoms.copy(), knobs, temps,
            int(self.n_steps.value), self.producer,
        )  # fmt: skip

    def _start_replicas(self, rollout: Rollout) -> Atoms:
        """Driver thread: forget the last run's analysis; the structure of one replica."""
        self._n_atoms = len(rollout.atoms) // len(self._temperatures)
        self.analysis = None
        return rollout.atoms[: self._n_atoms]

    def _display_temperature(self) -> float:
        """The temperature whose replica the views show (Arrhenius: the chosen one)."""
        if len(self._temperatures) > 1 and self.replica.value in self._temperatures:
            return float(self.replica.value)
        return float(self._temperatures[-1])

    def summary_line(self, rollout: Rollout) -> str | None:
        """The D_Li line of the shown replica, then the adaptive prior it runs with
        (None before the analysis exists)."""
        if self.analysis is None:
            return None
        parts = [self.analysis.summary()]
        choice = rollout.metadata.get("prior_choice")
        if isinstance(choice, list):  # Arrhenius replicas: the shown one's
            temps = self._temperatures
            shown = self._display_temperature()
            choice = choice[temps.index(shown)] if shown in temps else None
        if isinstance(choice, Mapping):
            source = rollout.metadata.get("prior_choice_source") == "classifier"
            parts.append(prior_choice_text(choice, source))
        return " · ".join(p for p in parts if p)

    def _figures_shown(self) -> set[str]:
        """The figures the front end shows now (only these are rebuilt while a run
        goes on): by default ``msd``, ``rdf``, ``pmf`` and ``arrhenius``."""
        return {"msd", "rdf", "pmf", ARRHENIUS_FIGURE}

    def _analyse(
        self, rollout: Rollout, names: Collection[str] | None = None, full: bool = False
    ) -> dict[str, go.Figure]:
        """Fresh figures of the shown replica's frames so far: ``names`` (default: those
        shown now) among ``msd``, ``rdf``, ``pmf``, ``traces`` and, in Arrhenius mode,
        ``arrhenius`` (all replicas). The reference MD's traces cannot change during a
        run: they are built once per figure unless ``full`` (for views that swap whole
        figures instead of :func:`~widgets.figures.sync_figure`)."""
        names = set(self._figures_shown() if names is None else names)
        if self.analysis is None:  # a new run or replica; loads the reference MD (cached)
            self.analysis = LiveAnalysis(
                self._display_temperature(),
                rollout.atoms.info.get("material"),
                self.reference_dir,
                self.plane.value,
            )
        traj = rollout.trajectory()
        fresh: dict[str, go.Figure] = {}
        if len(self._temperatures) > 1:
            replicas = split_replicas(traj, self._temperatures)
            if ARRHENIUS_FIGURE in names:
                result = arrhenius_analysis(
                    replicas, self._temperatures, self.analysis.material, self.reference_dir
                )
                fresh[ARRHENIUS_FIGURE] = result.figure()
            traj = replicas[self._temperatures.index(self._display_temperature())]
        else:
            traj.metadata["temperature_K"] = self._temperatures[0]
        self.analysis.update(traj, pmf="pmf" in names)
        live = [name for name in FIGURE_NAMES if name in names]
        omit = set() if full else self.analysis.reference_drawn & set(live)
        fresh.update(self.analysis.figures(self.log_msd.value, live, omit_reference=omit))
        self.analysis.reference_drawn |= set(live)
        return fresh
