"""Shared fixtures of the widget tests: a toy Li–S structure, cheap model choices.

No test depends on bundled checkpoints (there may be none): the demo random-walk model
(``explorer.testing.BrownianSimulator``), an untrained tiny LiFlow model built in memory,
or a tiny checkpoint trained in a temporary directory (slow tests) stand in.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms

from explorer.testing import BrownianSimulator
from widgets.runs import ModelChoice

LI_S_ELEMENTS = (3, 16)


def toy_atoms(material: str | None = None) -> Atoms:
    """8 Li and 4 S in an 8 Å cube, every pair ≥ 3.4 Å apart."""
    grid = np.array([[i, j, k] for i in range(2) for j in range(2) for k in range(2)], float)
    li = 4.0 * grid + 1.0
    s = 4.0 * grid[[0, 3, 5, 6]] + 3.0
    atoms = Atoms("Li8S4", positions=np.vstack([li, s]), cell=np.eye(3) * 8.0, pbc=True)
    atoms.info["material"] = material
    return atoms


@pytest.fixture
def atoms() -> Atoms:
    return toy_atoms()


def brownian_choice(delay_s: float = 0.0, fail_at_step: int | None = None) -> ModelChoice:
    """A model choice running the random-walk simulator (knobs mapped like the demo)."""
    card = {"name": "brownian", "family": "demo", "description": "test random walk"}
    return ModelChoice(
        "brownian",
        card,
        factory=lambda device: BrownianSimulator(delay_s=delay_s, fail_at_step=fail_at_step),
    )


def tiny_liflow_choice(
    elements: tuple[int, ...] = LI_S_ELEMENTS, prior_kind: str = "maxwell_boltzmann"
) -> ModelChoice:
    """An untrained LiFlow model (Propagator only) knowing ``elements``: fast, real code path.
    With ``prior_kind="adaptive"`` the card's fixed choice is Li large, frame small."""
    from explorer.liflow import FlowModel, FlowModelConfig
    from explorer.liflow.prior import PriorConfig
    from explorer.liflow.simulate import LiFlowSimulator

    config = FlowModelConfig(elements=elements, num_features=8, num_rbf=4, num_layers=1)

    def build(device: str) -> LiFlowSimulator:
        torch.manual_seed(0)
        model = FlowModel(config).to(torch.float64)
        prior = PriorConfig(kind=prior_kind, scale=1.0)
        return LiFlowSimulator(model, None, prior, training_temperatures_K=(600.0, 1000.0))

    card = {
        "name": "tiny-untrained",
        "family": "liflow",
        "elements": list(elements),
        "training_temperatures_K": [600.0, 1000.0],
        "materials": ["toy"],
    }
    return ModelChoice("tiny-untrained", card, factory=build)
