"""CTR models: each a short composition of ``models.layers`` over one ``CTRModule`` base.

``MODELS`` maps the names used in ``conf/model/<name>.yaml`` to the classes.
"""
import os

# MKL splits a matrix product's sum over the batch (every weight gradient) differently at different
# thread counts, so one and two threads give different bits; ``threads: auto`` changes the count
# mid-run with the machine's load. MKL's strict reproducible mode keeps the order fixed at any thread
# count (0-4% slower than the default in our DeepFM and FNN step measurements). MKL reads it at its
# first call, so it must be set before any matrix product: a process that ran one before importing
# ``models`` keeps MKL's default, and ``MKL_CBWR=AUTO`` set by the user opts out.
os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")

from models.base import CTRModule
from models.deep import DCN, DNN, DeepFM, XDeepFM
from models.fnn import FNN
from models.pnn import IPNN, OPNN, PNN, PNNStar
from models.shallow import FFM, FM, LR
from models.wide_deep import FMDNN, LRDNN, WideDeep

MODELS = {
    "lr": LR, "fm": FM, "ffm": FFM, "fnn": FNN,
    "ipnn": IPNN, "opnn": OPNN, "pnn_star": PNNStar, "pnn": PNN,
    "lr_dnn": LRDNN, "fm_dnn": FMDNN, "wide_deep": WideDeep,
    "dnn": DNN, "deepfm": DeepFM, "dcn": DCN, "xdeepfm": XDeepFM,
}

__all__ = ["CTRModule", "MODELS", *(cls.__name__ for cls in MODELS.values())]
