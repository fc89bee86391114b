"""Stop a diverging run at once, naming the step, and keep the last good checkpoint."""

from __future__ import annotations

import math

import lightning.pytorch as pl

from src.errors import SrlabError


class DivergenceError(SrlabError):
    """The training loss became NaN, infinite, or larger than the run allows."""


class NaNGuard(pl.Callback):
    """Checks the training loss every ``every_n_steps`` steps (1: every step): not finite, or above ``max_loss``.

    Each check reads the loss on the host, a device sync on GPU, so it runs every few steps; NaN
    weights give a NaN loss at every later step, so the next check still catches the divergence,
    and with a period that divides the checkpoint period no checkpoint escapes a check. A loss can
    also explode and stay finite, and such a run would train on to its end: ``max_loss`` bounds it.
    """

    # None (no bound) for the runs saved before max_loss was an option: `resume=` uses a run's own config.
    def __init__(self, every_n_steps: int, max_loss: float | None = None) -> None:
        self.every_n_steps = every_n_steps
        self.max_loss = max_loss

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx: int) -> None:
        if trainer.global_step % self.every_n_steps:
            return
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is None:
            return
        value = loss.item()
        above = self.max_loss is not None and value > self.max_loss
        if math.isfinite(value) and not above:
            return
        bound = f", above callbacks.nan_guard.max_loss={self.max_loss}" if above else ""
        raise DivergenceError(
            f"training loss is {value:.4g} at step {trainer.global_step} (epoch {trainer.current_epoch}){bound}; "
            "lower optimizer.lr or set trainer.gradient_clip_val; the last good checkpoint is kept"
        )
