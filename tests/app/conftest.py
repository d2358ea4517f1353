"""Shared pieces of the app tests: cheap model choices and a toy structure.

No test depends on bundled LiFlow checkpoints (there may be none): the random-walk
simulator of ``explorer.testing`` stands in, mapped like the app's demo model.
"""

from __future__ import annotations

from explorer.testing import BrownianSimulator
from widgets.runs import ModelChoice


def brownian_choice(delay_s: float = 0.0, fail_at_step: int | None = None) -> ModelChoice:
    """A demo-family model choice running the random walk (knobs mapped like the demo)."""
    card = {"name": "brownian", "family": "demo", "description": "test random walk"}
    return ModelChoice(
        "brownian",
        card,
        factory=lambda device: BrownianSimulator(delay_s=delay_s, fail_at_step=fail_at_step),
    )
