"""Stop a diverging run at once, naming the step, and keep the last good checkpoint."""

from __future__ import annotations

import lightning.pytorch as pl
import torch

from src.errors import SrlabError


class DivergenceError(SrlabError):
    """The training loss became NaN or infinite."""


class NaNGuard(pl.Callback):
    """Checks the training loss every ``every_n_steps`` steps (1: every step).

    Each check reads the loss on the host, a device sync on GPU, so it runs every few steps; NaN
    weights give a NaN loss at every later step, so the next check still catches the divergence,
    and with a period that divides the checkpoint period no checkpoint escapes a check.
    """

    def __init__(self, every_n_steps: int) -> None:
        self.every_n_steps = every_n_steps

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx: int) -> None:
        if trainer.global_step % self.every_n_steps:
            return
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is not None and not torch.isfinite(loss).item():
            raise DivergenceError(
                f"training loss is {loss.item()} at step {trainer.global_step} (epoch {trainer.current_epoch}); "
                "lower optimizer.lr or set trainer.gradient_clip_val; the last good checkpoint is kept"
            )
