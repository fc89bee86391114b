"""Config validation that runs before any work: one clear line naming the option and its allowed values."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from src.errors import ConfigError
from src.sr_module import LOSSES

SCALES = (2, 3, 4)


def check_train_config(cfg: DictConfig) -> None:
    scale, patch = cfg.data.scale, cfg.data.patch_size
    if scale not in SCALES:
        raise ConfigError(f"data.scale={scale}: must be one of {', '.join(map(str, SCALES))}")
    if patch % scale:
        raise ConfigError(f"data.patch_size={patch}: must be a multiple of data.scale={scale}")
    if cfg.model.loss not in LOSSES:
        raise ConfigError(f"model.loss={cfg.model.loss}: must be one of {', '.join(LOSSES)}")
    try:
        net = hydra.utils.instantiate(cfg.model.net)
    except Exception as e:  # a bad net option: report it as config, not as a library traceback
        raise ConfigError(f"model.net: cannot build {cfg.model.net._target_}: {e}") from None
    # The LR patch needs a few pixels for the bicubic kernel; the output must survive the offset crop.
    min_patch = max(4 * scale, 2 * net.offset + 8)
    if patch < min_patch:
        raise ConfigError(f"data.patch_size={patch}: too small for {cfg.model.name} at x{scale}; use at least {min_patch}")
    for key in ("batch_size", "patches_per_image"):
        if cfg.data[key] < 1:
            raise ConfigError(f"data.{key}={cfg.data[key]}: must be at least 1")
