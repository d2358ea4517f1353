"""LiFlow: flow-matching generative acceleration of Li-ion MD (Nam et al., 2024)."""

from explorer.liflow.model import FlowModel, FlowModelConfig

__all__ = ["FlowModel", "FlowModelConfig"]
