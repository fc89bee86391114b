"""glibc heap settings per phase: fast training steps, and evaluation memory that goes back to the OS."""

from __future__ import annotations

import logging

import lightning.pytorch as pl
from lightning.pytorch.trainer.states import TrainerFn

from src.glibc import M_MMAP_THRESHOLD, M_TRIM_THRESHOLD, glibc

log = logging.getLogger(__name__)

class HeapByPhase(pl.Callback):
    """Sets glibc's malloc thresholds for each phase of a CPU run (no-op without glibc, and on GPU runs).

    Training allocates the same few tensors every step. glibc's defaults serve tensors above its
    mmap threshold from fresh mappings and trim the heap top after frees, so each step page-faults
    its activations in again: ~10k faults and ~20 ms of kernel time per cnn_deep step (of ~370 ms),
    ~45 ms with a 1 MiB threshold. High thresholds while training keep those pages in the heap.

    Validation and test run whole images of many sizes; kept in the heap, their multi-MB blocks
    fragment it and RSS grows 3-6 MB per image on big stores. A low mmap threshold while evaluating
    hands every block of ``eval_mmap_mb`` or more back to the OS when freed, and the heap is trimmed
    at the switch. Measured by ``tests/test_heap.py`` (page faults) and docs/performance.md.
    """

    def __init__(self, train_mmap_mb: int, train_trim_mb: int, eval_mmap_mb: int) -> None:
        self.train = {M_MMAP_THRESHOLD: train_mmap_mb << 20, M_TRIM_THRESHOLD: train_trim_mb << 20}
        # Trim at the mmap threshold: freed heap above it goes back too.
        self.eval = {M_MMAP_THRESHOLD: eval_mmap_mb << 20, M_TRIM_THRESHOLD: eval_mmap_mb << 20}
        self._libc = glibc()
        if self._libc is None:
            log.debug("no glibc mallopt: heap settings left as they are")

    def apply(self, settings: dict[int, int], trim: bool) -> None:
        if self._libc is None:
            return
        for param, value in settings.items():
            self._libc.mallopt(param, value)
        if trim:
            self._libc.malloc_trim(0)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if trainer.strategy.root_device.type != "cpu":
            self._libc = None  # a GPU run's activations live on the device: the host heap is not the hot path

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.apply(self.train, trim=False)  # also for an epoch resumed mid-way (no on_train_epoch_start)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.apply(self.train, trim=False)

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.apply(self.eval, trim=True)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.state.fn == TrainerFn.FITTING:  # training goes on (mid-epoch validation, sanity check)
            self.apply(self.train, trim=False)

    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.apply(self.eval, trim=True)
