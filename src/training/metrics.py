"""Training's val/test metrics: the protocol of ``src/metrics.py`` accumulated by torchmetrics on the device."""

from __future__ import annotations

import torch
from torchmetrics import Metric, MetricCollection
from torchmetrics.image import PeakSignalNoiseRatio

from src.metrics import ssim_per_image


class SSIMValid(Metric):
    """:func:`ssim_per_image` averaged over images, accumulated on the device (no host sync per update)."""

    full_state_update = False
    higher_is_better = True

    def __init__(self, data_range: float = 255.0) -> None:
        super().__init__()
        self.data_range = data_range
        self.add_state("total", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        self.total += ssim_per_image(preds, target, self.data_range).sum()
        self.count += preds.shape[0]

    def compute(self) -> torch.Tensor:
        return (self.total / self.count).float()


def y_metrics() -> MetricCollection:
    """Per-image PSNR-Y / SSIM-Y averaged over images, as the benchmarks (and ``src.evaluate``) report them."""
    return MetricCollection(
        {
            "psnr_y": PeakSignalNoiseRatio(data_range=255.0, reduction="elementwise_mean", dim=(1, 2, 3)),
            "ssim_y": SSIMValid(data_range=255.0),
        }
    )
