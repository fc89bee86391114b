"""Datasets over decoded uint8 images: random training patches in whole batches, eval images."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler


class PatchBatches(Dataset):
    """Item ``k`` is a whole training batch ``(B, P, P, 3)`` uint8, a pure function of (seed, k).

    Batches rather than samples: one item then costs B numpy slices and one stack, with no
    per-sample collation, which keeps a 2-core loader far ahead of the net. Item ``k`` belongs to
    epoch ``k // batches_per_epoch``; each epoch visits every image ``patches_per_image`` times in a
    fresh random order, with random crops and one of the 8 flips/rotations per patch.

    Under DDP (``shard=(rank, world_size)``) every rank draws the same global batch and keeps its
    ``rank::world_size`` slice: the averaged gradient then equals the single-process one, so a run's
    result does not depend on the number of processes.
    """

    def __init__(
        self,
        images: list[np.ndarray],
        patch_size: int,
        patches_per_image: int,
        batch_size: int,
        seed: int,
        augment: bool = True,
        shard: tuple[int, int] = (0, 1),
    ) -> None:
        self.images = images
        self.patch_size = patch_size
        self.patches_per_image = patches_per_image
        self.batch_size = batch_size
        self.seed = seed
        self.augment = augment
        self.shard = shard
        self.batches_per_epoch = max(1, len(images) * patches_per_image // batch_size)
        self._order_epoch, self._order = -1, np.empty(0, np.int64)

    def __len__(self) -> int:
        return self.batches_per_epoch

    def _epoch_order(self, epoch: int) -> np.ndarray:
        # Which image each patch of the epoch comes from; cached, as every batch of the epoch needs it.
        if self._order_epoch != epoch:
            order = np.repeat(np.arange(len(self.images)), self.patches_per_image)
            self._order = np.random.default_rng((self.seed, epoch)).permutation(order)
            self._order_epoch = epoch
        return self._order

    def __getitem__(self, k: int) -> torch.Tensor:
        epoch, i = divmod(int(k), self.batches_per_epoch)
        which = self._epoch_order(epoch)[i * self.batch_size : (i + 1) * self.batch_size]
        rng = np.random.default_rng((self.seed, epoch, i))
        p = self.patch_size
        patches = []
        for n, t in zip(which, rng.integers(0, 8, len(which)), strict=True):
            img = self.images[n]
            y = rng.integers(0, img.shape[0] - p + 1)
            x = rng.integers(0, img.shape[1] - p + 1)
            patch = img[y : y + p, x : x + p]
            if self.augment:
                if t & 1:
                    patch = patch[::-1]
                if t & 2:
                    patch = patch[:, ::-1]
                if t & 4:
                    patch = patch.transpose(1, 0, 2)
            patches.append(patch)
        rank, world = self.shard
        return torch.from_numpy(np.stack(patches[rank::world]))


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
