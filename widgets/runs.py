"""What a Run button starts: model choices, the demo model and temperature replicas.

A :class:`ModelChoice` turns one entry of the model picker (a LiFlow checkpoint card or
the demo model) into a simulator and the knobs its ``prepare`` takes. Arrhenius mode
runs several temperatures as one :class:`~explorer.session.Rollout` through
:class:`ReplicaSimulator`: LiFlow's ``prepare_batch`` puts every replica in one graph
(one forward pass per flow step for all temperatures); simulators without it are
stepped replica after replica. No UI library is imported here.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.units import kB

from explorer.checkpoints import CHECKPOINT_DIR, list_checkpoints
from explorer.session import Frame, Simulator
from explorer.testing import BrownianSimulator
from explorer.trajectory import Trajectory

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
                    from explorer.liflow.simulate import LiFlowSimulator

                    self._cache[device] = LiFlowSimulator.from_checkpoint(self.path, device=device)
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
