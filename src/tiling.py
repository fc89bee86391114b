"""Super-resolve an LR image of any size in tiles, with the same result as one whole-image pass.

The whole pipeline runs per tile: MATLAB-bicubic (or nearest) pre-upsampling, the net, and the
replicate padding ``SRModule.forward`` applies. Each tile is cut from the LR image with a margin that
covers the bicubic kernel (2 LR px each side) plus the net's receptive field (one px per 3x3 layer in
HR px), so every kept output pixel sees exactly the input it would see in a whole-image pass; the
margin's output is thrown away. Memory is then bounded by the tile size, not the photo's.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from src.degrade import upsample
from src.metrics import to_y

DEFAULT_TILE = 192  # LR px per side: ~0.3 GB of activations for cnn_deep at x2, near full throughput


def receptive_radius(net: nn.Module) -> int:
    """HR pixels on each side that one output pixel depends on (sum over the convs of their half-widths)."""
    radius = 0
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            radius += ((m.kernel_size[0] - 1) // 2) * m.dilation[0]
    return radius


def tile_margin(net: nn.Module, scale: int) -> int:
    """LR pixels of context around a tile: the net's receptive field in LR px + the bicubic kernel's reach."""
    return math.ceil(receptive_radius(net) / scale) + 3


def sr_whole(net: nn.Module, lr: torch.Tensor, scale: int) -> torch.Tensor:
    """One pass on a whole LR batch ``(N, 3, h, w)`` in [0, 1] -> SR ``(N, out, h*scale, w*scale)``, unclamped."""
    x = upsample(lr, scale, getattr(net, "upsample", "bicubic"))
    if getattr(net, "in_channels", 3) == 1:
        x = to_y(x) / 255  # luma-in nets, as SRModule.degrade feeds them
    o = getattr(net, "offset", 0)
    return net(F.pad(x, (o, o, o, o), mode="replicate") if o else x)


# The 8 flips/rotations of the square and their inverses, for the self-ensemble.
def _transform(x: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    x = x.flip(-1) if flip else x
    return torch.rot90(x, k, (-2, -1))


def _untransform(x: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    x = torch.rot90(x, -k, (-2, -1))
    return x.flip(-1) if flip else x


def sr_region(net: nn.Module, lr: torch.Tensor, scale: int, tta: bool = False) -> torch.Tensor:
    """:func:`sr_whole`, optionally averaged over the 8 flips/rotations (``tta``, 8x the compute)."""
    if not tta:
        return sr_whole(net, lr, scale)
    out = None
    for flip in (False, True):
        for k in range(4):
            y = _untransform(sr_whole(net, _transform(lr, k, flip), scale), k, flip)
            out = y if out is None else out.add_(y)
    return out.div_(8)


def _starts(length: int, tile: int) -> list[int]:
    return list(range(0, length, tile)) or [0]


def iter_tiles(
    net: nn.Module, lr: torch.Tensor, scale: int, tile: int | None = DEFAULT_TILE, tta: bool = False, progress: bool = False
) -> Iterator[tuple[slice, slice, torch.Tensor]]:
    """Yield ``(rows, cols, sr_tile)``: the HR slices of the output and the SR pixels that go there.

    ``tile`` is the LR side of a tile (``None`` or 0: the whole image in one pass).
    """
    h, w = lr.shape[-2:]
    tile = tile or max(h, w)
    m = tile_margin(net, scale)
    boxes = [(y, x) for y in _starts(h, tile) for x in _starts(w, tile)]
    with torch.inference_mode():
        for y0, x0 in tqdm(boxes, desc="tiles", unit="tile", leave=False, disable=not progress or len(boxes) == 1):
            y1, x1 = min(y0 + tile, h), min(x0 + tile, w)
            ry0, rx0, ry1, rx1 = max(y0 - m, 0), max(x0 - m, 0), min(y1 + m, h), min(x1 + m, w)
            out = sr_region(net, lr[..., ry0:ry1, rx0:rx1].float(), scale, tta)
            top, left = (y0 - ry0) * scale, (x0 - rx0) * scale
            yield (
                slice(y0 * scale, y1 * scale),
                slice(x0 * scale, x1 * scale),
                out[..., top : top + (y1 - y0) * scale, left : left + (x1 - x0) * scale],
            )


def upscale_tensor(
    net: nn.Module, lr: torch.Tensor, scale: int, tile: int | None = DEFAULT_TILE, tta: bool = False, progress: bool = False
) -> torch.Tensor:
    """SR of an LR batch ``(N, C, h, w)`` in [0, 1], assembled from tiles (float32, unclamped)."""
    n, _, h, w = lr.shape
    out: torch.Tensor | None = None
    for rows, cols, t in iter_tiles(net, lr, scale, tile, tta, progress):
        if out is None:
            out = torch.empty(n, t.shape[1], h * scale, w * scale, dtype=torch.float32)
        out[..., rows, cols] = t
    assert out is not None
    return out
