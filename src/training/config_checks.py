"""Config validation that runs before any work: one clear line naming the option and its allowed values."""

from __future__ import annotations

import math
import sys
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf
from torch import nn

from src import CONF_DIR
from src.arch import contract
from src.arch.pipeline import check_net
from src.degrade.degradations import NOISE_LEVELS, Degradation, build_degradation
from src.errors import ConfigError
from src.safe_write import check_writable, unwritable_reason
from src.training.losses import LOSSES

SCALES = (1, 2, 3, 4)  # 1: a denoiser (JPEG or noise removal at the same size)


def top_level_keys() -> set[str]:
    """The keys a training config may have at its top: ``conf/train.yaml``'s own and its config groups'."""
    primary = OmegaConf.load(CONF_DIR / "train.yaml")
    groups = {next(iter(d)) for d in primary.defaults if isinstance(d, DictConfig)}
    return (set(primary) - {"defaults"}) | {g.split("@")[0].lstrip("/") for g in groups} - {"hydra"}


def _positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def check_train_config(cfg: DictConfig) -> None:
    # Checked first: Hydra would stop on a ??? value (data.root of data=folder, model.net.path of model=file)
    # with a traceback, wherever it is first read.
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise ConfigError(f"{missing[0]}: not set; give it on the command line ({missing[0]}=...)")
    unknown = sorted(set(cfg) - top_level_keys())
    if unknown:
        raise ConfigError(
            f"{unknown[0]}: not an option of src.train (a typo? its top-level options are {', '.join(sorted(top_level_keys()))})"
        )
    scale, patch = cfg.data.scale, cfg.data.patch_size
    if scale not in SCALES:
        raise ConfigError(f"data.scale={scale}: must be one of {', '.join(map(str, SCALES))}")
    if patch % scale:
        raise ConfigError(f"data.patch_size={patch}: must be a multiple of data.scale={scale}")
    degradation = None  # a run dir from before degradations were options has none: bicubic
    if cfg.get("degradation") is not None:
        degradation = build_degradation(cfg.degradation, scale, on_device=bool(cfg.data.get("on_device")),
                                        scale_option="data.scale")  # fmt: skip
    _check_noise_level(cfg.get("noise_level"), degradation)
    if cfg.model.loss not in LOSSES:
        raise ConfigError(f"model.loss={cfg.model.loss}: must be one of {', '.join(LOSSES)}")
    net = _build(cfg.model.net, scale)
    # The LR patch needs a few pixels for the bicubic kernel; the output must survive the offset crop.
    min_patch = max(4 * scale, 2 * contract.offset(net) * contract.net_factor(net, scale) + 8)
    if patch < min_patch:
        raise ConfigError(f"data.patch_size={patch}: too small for {cfg.model.name} at x{scale}; use at least {min_patch}")
    for key in ("batch_size", "patches_per_image"):
        if cfg.data[key] < 1:
            raise ConfigError(f"data.{key}={cfg.data[key]}: must be at least 1")
    _check_optimizer(cfg.optimizer)
    _check_budget(cfg.trainer)
    max_loss = (cfg.callbacks.get("nan_guard") or {}).get("max_loss")
    if max_loss is not None and not _positive(max_loss):
        raise ConfigError(f"callbacks.nan_guard.max_loss={max_loss}: must be a positive number or null (no bound)")
    # Checked, not created: a folder that cannot take a checkpoint fails now, not after the first epoch.
    for name, cb in cfg.callbacks.items():
        if isinstance(cb, DictConfig) and cb.get("dirpath"):
            check_writable(cb.dirpath, f"callbacks.{name}.dirpath={cb.dirpath}")


def _check_noise_level(level: Any, degradation: Degradation | None) -> None:
    if level is None:
        return
    if isinstance(level, bool) or level not in NOISE_LEVELS:
        raise ConfigError(f"noise_level={level}: must be one of {', '.join(map(str, NOISE_LEVELS))}, or null")
    if degradation is None or degradation.on_device:
        raise ConfigError(f"noise_level={level}: needs a degradation with noise (e.g. degradation=jpeg), not bicubic")


def _build(net_cfg: DictConfig, scale: int) -> nn.Module:
    target = net_cfg.get("_target_")
    if not target or target == "???":
        raise ConfigError("model.net._target_: not set (model=custom needs model.net._target_=<package.module.Class>)")
    try:
        cls = contract.resolve_target(str(target))
    except (ImportError, AttributeError, ValueError) as e:
        raise ConfigError(f"model.net._target_={target}: cannot import it ({e}; is its package on PYTHONPATH?)") from None
    options = {k: v for k, v in OmegaConf.to_container(net_cfg, resolve=True).items() if k != "_target_"}
    try:
        net = contract.construct(cls, options, scale)
    except Exception as e:  # a bad net option: report it as config, not as a library traceback
        raise ConfigError(f"model.net: cannot build {target}: {e}") from None
    if not isinstance(net, nn.Module):
        raise ConfigError(f"model.net._target_={target}: builds a {type(net).__name__}, not an nn.Module")
    try:
        check_net(net, scale)
    except contract.NetContractError as e:
        raise ConfigError(f"model.net: {e}") from None
    except Exception as e:  # the net's own forward fails: its first line, not a traceback through srlab
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ConfigError(f"model.net: {target} fails on a small LR image at x{scale}: {first[:200]}") from None
    return net


def _check_optimizer(opt: DictConfig) -> None:
    # torch checks these only when the optimizer is built, after the data is decoded, in a traceback.
    if "lr" in opt and not _positive(opt.lr):
        raise ConfigError(f"optimizer.lr={opt.lr}: must be a positive number")
    for key in ("weight_decay", "momentum"):
        if key in opt and not (opt[key] == 0 or _positive(opt[key])):
            raise ConfigError(f"optimizer.{key}={opt[key]}: must be 0 or a positive number")


def _check_budget(trainer: DictConfig) -> None:
    # Lightning takes 0 as "train nothing" and reports an untrained net as a completed run.
    epochs, steps = trainer.get("max_epochs"), trainer.get("max_steps")
    if epochs is not None and (epochs == 0 or epochs < -1):
        raise ConfigError(f"trainer.max_epochs={epochs}: must be at least 1 (or -1: no limit, with trainer.max_steps)")
    if steps is not None and (steps == 0 or steps < -1):
        raise ConfigError(f"trainer.max_steps={steps}: must be at least 1 (or -1: no limit)")


class OutputDirCheck(Callback):
    """Hydra callback: an output dir that cannot be written is one line naming it, before Hydra makes it.

    Hydra creates the run dir and writes ``.hydra/`` before the task starts, so a read-only folder
    would otherwise end in Hydra's traceback. Nothing is created here.
    """

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check("hydra.run.dir", config.hydra.run.dir)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check("hydra.sweep.dir", config.hydra.sweep.dir)

    @staticmethod
    def _check(key: str, folder: str) -> None:
        if reason := unwritable_reason(folder):
            print(f"error: {key}={folder}: {reason}", file=sys.stderr)
            sys.exit(2)
