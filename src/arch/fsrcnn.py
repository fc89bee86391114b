"""FSRCNN (Dong et al. 2016, "Accelerating the Super-Resolution Convolutional Neural Network"):
feature extraction, shrinking, mapping and expanding on the LR image, then a 9x9 transposed conv."""

from __future__ import annotations

import math

import torch
from torch import nn


class FSRCNN(nn.Module):
    """FSRCNN(d, s, m): LR in, ``scale`` x larger out, PReLU after every layer but the deconvolution.

    Args:
        scale: the SR factor (the deconvolution's stride).
        channels: image channels in and out (the paper: 1, the luma).
        d: feature width; s: shrunk width; m: mapping layers. The paper's FSRCNN is (56, 12, 4).
    """

    upsample = None  # reads the LR image

    def __init__(self, scale: int, channels: int = 3, d: int = 56, s: int = 12, m: int = 4) -> None:
        super().__init__()
        self.in_channels = channels
        layers: list[nn.Module] = [nn.Conv2d(channels, d, 5, padding=2), nn.PReLU(d), nn.Conv2d(d, s, 1), nn.PReLU(s)]
        for _ in range(m):
            layers += [nn.Conv2d(s, s, 3, padding=1), nn.PReLU(s)]
        layers += [nn.Conv2d(s, d, 1), nn.PReLU(d)]
        self.body = nn.Sequential(*layers)
        # padding 4 centres the 9x9 kernel on each LR pixel; output_padding brings the size to h*scale.
        self.deconv = nn.ConvTranspose2d(d, channels, 9, stride=scale, padding=4, output_padding=scale - 1)
        # The paper's initialisation: He-normal convolutions, a narrow Gaussian for the deconvolution.
        for layer in self.body:
            if isinstance(layer, nn.Conv2d):
                fan_out = layer.out_channels * layer.kernel_size[0] * layer.kernel_size[1]
                nn.init.normal_(layer.weight, 0.0, math.sqrt(2.0 / fan_out))
                nn.init.zeros_(layer.bias)
        nn.init.normal_(self.deconv.weight, 0.0, 0.001)
        nn.init.zeros_(self.deconv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.deconv(self.body(x))
