"""Train one SR net, test its best checkpoint, write summary.json and print a result table.

python -m src.train                                   # cnn_deep on the embedded sample photos
python -m src.train model=cnn_small trainer.max_epochs=5 optimizer.lr=1e-4
python -m src.train data=folder data.root=/path/to/photos data.scale=3
python -m src.train debug=fast                        # a few batches, seconds
python -m src.train --cfg job                         # print the composed config
"""

from __future__ import annotations

import json
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import hydra
import lightning.pytorch as pl
import torch
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.loggers import WandbLogger
from omegaconf import DictConfig, OmegaConf, open_dict

from src import CONF_DIR
from src.errors import ConfigError, user_error
from src.inference.checkpoint import LoadedModel, load_checkpoint, load_model
from src.training.callbacks.fit_timer import FitTimer
from src.training.config_checks import check_train_config
from src.training.run_context import (
    in_ray_job,
    is_multirun,
    prepare_ddp_launch,
    register_resolvers,
    resume_state,
    sweep_name,
    upgrade_targets,
)
from src.training.summary import format_summary, run_summary, write_summary
from src.training.wandb_logger import finish_run, prepare_run, saved_run_id

log = logging.getLogger(__name__)


def _quiet_library_noise() -> None:
    # Notices that say nothing about this run: the CSV logger shares the run dir with Hydra's files
    # by design, Lightning advertises a cloud logger, and a deprecation inside Lightning itself.
    warnings.filterwarnings("ignore", message="Experiment logs directory .* exists and is not empty")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*is deprecated")
    # Our loader position travels in the DataModule's state instead (see SRDataModule.state_dict).
    warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended before the epoch ended")
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(lambda r: "litlogger" not in r.getMessage())


def _check_before_work(cfg: DictConfig) -> LoadedModel | None:
    """Refuse a bad config or checkpoint in one line before any data is read; the weights to start from."""
    check_train_config(cfg)
    if "ddp" in str(cfg.trainer.get("strategy")) and in_ray_job():
        # Lightning's DDP launcher re-runs sys.argv, which in a Ray worker is Ray's, not this job's command.
        raise ConfigError("trainer=ddp inside a Ray job is not supported: Ray gives each job one GPU; "
                          "run DDP without hydra/launcher=ray_gpus (e.g. the default launcher or slurm_gpus)")
    # Weights-only, an srlab net, and the configured one.
    if cfg.ckpt_path:
        _same_model(load_checkpoint(cfg.ckpt_path), cfg, f"ckpt_path={cfg.ckpt_path}")
    init = None
    if cfg.init:
        init = load_model(None, cfg.model.name, cfg.data.scale) if cfg.init == "bundled" else load_checkpoint(cfg.init)
        _same_model(init, cfg, f"init={cfg.init}", any_scale=True)
    return init


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit, test, and return the run's summary (also written to ``<run dir>/summary.json``)."""
    init = _check_before_work(cfg)
    _quiet_library_noise()
    pl.seed_everything(cfg.seed, workers=True)
    out_dir = Path(cfg.paths.output_dir)
    datamodule = hydra.utils.instantiate(cfg.data)
    model = hydra.utils.instantiate(
        cfg.model,
        optimizer=hydra.utils.instantiate(cfg.optimizer),
        scheduler=hydra.utils.instantiate(cfg.scheduler) if cfg.scheduler else None,
    )
    if init is not None:
        fresh = start_from(model.net, init.net, f"init={cfg.init}")
        log.info("starting from the weights of %s%s", init.path, f" (fresh: {', '.join(fresh)})" if fresh else "")
    # Lightning refuses a progress-bar callback when the bar is switched off.
    callbacks = [
        hydra.utils.instantiate(c)
        for name, c in cfg.callbacks.items()
        if name != "progress_bar" or cfg.trainer.get("enable_progress_bar", True)
    ]
    loggers = [hydra.utils.instantiate(c) for c in cfg.logger.values()]
    trainer: pl.Trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    if trainer.world_size > 1:
        prepare_ddp_launch(out_dir)
    extra = {"params": model.params, "macs_per_pixel": model.macs_per_pixel, "sweep": sweep_name() if is_multirun() else None,
             "world_size": trainer.world_size}  # fmt: skip
    for lg in loggers:
        if isinstance(lg, WandbLogger):
            prepare_run(lg, cfg, out_dir, extra)
        else:
            lg.log_hyperparams(extra)

    # weights_only: Lightning would otherwise unpickle the resumed file with arbitrary code allowed.
    trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.ckpt_path, weights_only=True)
    if "last_checkpoint" in cfg.callbacks:
        # The periodic last.ckpt may predate the final steps: make it the final (full, resumable) state.
        trainer.save_checkpoint(Path(cfg.callbacks.last_checkpoint.dirpath) / "last.ckpt", weights_only=False)
    fit_metrics = dict(trainer.callback_metrics)
    timer = next((c for c in callbacks if isinstance(c, FitTimer)), None)

    test_metrics: dict[str, Any] = {}
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    if cfg.test:
        trainer.test(model, datamodule=datamodule, ckpt_path=best or None, verbose=False, weights_only=True)
        test_metrics = dict(trainer.callback_metrics)

    summary = run_summary(cfg, trainer, model, fit_metrics, test_metrics, timer, best)
    for lg in loggers:
        if isinstance(lg, WandbLogger):
            summary |= {"wandb_run_id": lg.version, "wandb_group": getattr(lg.experiment, "group", None)}
    if trainer.is_global_zero:
        write_summary(out_dir, summary)
    for lg in loggers:
        if isinstance(lg, WandbLogger):
            finish_run(lg, summary)
        else:
            lg.finalize("success")
    return summary


