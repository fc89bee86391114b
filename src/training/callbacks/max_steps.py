"""Validate a run that ends on ``trainer.max_steps`` in the middle of an epoch."""

from __future__ import annotations

import lightning.pytorch as pl


class ValidateAtMaxSteps(pl.Callback):
    """Ends the run at ``max_steps`` as a requested stop, which Lightning validates before it stops.

    Lightning validates at an epoch's end, on ``max_time`` and on a requested stop, but not when
    ``max_steps`` falls mid-epoch: the steps since the last validation would then never be scored,
    nor be eligible for the best checkpoint that the test and the model file use.
    """

    def on_train_batch_end(self, trainer: pl.Trainer, *args) -> None:
        if 0 <= trainer.max_steps <= trainer.global_step:
            trainer.should_stop = True
