"""ctr-bench entry point: compose a config, train one model on one dataset, test it, write metrics.

    python run.py                                   # DeepFM on the embedded synthetic data
    python run.py -m model=deepfm,fm,pnn            # a multirun: one folder per model
    python run.py -m hparams_search=deepfm          # an Optuna sweep into a persistent study

A run folder holds `.hydra/` (the resolved config), `metrics.json`, `history.csv` (one row per
epoch), the logger's files and the best checkpoint. The returned value is the best epoch's
`objective`, so Hydra's sweepers can optimise it. What a run does around `fit` lives in
`experiments/run/` (`train.py` first).
"""
from __future__ import annotations

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from experiments.run.config import TRUSTED_TARGETS
from experiments.run.ddp import ddp_world_of_this_run
from experiments.run.train import train


@hydra.main(config_path="conf", config_name="config", execution_whitelist=TRUSTED_TARGETS)
def main(cfg: DictConfig) -> float:
    with ddp_world_of_this_run():
        metrics = train(cfg, HydraConfig.get().runtime.output_dir)
    return metrics[cfg.objective]


if __name__ == "__main__":
    main()