def start_from(net: torch.nn.Module, source: torch.nn.Module, option: str) -> list[str]:
    """Copy into ``net`` every tensor of ``source`` with the same name and shape; the names left fresh.

    The same net at another scale or depth keeps what it shares: a pre-upsampling net all of it, a
    post-upsampling one all but the upsampler layers whose shapes change (EDSR's x2 from its x4 stage).
    """
    own, theirs = net.state_dict(), source.state_dict()
    shared = {k: v for k, v in theirs.items() if k in own and own[k].shape == v.shape}
    if not shared:
        raise ConfigError(f"{option}: no layer of it has the name and shape of one in {type(net).__name__}")
    net.load_state_dict(shared, strict=False)
    return sorted(k for k in own if k not in shared)


def _same_model(loaded: LoadedModel, cfg: DictConfig, option: str, any_scale: bool = False) -> None:
    scale_ok = any_scale or loaded.scale == cfg.data.scale
    if type(loaded.net).__name__ != cfg.model.net._target_.rsplit(".", 1)[-1] or not scale_ok:
        raise ConfigError(f"{option}: holds {loaded.name} x{loaded.scale}, not {cfg.model.name} x{cfg.data.scale}")


def _continue_where_left(cfg: DictConfig) -> DictConfig | None:
    """Apply ``resume=<run dir>`` and sweep re-launches; ``None`` when this job already finished.

    ``resume=<dir>`` swaps in the exact config that run was started with. A sweep job whose dir
    holds a completed summary is skipped; one with a checkpoint continues from it.
    """
    if cfg.resume:
        run_dir = Path(cfg.resume)
        saved = run_dir / ".hydra" / "config.yaml"
        if not saved.is_file():
            raise ConfigError(f"resume={run_dir}: not a run dir (no .hydra/config.yaml)")
        ignored = [o for o in HydraConfig.get().overrides.task if not o.startswith("resume=")]
        if ignored:
            log.warning("resume: continuing with the run's own config; ignoring %s", " ".join(ignored))
        cfg = upgrade_targets(OmegaConf.load(saved))
        with open_dict(cfg):
            cfg.resume = str(run_dir)
            cfg.paths.output_dir = str(run_dir)  # even where hydra.run.dir points elsewhere
    elif is_multirun():
        run_dir = Path(cfg.paths.output_dir)
        summary_file = run_dir / "summary.json"
        if summary_file.is_file() and json.loads(summary_file.read_text()).get("status") == "completed":
            log.info("%s: finished in an earlier launch, skipped", run_dir)
            return None
    else:
        return cfg
    ckpt, wandb_id = resume_state(run_dir)
    wandb_id = saved_run_id(run_dir) or wandb_id
    with open_dict(cfg):
        if ckpt:
            cfg.ckpt_path = str(ckpt)
            log.info("resuming from %s", ckpt)
        if wandb_id and "wandb" in cfg.logger:
            cfg.logger.wandb.id = wandb_id
    return cfg


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def main(cfg: DictConfig) -> float:
    env_before = set(os.environ)
    try:
        cfg = _continue_where_left(cfg)
        if cfg is None:
            return float("nan")
        summary = train(cfg)
    except Exception as e:
        cause = user_error(e)
        if int(os.environ.get("LOCAL_RANK", 0)) == 0:
            write_summary(Path(cfg.paths.output_dir), {"status": "failed", "model": cfg.model.name, "error": str(cause or e)})
        if cause is None:
            raise  # a bug: the traceback is what helps (the sweep still runs its other jobs)
        print(f"error: {cause}", file=sys.stderr)
        if is_multirun():
            return float("nan")  # let the sweep go on; the report lists this job as failed
        sys.exit(2)
    finally:
        _end_job(env_before)
    if summary["status"] == "completed" and int(os.environ.get("LOCAL_RANK", 0)) == 0:
        print(format_summary(summary))
    return summary["val_psnr_y"]  # the objective of Hydra sweepers


def _end_job(env_before: set[str]) -> None:
    # Each multirun job must close its W&B run and its DDP process group, and drop the variables
    # Lightning's DDP launcher set (LOCAL_RANK, MASTER_PORT, ...): otherwise the next job logs into
    # the old W&B run, or takes itself for a DDP child and waits forever for workers that exited.
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    for key in set(os.environ) - env_before:
        del os.environ[key]
    if "wandb" in sys.modules:
        import wandb

        if wandb.run is not None:
            wandb.finish()


register_resolvers()
