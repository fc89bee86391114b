"""How a net meets the image: the one contract every SR net follows, srlab's own or a user's.

A net is a plain ``nn.Module``. It may declare, as attributes (all optional):

- ``upsample``: ``None`` (the default) for a net that reads the **LR image** and upsamples inside
  (ESPCN, FSRCNN, EDSR, ...): ``(N, C, h, w) -> (N, C_out, h*scale, w*scale)``. ``"bicubic"`` or
  ``"nearest"`` for a *pre-upsampling* net (the paper's four): it reads the LR image resized to the
  output size that way and keeps its size.
- ``in_channels``: 3 (RGB, the default) or 1 (it reads the BT.601 luma, Y/255). A luma net may
  return RGB or the luma alone (1 channel): it then learns the HR luma, and the pipeline colours its
  output with the chroma of the bicubic upscale (``SRPipeline.colorize``).
- ``offset``: pixels of its *input* it loses at each border (unpadded convolutions; default 0). The
  pipeline replicate-pads the input by it, so every net's output has the full output size.
- ``receptive_radius``: input pixels on each side that one output pixel reads; measured from the
  net's layers when not declared (``src.arch.measure``). Tiled inference cuts its margins by it.
- ``supports_bf16``, ``supports_fp16``: ``False`` where the net is wrong in that precision; inference
  then runs it in fp32.

A constructor that takes ``scale`` gets the run's scale (:func:`build_net`). A net whose layers follow
from its weights (a published architecture) may define a classmethod ``from_weights(state_dict,
**options)``: checkpoints of it are then rebuilt from the weights they hold.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from src.errors import SrlabError

PRE_UPSAMPLING = ("bicubic", "nearest")


class NetContractError(SrlabError):
    """A net breaks the contract: a wrong output size, or an attribute with a value srlab cannot use."""


def upsample_mode(net: nn.Module) -> str | None:
    """``None`` for a net that reads the LR image; the pre-upsampling mode (bicubic, nearest) otherwise."""
    mode = getattr(net, "upsample", None)
    if mode is not None and mode not in PRE_UPSAMPLING:
        raise NetContractError(f"{net_name(net)}.upsample={mode!r}: must be None (reads LR) or one of {PRE_UPSAMPLING}")
    return mode


def reads_lr(net: nn.Module) -> bool:
    return upsample_mode(net) is None


def in_channels(net: nn.Module) -> int:
    return int(getattr(net, "in_channels", 3))


def offset(net: nn.Module) -> int:
    """Input pixels the net loses at each border."""
    return int(getattr(net, "offset", 0))


def supports_precision(net: nn.Module, precision: str) -> bool:
    """Whether the net may run under ``precision`` (fp32 always)."""
    flag = {"bf16": "supports_bf16", "fp16": "supports_fp16"}.get(precision)
    return flag is None or bool(getattr(net, flag, True))


def net_factor(net: nn.Module, scale: int) -> int:
    """Output pixels per input pixel along each axis: ``scale`` for an LR-in net, 1 for a pre-upsampling one."""
    return scale if reads_lr(net) else 1


def net_name(net: nn.Module) -> str:
    return type(net).__name__


def expected_size(net: nn.Module, in_hw: tuple[int, int], scale: int) -> tuple[int, int]:
    """The ``(H, W)`` the net must return for an input of ``in_hw`` (as it reads it, before any padding)."""
    f, o = net_factor(net, scale), offset(net)
    return (in_hw[0] - 2 * o) * f, (in_hw[1] - 2 * o) * f


def check_output(net: nn.Module, out: torch.Tensor, in_hw: tuple[int, int], scale: int) -> None:
    """Stop with one line naming the net when its output is not the size the contract promises."""
    want = expected_size(net, in_hw, scale)
    got = tuple(out.shape[-2:])
    if got != want:
        how = "an LR-in net (upsample=None) must return h*scale x w*scale" if reads_lr(net) else (
            f"a pre-upsampling net (upsample={upsample_mode(net)!r}) must keep its input's size, less 2*offset")
        raise NetContractError(
            f"net {net_name(net)} at x{scale}: returned {got[0]}x{got[1]} for a {in_hw[0]}x{in_hw[1]} input, "
            f"expected {want[0]}x{want[1]} ({how})"
        )


def resolve_target(target: str) -> Any:
    """The object a dotted ``_target_`` names (``pkg.module.Class``)."""
    module_name, _, attr = target.rpartition(".")
    return getattr(importlib.import_module(module_name), attr)


def construct(cls: Any, options: Mapping[str, Any], scale: int) -> nn.Module:
    """``cls(**options)``, with ``scale`` added when the constructor takes it and the options leave it out."""
    options = dict(options)
    if "scale" not in options and "scale" in inspect.signature(cls).parameters:
        options["scale"] = scale
    return cls(**options)


def build_net(cfg: Mapping[str, Any], scale: int) -> nn.Module:
    """Instantiate a net config (``_target_`` + plain options) at ``scale``."""
    return construct(resolve_target(str(cfg["_target_"])), {k: v for k, v in cfg.items() if k != "_target_"}, scale)
