"""``data.on_device=true``: the train split lives on the training device; crops are cut there in batches.

The train loader yields only a ``CropPlan`` per batch (``src/data/crops.py``): a ``(B, 4)`` int64
tensor (image, y, x, flip/rotation of each patch), a pure function of (seed, batch index) like the
loader's batches, plus how many patches take each flip/rotation. Lightning moves the tensor to the
device and the datamodule's ``on_after_batch_transfer`` hands it to ``DeviceCrops``, which turns it
into the ``(B, P, P, 3)`` uint8 HR batch that ``SRModule`` expects, with the same ``BatchCropper``
the loader uses on CPU: no loader work, no host copies of pixels, no device sync. On CPU the
"device" copy is the memory-mapped store itself (zero-copy), so the same code path runs, and is
tested, without a GPU.
"""

from __future__ import annotations

from typing import Any

import torch

from src.data.crops import BatchCropper, CropPlan
from src.data.store import StoreImages
from src.errors import DataError


class DeviceCrops:
    """The train split of a store, cut into patches on whichever device a plan arrives on.

    A part of ``SRDataModule`` (``from_store(..., on_device=True)``) rather than a subclass of it,
    so that this module and the datamodule do not import each other.
    """

    def __init__(self, images: StoreImages, patch_size: int) -> None:
        if not isinstance(images, StoreImages):
            raise DataError("data.on_device=true needs a prepared store: use data=store data.path=STORE")
        self.images = images
        self.patch_size = patch_size
        self._cropper: BatchCropper | None = None

    def cropper(self, device: torch.device) -> BatchCropper:
        """The split copied to ``device`` once (again only if the device changes)."""
        if self._cropper is None or self._cropper.device != device:
            self._cropper = BatchCropper(self.images, self.patch_size, device)
        return self._cropper

    def after_transfer(self, batch: Any) -> Any:
        """Training plans become patches; val/test batches (uint8 images) pass through untouched."""
        if isinstance(batch, CropPlan):
            return self.cropper(batch.where.device).crops(batch)
        return batch
