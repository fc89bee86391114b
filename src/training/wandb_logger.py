"""W&B for srlab runs: never prompts or hangs, honours the WANDB_* variables, and stores what a comparison needs."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from omegaconf import DictConfig, OmegaConf

if TYPE_CHECKING:  # the app reads run ids and resolves settings before it imports Lightning (src/training/train.py)
    from lightning.pytorch.loggers import WandbLogger

log = logging.getLogger(__name__)

MODES = ("online", "offline", "disabled")
RUN_ID_FILE = "wandb_run_id"  # in the run dir: a sweep's runs share one wandb dir, so resume finds its id here
# Keys that do not change what a run computes: left out of the group, so seeds and relaunches aggregate.
NOT_A_SETTING = ("seed", "paths", "resume", "ckpt_path", "logger", "callbacks", "test")


def _online_problem(timeout: float) -> str | None:
    """Why W&B cannot log online right now (``None`` if it can): checked in seconds, not minutes."""
    import wandb

    try:  # finds a key in the environment or ~/.netrc without asking for one
        has_key = wandb.login(prompt=False, verify=False)
    except Exception:
        has_key = False
    if not has_key:
        return "no API key (run `wandb login` or set WANDB_API_KEY)"
    url = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai"))
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout=timeout).close()
    except OSError as e:
        return f"{url.hostname} unreachable ({e.strerror or e})"
    try:
        verified = wandb.login(verify=True, prompt=False, relogin=True, timeout=int(timeout) + 5)
    except Exception as e:  # wandb raises several types for a rejected key or a failing server
        return f"{url.hostname} refused the API key or failed ({type(e).__name__})"
    if verified is False:  # recent wandb returns False for a rejected key instead of raising
        return f"{url.hostname} refused the API key"
    return None


def make_wandb_logger(
    mode: str | None, connect_timeout: float, tags: list[str | None] | None = None, **kwargs: Any
) -> WandbLogger:
    """``WandbLogger`` in ``mode`` (online, offline, disabled); any online problem falls back to offline with one line.

    ``mode=None`` reads ``WANDB_MODE`` and defaults to offline. An online run is started here, so a
    server that fails at init is caught now rather than in the middle of ``fit``.
    """
    from lightning.pytorch.loggers import WandbLogger

    mode = mode or os.environ.get("WANDB_MODE") or "offline"
    mode = "offline" if mode == "dryrun" else mode
    if mode not in MODES:
        from src.errors import ConfigError

        raise ConfigError(f"W&B mode {mode!r} (logger.wandb.mode or WANDB_MODE): use one of {', '.join(MODES)}")
    kwargs["tags"] = [t for t in tags or [] if t]
    if mode == "online":
        problem = _online_problem(connect_timeout)
        if problem is None:
            import wandb

            settings = wandb.Settings(init_timeout=max(30.0, connect_timeout))
            logger = _quiet(WandbLogger(mode="online", settings=settings, **kwargs))
            try:
                run = logger.experiment
            except Exception as e:  # the server answered the login but failed to create the run
                wandb.finish()
                problem = f"starting the run failed ({type(e).__name__})"
            else:
                if getattr(run, "url", None):
                    log.info("W&B run: %s", run.url)
                return logger
        log.warning("W&B: %s; logging offline (upload later with `wandb sync`)", problem)
        mode = "offline"
    # Explicit mode: once wandb.login() has run in this process, the WANDB_MODE that Lightning sets
    # for offline runs is no longer read.
    return _quiet(WandbLogger(offline=mode == "offline", mode=mode, **kwargs))


def _quiet(logger: WandbLogger) -> WandbLogger:
    # Lightning passes anonymous=None to wandb.init, which wandb >= 0.19 answers with a warning on every run.
    getattr(logger, "_wandb_init", {}).pop("anonymous", None)
    return logger


def settings_group(root: DictConfig) -> str:
    """``<model> x<scale> <hash of the settings>``: runs that differ only by seed share it, so W&B averages
    only those; every other change (another model, learning rate, data) is a line of its own."""
    # Unresolved: an interpolation of a per-run path (trainer.default_root_dir) reads the same in every run.
    settings = OmegaConf.to_container(OmegaConf.masked_copy(root, [k for k in root if k not in NOT_A_SETTING]), resolve=False)
    digest = hashlib.sha1(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return f"{root.model.name} x{root.data.scale} {digest}"


def prepare_run(logger: WandbLogger, cfg: DictConfig, run_dir: Path, extra: dict[str, Any]) -> None:
    """The whole resolved config in the run's config, the metrics' summaries and axes, the id kept in the run dir."""
    run = logger.experiment
    logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True) | extra)
    if not hasattr(run, "define_metric"):  # DDP ranks other than 0 hold a no-op run
        return
    # Cumulative training seconds as an x axis: "loss against wall-clock time" is one chart.
    run.define_metric("time/train_s", summary="max")
    for key in ("train/loss_step", "train/loss_epoch", "val/loss"):
        run.define_metric(key, step_metric="time/train_s", summary="min")
    run.define_metric("val/psnr_y", summary="max")
    run.define_metric("val/ssim_y", summary="max")
    (run_dir / RUN_ID_FILE).write_text(f"{run.id}\n")


def saved_run_id(run_dir: Path) -> str | None:
    """The W&B run id a run dir's earlier launch logged into (``None`` when it logged none)."""
    path = run_dir / RUN_ID_FILE
    return path.read_text().strip() if path.is_file() else None


def finish_run(logger: WandbLogger, summary: dict[str, Any]) -> None:
    """The final numbers (summary.json's) in the run summary, where the dashboard's tables and filters read them."""
    run = logger.experiment
    if hasattr(run, "summary"):
        run.summary.update({k: v for k, v in summary.items() if isinstance(v, (int, float, str)) and k != "status"})
    logger.finalize("success")
