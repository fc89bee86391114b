"""Random training crops, cut a whole batch at a time: where to cut (``CropPlans``) and the cutting (``BatchCropper``).

One implementation for every data path: in-memory photos (``FlatImages``), a memory-mapped store
(``StoreImages``) and a store copied to the GPU (``data.on_device=true``). Cutting a batch is one
row gather plus two batched flips, a few torch ops whatever the batch size: ~4x faster than
slicing and flipping each patch in numpy (3-byte pixels copy at ~1 ns a byte there), and the
same code that runs in the loader on CPU runs on the GPU.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

from src.data import pages
from src.data.store import StoreImages
from src.errors import DataError

log = logging.getLogger(__name__)


class FlatImages(Sequence):
    """Decoded ``(H, W, 3)`` uint8 images packed into one flat buffer, laid out as a store's split file.

    A list as far as ``EvalImages`` and the benchmarks can tell; ``BatchCropper`` reads the buffer.
    """

    def __init__(self, images: Sequence[np.ndarray]) -> None:
        self.shapes = np.array([im.shape[:2] for im in images], dtype=np.int64).reshape(-1, 2)
        sizes = self.shapes[:, 0] * self.shapes[:, 1] * 3
        self.offsets = np.cumsum(sizes) - sizes
        self._flat = np.empty(int(sizes.sum()), np.uint8)
        for im, off, n in zip(images, self.offsets, sizes, strict=True):
            self._flat[off : off + n] = np.ascontiguousarray(im, dtype=np.uint8).reshape(-1)

    def __len__(self) -> int:
        return len(self.shapes)

    def __getitem__(self, i: int) -> np.ndarray:  # type: ignore[override]
        (h, w), off = self.shapes[i], self.offsets[i]
        return self._flat[off : off + h * w * 3].reshape(h, w, 3)

    def flat(self) -> np.ndarray:
        return self._flat


# Patches of a batch are grouped by transform in this order, so that the column flips (2, 3, 6, 7) and the
# transposes (6, 7, 4, 5) are each one contiguous slice of the batch: two batched ops instead of four.
TRANSFORM_ORDER = (0, 1, 2, 3, 6, 7, 4, 5)
_GROUP = np.argsort(TRANSFORM_ORDER)  # transform -> its place in TRANSFORM_ORDER


class CropPlan(NamedTuple):
    """Where to cut one batch: ``where`` grouped by transform in ``TRANSFORM_ORDER``; ``counts[t]`` patches have transform ``t``.

    The counts travel as host ints, so the device can flip whole slices of the batch without the
    sync that reading a device mask back would cost (Lightning moves only the tensor).
    """

    where: torch.Tensor
    counts: tuple[int, ...]


class CropPlans(Dataset):
    """Item ``k``: where to cut the patches of training batch ``k`` -> ``(B, 4)`` int64 [image, y, x, transform].

    Each epoch visits every image ``patches_per_image`` times in a fresh order; ``transform`` picks one
    of the 8 flips/rotations (bit 0: rows, 1: columns, 2: transpose). A pure function of (seed, k). The
    whole epoch is drawn at once, when its first item is asked for: per batch that leaves a slice,
    where drawing each batch on its own cost ~50 us of numpy calls, a tenth of what a 16-patch batch
    of the on-device path then cost on CPU. Under DDP (``shard=(rank, world_size)``) every rank plans the same global
    batch and keeps its ``rank::world_size`` slice: the averaged gradient then equals the
    single-process one.
    """

    def __init__(
        self,
        shapes: np.ndarray,
        patch_size: int,
        patches_per_image: int,
        batch_size: int,
        seed: int,
        shard: tuple[int, int] = (0, 1),
    ) -> None:
        self.shapes = shapes
        self.patch_size = patch_size
        self.patches_per_image = patches_per_image
        self.batch_size = batch_size
        self.seed = seed
        self.shard = shard
        self.batches_per_epoch = max(1, len(shapes) * patches_per_image // batch_size)
        self._epoch = -1
        self._where = np.empty((0, 0, 4), np.int32)  # (batches, patches of this rank, 4) for self._epoch
        self._counts: list[tuple[int, ...]] = []

    def __len__(self) -> int:
        return self.batches_per_epoch

    def _draw_epoch(self, epoch: int) -> None:
        order = np.repeat(np.arange(len(self.shapes)), self.patches_per_image)
        rng = np.random.default_rng((self.seed, epoch))
        per_batch = min(self.batch_size, len(order))  # a store smaller than one batch gives one short batch
        which = rng.permutation(order)[: self.batches_per_epoch * per_batch]
        room = self.shapes[which] - self.patch_size + 1  # valid top-left corners per axis
        y = rng.integers(0, room[:, 0])
        x = rng.integers(0, room[:, 1])
        t = rng.integers(0, 8, len(which))
        rank, world = self.shard
        plan = np.stack([which, y, x, t], axis=1).astype(np.int32).reshape(self.batches_per_epoch, per_batch, 4)
        plan = plan[:, rank::world]
        # Order within a batch is irrelevant to the loss: group by transform for the device's batched flips.
        grouped = np.argsort(_GROUP[plan[..., 3]], axis=1, kind="stable")
        self._where = np.take_along_axis(plan, grouped[..., None], axis=1)
        counts = (self._where[..., 3, None] == np.arange(8)).sum(axis=1)
        self._counts = [tuple(c) for c in counts.tolist()]
        self._epoch = epoch

    def __getitem__(self, k: int) -> CropPlan:
        epoch, i = divmod(int(k), self.batches_per_epoch)
        if epoch != self._epoch:
            self._draw_epoch(epoch)
        return CropPlan(torch.from_numpy(self._where[i]).long(), self._counts[i])


class BatchCropper:
    """A split's images as one flat buffer on one device, and batched crops from it.

    Every image starts at a multiple of 3 bytes in the flat buffer, so ``buffer.unfold(0, 3P, 3)`` is a
    zero-copy view whose row ``q`` is the ``P`` pixels starting at pixel ``q``: a patch is ``P`` rows of
    that view, and a batch is one index of ``B * P`` rows.
    """

    def __init__(self, images: FlatImages | StoreImages, patch_size: int, device: torch.device) -> None:
        self.images = images
        self.patch_size = p = patch_size
        flat = torch.from_numpy(images.flat())
        if device.type != "cpu":
            need = flat.numel()
            if device.type == "cuda":
                free, _ = torch.cuda.mem_get_info(device)
                if need > 0.8 * free:  # leave room for the net and its activations
                    raise DataError(
                        f"data.on_device=true: the train split is {need / 1e9:.1f} GB, {device} has {free / 1e9:.1f} GB free; "
                        "use data.on_device=false"
                    )
            log.info("copying the train split (%.2f GB) to %s", need / 1e9, device)
            flat = flat.to(device)
        self.device = device
        self.rows = flat.unfold(0, 3 * p, 3)  # (pixels - P + 1, 3P), a view
        self.start = torch.as_tensor(images.offsets // 3, device=device)  # first pixel of each image
        self.width = torch.as_tensor(images.shapes[:, 1], device=device)
        self.steps = torch.arange(p, device=device)
        self.group = torch.as_tensor(_GROUP, device=device)
        # Crops cut on CPU from a store touch its mapping: its pages are released after each cut (pages.py).
        self.from_store = isinstance(images, StoreImages)

    def crops(self, plan: CropPlan) -> torch.Tensor:
        """A plan with ``where`` on the device -> ``(B, P, P, 3)`` uint8 patches, flipped/rotated as planned.

        Runs on torch's configured threads: switching to one thread and back around each batch costs
        more than the crops' own copies, and the net's ops use the same threads anyway.
        """
        p = self.patch_size
        n, y, x, t = plan.where.unbind(1)
        # Flipping rows is free: read the patch's rows bottom-up.
        rows = torch.where((t & 1).bool()[:, None], p - 1 - self.steps, self.steps)
        first = self.start[n] + x
        idx = first[:, None] + (y[:, None] + rows) * self.width[n][:, None]  # (B, P) first pixel of each patch row
        out = self.rows.index_select(0, idx.view(-1)).view(-1, p, p, 3)
        # Grouped in TRANSFORM_ORDER: [0 1 | 2 3 | 6 7 | 4 5]; columns flip for 2, 3, 6, 7, the transpose for 6, 7, 4, 5.
        c = plan.counts
        flip_from = c[0] + c[1]
        transpose_from = flip_from + c[2] + c[3]
        flip_to = transpose_from + c[6] + c[7]
        if flip_to > flip_from:
            out[flip_from:flip_to] = out[flip_from:flip_to].flip(2)
        if len(out) > transpose_from:
            out[transpose_from:] = out[transpose_from:].transpose(1, 2).clone()
        if self.from_store and self.device.type == "cpu":
            pages.release()
        return out

    def crops_many(self, plans: Sequence[CropPlan]) -> torch.Tensor:
        """Plans of equal-size batches -> ``(len(plans), B, P, P, 3)``; item ``j`` equals ``crops(plans[j])``, bit for bit.

        One ``crops`` over all their patches, grouped by transform across the batches, then one gather
        back to batch order. Why: between training steps the caches are cold, and there one batch's ~15
        small ops cost ~370 us on CPU (~160 us in a hot loop); in a cut of 151 batches each costs ~107 us in
        a hot loop, ~165 us inside a run (docs/performance.md, "Data path").
        """
        where = torch.cat([plan.where for plan in plans])
        order = torch.sort(self.group[where[:, 3]], stable=True).indices  # stable: each batch keeps its own order
        counts = tuple(sum(c) for c in zip(*(plan.counts for plan in plans), strict=True))
        out = self.crops(CropPlan(where[order], counts))
        back = torch.empty_like(order)
        back[order] = torch.arange(len(order), device=order.device)
        return out.index_select(0, back).view(len(plans), -1, *out.shape[1:])
