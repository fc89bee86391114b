"""Datasets over decoded uint8 images: random training patches in whole batches, eval images."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler, get_worker_info

from src.data import pages
from src.data.crops import BatchCropper, CropPlans, FlatImages
from src.data.store import StoreImages


class PatchBatches(Dataset):
    """Item ``k`` is a whole training batch ``(B, P, P, 3)`` uint8, a pure function of (seed, k).

    Batches rather than samples: items are cut by ``BatchCropper`` (a row gather and two batched
    flips, see ``src/data/crops.py``), with no per-sample collation or per-patch Python work.
    Item ``k`` belongs to epoch ``k // batches_per_epoch``; each epoch visits every image
    ``patches_per_image`` times in a fresh random order, with random crops and one of the 8
    flips/rotations per patch (``CropPlans``).

    Under DDP (``shard=(rank, world_size)``) every rank draws the same global batch and keeps its
    ``rank::world_size`` slice: the averaged gradient then equals the single-process one, so a run's
    result does not depend on the number of processes.

    ``cut_bytes``: batches are cut ahead, as many at a time as fit in this many bytes (at least one,
    never past the epoch's end; from a store, no more than ``CUT_MAP_BYTES`` of estimated mapping, so
    its page release keeps pace), with ``BatchCropper.crops_many``; items are views of that cut. The
    values do not depend on it.
    """

    def __init__(
        self,
        images: Sequence[np.ndarray] | FlatImages | StoreImages,
        patch_size: int,
        patches_per_image: int,
        batch_size: int,
        seed: int,
        shard: tuple[int, int] = (0, 1),
        cut_bytes: int = 0,
    ) -> None:
        self.images = images if isinstance(images, FlatImages | StoreImages) else FlatImages(images)
        self.patch_size = patch_size
        self.plans = CropPlans(self.images.shapes, patch_size, patches_per_image, batch_size, seed, shard)
        self.batches_per_epoch = self.plans.batches_per_epoch
        per_rank = batch_size // shard[1]
        self.batches_per_cut = max(1, cut_bytes // (per_rank * patch_size**2 * 3))
        if isinstance(self.images, StoreImages):  # a cut maps its crops' file pages before the next release check
            mapped_per_batch = per_rank * pages.mapped_per_crop(self.images.shapes, patch_size)
            self.batches_per_cut = max(1, min(self.batches_per_cut, pages.CUT_MAP_BYTES // mapped_per_batch))
        self._cropper: BatchCropper | None = None
        self._cut: dict[int, torch.Tensor] = {}  # batches cut ahead, not yet handed out

    def __len__(self) -> int:
        return self.batches_per_epoch

    def __getitem__(self, k: int) -> torch.Tensor:
        if k not in self._cut:
            self._cut = self._cut_ahead(k)
        return self._cut.pop(k)

    def _cut_ahead(self, k: int) -> dict[int, torch.Tensor]:
        if self._cropper is None:  # built where the crops are cut: a loader worker or the training process
            self._cropper = BatchCropper(self.images, self.patch_size, torch.device("cpu"))
        worker = get_worker_info()
        every = worker.num_workers if worker else 1  # a loader worker is asked for every num_workers-th item
        epoch_end = (k // self.batches_per_epoch + 1) * self.batches_per_epoch  # CropPlans holds one epoch
        ks = range(k, min(epoch_end, k + every * self.batches_per_cut), every)
        if len(ks) == 1:  # crops_many would add a sort and a copy back for nothing
            return {k: self._cropper.crops(self.plans[k])}
        return dict(zip(ks, self._cropper.crops_many([self.plans[j] for j in ks]).unbind(0), strict=True))

    def __getstate__(self) -> dict:
        # A spawned loader worker builds its own cropper (StoreImages pickles as its file, not its pages).
        return {**self.__dict__, "_cropper": None, "_cut": {}}


class EpochBatchSampler(Sampler[int]):
    """Yields the item indices of the current epoch (Lightning calls ``set_epoch`` each epoch).

    ``start`` skips the first batches of the next iteration only: a run resumed mid-epoch continues
    the epoch's sequence where the checkpoint left it instead of replaying it.
    """

    def __init__(self, batches_per_epoch: int) -> None:
        self.batches_per_epoch = batches_per_epoch
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.batches_per_epoch

    def __iter__(self):
        start, self.start = self.start, 0
        base = self.epoch * self.batches_per_epoch
        return iter(range(base + start, base + self.batches_per_epoch))


class EvalImages(Dataset):
    """Whole images (or a centre crop of ``crop`` px), trimmed to a multiple of ``scale``."""

    def __init__(self, images: list[np.ndarray], scale: int, crop: int | None = None) -> None:
        self.images = images
        self.scale = scale
        self.crop = crop

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        img = self.images[i]
        h, w = img.shape[:2]
        if self.crop:
            c = self.crop
            y, x = max(0, (h - c) // 2), max(0, (w - c) // 2)
            img = img[y : y + c, x : x + c]
            h, w = img.shape[:2]
        img = img[: h - h % self.scale, : w - w % self.scale]
        return torch.from_numpy(np.ascontiguousarray(img))
