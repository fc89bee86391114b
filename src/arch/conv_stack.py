"""A plain stack of 3x3 convolutions: the shape shared by all four nets of the paper."""

from __future__ import annotations

import torch
from torch import nn


class ConvStack(nn.Module):
    """Pre-upsampling SR net: refines an image already resized to the output size.

    Subclasses fix the architecture in class attributes (the seed's layer tables):
        widths: output channels of the hidden layers (last layer excluded).
        padding: ``"same"`` keeps the size (offset 0); ``"valid"`` loses one pixel per side and layer.
        negative_slope: 0 gives ReLU; waifu2x's vgg_7 uses LeakyReLU(0.1).
        upsample: how the LR input is pre-upsampled before this net (``"bicubic"`` or ``"nearest"``);
            metadata for the caller, the net itself never resizes.

    Args:
        in_channels: channels of the input image (3 = RGB; the seed's tables use 1 = luma).
        out_channels: channels of the output image (3 = RGB in the seed's tables too).
        residual: predict a correction added to the input (``out = net(x) + x``).
        final_activation: apply the activation after the last layer too, as the paper does. Off by
            default: a ReLU on the output cannot produce the negative corrections a residual net
            needs, and without residual it zeroes the gradient of every pixel that should be black.
        upsample: override the class's pre-upsampling mode.
    """

    widths: tuple[int, ...] = ()
    padding: str = "same"
    negative_slope: float = 0.0
    upsample: str = "bicubic"

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        residual: bool = True,
        final_activation: bool = False,
        upsample: str | None = None,
    ) -> None:
        super().__init__()
        upsample = upsample or type(self).upsample
        if upsample not in ("bicubic", "nearest"):
            raise ValueError(f"upsample must be 'bicubic' or 'nearest', got {upsample!r}")
        if residual and in_channels not in (1, out_channels):
            raise ValueError("residual needs in_channels == out_channels (or 1, added to every channel)")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.residual = residual
        self.upsample = upsample
        channels = [in_channels, *self.widths, out_channels]
        slope = self.negative_slope
        layers: list[nn.Module] = []
        for i, (cin, cout) in enumerate(zip(channels[:-1], channels[1:], strict=True)):
            layers.append(nn.Conv2d(cin, cout, 3, padding=1 if self.padding == "same" else 0))
            if i < len(channels) - 2 or final_activation:
                layers.append(nn.LeakyReLU(slope, inplace=True) if slope else nn.ReLU(inplace=True))
        self.body = nn.Sequential(*layers)
        # Pixels lost at each border; loss, metrics and tiling crop the target by it.
        self.offset = 0 if self.padding == "same" else len(channels) - 1
        if residual:
            # Start as the identity (the pre-upsampled image): training then learns only the
            # missing detail, which is why the residual form converges so much faster.
            last = self.body[-1] if isinstance(self.body[-1], nn.Conv2d) else self.body[-2]
            nn.init.zeros_(last.bias)
            last.weight.data.mul_(0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        if self.residual:
            o = self.offset
            y = y + (x[..., o : x.shape[-2] - o, o : x.shape[-1] - o] if o else x)
        return y

