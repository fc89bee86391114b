"""The SR literature's evaluation protocol: 8-bit output, BT.601 luma, ``scale`` pixels shaved (none at scale 1).

PSNR (peak 255) and SSIM (11x11 Gaussian, sigma 1.5, filtered 'valid' as MATLAB's ``ssim``), per
image, averaged over images. Training's val/test metrics (``src/training/metrics.py``) and
``src.evaluate`` share these functions, so a run's ``test/ssim_y`` and ``python -m src.evaluate`` agree
on the same images. Plain torch: the commands that only upscale or score do not import torchmetrics.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

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


def to_int(img: torch.Tensor, bits: int = 8) -> np.ndarray:
    """An image ``(C, H, W)`` in [0, 1] as the ``(H, W, C)`` uint8 (or uint16) array a user would save:
    the one float-to-integer conversion (snapshots, panels and upscale's outputs)."""
    top = 255 if bits == 8 else 65535
    arr = img.detach().float().clamp(0, 1).mul(top).round().permute(1, 2, 0).cpu().numpy()
    return arr.astype(np.uint8 if bits == 8 else np.uint16)


def border(scale: int) -> int:
    """Pixels shaved from each side before scoring: ``scale`` for SR (the published protocol); none for a
    denoiser (scale 1), whose output has no upscaling border, as denoising benchmarks score it."""
    return scale if scale > 1 else 0


def shave(img: torch.Tensor, border: int) -> torch.Tensor:
    return img[..., border : img.shape[-2] - border, border : img.shape[-1] - border] if border else img


def gaussian_1d(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """One axis of MATLAB's ``fspecial('gaussian', size, sigma)`` (the 2-D window is its outer product)."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def _filter_valid(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    # The Gaussian is separable: two 1-D passes, 22 instead of 121 multiply-adds per pixel (float64 convs are slow).
    return F.conv2d(F.conv2d(x, g.view(1, 1, -1, 1)), g.view(1, 1, 1, -1))


def ssim_per_image(a: torch.Tensor, b: torch.Tensor, data_range: float = 255.0) -> torch.Tensor:
    """SSIM of each image of two ``(N, 1, H, W)`` batches -> ``(N,)``, Gaussian-filtered 'valid' (no padding).

    Why not torchmetrics' SSIM: it reflect-pads the image and averages the SSIM map over the padded
    border too, which moves Set14 x3 bicubic by +0.0006 over the published 0.7742 (and training's
    numbers ~+0.0005 above evaluate's). Float32 input is computed in float32 (half the time of
    float64 on whole photos), float64 in float64; both subtract the image mean before the second
    moments, so E[x^2] - E[x]^2 does not cancel away the variance of bright flat regions.
    """
    dtype = torch.promote_types(a.dtype, torch.float32)
    a, b = a.to(dtype), b.to(dtype)
    g = gaussian_1d().to(a.device, dtype)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    m = a.mean(dim=(1, 2, 3), keepdim=True)
    a, b = a - m, b - m
    mu_a, mu_b = _filter_valid(a, g), _filter_valid(b, g)
    var_a = _filter_valid(a * a, g) - mu_a**2
    var_b = _filter_valid(b * b, g) - mu_b**2
    cov = _filter_valid(a * b, g) - mu_a * mu_b
    mu_a, mu_b = mu_a + m, mu_b + m
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return ssim_map.double().mean(dim=(1, 2, 3))


def ssim_valid(a: torch.Tensor, b: torch.Tensor, data_range: float = 255.0) -> float:
    """Mean SSIM of two ``(1, 1, H, W)`` images, as MATLAB's ``ssim`` computes it."""
    return float(ssim_per_image(a, b, data_range).mean())


def psnr(a: torch.Tensor, b: torch.Tensor, peak: float = 255.0) -> float:
    mse = float(((a.double() - b.double()) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(peak**2 / mse)


def y_inputs(pred: torch.Tensor, target: torch.Tensor, border: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(pred, target) in [0, 1] -> their shaved 8-bit luma, ready for training's ``y_metrics`` (float32)."""
    return shave(to_y(quantize(pred.float())), border), shave(to_y(quantize(target.float())), border)
