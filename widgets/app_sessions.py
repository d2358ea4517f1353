"""Server-wide bookkeeping of the Panel app: a cap on concurrent rollouts.

Every browser session owns its own :class:`~explorer.session.Rollout` (built by
:mod:`widgets.app_liflow`), so sessions never share frames. What they do share is
the machine: two LiFlow rollouts already fill two CPU cores, so the server admits at
most ``ACCELMD_MAX_ROLLOUTS`` (default 2) running at once and tells the others that it
is busy instead of making everyone slow. No Panel import here.
"""

from __future__ import annotations

import os
import threading

#: Environment variable read at server start for the cap on concurrent rollouts.
MAX_ROLLOUTS_ENV = "ACCELMD_MAX_ROLLOUTS"
DEFAULT_MAX_ROLLOUTS = 2


def max_rollouts_from_env(default: int = DEFAULT_MAX_ROLLOUTS) -> int:
    """``ACCELMD_MAX_ROLLOUTS`` as an int ≥ 1 (a bad value falls back to ``default``)."""
    try:
        return max(1, int(os.environ.get(MAX_ROLLOUTS_ENV, default)))
    except ValueError:
        return default


class RolloutSlots:
    """A counting gate: ``try_acquire`` never blocks (the page says "busy" instead)."""

    def __init__(self, limit: int) -> None:
        self.limit = int(limit)
        self._in_use = 0
        self._lock = threading.Lock()

    @property
    def in_use(self) -> int:
        with self._lock:
            return self._in_use

    def try_acquire(self) -> bool:
        """Take a slot if one is free; False when the server is at its cap."""
        with self._lock:
            if self._in_use >= self.limit:
                return False
            self._in_use += 1
            return True

    def release(self) -> None:
        with self._lock:
            self._in_use = max(0, self._in_use - 1)

    def busy_message(self) -> str:
        return (
            f"The server is busy: {self.limit} rollout{'s' if self.limit != 1 else ''} "
            f"already running (the limit, set by {MAX_ROLLOUTS_ENV}). Try again when one "
            "finishes."
        )


#: The slots shared by every session of this server process.
SLOTS = RolloutSlots(max_rollouts_from_env())
