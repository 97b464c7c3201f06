"""Hydra callbacks. ``ReportCallback`` regenerates the results tables when a multirun ends:

hydra:
  callbacks:
    report:
      _target_: experiments.report.callback.ReportCallback
      out_dir: results/tables   # null: into the sweep folder, <sweep dir>/results
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any, Optional

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from experiments.report.layout import TABLES

log = logging.getLogger(__name__)


class ReportCallback(Callback):
    """Runs ``experiments.report`` over the sweep folder at the end of a multirun; with the Optuna
    sweeper it also draws the sweep's study. ``out_dir`` is relative to the directory the
    multirun was started from; ``None`` writes into ``<sweep dir>/results``. ``command`` defaults
    to the multirun's own command line (the Optuna sweeper writes no multirun.yaml, so only this
    callback still sees its search space)."""

    def __init__(self, out_dir: Optional[str] = str(TABLES), command: Optional[str] = None, plot_study: bool = True):
        self.out_dir = out_dir
        self.command = command
        self.plot_study = plot_study

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        # imported here: Hydra builds callbacks at every start, and pandas/seaborn are slow to load
        from experiments.report.collect import FAILED, command_from_hydra
        from experiments.report.writer import OverwriteError, run_report

        launch_dir = Path(OmegaConf.select(config, "hydra.runtime.cwd", default=None) or Path.cwd())
        sweep_dir = launch_dir / str(config.hydra.sweep.dir)
        out_dir = sweep_dir / "results" if self.out_dir is None else launch_dir / self.out_dir
        storage = OmegaConf.select(config, "hydra.sweeper.storage", default=None) if self.plot_study else None
        study_name = OmegaConf.select(config, "hydra.sweeper.study_name", default=None)
        try:
            command = self.command or command_from_hydra(OmegaConf.to_container(config.hydra), multirun=True)
            outcome = run_report(
                [sweep_dir],
                out_dir,
                command=command,
                study_storage=storage,
                study_names=[study_name] if storage and study_name else None,
            )
            if not outcome.datasets:
                log.warning("results report: no finished run under %s", sweep_dir)
        except OverwriteError as error:
            log.error("results report not written: %s", error)
            return
        except Exception:  # the sweep's runs are safe on disk; a failed report must not hide that
            log.exception(
                "results report failed; re-run it with: python -m experiments.report %s --out %s", sweep_dir, out_dir
            )
            return
        failed = outcome.ignored.get(FAILED, 0)
        if failed and sys.exc_info()[0] is None:  # no exception of the sweep's own on its way out
            print(
                f"\n{failed} run(s) of this multirun failed (listed above with why); the table shows the others",
                file=sys.stderr,
            )
            raise SystemExit(1)


class ScalingReportCallback(Callback):
    """At the end of ``experiment=data_scaling``: the scaling table and plot into
    ``<sweep dir>/results/data_scaling`` (``out_dir`` relative to the launch directory otherwise)."""

    def __init__(self, out_dir: Optional[str] = None):
        self.out_dir = out_dir

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from experiments.report.collect import command_from_hydra
        from experiments.report.scaling import write_scaling_report

        launch_dir = Path(OmegaConf.select(config, "hydra.runtime.cwd", default=None) or Path.cwd())
        sweep_dir = launch_dir / str(config.hydra.sweep.dir)
        out_dir = sweep_dir / "results" / "data_scaling" if self.out_dir is None else launch_dir / self.out_dir
        try:
            command = command_from_hydra(OmegaConf.to_container(config.hydra), multirun=True)
            for path in write_scaling_report([sweep_dir], out_dir, command):
                print(f"  {path}")
        except Exception:  # the runs are safe on disk; a failed report must not hide that
            log.exception("scaling report failed; re-run it with: python -m experiments.report.scaling %s", sweep_dir)
