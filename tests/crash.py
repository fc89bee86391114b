"""Test helper: a callback that SIGKILLs its own training process at a given step, mid-epoch.

``SRLAB_KILL_AT_STEP`` gives the step and ``SRLAB_KILL_IN`` (optional) the run dir name to kill in,
so a resumed run (same config, variables unset) runs on.
"""

import os
import signal
from pathlib import Path

import lightning.pytorch as pl


class KillAtStep(pl.Callback):
    def on_train_batch_end(self, trainer: pl.Trainer, *args) -> None:
        where = os.environ.get("SRLAB_KILL_IN")
        if where and Path(trainer.default_root_dir).name != where:
            return
        if str(trainer.global_step) == os.environ.get("SRLAB_KILL_AT_STEP"):
            os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no final checkpoint: a real kill
