"""The seed's Table 7: one held-out LR image super-resolved at chosen epochs, saved and logged."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.loggers import WandbLogger
from PIL import Image

from src.arch.pipeline import luma_to_rgb
from src.degrade import downscale
from src.degrade.draws import VAL, rng_for
from src.metrics import to_int

SNAPSHOT = 2**31  # the snapshot crop's key among the val images' draws (their keys are image indices)


class Snapshots(pl.Callback):
    """Saves ``<dir>/epoch_XXX.png`` (SR of a centre crop of the first val image) at the given epochs.

    Args:
        dirpath: where the PNGs go; ``lr.png`` (the LR image, at LR size) and ``hr.png`` (the truth) too.
        at_fractions: epochs as fractions of ``max_epochs`` (0.05, 0.5, 1.0 = the paper's 5/50/100 of 100).
        crop: side of the HR centre crop, in px.
    """

    def __init__(self, dirpath: str, at_fractions: list[float], crop: int) -> None:
        self.dirpath = Path(dirpath)
        self.at_fractions = list(at_fractions)
        self.crop = crop
        self.epochs: set[int] = set()
        self._hr: torch.Tensor | None = None
        self._lr: torch.Tensor | None = None  # the crop's LR when the loader degrades (not bicubic)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.epochs = {max(1, round(f * trainer.max_epochs)) for f in self.at_fractions}
        img = trainer.datamodule.images["val"][0]
        scale = pl_module.scale
        c = min(self.crop, *img.shape[:2]) // scale * scale
        y, x = (img.shape[0] - c) // 2, (img.shape[1] - c) // 2
        self._hr = torch.from_numpy(np.ascontiguousarray(img[y : y + c, x : x + c]))[None]
        degradation = getattr(trainer.datamodule, "degradation", None)
        if degradation is not None and not degradation.on_device:
            self._lr = degradation.lr_batch(self._hr, scale, [rng_for(trainer.datamodule.seed, VAL, SNAPSHOT)])

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch + 1
        if epoch not in self.epochs or self._hr is None or not trainer.is_global_zero:
            return
        was_training = pl_module.training
        pl_module.eval()
        with torch.no_grad():
            batch = self._hr.to(pl_module.device)
            x, bicubic, hr = pl_module.degrade(batch if self._lr is None else (batch, self._lr.to(pl_module.device)))
            sr = luma_to_rgb(pl_module(x).float(), bicubic)
        pl_module.train(was_training)
        self.dirpath.mkdir(parents=True, exist_ok=True)
        if not (self.dirpath / "hr.png").exists():
            Image.fromarray(to_int(hr[0])).save(self.dirpath / "hr.png")
            lr = self._lr[0].numpy() if self._lr is not None else to_int(downscale(hr.float(), pl_module.scale)[0])
            Image.fromarray(lr).save(self.dirpath / "lr.png")
        sr_img = to_int(sr[0])
        Image.fromarray(sr_img).save(self.dirpath / f"epoch_{epoch:03d}.png")
        for lg in trainer.loggers:
            if isinstance(lg, WandbLogger):
                lg.log_image(key="snapshots/sr", images=[sr_img], caption=[f"epoch {epoch}"], step=trainer.global_step)
