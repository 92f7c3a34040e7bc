"""The run's loggers (``train.loggers``): Lightning's CSV, TensorBoard, W&B and MLflow loggers, given to Fabric.

Every metric the loop logs with ``fabric.log_dict`` (the step metrics and the ``epoch/*`` metrics
of ``history.csv``) goes to each of them. The experiment trackers (W&B, MLflow) also get the
resolved config as parameters, and keep one tracker run per run folder: its ids are recorded in
``trackers.json`` (written atomically) when the run starts, and a resumed run continues those
tracker runs. A resume that changed a key allowed to change (``train.epochs``, ...) logs the new
value as ``resume-N/<key>``: a parameter once logged is never overwritten.

W&B follows its environment (``WANDB_MODE=offline`` writes the run under ``<run>/wandb/``,
``WANDB_PROJECT``, default ``sempairs``). MLflow logs to ``MLFLOW_TRACKING_URI``, else to a SQLite
store ``<run>/mlflow.db`` (MLflow 3 refuses new plain-file stores), experiment
``MLFLOW_EXPERIMENT_NAME`` (default ``sempairs``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from lightning.fabric.loggers import CSVLogger, Logger
from lightning.pytorch.loggers import MLFlowLogger, WandbLogger
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from sempairs.atomic import write_text
from sempairs.config import ConfigError, RunConfig, flatten
from sempairs.trained.checkpoint import LAST, read_checkpoint
from sempairs.train.rundir import config_changes

TRACKERS = "trackers.json"
EXTRAS = {"tensorboard": "tensorboard", "wandb": "'sempairs[wandb]'", "mlflow": "'sempairs[mlflow]'"}


def make_loggers(cfg: RunConfig, run_dir: Path, version: str) -> list[Logger]:
    """The loggers ``train.loggers`` names; the trackers continue the runs recorded in ``trackers.json``.

    ``version``: ``""`` for a fresh start, ``resume-N`` for the N-th resume (the CSV and
    TensorBoard logs of each attempt get a folder of their own). Only a resume continues the
    recorded tracker runs: a fresh start (of a run killed before its first checkpoint, too) starts new ones.
    """
    ids = read_ids(run_dir) if version else {}
    loggers = []
    for name in cfg.train.loggers:
        try:
            loggers.append(_LOGGERS[name](cfg, run_dir, version, ids))
        except ModuleNotFoundError:
            raise ConfigError(f"train.loggers names {name}, whose package is not installed: "
                              f"pip install {EXTRAS[name]}, or remove {name} from train.loggers") from None
    return loggers


def read_ids(run_dir: Path) -> dict:
    """The tracker run ids recorded in the run folder (``{}`` before its trackers started)."""
    path = Path(run_dir) / TRACKERS
    return json.loads(path.read_text()) if path.exists() else {}


def _csv(cfg: RunConfig, run_dir: Path, version: str, ids: dict) -> Logger:
    return CSVLogger(root_dir=str(run_dir), name="logs", version=version)


def _tensorboard(cfg: RunConfig, run_dir: Path, version: str, ids: dict) -> Logger:
    import tensorboard  # noqa: F401  (Lightning's logger writes through it)
    from lightning.fabric.loggers import TensorBoardLogger

    return TensorBoardLogger(root_dir=str(run_dir), name="tensorboard", version=version)


def _wandb(cfg: RunConfig, run_dir: Path, version: str, ids: dict) -> Logger:
    logger = WandbLogger(name=cfg.name, save_dir=str(run_dir), id=ids.get("wandb", {}).get("id"), project=os.environ.get("WANDB_PROJECT", "sempairs"))
    logger._wandb_init.pop("anonymous", None)  # deprecated by wandb; Lightning still passes it (None)
    return logger


def _mlflow(cfg: RunConfig, run_dir: Path, version: str, ids: dict) -> Logger:
    saved = ids.get("mlflow", {})
    uri = saved.get("tracking_uri") or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path(run_dir).resolve() / 'mlflow.db'}"
    return _WholeParamsMLFlowLogger(experiment_name=os.environ.get("MLFLOW_EXPERIMENT_NAME", "sempairs"), run_name=cfg.name,
                         tracking_uri=uri, run_id=saved.get("run_id"),
                         artifact_location=(Path(run_dir).resolve() / "mlartifacts").as_uri())


class _WholeParamsMLFlowLogger(MLFlowLogger):
    """Lightning's MLflow logger, but parameter values are logged whole (Lightning cuts them at 250 characters)."""

    @rank_zero_only
    def log_hyperparams(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(key=k, value=str(v)) for k, v in params.items()]
        for start in range(0, len(items), 100):  # MLflow's most parameters per batch
            self.experiment.log_batch(run_id=self.run_id, params=items[start : start + 100])


_LOGGERS = {"csv": _csv, "tensorboard": _tensorboard, "wandb": _wandb, "mlflow": _mlflow}


def start_trackers(loggers: list[Logger], cfg: RunConfig, resuming: bool) -> None:
    """On process 0: start (or continue) the tracker runs, record their ids, log the config as parameters.

    ``trackers.json`` records the ids and the number of attempts made with them (the ids of tracker
    runs a fresh start left behind are kept under ``abandoned``). A tracker run that starts logs
    the whole resolved config; one that the N-th resume continues gets only the keys the resume
    changed, as ``resume-N/<key>`` (``train.epochs`` raised, ...).
    """
    trackers = {"wandb" if isinstance(lg, WandbLogger) else "mlflow": lg
                for lg in loggers if isinstance(lg, (WandbLogger, MLFlowLogger))}
    if not trackers:
        return
    run_dir = cfg.run_dir
    ids = read_ids(run_dir)
    if not resuming and ids:  # the runs of an attempt killed before its first checkpoint stay named, as abandoned
        ids = {"abandoned": [*ids.get("abandoned", []), {k: v for k, v in ids.items() if k != "abandoned"}]}
    ids["attempts"] = ids.get("attempts", 0) + 1
    config = flatten(cfg.model_dump(mode="json"))
    changes = {}
    if resuming:
        saved = read_checkpoint(run_dir / LAST, mmap=True)["config"]
        changes = {f"resume-{ids['attempts'] - 1}/{k}": new for k, (_, new) in config_changes(saved, cfg).items()}
    params = {kind: changes if kind in ids else config for kind in trackers}
    for kind, logger in trackers.items():
        if kind == "wandb":
            ids["wandb"] = {"id": logger.experiment.id, "project": logger.experiment.project}
        else:
            logger.experiment.update_run(logger.run_id, status="RUNNING")  # a killed attempt left it FAILED
            ids["mlflow"] = {"run_id": logger.run_id, "tracking_uri": logger._tracking_uri,
                             "experiment_id": logger.experiment_id}
    write_text(run_dir / TRACKERS, json.dumps(ids, indent=2) + "\n")
    for kind, logger in trackers.items():
        if params[kind]:
            logger.log_hyperparams(params[kind])


def close_trackers(loggers: list[Logger], ok: bool) -> None:
    """End this attempt's tracker runs: W&B's run finished, MLflow's marked FINISHED or FAILED."""
    for logger in loggers:
        if isinstance(logger, MLFlowLogger) and logger._initialized:
            logger.finalize("success" if ok else "failed")
        elif isinstance(logger, WandbLogger) and logger._experiment is not None:
            logger._experiment.finish(exit_code=0 if ok else 1)
            logger._experiment = None
