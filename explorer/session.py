"""UI-agnostic rollouts: drive any simulator in a background thread, stream frames.

Every model family (LiFlow, FlashMD, the CG simulator) implements the small
:class:`Simulator` protocol; :class:`Rollout` runs one in a worker thread so a
notebook kernel or a Panel server stays responsive, appends every frame to an
in-memory :class:`~explorer.trajectory.Trajectory` (and optionally to an H5MD
file), reports progress with an ETA, and stops within one step when asked.
A simulator error (e.g. :class:`~explorer.errors.SimulationDiverged`) ends the
rollout with status ``"failed"`` and its message; the frames produced before
it are kept. Nothing here imports a UI library.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from ase import Atoms

from explorer.errors import ExplorerError
from explorer.trajectory import Trajectory

IDLE, RUNNING, DONE, CANCELLED, FAILED = "idle", "running", "done", "cancelled", "failed"


@dataclass(frozen=True)
class Frame:
    """What a simulator reports after a step.

    ``positions`` (atoms, 3) unwrapped Å; ``time_ps`` simulated time since the
    start; ``observables`` per-frame scalars (eV, K, ...); ``velocities``
    (atoms, 3) Å/ps when the simulator has them.
    """

    positions: np.ndarray
    time_ps: float
    observables: dict[str, float] = field(default_factory=dict)
    velocities: np.ndarray | None = None


class Simulator(Protocol):
    """The protocol every model family implements (pure steps, no threads or files).

    ``prepare`` turns ASE Atoms and the user's knobs into the family's state;
    ``step`` advances it by one model step (LiFlow: Δτ = 1 ps; FlashMD: one
    stride); ``frame`` reads a :class:`Frame` out of a state.
    """

    def prepare(self, atoms: Atoms, **knobs: Any) -> Any: ...

    def step(self, state: Any) -> Any: ...

    def frame(self, state: Any) -> Frame: ...


@dataclass(frozen=True)
class Progress:
    """Where a rollout stands: steps, simulated ps, wall seconds and an ETA (s)."""

    status: str
    steps_done: int
    n_steps: int
    simulated_ps: float
    wall_s: float
    eta_s: float | None
    message: str = ""

    @property
    def fraction(self) -> float:
        return self.steps_done / self.n_steps if self.n_steps else 1.0


FrameCallback = Callable[[int, Frame], None]


class Rollout:
    """Run ``n_steps`` of a simulator from ``atoms`` in a background thread.

    Frame 0 is the prepared initial state; frame k follows step k. Use
    :meth:`start`, then read :meth:`trajectory` or :meth:`frames_since` (or
    :meth:`subscribe` to be called from the worker thread on every frame) and
    :meth:`progress`; :meth:`stop` asks the worker to finish after the current
    step. With ``out_path`` every frame is also appended to an H5MD file.
    """

    def __init__(
        self,
        simulator: Simulator,
        atoms: Atoms,
        n_steps: int,
        knobs: dict[str, Any] | None = None,
        out_path: str | Path | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        if n_steps < 0:
            raise ExplorerError(f"n_steps must be >= 0; got {n_steps}")
        self.simulator = simulator
        self.atoms = atoms.copy()
        self.n_steps = int(n_steps)
        self.knobs = dict(knobs or {})
        self.out_path = Path(out_path) if out_path is not None else None
        self.metadata = dict(metadata or {})
        self._frames: list[Frame] = []
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None
        self._subscribers: list[FrameCallback] = []
        self._status = IDLE
        self._error: BaseException | None = None
        self._started_at: float | None = None
        self._finished_at: float | None = None

    # -- control -------------------------------------------------------------
    def start(self) -> Rollout:
        """Start the worker thread (once)."""
        if self._thread is not None:
            raise ExplorerError("this rollout has already been started")
        self._status = RUNNING
        self._started_at = time.perf_counter()
        self._thread = threading.Thread(target=self._work, name="accelmd-rollout", daemon=True)
        self._thread.start()
        return self

    def run(self) -> Trajectory:
        """Run to the end in the calling thread's stead (start + join); returns the frames."""
        self.start()
        self.join()
        if self._status == FAILED and self._error is not None:
            raise self._error
        return self.trajectory()

    def stop(self) -> None:
        """Ask the worker to stop after the step it is computing."""
        self._cancel.set()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the worker; True when it has finished."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def subscribe(self, callback: FrameCallback) -> None:
        """Call ``callback(index, frame)`` from the worker thread after each frame."""
        self._subscribers.append(callback)

    # -- state ---------------------------------------------------------------
    @property
    def status(self) -> str:
        return self._status

    @property
    def error(self) -> BaseException | None:
        return self._error

    @property
    def n_frames(self) -> int:
        with self._lock:
            return len(self._frames)

    def frames_since(self, index: int) -> list[Frame]:
        """Frames from ``index`` on (for incremental UI updates)."""
        with self._lock:
            return list(self._frames[index:])

    def trajectory(self) -> Trajectory:
        """The frames so far as a Trajectory (a snapshot; safe while running)."""
        with self._lock:
            frames = list(self._frames)
        if not frames:
            raise ExplorerError("the rollout has produced no frame yet")
        observables = sorted(set().union(*(f.observables for f in frames)))
        velocities = None
        if all(f.velocities is not None for f in frames):
            velocities = np.stack([f.velocities for f in frames])
        return Trajectory(
            positions=np.stack([f.positions for f in frames]),
            cell=self.atoms.cell[:],
            numbers=self.atoms.numbers,
            times_ps=np.array([f.time_ps for f in frames]),
            pbc=self.atoms.pbc,
            velocities=velocities,
            energies={
                key: np.array([f.observables.get(key, np.nan) for f in frames])
                for key in observables
            },
            metadata={**self.metadata, "knobs": self.knobs, "status": self._status},
        )

    def progress(self) -> Progress:
        """Steps done, simulated time, wall time and a linear ETA."""
        with self._lock:
            steps = max(0, len(self._frames) - 1)
            simulated = self._frames[-1].time_ps if self._frames else 0.0
        end = self._finished_at or time.perf_counter()
        wall = end - self._started_at if self._started_at is not None else 0.0
        eta = None
        if self._status == RUNNING and steps > 0:
            eta = wall / steps * (self.n_steps - steps)
        message = str(self._error) if self._error is not None else ""
        return Progress(self._status, steps, self.n_steps, simulated, wall, eta, message)

    # -- worker --------------------------------------------------------------
    def _work(self) -> None:
        writer = None
        try:
            state = self.simulator.prepare(self.atoms, **self.knobs)
            writer = self._open_writer()
            self._emit(self.simulator.frame(state), writer)
            for _ in range(self.n_steps):
                if self._cancel.is_set():
                    break
                state = self.simulator.step(state)
                self._emit(self.simulator.frame(state), writer)
            self._status = CANCELLED if self._cancel.is_set() else DONE
        except Exception as exc:  # reported through status/error; frames are kept
            self._error = exc
            self._status = FAILED
        finally:
            self._finished_at = time.perf_counter()
            if writer is not None:
                writer.update_metadata(status=self._status, error=str(self._error or ""))
                writer.close()

    def _open_writer(self) -> Any:
        if self.out_path is None:
            return None
        from explorer.h5md import H5MDWriter

        metadata = {**self.metadata, "knobs": self.knobs, "status": RUNNING}
        return H5MDWriter(
            self.out_path, self.atoms.numbers, self.atoms.cell[:], self.atoms.pbc, metadata
        )

    def _emit(self, frame: Frame, writer: Any) -> None:
        with self._lock:
            self._frames.append(frame)
            index = len(self._frames) - 1
        if writer is not None:
            writer.append(
                frame.positions, frame.time_ps, step=index, energies=frame.observables or None
            )
        for callback in self._subscribers:
            callback(index, frame)
