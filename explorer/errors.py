"""One error hierarchy for everything ``explorer`` raises on bad input.

UIs catch :class:`ExplorerError` and show its message; anything else is a bug.
Each subclass names what went wrong; messages say where (file, atom indices,
frame) so that a user can fix the input without reading our code.
"""


class ExplorerError(Exception):
    """Base class of all user-facing errors of accelmd-explorer."""


class StructureError(ExplorerError, ValueError):
    """A crystal structure is unusable."""


class UnreadableStructureError(StructureError):
    """A structure file cannot be parsed, is empty or holds no atoms."""


class ZeroVolumeCellError(StructureError):
    """The cell is missing, degenerate or has (near) zero volume."""


class OverlappingAtomsError(StructureError):
    """Two atoms are closer than the allowed minimum distance."""


class UnknownMaterialError(ExplorerError, KeyError):
    """A catalogue name or formula that the catalogue does not hold."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class TrajectoryFileError(ExplorerError, OSError):
    """A trajectory file is truncated, corrupt, foreign or inconsistent."""


class TrajectoryError(ExplorerError, ValueError):
    """Trajectory arrays have inconsistent shapes or values."""


class NeighborListError(ExplorerError, ValueError):
    """A periodic graph cannot be built (bad cell, cutoff, shapes)."""


class AnalysisError(ExplorerError, ValueError):
    """An analysis cannot be computed from the given data."""


class DeviceError(ExplorerError, ValueError):
    """A compute device string is malformed or names hardware that is absent."""


class CalculatorError(ExplorerError, ValueError):
    """An energy/force calculator cannot be built, loaded or used for a structure."""


class MDConfigError(ExplorerError, ValueError):
    """A molecular-dynamics setting is out of range or inconsistent."""


class ResumeError(ExplorerError, RuntimeError):
    """An existing MD output file cannot be continued with the given settings."""


class SimulationDiverged(ExplorerError, RuntimeError):
    """An MD run blew up (NaN, atoms too close, energy or temperature runaway).

    The frames written before the failure stay in the output file; the
    attributes say where it happened.
    """

    def __init__(
        self,
        message: str,
        *,
        reason: str = "",
        step: int | None = None,
        time_ps: float | None = None,
        frames_written: int = 0,
        path: str | None = None,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.step = step
        self.time_ps = time_ps
        self.frames_written = frames_written
        self.path = path


class UnknownElementError(ExplorerError, ValueError):
    """A structure holds an element that a model's element vocabulary does not cover."""


class PriorError(ExplorerError, ValueError):
    """A LiFlow prior setting is invalid (temperature, scale, species choice, shapes)."""
