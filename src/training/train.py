"""Train one SR net, test its best checkpoint, write summary.json and print a result table (the Hydra
app: config checks, resume and sweep re-launches, errors; the fit itself: src/training/fit.py).

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
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from src import CONF_DIR
from src.errors import ConfigError, user_error
from src.inference.checkpoint import LoadedModel, load_checkpoint, load_model
from src.training.config_checks import check_train_config
from src.training.run_context import in_ray_job, is_multirun, register_resolvers, resume_state, upgrade_targets
from src.training.summary import format_summary, write_summary
from src.training.wandb_logger import saved_run_id

log = logging.getLogger(__name__)


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
        init = _check_before_work(cfg)
        # Imported once the config has passed its checks: Lightning takes seconds to import, and a bad
        # option should cost the user none of them.
        from src.training.fit import fit

        summary = fit(cfg, init)
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
