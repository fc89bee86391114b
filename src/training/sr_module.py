"""SRModule: trains and evaluates any of the nets on HR batches, degrading them on the device (bicubic)
or taking the LR images the loader made (``degradation=jpeg|noise|real``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import lightning.pytorch as pl
import torch
from omegaconf import DictConfig, OmegaConf
from torchmetrics import MaxMetric

from src.arch import contract
from src.arch.measure import macs_per_output_pixel
from src.arch.pipeline import SRPipeline
from src.degrade import downscale, to_float, upsample
from src.errors import ConfigError
from src.metrics import border, to_y, y_inputs
from src.training.losses import LOSSES
from src.training.metrics import y_metrics


def _plain(cfg: Mapping[str, Any]) -> dict[str, Any]:
    # Plain containers: the checkpoint stays loadable with torch.load(weights_only=True).
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)


def as_output(pred: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
    """The target in the net's output space: the HR image, or its luma (Y/255) for a luma net, whose
    loss the SRCNN/FSRCNN papers take on the luma alone."""
    return to_y(hr) / 255 if pred.shape[-3] == 1 and hr.shape[-3] == 3 else hr


def _lr_mult_groups(net: torch.nn.Module, lr_mult: dict[str, float]) -> dict[float, list[torch.nn.Parameter]]:
    """The net's parameters by learning-rate multiplier (1 where no name of ``lr_mult`` matches), in
    the net's parameter order; a name that matches no parameter stops here, in one line."""
    names = dict(net.named_parameters())

    def under(name: str, prefix: str) -> bool:
        return name == prefix or name.startswith(prefix + ".")

    for prefix in lr_mult:
        if not any(under(n, prefix) for n in names):
            raise ConfigError(f"model.lr_mult: {prefix!r} names no parameter of {type(net).__name__} (its modules: "
                             f"{sorted({n.split('.')[0] for n in names})})")  # fmt: skip
    groups: dict[float, list[torch.nn.Parameter]] = {}
    for n, p in names.items():
        matches = [k for k in lr_mult if under(n, k)]
        groups.setdefault(float(lr_mult[max(matches, key=len)]) if matches else 1.0, []).append(p)
    return groups


