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
