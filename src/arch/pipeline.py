"""The SR pipeline around a net: LR image in, SR image out, for any net that follows ``src.arch.contract``."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from src.arch import contract
from src.degrade import upsample
from src.metrics import to_y

# RGB in [0, 1] -> BT.601 luma in 0-255 adds 219 per unit added to all three channels (the Y row of
# the matrix sums to 219) and leaves Cb and Cr unchanged (their rows sum to 0).
_LUMA_GAIN = 219.0


def luma_to_rgb(luma: torch.Tensor, bicubic: torch.Tensor) -> torch.Tensor:
    """The RGB image with the luma ``luma`` (``(N, 1, H, W)``, Y/255 as a luma net returns it) and the
    chroma (Cb, Cr) of ``bicubic``: the SRCNN/FSRCNN papers' way of colouring a luma net's output.
    An RGB ``luma`` (or a gray ``bicubic``) is returned as it is."""
    if luma.shape[-3] != 1 or bicubic.shape[-3] != 3:
        return luma
    return bicubic + (luma - to_y(bicubic) / 255) * (255 / _LUMA_GAIN)


class SRPipeline(nn.Module):
    """LR -> SR: resize to the output size (pre-upsampling nets only), luma for luma-in nets, replicate
    padding by the net's offset (so the output keeps the full size), the net, a size check, and the
    bicubic upscale's chroma for a net that returns luma alone.

    The one definition of these steps for training (``SRModule``), tiled inference (``src.inference.tiling``) and
    ONNX export. The steps are public because callers run them under different precisions: the resize
    and padding always in fp32, the net in the caller's precision.

    Args:
        net: any net of the contract (``src.arch.contract``).
        scale: the SR factor.
        upsampler: ``lr -> bicubic upscale`` in place of the MATLAB-exact resize of ``src.degrade``
            (whose matrices depend on the image size); export passes the same linear map as a fixed conv.
    """

    def __init__(self, net: nn.Module, scale: int, upsampler: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        super().__init__()
        self.net = net
        self.scale = scale
        self.upsampler = upsampler
        contract.upsample_mode(net)  # a value srlab cannot use stops here, not at the first batch

    # Read from the net on each use: the net's attributes are the one statement of its contract.
    @property
    def mode(self) -> str | None:
        return contract.upsample_mode(self.net)

    @property
    def offset(self) -> int:
        return contract.offset(self.net)

    def upsample(self, lr: torch.Tensor) -> torch.Tensor:
        """What the net is fed before luma and padding: the LR batch resized the net's way, in fp32
        (a pre-upsampling net), or the LR batch itself (an LR-in net)."""
        if self.mode is None:
            return lr
        if self.mode == "bicubic":
            return self.bicubic(lr)
        with torch.autocast(lr.device.type, enabled=False):
            return upsample(lr.float(), self.scale, self.mode)

    def bicubic(self, lr: torch.Tensor) -> torch.Tensor:
        """The LR batch's bicubic upscale, in fp32."""
        if self.upsampler is not None:
            return self.upsampler(lr)
        with torch.autocast(lr.device.type, enabled=False):
            return upsample(lr.float(), self.scale, "bicubic")

    def colorize(self, out: torch.Tensor, lr: torch.Tensor) -> torch.Tensor:
        """The net's output as RGB: unchanged when it is RGB; a luma output (1 channel) of an RGB ``lr``
        gets the chroma of ``lr``'s bicubic upscale."""
        if out.shape[-3] != 1 or lr.shape[-3] != 3:
            return out
        return luma_to_rgb(out.float(), self.bicubic(lr))

    def net_input(self, resized: torch.Tensor) -> torch.Tensor:
        """What the net reads: the RGB image, or its luma in [0, 1] for luma-in nets."""
        return to_y(resized) / 255 if contract.in_channels(self.net) == 1 else resized

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """Replicate-pad by the pixels a valid-padding net loses, so its output has the full size."""
        o = self.offset
        return F.pad(x, (o, o, o, o), mode="replicate") if o else x

    def run(self, x: torch.Tensor) -> torch.Tensor:
        """The net on an already padded input, its output size checked against the contract."""
        out = self.net(x)
        contract.check_output(self.net, out, tuple(x.shape[-2:]), self.scale)
        return out

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        """SR of an LR batch ``(N, 3, h, w)`` in [0, 1]: ``(N, 3, h*scale, w*scale)``, unclamped."""
        return self.colorize(self.run(self.pad(self.net_input(self.upsample(lr)))), lr)


def check_net(net: nn.Module, scale: int, side: int = 12) -> None:
    """Run the pipeline once on a small zero LR image: a net that breaks the contract stops here, in
    one line (``NetContractError``), before any data is read."""
    p = next(net.parameters(), None)
    lr = torch.zeros(1, 3, side, side, device=p.device if p is not None else None)
    was_training = net.training
    try:
        with torch.no_grad():
            SRPipeline(net.eval(), scale)(lr)
    finally:
        net.train(was_training)