class SRModule(pl.LightningModule):
    """Wraps a net given as config (``_target_`` + kwargs) so checkpoints can rebuild it from the file alone.

    Args:
        name: the model's name in reports and loggers (``cnn_deep``...).
        net: the net's config; instantiated here and stored in the checkpoint's hyper-parameters.
        scale: SR factor (``data.scale``).
        loss: ``mse`` (the paper's) or ``l1``.
        channels_last: run convolutions in NHWC memory format (faster on CPU and on GPU tensor cores).
        compile: ``torch.compile`` the net.
        optimizer: partial optimizer, called with the parameters.
        scheduler: partial LR schedule, called with the optimizer and the run's total steps; stepped per step.
        degradation: the run's degradation config (``conf/degradation/``), kept in the checkpoint so a
            model file can say what LR it was trained on; batches bring their LR when it is not bicubic.
        noise_level: waifu2x's noise level (0-3) the run trains for, kept in the checkpoint (``upscale --noise``).
        lr_mult: learning-rate multipliers by the name of a net's submodule or parameter (``{deconv: 0.1}``);
            the longest matching name wins, the rest train at the optimizer's rate.
    """

    def __init__(
        self,
        name: str,
        net: Mapping[str, Any],
        scale: int,
        loss: str,
        channels_last: bool,
        compile: bool,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Callable[..., Any] | None = None,
        degradation: Mapping[str, Any] | None = None,
        noise_level: int | None = None,
        lr_mult: Mapping[str, float] | None = None,
    ) -> None:
        super().__init__()
        net = _plain(net)
        hparams = {"name": name, "net": net, "scale": scale, "loss": loss}
        if degradation is not None:
            hparams["degradation"] = _plain(degradation)
        if noise_level is not None:
            hparams["noise_level"] = noise_level
        self.save_hyperparameters(hparams)
        self.net = contract.build_net(net, scale)
        self.scale = scale
        # Shares self.net, held outside the module tree so checkpoints keep the net's weights under `net.`.
        object.__setattr__(self, "pipeline", SRPipeline(self.net, scale))
        self.loss_fn = LOSSES[loss]
        self.channels_last = channels_last
        self.compile_net = compile
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.lr_groups = _lr_mult_groups(self.net, dict(lr_mult or {}))
        self.params = sum(p.numel() for p in self.net.parameters())
        self.macs_per_pixel = macs_per_output_pixel(self.net, scale)
        if channels_last:
            self.net.to(memory_format=torch.channels_last)
        self.val_metrics = y_metrics().clone(prefix="val/")
        self.val_bicubic = y_metrics().clone(prefix="val/bicubic_")
        self.val_psnr_best = MaxMetric()
        self.test_metrics = y_metrics().clone(prefix="test/")
        self.test_bicubic = y_metrics().clone(prefix="test/bicubic_")
        self._val_bicubic_logged = False
        self._loss_sum, self._loss_steps = torch.zeros(()), 0

    def setup(self, stage: str) -> None:
        if self.compile_net and stage == "fit":
            self.net.compile()

    # --- the data path: uint8 HR -> (net input, HR target), on the device, outside autocast ---
    def degrade(
        self, batch: torch.Tensor | tuple[torch.Tensor, torch.Tensor], with_bicubic: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """uint8 NHWC HR batch, or (HR, LR) from the loader -> (net input, bicubic upscale or None, HR),
        all float NCHW in [0, 1]. The bicubic upscale is of the LR the net reads (degraded or not)."""
        hr_u8, lr_u8 = batch if isinstance(batch, (tuple, list)) else (batch, None)
        with torch.autocast(hr_u8.device.type, enabled=False):
            hr = to_float(hr_u8)
            lr = downscale(hr, self.scale) if lr_u8 is None else to_float(lr_u8)
            x = self.pipeline.upsample(lr)
            bicubic = x if self.pipeline.mode == "bicubic" else upsample(lr, self.scale, "bicubic") if with_bicubic else None
        x = self.pipeline.net_input(x)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, bicubic, hr

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Net output for its input (``degrade``'s), padded so the output has the full HR size."""
        return self.pipeline.run(self.pipeline.pad(x))

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        x, _, hr = self.degrade(batch, with_bicubic=False)
        # Unpadded: a valid-padding net learns only from pixels it sees whole; the target loses its border.
        o = self.pipeline.offset * contract.net_factor(self.net, self.scale)
        target = hr[..., o : hr.shape[-2] - o, o : hr.shape[-1] - o] if o else hr
        pred = self.pipeline.run(x).float()
        loss = self.loss_fn(pred, as_output(pred, target))
        # The epoch mean accumulates on the device; Lightning's per-call logging bookkeeping (and the
        # progress bar's read of the value, a host sync on GPU) runs only at the logging interval.
        self._loss_sum += loss.detach()
        self._loss_steps += 1
        if self.global_step % self.trainer.log_every_n_steps == 0:
            self.log("train/loss_step", loss, prog_bar=True, batch_size=hr.shape[0])
        return loss

    def on_train_start(self) -> None:
        # Also here: an epoch resumed mid-way gets no on_train_epoch_start.
        self.on_train_epoch_start()

    def on_train_epoch_start(self) -> None:
        self._loss_sum = torch.zeros((), device=self.device)
        self._loss_steps = 0

    def on_train_epoch_end(self) -> None:
        if self._loss_steps:
            self.log("train/loss_epoch", self._loss_sum / self._loss_steps)

    def _eval_step(self, batch: torch.Tensor, stage: str, metrics, bicubic_metrics) -> None:
        x, bicubic, hr = self.degrade(batch)
        pred = self(x).float()
        self.log(f"{stage}/loss", self.loss_fn(pred, as_output(pred, hr)), batch_size=1, sync_dist=True)
        # SSIM's Gaussian filter is a conv: under bf16 autocast it would lose ~0.2 SSIM of accuracy.
        with torch.autocast(hr.device.type, enabled=False):
            metrics.update(*y_inputs(pred, hr, border(self.scale)))
            if bicubic_metrics is not None:
                bicubic_metrics.update(*y_inputs(bicubic, hr, border(self.scale)))

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        need_bicubic = not (self._val_bicubic_logged or self.trainer.sanity_checking)
        self._eval_step(batch, "val", self.val_metrics, self.val_bicubic if need_bicubic else None)

    def on_validation_epoch_end(self) -> None:
        values = self.val_metrics.compute()
        self.val_metrics.reset()
        # torchmetrics already synced these across DDP ranks; sync_dist only averages equal values.
        self.log_dict(values, sync_dist=True)
        self.val_psnr_best.update(values["val/psnr_y"])
        self.log("val/psnr_y_best", self.val_psnr_best.compute(), sync_dist=True)
        if not (self._val_bicubic_logged or self.trainer.sanity_checking):
            # The baseline does not change between epochs: log it once, beside the first real epoch.
            self.log_dict(self.val_bicubic.compute(), sync_dist=True)
            self.val_bicubic.reset()
            self._val_bicubic_logged = True

    def test_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        self._eval_step(batch, "test", self.test_metrics, self.test_bicubic)

    def on_test_epoch_end(self) -> None:
        for m in (self.test_metrics, self.test_bicubic):
            self.log_dict(m.compute(), sync_dist=True)
            m.reset()

    def configure_optimizers(self) -> Any:
        groups = [{"params": ps, "lr_mult": m} for m, ps in self.lr_groups.items()]
        optimizer = self.optimizer(params=groups if set(self.lr_groups) != {1.0} else self.parameters())
        for group in optimizer.param_groups:  # before the schedule reads each group's initial rate
            group["lr"] *= group.get("lr_mult", 1.0)
        if self.scheduler is None:
            return optimizer
        scheduler = self.scheduler(optimizer=optimizer, total_steps=int(self.trainer.estimated_stepping_batches))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
