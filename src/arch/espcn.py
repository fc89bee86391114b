"""ESPCN (Shi et al. 2016, "Real-Time Single Image and Video Super-Resolution Using an Efficient
Sub-Pixel Convolutional Neural Network"): three convolutions on the LR image, then a pixel shuffle."""

from __future__ import annotations

import torch
from torch import nn


class ESPCN(nn.Module):
    """LR in, ``scale`` x larger out: 5x5x64, 3x3x32 (tanh), 3x3x(C*scale^2), sub-pixel shuffle.

    Args:
        scale: the SR factor (the last layer's width and the shuffle depend on it).
        channels: image channels in and out (the paper: 1, the luma; srlab trains RGB).
    """

    upsample = None  # reads the LR image

    def __init__(self, scale: int, channels: int = 3) -> None:
        super().__init__()
        self.in_channels = channels
        self.body = nn.Sequential(
            nn.Conv2d(channels, 64, 5, padding=2),
            nn.Tanh(),
            nn.Conv2d(64, 32, 3, padding=1),
            nn.Tanh(),
            nn.Conv2d(32, channels * scale * scale, 3, padding=1),
            nn.PixelShuffle(scale),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)
