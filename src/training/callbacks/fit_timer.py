"""Wall-clock of training, measured honestly over every launch of a run: fit, epochs, patches/s, where it ran."""

from __future__ import annotations

import os
import socket
import time
from datetime import datetime, timezone
from typing import Any

import lightning.pytorch as pl
import torch

from src.devices import device_name


def _sync(trainer: pl.Trainer) -> None:
    # GPU work is asynchronous: without a sync the clock stops before the kernels finish.
    if trainer.strategy.root_device.type == "cuda":
        torch.cuda.synchronize(trainer.strategy.root_device)


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class FitTimer(pl.Callback):
    """Logs ``time/epoch_train_s``, ``time/epoch_val_s``, ``time/patches_per_s`` and the cumulative ``time/train_s``.

    ``fit_seconds`` (= the last ``time/train_s``) sums every launch of a run, each from its start of
    training to its end, so start-up (imports, data decoding, sanity check) is excluded and
    validation epochs are included; the time between the last checkpoint and a kill, whose steps
    are trained again, is not counted. ``launches`` records where and when each launch ran (host,
    visible devices, device, UTC start and end), for the report's check that no two jobs shared
    a device. Lightning's ``Timer`` keeps one total per stage; the per-epoch split and patches/s need
    these hooks. The totals travel in the checkpoint (``state_dict``).
    """

    def __init__(self) -> None:
        self.fit_seconds = 0.0
        self.train_seconds = 0.0
        self.patches = 0
        self.launches: list[dict[str, Any]] = []  # earlier launches, from the checkpoint
        self.launch: dict[str, Any] = {
            "host": socket.gethostname(),
            "visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "device": None,
            "start": utc_now(),
            "end": None,
        }
        self._fit_before = 0.0  # fit seconds of earlier launches
        self._fit_start: float | None = None
        self._epoch_start = 0.0
        self._epoch_patches = 0
        self._val_start = 0.0

    @property
    def patches_per_second(self) -> float:
        return self.patches / self.train_seconds if self.train_seconds else float("nan")

    def train_s(self) -> float:
        """Training seconds of the run so far, over all launches."""
        return self._fit_before + (time.perf_counter() - self._fit_start if self._fit_start is not None else 0.0)

    def all_launches(self) -> list[dict[str, Any]]:
        return [*self.launches, self.launch | {"end": self.launch["end"] or utc_now()}]

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Runs in every launch; on_train_epoch_start does not run for an epoch resumed mid-way.
        _sync(trainer)
        self._fit_start = self._epoch_start = time.perf_counter()
        self._epoch_patches = 0
        self.launch["device"] = device_name(trainer.strategy.root_device)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        _sync(trainer)
        self._epoch_start = time.perf_counter()
        self._epoch_patches = 0

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx: int) -> None:
        hr = batch[0] if isinstance(batch, (tuple, list)) else batch  # (HR, LR) when the loader degrades
        self._epoch_patches += hr.shape[0] * trainer.world_size  # DDP: each rank holds a slice
        if trainer.global_step % trainer.log_every_n_steps == 0:
            pl_module.log("time/train_s", self.train_s())

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        _sync(trainer)
        self._val_start = time.perf_counter()

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            _sync(trainer)
            pl_module.log("time/epoch_val_s", time.perf_counter() - self._val_start)
            pl_module.log("time/train_s", self.train_s())

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
        pl_module.log("time/train_s", self.train_s())

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        _sync(trainer)
        self.fit_seconds = self._fit_before = self.train_s()
        self._fit_start = None  # stopped: the final checkpoint and the summary read the same total

    def state_dict(self) -> dict[str, Any]:
        return {
            "fit_seconds": self.train_s(),
            "train_seconds": self.train_seconds,
            "patches": self.patches,
            "launches": self.all_launches(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if self.fit_seconds or self._fit_start is not None:
            return  # testing the best checkpoint after training: keep this launch's totals
        self._fit_before = self.fit_seconds = state_dict["fit_seconds"]
        self.train_seconds = state_dict["train_seconds"]
        self.patches = state_dict["patches"]
        self.launches = list(state_dict["launches"])
