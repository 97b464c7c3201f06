"""The layer library the model zoo is composed of (shapes: B batch, F fields, K embedding size)."""

from models.layers.attention import (
    AttentionSpec,
    DisentangledAttention,
    DisentangledAttentionSpec,
    DisentangledSelfAttention,
    MultiHeadSelfAttention,
)
from models.layers.bilinear import BilinearInteraction
from models.layers.bridge import Bridge, EDCNSpec, EDCNTowers, Regulation
from models.layers.cin import CIN
from models.layers.cross import CrossNetwork, CrossNetworkMix, CrossNetworkV2, CrossSpec
from models.layers.embedding import CrossProductLogit, FeatureEmbedding, IdTable, LinearLogit, all_sparse_pairs
from models.layers.finalmlp import BilinearFusion, ContextEmbedding, FeatureGate, FeatureSelectionSpec
from models.layers.finalnet import FactorizedInteraction, FieldGate, FinalBlock, FinalBlockSpec
from models.layers.generalized import GeneralizedInteraction, GeneralizedInteractionNet
from models.layers.holographic import HolographicInteraction
from models.layers.interaction import (
    DotInteraction,
    FieldAwareInteraction,
    FMInteraction,
    InnerProduct,
    OuterProduct,
    PairwiseLayer,
)
from models.layers.interaction_machine import InteractionMachine
from models.layers.mask import MaskBlock, MaskBlocks
from models.layers.mlp import ACTIVATIONS, MLP, LayerNorm, MLPSpec
from models.layers.senet import SqueezeExcitation

__all__ = [
    "ACTIVATIONS",
    "AttentionSpec",
    "BilinearFusion",
    "BilinearInteraction",
    "Bridge",
    "CIN",
    "ContextEmbedding",
    "CrossNetwork",
    "CrossNetworkMix",
    "CrossNetworkV2",
    "CrossProductLogit",
    "CrossSpec",
    "DisentangledAttention",
    "DisentangledAttentionSpec",
    "DisentangledSelfAttention",
    "DotInteraction",
    "EDCNSpec",
    "EDCNTowers",
    "FactorizedInteraction",
    "FeatureEmbedding",
    "FeatureGate",
    "FeatureSelectionSpec",
    "FieldAwareInteraction",
    "FieldGate",
    "FinalBlock",
    "FinalBlockSpec",
    "FMInteraction",
    "GeneralizedInteraction",
    "GeneralizedInteractionNet",
    "HolographicInteraction",
    "IdTable",
    "InnerProduct",
    "InteractionMachine",
    "LayerNorm",
    "LinearLogit",
    "MaskBlock",
    "MaskBlocks",
    "MLP",
    "MLPSpec",
    "MultiHeadSelfAttention",
    "OuterProduct",
    "PairwiseLayer",
    "Regulation",
    "SqueezeExcitation",
    "all_sparse_pairs",
]
