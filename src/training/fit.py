"""The fit of one run: build the data, model, callbacks, loggers and Trainer from the config, train,
test the best checkpoint, and write the run's summary."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import hydra
import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import WandbLogger
from omegaconf import DictConfig

from src.errors import ConfigError
from src.inference.checkpoint import LoadedModel
from src.training.callbacks.fit_timer import FitTimer
from src.training.run_context import is_multirun, prepare_ddp_launch, sweep_name
from src.training.summary import run_summary, write_summary
from src.training.wandb_logger import finish_run, prepare_run

log = logging.getLogger(__name__)


def _quiet_library_noise() -> None:
    # Notices that say nothing about this run: the CSV logger shares the run dir with Hydra's files
    # by design, Lightning advertises a cloud logger, and a deprecation inside Lightning itself.
    warnings.filterwarnings("ignore", message="Experiment logs directory .* exists and is not empty")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*is deprecated")
    # Our loader position travels in the DataModule's state instead (see SRDataModule.state_dict).
    warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended before the epoch ended")
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(lambda r: "litlogger" not in r.getMessage())


def fit(cfg: DictConfig, init: LoadedModel | None) -> dict[str, Any]:
    """Fit (from ``init``'s weights where given), test, and return the run's summary (also written to
    ``<run dir>/summary.json``)."""
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
