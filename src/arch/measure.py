"""What a net costs and how far it sees, measured by running it on a probe input (any architecture).

- :func:`macs_per_output_pixel`: multiply-accumulates per output pixel, counted by
  ``torch.utils.flop_counter`` (convolutions, transposed convolutions, matrix products, attention).
  The count of an unpadded net depends on the image size (its borders), so the net runs on three
  probe sizes and the per-pixel cost of a large image is the leading coefficient of the quadratic
  through them: exact for any fully convolutional net, pre- or post-upsampling, so the two compare fairly.
- :func:`receptive_radius`: input pixels on each side that one output pixel can read. Forward hooks
  record every windowed layer (convolution, transposed convolution, pooling) with the resolution it
  runs at; their reaches, each converted to the net's input pixels and rounded up, are summed. A sum
  over all layers bounds every path through the net (skips and branches included), so tiles cut
  with this margin reproduce the whole-image result. A net declares ``receptive_radius`` where its
  reach hides in functional calls (e.g. a bilinear resize inside ``forward``).
"""

from __future__ import annotations

import math
import weakref
from fractions import Fraction

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from src.arch.contract import in_channels, net_factor, offset

PROBE_SIDES = (12, 16, 20)  # output px per probe side, in units of the net's factor (kept small: CPU)


def _probe(net: nn.Module, side: int) -> torch.Tensor:
    """A zero input of ``side`` px (plus the net's offset) square: its output is ``side`` x the net's factor."""
    n = side + 2 * offset(net)
    p = next(net.parameters(), None)
    x = torch.zeros(1, in_channels(net), n, n, dtype=p.dtype if p is not None else torch.float32,
                    device=p.device if p is not None else None)  # fmt: skip
    return x


@torch.no_grad()
def macs_per_output_pixel(net: nn.Module, scale: int) -> int:
    """MACs per output pixel of a large image (the net alone; the pipeline's resize is not counted)."""
    was_training = net.training
    net.eval()
    sides, macs = [], []
    try:
        for side in PROBE_SIDES:
            x = _probe(net, side)
            counter = FlopCounterMode(display=False)
            with counter:
                net(x)
            sides.append(side * net_factor(net, scale))
            macs.append(counter.get_total_flops() / 2)
    finally:
        net.train(was_training)
    # macs(n) = a n^2 + b n + c for an n x n output; a is the cost per pixel, free of border effects.
    a = np.polyfit(np.array(sides, dtype=np.float64), np.array(macs, dtype=np.float64), 2)[0]
    return int(round(a))


def _reach(m: nn.Module) -> int:
    """Pixels of its own input on each side of its centre that one output pixel of a windowed layer reads."""
    k = _pair(m.kernel_size)[0]
    d = _pair(getattr(m, "dilation", 1))[0]
    half = math.ceil(d * (k - 1) / 2)
    if isinstance(m, nn.modules.conv._ConvTransposeNd):
        # Each output pixel gathers from the input pixels whose kernel footprint covers it; +1 for
        # the phase of the output pixel within its input pixel.
        return math.ceil(half / _pair(m.stride)[0]) + 1
    return half


def _pair(v: int | tuple[int, ...]) -> tuple[int, ...]:
    return v if isinstance(v, tuple) else (v, v)


WINDOWED = (nn.modules.conv._ConvNd, nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd)


def _layer_sides(net: nn.Module, x: torch.Tensor) -> list[tuple[nn.Module, int]]:
    """Every windowed layer the forward pass calls, in order, with the width of its input."""
    seen: list[tuple[nn.Module, int]] = []

    def hook(module: nn.Module, args: tuple, _out: torch.Tensor) -> None:
        if args and isinstance(args[0], torch.Tensor) and args[0].dim() >= 3:
            seen.append((module, args[0].shape[-1]))

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, WINDOWED)]
    try:
        net(x)
    finally:
        for h in handles:
            h.remove()
    return seen


# Per net and scale: tiling asks once per photo, and the answer depends on the layers, not the weights.
_RADII: weakref.WeakKeyDictionary[nn.Module, dict[int, int]] = weakref.WeakKeyDictionary()


def receptive_radius(net: nn.Module, scale: int) -> int:
    """Input pixels (in the space the net reads) on each side that one output pixel depends on."""
    declared = getattr(net, "receptive_radius", None)
    if declared is not None:
        return int(declared)
    known = _RADII.setdefault(net, {})
    if scale not in known:
        known[scale] = _measured_radius(net, scale)
    return known[scale]


@torch.no_grad()
def _measured_radius(net: nn.Module, scale: int) -> int:
    was_training = net.training
    net.eval()
    try:
        x1, x2 = _probe(net, PROBE_SIDES[0]), _probe(net, PROBE_SIDES[1])
        small, large = _layer_sides(net, x1), _layer_sides(net, x2)
    finally:
        net.train(was_training)
    grow_in = x2.shape[-1] - x1.shape[-1]
    total = 0
    for (module, n1), (_, n2) in zip(small, large, strict=True):
        # The layer runs at (n2 - n1) / grow_in of the input's resolution (border losses cancel out),
        # so one of its pixels spans the inverse of that in input pixels.
        total += math.ceil(Fraction(_reach(module) * grow_in, n2 - n1))
    return total
