"""SRDataModule: decoded photos -> uint8 HR patch batches (train) and whole images (val/test).

With the default bicubic degradation the loaders only slice uint8 arrays; LR images are made from HR
batches on the training device (see ``src/degrade/__init__.py``), so the data path stays cheap whatever
the net or the scale. A degradation that needs the CPU (JPEG, noise, the real-photo chain) runs in the
loaders instead: each batch or image is then the pair ``(HR, LR)``, both uint8.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader

from src.data.crops import CropPlans, FlatImages
from src.data.device_patches import DeviceCrops
from src.data.images import load_many
from src.data.patches import EpochBatchSampler, EvalImages, PatchBatches
from src.data.prepare import prepare
from src.data.sample import sample_splits
from src.data.splits import SPLITS, assign_splits, folder_images
from src.data.store import open_store
from src.degrade.degradations import Degradation
from src.degrade.draws import TEST, VAL
from src.errors import ConfigError, DataError

log = logging.getLogger(__name__)


def rescaled(image: np.ndarray, factor: float) -> np.ndarray:
    """An ``(H, W, 3)`` uint8 photo downscaled by ``factor``: Pillow's antialiased bicubic."""
    h, w = image.shape[:2]
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BICUBIC))


class SRDataModule(pl.LightningDataModule):
    """Photos split into train/val/test (``splits``: split name -> image paths), decoded once into memory.

    Args:
        splits: split name -> list of image paths (``from_folder`` and ``from_sample`` build them).
        scale: SR factor; eval images are trimmed to a multiple of it.
        patch_size: HR training patch side in px.
        patches_per_image: random crops drawn from each training image per epoch.
        batch_size: training patches per batch.
        eval_crop: centre-crop val/test images to this side (``None``: whole images).
        num_workers: loader processes for training batches (0: in the training process).
        cut_mb: training batches are cut ahead in runs of this many MB (see ``PatchBatches``).
        seed: base of every random crop and degradation draw, so runs with the same seed see the same patches.
        degradation: how LR images are made (``conf/degradation/``); ``None`` or one with ``on_device``
            (bicubic): on the training device, by ``SRModule``; any other: in the loaders, on the CPU.
        rescales: train also on each training photo downscaled by these factors (< 1), as extra images
            (the FSRCNN paper's augmentation: 0.9, 0.8, 0.7, 0.6); copies smaller than a patch are left out.
    """

    def __init__(
        self,
        splits: dict[str, list[Path]],
        scale: int,
        patch_size: int,
        patches_per_image: int,
        batch_size: int,
        eval_crop: int | None,
        num_workers: int,
        cut_mb: float,
        seed: int,
        degradation: Degradation | None = None,
        rescales: list[float] | None = None,
    ) -> None:
        super().__init__()
        self.rescales = [float(f) for f in rescales or []]
        if any(not 0 < f < 1 for f in self.rescales):
            raise ConfigError(f"data.rescales={list(rescales)}: each factor must be between 0 and 1 (a downscale)")
        self.splits = {k: [Path(p) for p in v] for k, v in splits.items()}
        self.scale = scale
        self.patch_size = patch_size
        self.patches_per_image = patches_per_image
        self.batch_size = batch_size
        self.eval_crop = eval_crop
        self.num_workers = num_workers
        self.cut_mb = cut_mb
        self.seed = seed
        self.degradation = degradation
        self.images: dict[str, list] = {}
        self._resume_at: tuple[int, int] | None = None
        self.names: dict[str, list[str]] = {}
        self.device_crops: DeviceCrops | None = None  # set by from_store(on_device=True)

    @classmethod
    def from_folder(cls, root: str, val_fraction: float, test_fraction: float, **kwargs: Any) -> SRDataModule:
        """The readable photos under ``root``, split by a stable hash of each path (see ``assign_splits``).

        Every file is decoded first and only the usable ones are split, so a corrupt or tiny file can
        never leave val or test empty while good photos remain (each is decoded once: ``setup`` reuses them).
        """
        patch, min_eval = kwargs["patch_size"], 2 * kwargs["scale"]
        paths = folder_images(root)
        images, kept = load_many(paths, min_size=min_eval)
        shape = {p: im.shape for p, im in zip(kept, images, strict=True)}
        splits = assign_splits(kept, root, val_fraction, test_fraction, trainable=lambda p: min(shape[p][:2]) >= patch)
        for p in [p for p in splits["train"] if min(shape[p][:2]) < patch]:
            log.warning("skipping %s: %dx%d px is smaller than the %d px training patch", p, shape[p][1], shape[p][0], patch)
        splits["train"] = [p for p in splits["train"] if min(shape[p][:2]) >= patch]
        if not all(splits[s] for s in SPLITS):
            usable = f"no readable image of at least {min_eval} px" if not kept else f"only {len(kept)} usable image(s)"
            raise DataError(
                f"data.root={root}: too few images: {usable} among {len(paths)} file(s) (skipped ones are named above); "
                f"a run needs at least 3: one of at least {patch} px for train, one each for val and test"
            )
        module = cls(splits, **kwargs)
        by_path = dict(zip(kept, images, strict=True))
        for split, split_paths in splits.items():
            module._keep(split, [by_path[p] for p in split_paths], split_paths)
        log.info("images: %s", {k: len(v) for k, v in module.images.items()})
        return module

    @classmethod
    def from_sample(cls, train: list[str], val: list[str], test: list[str], **kwargs: Any) -> SRDataModule:
        """The embedded sample photos, split by name."""
        return cls(sample_splits(train, val, test), **kwargs)

    @classmethod
    def from_store(
        cls, path: str, on_device: bool = False, photos: str | None = None, max_side: int | None = None, **kwargs: Any
    ) -> SRDataModule:
        """A store made by ``python -m src.data.prepare``, memory-mapped: no decoding, RAM not growing with its size.

        ``on_device``: keep the train split on the training device and cut crops there (see
        ``src/data/device_patches.py``). ``photos``: first bring the store up to date with this folder
        (resumes an interrupted prepare; a no-op once done), capping the long side at ``max_side``.
        """
        if photos is not None:
            prepare(photos, path, max_side=max_side)
        min_sizes = {"train": kwargs["patch_size"], "val": 2 * kwargs["scale"], "test": 2 * kwargs["scale"]}
        module = cls({}, **kwargs)
        if module.rescales:
            raise ConfigError("data.rescales: not with data=store (its photos are memory-mapped as prepared); use data=folder")
        # Filled here, so setup() has nothing to decode.
        module.images = dict(open_store(path, min_sizes))
        module.names = {split: images.names for split, images in module.images.items()}
        if on_device:
            if module.degradation is not None and not module.degradation.on_device:
                raise ConfigError(
                    f"data.on_device=true: crops are cut on the training device, but degradation={module.degradation.name} "
                    "runs on the CPU in the loader; use data.on_device=false"
                )
            module.device_crops = DeviceCrops(module.images["train"], module.patch_size)
        return module

    def setup(self, stage: str | None = None) -> None:
        if self.images:
            return
        for split, paths in self.splits.items():
            min_size = self.patch_size if split == "train" else 2 * self.scale
            images, kept = load_many(paths, min_size=min_size)
            if not images:
                where = f" ({paths[0].parent})" if paths else ""
                raise DataError(f"{split} split{where} has no readable image of at least {min_size} px")
            self._keep(split, images, kept)
        log.info("images: %s", {k: len(v) for k, v in self.images.items()})

    def _keep(self, split: str, images: list, paths: list[Path]) -> None:
        names = [p.stem for p in paths]
        if split == "train" and self.rescales:
            copies = [(f"{n}@{f:g}", rescaled(im, f)) for f in self.rescales for n, im in zip(names, images, strict=True)]
            copies = [(n, im) for n, im in copies if min(im.shape[:2]) >= self.patch_size]
            names, images = names + [n for n, _ in copies], images + [im for _, im in copies]
        # The train split as one flat buffer, the layout the batched cropper reads (a store's already is).
        self.images[split] = FlatImages(images) if split == "train" else images
        self.names[split] = names

    def train_dataloader(self) -> DataLoader:
        rank, world = (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)
        if self.device_crops is not None:
            shapes = self.device_crops.images.shapes
            plans = CropPlans(shapes, self.patch_size, self.patches_per_image, self.batch_size, self.seed, (rank, world))
            # Plans cost microseconds: worker processes would only add overhead.
            return DataLoader(plans, batch_size=None, sampler=self.train_sampler(len(plans)), num_workers=0)
        if self.batch_size % world:
            raise ConfigError(f"data.batch_size={self.batch_size}: must be divisible by the {world} DDP processes")
        ds = PatchBatches(
            self.images["train"],
            self.patch_size,
            self.patches_per_image,
            self.batch_size,
            self.seed,
            shard=(rank, world),
            cut_bytes=int(self.cut_mb * 2**20),
            degradation=self.degradation,
            scale=self.scale,
        )
        return DataLoader(
            ds,
            batch_size=None,  # items are already batches
            sampler=self.train_sampler(len(ds)),
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
        )

    def train_sampler(self, batches_per_epoch: int) -> EpochBatchSampler:
        """The epoch's batch indices, starting where a restored checkpoint left off (see ``state_dict``)."""
        sampler = EpochBatchSampler(batches_per_epoch)
        if self._resume_at is not None:
            epoch, done = self._resume_at
            self._resume_at = None
            if done >= batches_per_epoch:  # saved at the end of an epoch: the next one starts afresh
                epoch, done = epoch + 1, 0
            sampler.set_epoch(epoch)
            sampler.start = done
        return sampler

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        # With data.on_device=true, a training batch arrives as a plan and is cut on the device here.
        return self.device_crops.after_transfer(batch) if self.device_crops is not None else batch

    # Checkpoints carry the position in the patch sequence, so a run resumed mid-epoch continues the
    # epoch instead of replaying its first batches (batches are a pure function of their index).
    # Lightning restores a DataModule's state before it first builds the train loader.
    def state_dict(self) -> dict[str, int]:
        if self.trainer is None:
            return {}
        loop = self.trainer.fit_loop
        return {"epoch": loop.epoch_progress.current.processed, "batches_done": loop.epoch_loop.batch_progress.current.processed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if state:
            self._resume_at = (state["epoch"], state["batches_done"])

    def _eval_loader(self, split: str, stream: int) -> DataLoader:
        images = EvalImages(self.images[split], self.scale, self.eval_crop, self.degradation, self.seed, stream)
        return DataLoader(images, batch_size=1)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val", VAL)

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test", TEST)
