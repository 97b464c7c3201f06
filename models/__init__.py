"""CTR models: each a short composition of ``models.layers`` over one ``CTRModule`` base.

``MODELS`` maps the names used in ``conf/model/<name>.yaml`` to the classes.
"""
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
