"""Wall-clock of training, measured honestly: fit, per-epoch train and validation, patches/s."""

from __future__ import annotations

import time

import lightning.pytorch as pl
import torch


def _sync(trainer: pl.Trainer) -> None:
    # GPU work is asynchronous: without a sync the clock stops before the kernels finish.
    if trainer.strategy.root_device.type == "cuda":
        torch.cuda.synchronize(trainer.strategy.root_device)


class FitTimer(pl.Callback):
    """Logs ``time/epoch_train_s``, ``time/epoch_val_s``, ``time/patches_per_s``; keeps totals for the summary.

    ``fit_seconds`` runs from the first training batch's epoch start to the end of training, so
    start-up (imports, data decoding, sanity check) is excluded; validation epochs are included.
    """

    def __init__(self) -> None:
        self.fit_seconds = 0.0
        self.train_seconds = 0.0
        self.patches = 0
        self._fit_start: float | None = None
        self._epoch_start = 0.0
        self._epoch_patches = 0
        self._val_start = 0.0

    @property
    def patches_per_second(self) -> float:
        return self.patches / self.train_seconds if self.train_seconds else float("nan")

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        _sync(trainer)
        self._epoch_start = time.perf_counter()
        if self._fit_start is None:
            self._fit_start = self._epoch_start
        self._epoch_patches = 0

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx: int) -> None:
        self._epoch_patches += batch.shape[0] * trainer.world_size  # DDP: each rank holds a slice

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        _sync(trainer)
        self._val_start = time.perf_counter()

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            _sync(trainer)
            pl_module.log("time/epoch_val_s", time.perf_counter() - self._val_start)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Lightning runs this epoch's validation before this hook: subtract it.
        _sync(trainer)
        now = time.perf_counter()
        val = now - self._val_start if self._val_start > self._epoch_start else 0.0
        seconds = now - self._epoch_start - val
        self.train_seconds += seconds
        self.patches += self._epoch_patches
        pl_module.log("time/epoch_train_s", seconds)
        pl_module.log("time/patches_per_s", self._epoch_patches / seconds if seconds else 0.0)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        _sync(trainer)
        if self._fit_start is not None:
            self.fit_seconds = time.perf_counter() - self._fit_start
