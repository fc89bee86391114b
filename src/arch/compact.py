"""SRVGGNetCompact (Wang et al. 2021, Real-ESRGAN's compact net): a plain conv stack on the LR image,
a pixel shuffle, and the nearest-upsampled input added back. Parameters are named as in the
published models (``body.N``), so their weights load as they are."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Compact(nn.Module):
    """``num_conv`` 3x3 convs of ``num_feat`` channels with PReLU, then ``channels * scale^2`` and a shuffle.

    Args:
        scale: the SR factor.
        channels: image channels in and out.
        num_feat, num_conv: width and depth (Real-ESRGAN's general model: 64 and 32; animevideo: 64 and 16).
    """

    upsample = None  # reads the LR image; the skip's nearest resize has no reach
    spandrel_architecture = "Compact"  # its keys are the published ones: exported files load in spandrel

    def __init__(self, scale: int, channels: int = 3, num_feat: int = 64, num_conv: int = 16) -> None:
        super().__init__()
        self.scale = scale
        self.in_channels = channels
        body: list[nn.Module] = [nn.Conv2d(channels, num_feat, 3, padding=1), nn.PReLU(num_feat)]
        for _ in range(num_conv):
            body += [nn.Conv2d(num_feat, num_feat, 3, padding=1), nn.PReLU(num_feat)]
        body.append(nn.Conv2d(num_feat, channels * scale * scale, 3, padding=1))
        self.body = nn.ModuleList(body)
        self.upsampler = nn.PixelShuffle(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for layer in self.body:
            out = layer(out)
        return self.upsampler(out) + F.interpolate(x, scale_factor=self.scale, mode="nearest")
