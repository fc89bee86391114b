"""``data.on_device=true``: the train split lives on the training device; crops are cut there in batches.

The train loader yields only a ``CropPlan`` per batch (``src/data/crops.py``): a ``(B, 4)`` int64
tensor (image, y, x, flip/rotation of each patch), a pure function of (seed, batch index) like the
loader's batches, plus how many patches take each flip/rotation. Lightning moves the tensor to the
device and ``on_after_batch_transfer`` turns it into the ``(B, P, P, 3)`` uint8 HR batch that
``SRModule`` expects, with the same ``BatchCropper`` the loader uses on CPU: no loader work, no host
copies of pixels, no device sync. On CPU the "device" copy is the memory-mapped store itself
(zero-copy), so the same code path runs, and is tested, without a GPU.
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from src.data.crops import BatchCropper, CropPlan, CropPlans
from src.data.datamodule import SRDataModule
from src.data.store import StoreImages
from src.errors import DataError


class DeviceStoreDataModule(SRDataModule):
    """``SRDataModule`` over a store whose training crops are cut on the training device (build with ``from_store``)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._cropper: BatchCropper | None = None

    def train_dataloader(self) -> DataLoader:
        images = self.images["train"]
        if not isinstance(images, StoreImages):
            raise DataError("data.on_device=true needs a prepared store: use data=store data.path=STORE")
        shard = (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)
        plans = CropPlans(images.shapes, self.patch_size, self.patches_per_image, self.batch_size, self.seed, shard)
        # Plans cost microseconds: worker processes would only add overhead.
        return DataLoader(plans, batch_size=None, sampler=self.train_sampler(len(plans)), num_workers=0)

    def cropper(self, device: torch.device) -> BatchCropper:
        if self._cropper is None or self._cropper.device != device:
            self._cropper = BatchCropper(self.images["train"], self.patch_size, device)
        return self._cropper

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        # Training plans become patches; val/test batches (uint8 images) pass through untouched.
        if isinstance(batch, CropPlan):
            return self.cropper(batch.where.device).crops(batch)
        return batch
