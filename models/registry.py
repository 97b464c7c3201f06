"""The model zoo as data: each model's config name, class, printed label and effect family.

One entry per model, in the order tables print them (the DeepFM paper's Table 2 rows first). It
imports nothing but the standard library, so reports name and order models where torch is absent;
``models.MODELS`` loads the classes from it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class ModelEntry:
    """``name``: ``model=<name>`` and ``conf/model/<name>.yaml``; ``target``: ``module:Class``;
    ``label``: how tables print it; ``family``: the effects its function class can represent (a
    synthetic dataset's ceiling key: ``first_order``, ``pairwise``, or ``full`` for every effect);
    ``paper``: a row of the DeepFM paper's Table 2."""

    name: str
    target: str
    label: str
    family: str = "full"
    paper: bool = False

    def load(self) -> type:
        module, cls = self.target.split(":")
        return getattr(importlib.import_module(module), cls)


ZOO: tuple[ModelEntry, ...] = (
    ModelEntry("lr", "models.shallow:LR", "LR", "first_order", paper=True),
    ModelEntry("fm", "models.shallow:FM", "FM", "pairwise", paper=True),
    ModelEntry("fnn", "models.fnn:FNN", "FNN", paper=True),
    ModelEntry("ipnn", "models.pnn:IPNN", "IPNN", paper=True),
    ModelEntry("opnn", "models.pnn:OPNN", "OPNN", paper=True),
    ModelEntry("pnn_star", "models.pnn:PNNStar", "PNN*", paper=True),
    ModelEntry("lr_dnn", "models.wide_deep:LRDNN", "LR&DNN", paper=True),
    ModelEntry("fm_dnn", "models.wide_deep:FMDNN", "FM&DNN", paper=True),
    ModelEntry("deepfm", "models.deep:DeepFM", "DeepFM", paper=True),
    ModelEntry("ffm", "models.shallow:FFM", "FFM", "pairwise"),
    ModelEntry("dnn", "models.deep:DNN", "DNN"),
    ModelEntry("wide_deep", "models.wide_deep:WideDeep", "Wide&Deep"),
    ModelEntry("dcn", "models.deep:DCN", "DCN"),
    ModelEntry("xdeepfm", "models.deep:XDeepFM", "xDeepFM"),
    ModelEntry("crossnet_v2", "models.dcn_v2:CrossNetV2", "CrossNet-V2"),
    ModelEntry("dcn_v2", "models.dcn_v2:DCNV2", "DCN-V2"),
    ModelEntry("autoint", "models.autoint:AutoInt", "AutoInt"),
    ModelEntry("autoint_plus", "models.autoint:AutoIntPlus", "AutoInt+"),
    ModelEntry("fibinet", "models.fibinet:FiBiNET", "FiBiNET"),
    ModelEntry("dlrm", "models.dlrm:DLRM", "DLRM"),
    ModelEntry("masknet", "models.masknet:MaskNet", "MaskNet"),
    ModelEntry("finalmlp", "models.final:FinalMLP", "FinalMLP"),
    ModelEntry("finalnet", "models.final:FinalNet", "FinalNet"),
    ModelEntry("aoanet", "models.aoanet:AOANet", "AOANet"),
    ModelEntry("deepim", "models.deepim:DeepIM", "DeepIM"),
    ModelEntry("edcn", "models.edcn:EDCN", "EDCN"),
    ModelEntry("destine", "models.destine:DESTINE", "DESTINE"),
    ModelEntry("nfm", "models.factorization:NFM", "NFM"),
    ModelEntry("afm", "models.factorization:AFM", "AFM"),
    ModelEntry("fwfm", "models.factorization:FwFM", "FwFM", "pairwise"),
    ModelEntry("fmfm", "models.factorization:FmFM", "FmFM", "pairwise"),
    ModelEntry("hofm", "models.factorization:HOFM", "HOFM"),
    ModelEntry("fignn", "models.fignn:FiGNN", "FiGNN"),
    ModelEntry("afn", "models.afn:AFN", "AFN"),
    ModelEntry("afn_plus", "models.afn:AFNPlus", "AFN+"),
    ModelEntry("sam", "models.sam:SAM", "SAM"),
    ModelEntry("crossnet", "models.deep:CrossNet", "CrossNet"),
    ModelEntry("cin", "models.deep:CINNet", "CIN"),
    ModelEntry("hfm", "models.hfm:HFM", "HFM", "pairwise"),
    ModelEntry("hfm_plus", "models.hfm:HFMPlus", "HFM+"),
    ModelEntry("dssm", "models.dssm:DSSM", "DSSM"),
)
ENTRIES: dict[str, ModelEntry] = {entry.name: entry for entry in ZOO}
