"""The SR literature's evaluation protocol: 8-bit output, BT.601 luma, ``scale`` pixels shaved.

PSNR (peak 255) and SSIM (11x11 Gaussian, sigma 1.5) come from torchmetrics; this module only
prepares the images the way published numbers were measured.
"""

from __future__ import annotations

import torch
from torchmetrics import MetricCollection
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

_BT601 = (65.481, 128.553, 24.966)


def to_y(img: torch.Tensor) -> torch.Tensor:
    """BT.601 luma in 0-255 (16-235 range) of an RGB batch in [0, 1]; 1-channel input is returned as gray 0-255."""
    if img.shape[-3] == 1:
        return img * 255
    r, g, b = img.unbind(-3)
    return (16 + _BT601[0] * r + _BT601[1] * g + _BT601[2] * b).unsqueeze(-3)


def quantize(img: torch.Tensor) -> torch.Tensor:
    """Round to the 8-bit image a user would save (values stay in [0, 1])."""
    return img.clamp(0, 1).mul(255).round().div(255)


def shave(img: torch.Tensor, border: int) -> torch.Tensor:
    return img[..., border : img.shape[-2] - border, border : img.shape[-1] - border] if border else img


def y_metrics() -> MetricCollection:
    """Per-image PSNR-Y / SSIM-Y averaged over images, as the benchmarks report them."""
    return MetricCollection(
        {
            "psnr_y": PeakSignalNoiseRatio(data_range=255.0, reduction="elementwise_mean", dim=(1, 2, 3)),
            "ssim_y": StructuralSimilarityIndexMeasure(data_range=255.0, gaussian_kernel=True, sigma=1.5, kernel_size=11),
        }
    )


def y_inputs(pred: torch.Tensor, target: torch.Tensor, border: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(pred, target) in [0, 1] -> their shaved 8-bit luma, ready for :func:`y_metrics` (float32)."""
    return shave(to_y(quantize(pred.float())), border), shave(to_y(quantize(target.float())), border)
