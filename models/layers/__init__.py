"""The layer library the model zoo is composed of (shapes: B batch, F fields, K embedding size)."""

from models.layers.attention import AttentionSpec, MultiHeadSelfAttention
from models.layers.cin import CIN
from models.layers.cross import CrossNetwork, CrossNetworkMix, CrossNetworkV2, CrossSpec
from models.layers.embedding import CrossProductLogit, FeatureEmbedding, IdTable, LinearLogit, all_sparse_pairs
from models.layers.interaction import FieldAwareInteraction, FMInteraction, InnerProduct, OuterProduct, PairwiseLayer
from models.layers.mlp import ACTIVATIONS, MLP, MLPSpec

__all__ = [
    "ACTIVATIONS",
    "AttentionSpec",
    "CIN",
    "CrossNetwork",
    "CrossNetworkMix",
    "CrossNetworkV2",
    "CrossSpec",
    "CrossProductLogit",
    "FeatureEmbedding",
    "FieldAwareInteraction",
    "FMInteraction",
    "IdTable",
    "InnerProduct",
    "LinearLogit",
    "MLP",
    "MLPSpec",
    "MultiHeadSelfAttention",
    "OuterProduct",
    "PairwiseLayer",
    "all_sparse_pairs",
]
