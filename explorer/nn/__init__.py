"""Neural-network building blocks shared by the explorer's ML models (pure torch)."""

from explorer.nn.embedding import SinusoidalEmbedding, SpeciesEmbedding
from explorer.nn.painn import (
    GatedVectorOutput,
    PaiNNMessage,
    PaiNNUpdate,
    safe_norm,
    scatter_sum,
)
from explorer.nn.radial import BesselRBF, CosineCutoff

__all__ = [
    "BesselRBF",
    "CosineCutoff",
    "GatedVectorOutput",
    "PaiNNMessage",
    "PaiNNUpdate",
    "SinusoidalEmbedding",
    "SpeciesEmbedding",
    "safe_norm",
    "scatter_sum",
]
