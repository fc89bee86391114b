"""The SR pipeline around a net: LR image in, SR image out."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from src.degrade import upsample
from src.metrics import to_y


class SRPipeline(nn.Module):
    """LR -> SR for a pre-upsampling net: resize to the output size, luma for luma-in nets, replicate
    padding by the net's offset (so the output keeps the size), then the net, which adds its residual.

    The one definition of these steps for training (``SRModule``), tiled inference (``src.inference.tiling``) and
    ONNX export. The steps are public because callers run them under different precisions: the resize
    and padding always in fp32, the net in the caller's precision.

    Args:
        net: a net with the ``upsample``, ``in_channels`` and ``offset`` attributes of ``ConvStack``.
        scale: the SR factor.
        upsampler: ``lr -> resized`` in place of the MATLAB-exact resize of ``src.degrade`` (whose
            matrices depend on the image size); export passes the same linear map as a fixed conv.
    """

    def __init__(self, net: nn.Module, scale: int, upsampler: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        super().__init__()
        self.net = net
        self.scale = scale
        self.upsampler = upsampler

    def upsample(self, lr: torch.Tensor) -> torch.Tensor:
        """The LR batch resized to the output size the net's way (bicubic or nearest), in fp32."""
        if self.upsampler is not None:
            return self.upsampler(lr)
        with torch.autocast(lr.device.type, enabled=False):
            return upsample(lr.float(), self.scale, self.net.upsample)

    def net_input(self, resized: torch.Tensor) -> torch.Tensor:
        """What the net reads: the resized RGB image, or its luma in [0, 1] for luma-in nets."""
        return to_y(resized) / 255 if self.net.in_channels == 1 else resized

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """Replicate-pad by the pixels a valid-padding net loses, so its output has the input's size."""
        o = self.net.offset
        return F.pad(x, (o, o, o, o), mode="replicate") if o else x

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        """SR of an LR batch ``(N, 3, h, w)`` in [0, 1]: ``(N, out_channels, h*scale, w*scale)``, unclamped."""
        return self.net(self.pad(self.net_input(self.upsample(lr))))
