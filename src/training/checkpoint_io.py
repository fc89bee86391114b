"""Checkpoint files that are either complete or absent: a kill during a save never breaks resume."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from src.errors import OutputError
from src.safe_write import replace_atomically


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes ``<path>.tmp``, flushes it to disk, then renames it over ``<path>``.

    Lightning's own writer stages the file through fsspec in the system temp folder, then moves it:
    never fsynced (after a machine crash its data may not be on disk), and across file systems
    the move is a copy, which a kill can cut. Here the stage sits beside the target, is fsynced and renamed
    (atomic on POSIX). Lightning's writer also swallows a ``PermissionError``: here a folder that
    cannot be written is one line naming it.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any | None = None) -> None:
        if storage_options is not None or "://" in str(path):  # remote storage: Lightning's writer, as it comes
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        path = Path(path)

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)

        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            replace_atomically(path, write, tmp=path.with_name(path.name + ".tmp"))
        except OSError as e:
            raise OutputError(f"{path.parent}: cannot write checkpoint {path.name} ({e.strerror or e})") from None
