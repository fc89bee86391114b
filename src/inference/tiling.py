"""Super-resolve an LR image of any size in tiles, with the same result as one whole-image pass.

The whole pipeline (``SRPipeline``) runs per tile: the pre-upsampling of a pre-upsampling net, the
net, and its replicate padding. Tiles are cut in LR space with a margin that covers the net's
receptive field (``src.arch.measure.receptive_radius``, converted to LR px) plus, for a pre-upsampling
net, the bicubic kernel's reach, so every kept output pixel sees exactly the input it would see in a
whole-image pass; the margin's output is thrown away. Memory is then bounded by the tile size, not
the photo's.

Where and how: ``device`` (the net is moved there; LR tiles go there and SR tiles come back to the
CPU as float32) and ``precision`` (``src.devices``: the net alone under autocast; upsampling and the
residual sum stay fp32). :func:`auto_tile` picks the tile by memory: on a GPU the whole image when it
fits in free memory, else the largest tile that does; on the CPU ``DEFAULT_TILE``, which runs as fast
as one pass (tiles keep activations in cache) with bounded memory.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import nn
from tqdm import tqdm

from src.arch import contract
from src.arch.measure import receptive_radius
from src.arch.pipeline import SRPipeline
from src.devices import DTYPES, precision_context

BICUBIC_REACH = 3
DEFAULT_TILE = 192  # LR px per side: ~0.3 GB of activations for cnn_deep at x2, near full throughput
# Share of the GPU's free memory a whole-image pass may plan to use: the estimate below leaves out
# the convolution workspace and the allocator's fragmentation.
GPU_MEMORY_FRACTION = 0.6


def tile_margin(net: nn.Module, scale: int) -> int:
    """LR pixels of context around a tile: the net's receptive field in LR px, and at least the bicubic
    kernel's reach (2 LR px, and one for rounding) for the upscale a pre-upsampling net reads or a luma
    net takes its chroma from."""
    radius = receptive_radius(net, scale)
    if contract.reads_lr(net):
        return max(radius, BICUBIC_REACH)
    return math.ceil(radius / scale) + BICUBIC_REACH


def prepare_net(net: nn.Module, device: torch.device | str | None = None) -> nn.Module:
    """Move ``net`` to ``device`` (default: where it is) in channels_last, the convolutions' fast
    layout on CPUs (oneDNN: ~1.3x fp32, several x bf16) and GPU tensor cores. In place; returns ``net``."""
    device = torch.device(device) if device is not None else _device_of(net)
    if device.type == "mps":
        return net.to(device)  # MPS convolutions gain nothing from channels_last
    return net.to(device, memory_format=torch.channels_last)


def _device_of(net: nn.Module) -> torch.device:
    p = next(net.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def sr_whole(net: nn.Module, lr: torch.Tensor, scale: int, precision: str = "fp32") -> torch.Tensor:
    """One pass on a whole LR batch ``(N, 3, h, w)`` in [0, 1] -> SR ``(N, out, h*scale, w*scale)`` float32, unclamped.

    Runs where ``lr`` is (the net must be there too); ``precision`` applies to the net only, and is
    fp32 for a net that does not support it (``contract.supports_precision``).
    """
    precision = precision if contract.supports_precision(net, precision) else "fp32"
    pipeline = SRPipeline(net, scale)
    with torch.autocast(lr.device.type, enabled=False):  # resize and padding in fp32 under any caller's autocast
        x = pipeline.pad(pipeline.net_input(pipeline.upsample(lr)))
    w = next((m.weight for m in net.modules() if isinstance(m, nn.Conv2d)), None)
    if w is not None and w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous():
        x = x.contiguous(memory_format=torch.channels_last)
    with precision_context(lr.device, precision):
        out = pipeline.run(x).float()
    return pipeline.colorize(out, lr)


# The 8 flips/rotations of the square and their inverses, for the self-ensemble.
def _transform(x: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    x = x.flip(-1) if flip else x
    return torch.rot90(x, k, (-2, -1))


def _untransform(x: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    x = torch.rot90(x, -k, (-2, -1))
    return x.flip(-1) if flip else x


def sr_region(net: nn.Module, lr: torch.Tensor, scale: int, tta: bool = False, precision: str = "fp32") -> torch.Tensor:
    """:func:`sr_whole`, optionally averaged over the 8 flips/rotations (``tta``, 8x the compute)."""
    if not tta:
        return sr_whole(net, lr, scale, precision)
    out = None
    for flip in (False, True):
        for k in range(4):
            y = _untransform(sr_whole(net, _transform(lr, k, flip), scale, precision), k, flip)
            out = y if out is None else out.add_(y)
    return out.div_(8)


def _starts(length: int, tile: int) -> list[int]:
    return list(range(0, length, tile)) or [0]


def iter_tiles(
    net: nn.Module,
    lr: torch.Tensor,
    scale: int,
    tile: int | None = DEFAULT_TILE,
    tta: bool = False,
    progress: bool = False,
    *,
    device: torch.device | str | None = None,
    precision: str = "fp32",
) -> Iterator[tuple[slice, slice, torch.Tensor]]:
    """Yield ``(rows, cols, sr_tile)``: the HR slices of the output and the SR pixels that go there.

    ``tile`` is the LR side of a tile (``None`` or 0: the whole image in one pass). ``lr`` may stay on
    the CPU: each tile goes to ``device`` (default: the net's), where the net is moved (channels_last,
    :func:`prepare_net`); tiles come back as float32 CPU tensors.
    """
    dev = torch.device(device) if device is not None else _device_of(net)
    prepare_net(net, dev)
    h, w = lr.shape[-2:]
    tile = tile or max(h, w)
    m = tile_margin(net, scale)
    boxes = [(y, x) for y in _starts(h, tile) for x in _starts(w, tile)]
    with torch.inference_mode():
        for y0, x0 in tqdm(boxes, desc="tiles", unit="tile", leave=False, disable=not progress or len(boxes) == 1):
            y1, x1 = min(y0 + tile, h), min(x0 + tile, w)
            ry0, rx0, ry1, rx1 = max(y0 - m, 0), max(x0 - m, 0), min(y1 + m, h), min(x1 + m, w)
            region = lr[..., ry0:ry1, rx0:rx1].to(dev, torch.float32)
            out = sr_region(net, region, scale, tta, precision)
            top, left = (y0 - ry0) * scale, (x0 - rx0) * scale
            yield (
                slice(y0 * scale, y1 * scale),
                slice(x0 * scale, x1 * scale),
                out[..., top : top + (y1 - y0) * scale, left : left + (x1 - x0) * scale].cpu(),
            )


def upscale_tensor(
    net: nn.Module,
    lr: torch.Tensor,
    scale: int,
    tile: int | None = DEFAULT_TILE,
    tta: bool = False,
    progress: bool = False,
    *,
    device: torch.device | str | None = None,
    precision: str = "fp32",
) -> torch.Tensor:
    """SR of an LR batch ``(N, C, h, w)`` in [0, 1], assembled from tiles (float32 on the CPU, unclamped)."""
    n, _, h, w = lr.shape
    out: torch.Tensor | None = None
    for rows, cols, t in iter_tiles(net, lr, scale, tile, tta, progress, device=device, precision=precision):
        if out is None:
            out = torch.empty(n, t.shape[1], h * scale, w * scale, dtype=torch.float32)
        out[..., rows, cols] = t
    assert out is not None
    return out


# --- the tile by memory ---------------------------------------------------------------------------------
def bytes_per_output_pixel(net: nn.Module, precision: str = "fp32", tta: bool = False) -> int:
    """Device memory one HR pixel of a pass needs at its peak, with a 2x allowance for what is not counted.

    Counted: the widest pair of consecutive feature maps (a conv's input and output are alive
    together; the ReLUs are in place) in the net's precision, and the fp32 planes around the net
    (upsampled input, its padded and autocast copies, the output, the residual sum; the self-ensemble's
    running sum). Not counted: the convolution workspace and allocator slack, hence the allowance.
    """
    elem = DTYPES[precision].itemsize
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    widest = max((c.in_channels + c.out_channels for c in convs), default=6)
    fp32_planes = 6 * 3 * 4 + (3 * 4 if tta else 0)
    return 2 * (widest * elem + fp32_planes)


def device_free_bytes(device: torch.device) -> int | None:
    """Free memory on a GPU (CUDA: the driver's count; MPS: the recommended working set left); None on the CPU."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type == "mps" and hasattr(torch.mps, "recommended_max_memory"):
        return int(torch.mps.recommended_max_memory() - torch.mps.driver_allocated_memory())
    return None


def auto_tile(
    net: nn.Module, lr_hw: tuple[int, int], scale: int, device: torch.device | str, precision: str = "fp32", tta: bool = False
) -> int | None:
    """The LR tile side for an ``lr_hw`` image on ``device``: None (one pass) on a GPU when the image fits
    in ``GPU_MEMORY_FRACTION`` of its free memory, else the largest tile (with its margin) that fits;
    ``DEFAULT_TILE`` on the CPU (or where free memory cannot be read)."""
    device = torch.device(device)
    free = device_free_bytes(device)
    if free is None:
        return DEFAULT_TILE
    h, w = lr_hw
    per_lr_px = bytes_per_output_pixel(net, precision, tta) * scale * scale
    budget = free * GPU_MEMORY_FRACTION
    if h * w * per_lr_px <= budget:
        return None
    m = tile_margin(net, scale)
    side = int(math.isqrt(int(budget // per_lr_px))) - 2 * m
    return max(side, 16)  # a GPU too full for 16 px tiles fails at its first allocation, with CUDA's message
