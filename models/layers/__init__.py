"""The layer library the model zoo is composed of (shapes: B batch, F fields, K embedding size)."""

from models.layers.bilinear import BilinearInteraction
from models.layers.cin import CIN
from models.layers.cross import CrossNetwork
from models.layers.embedding import CrossProductLogit, FeatureEmbedding, IdTable, LinearLogit, all_sparse_pairs
from models.layers.interaction import (
    DotInteraction,
    FieldAwareInteraction,
    FMInteraction,
    InnerProduct,
    OuterProduct,
    PairwiseLayer,
)
from models.layers.mask import LayerNorm, MaskBlock, MaskBlocks
from models.layers.mlp import ACTIVATIONS, MLP, MLPSpec
from models.layers.senet import SqueezeExcitation

__all__ = [
    "ACTIVATIONS",
    "BilinearInteraction",
    "CIN",
    "CrossNetwork",
    "CrossProductLogit",
    "DotInteraction",
    "FeatureEmbedding",
    "FieldAwareInteraction",
    "FMInteraction",
    "IdTable",
    "InnerProduct",
    "LayerNorm",
    "LinearLogit",
    "MaskBlock",
    "MaskBlocks",
    "MLP",
    "MLPSpec",
    "OuterProduct",
    "PairwiseLayer",
    "SqueezeExcitation",
    "all_sparse_pairs",
]
