"""EDSR baseline (Lim et al. 2017, "Enhanced Deep Residual Networks for Single Image Super-Resolution"):
residual blocks without batch norm on the LR image, a global skip, a pixel-shuffle upsampler."""

from __future__ import annotations

import torch
from torch import nn

# The DIV2K training set's RGB mean the paper subtracts, as a fraction of the 8-bit range.
DIV2K_RGB_MEAN = (0.4488, 0.4371, 0.4040)


class ResBlock(nn.Module):
    def __init__(self, features: int, res_scale: float) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(features, features, 3, padding=1), nn.ReLU(inplace=True),
                                  nn.Conv2d(features, features, 3, padding=1))  # fmt: skip
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) * self.res_scale


def upsampler(scale: int, features: int) -> nn.Sequential:
    """Conv + pixel shuffle: one x2/x3 stage, or two x2 stages for x4 (the paper's layout); none at x1 (a denoiser)."""
    if scale == 1:
        return nn.Sequential()
    if scale == 4:
        return nn.Sequential(*upsampler(2, features), *upsampler(2, features))
    return nn.Sequential(nn.Conv2d(features, features * scale * scale, 3, padding=1), nn.PixelShuffle(scale))


class EDSR(nn.Module):
    """EDSR: ``blocks`` residual blocks of ``features`` channels; the baseline is (16, 64, res_scale 1).

    Args:
        scale: the SR factor (2, 3 or 4; 1: a denoiser, no upsampler).
        channels: image channels in and out.
        blocks, features, res_scale: the body (the full EDSR is 32 blocks of 256, res_scale 0.1).
    """

    upsample = None  # reads the LR image

    def __init__(self, scale: int, channels: int = 3, blocks: int = 16, features: int = 64, res_scale: float = 1.0) -> None:
        super().__init__()
        if scale not in (1, 2, 3, 4):
            raise ValueError(f"scale must be 1, 2, 3 or 4, got {scale}")
        self.in_channels = channels
        mean = torch.tensor(DIV2K_RGB_MEAN if channels == 3 else (0.5,) * channels).view(1, channels, 1, 1)
        self.register_buffer("mean", mean, persistent=False)
        self.head = nn.Conv2d(channels, features, 3, padding=1)
        self.body = nn.Sequential(*(ResBlock(features, res_scale) for _ in range(blocks)),
                                  nn.Conv2d(features, features, 3, padding=1))  # fmt: skip
        self.tail = nn.Sequential(upsampler(scale, features), nn.Conv2d(features, channels, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(x - self.mean)
        return self.tail(x + self.body(x)) + self.mean
