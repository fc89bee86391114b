"""Datasets over decoded uint8 images: random training patches in whole batches, eval images."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler, get_worker_info

from src.data import pages
from src.data.crops import BatchCropper, CropPlans, FlatImages
from src.data.store import StoreImages
from src.degrade.degradations import Degradation
from src.degrade.draws import TRAIN, rng_for


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

    ``degradation``: one that runs in the loader (``on_device`` false) makes item ``k`` the pair
    ``(HR, LR)``, the LR made here, on the CPU, at ``scale``; each patch draws from a generator keyed by
    (seed, k, its crop), so the LR is as much a pure function of (seed, k) as the crops.
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
        degradation: Degradation | None = None,
        scale: int | None = None,
    ) -> None:
        if degradation is not None and scale is None:
            raise ValueError("PatchBatches: a degradation needs the scale")
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
        self.degradation = degradation if degradation is not None and not degradation.on_device else None
        self.scale = scale
        self.seed = seed

    def __len__(self) -> int:
        return self.batches_per_epoch

    def __getitem__(self, k: int) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if k not in self._cut:
            self._cut = self._cut_ahead(k)
        hr = self._cut.pop(k)
        if self.degradation is None:
            return hr
        # Keyed by the crop (image, y, x, flip) rather than the place in the batch: under DDP a patch
        # gets the same LR whichever rank cuts it.
        rngs = [rng_for(self.seed, TRAIN, k, *row) for row in self.plans[k].where.tolist()]
        return hr, self.degradation.lr_batch(hr, self.scale, rngs)

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
    """Whole images (or a centre crop of ``crop`` px), trimmed to a multiple of ``scale``.

    ``degradation``: one that runs in the loader makes item ``i`` the pair ``(HR, LR)``, the LR drawn
    from a generator keyed by (seed, stream, i): the same images every epoch, run and resume.
    """

    def __init__(
        self,
        images: list[np.ndarray],
        scale: int,
        crop: int | None = None,
        degradation: Degradation | None = None,
        seed: int = 0,
        stream: int = 0,
    ) -> None:
        self.images = images
        self.scale = scale
        self.crop = crop
        self.degradation = degradation if degradation is not None and not degradation.on_device else None
        self.key = (seed, stream)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        img = self.images[i]
        h, w = img.shape[:2]
        if self.crop:
            c = self.crop
            y, x = max(0, (h - c) // 2), max(0, (w - c) // 2)
            img = img[y : y + c, x : x + c]
            h, w = img.shape[:2]
        hr = torch.from_numpy(np.ascontiguousarray(img[: h - h % self.scale, : w - w % self.scale]))
        if self.degradation is None:
            return hr
        return hr, self.degradation.lr_batch(hr[None], self.scale, [rng_for(*self.key, i)])[0]
