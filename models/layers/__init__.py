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
from models.layers.factorization import AnovaKernel, AttentionalPooling, BiInteraction, FieldMatrixedInteraction
from models.layers.finalmlp import BilinearFusion, ContextEmbedding, FeatureGate, FeatureSelectionSpec
from models.layers.finalnet import FactorizedInteraction, FieldGate, FinalBlock, FinalBlockSpec
from models.layers.generalized import GeneralizedInteraction, GeneralizedInteractionNet
from models.layers.graph import AttentionalScoring, FieldGraph, FieldGraphNetwork, GraphPropagation
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
from models.layers.logarithmic import ChannelBatchNorm, LogarithmicTransformation
from models.layers.mask import MaskBlock, MaskBlocks
from models.layers.mlp import ACTIVATIONS, MLP, LayerNorm, MLPSpec
from models.layers.sam import SAM_INTERACTIONS, SAMLayer, SelfAttentiveInteraction
from models.layers.senet import SqueezeExcitation

__all__ = [
    "ACTIVATIONS",
    "AnovaKernel",
    "AttentionalPooling",
    "AttentionSpec",
    "AttentionalScoring",
    "BilinearFusion",
    "BiInteraction",
    "BilinearInteraction",
    "Bridge",
    "CIN",
    "ChannelBatchNorm",
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
    "FieldGraph",
    "FieldGraphNetwork",
    "FieldGate",
    "FieldMatrixedInteraction",
    "FinalBlock",
    "FinalBlockSpec",
    "FMInteraction",
    "GeneralizedInteraction",
    "GeneralizedInteractionNet",
    "GraphPropagation",
    "HolographicInteraction",
    "IdTable",
    "InnerProduct",
    "InteractionMachine",
    "LayerNorm",
    "LinearLogit",
    "LogarithmicTransformation",
    "MaskBlock",
    "MaskBlocks",
    "MLP",
    "MLPSpec",
    "MultiHeadSelfAttention",
    "OuterProduct",
    "PairwiseLayer",
    "Regulation",
    "SAM_INTERACTIONS",
    "SAMLayer",
    "SelfAttentiveInteraction",
    "SqueezeExcitation",
    "all_sparse_pairs",
]
