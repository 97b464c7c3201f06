"""The layer library the model zoo is composed of (shapes: B batch, F fields, K embedding size)."""

from models.layers.cin import CIN
from models.layers.cross import CrossNetwork
from models.layers.embedding import CrossProductLogit, FeatureEmbedding, IdTable, LinearLogit, all_sparse_pairs
from models.layers.finalmlp import BilinearFusion, ContextEmbedding, FeatureGate, FeatureSelectionSpec
from models.layers.finalnet import FactorizedInteraction, FieldGate, FinalBlock, FinalBlockSpec
from models.layers.interaction import FieldAwareInteraction, FMInteraction, InnerProduct, OuterProduct, PairwiseLayer
from models.layers.mlp import ACTIVATIONS, MLP, MLPSpec

__all__ = [
    "ACTIVATIONS",
    "BilinearFusion",
    "CIN",
    "ContextEmbedding",
    "CrossNetwork",
    "CrossProductLogit",
    "FactorizedInteraction",
    "FeatureEmbedding",
    "FeatureGate",
    "FeatureSelectionSpec",
    "FieldAwareInteraction",
    "FieldGate",
    "FinalBlock",
    "FinalBlockSpec",
    "FMInteraction",
    "IdTable",
    "InnerProduct",
    "LinearLogit",
    "MLP",
    "MLPSpec",
    "OuterProduct",
    "PairwiseLayer",
    "all_sparse_pairs",
]
