"""Published SR weights as an srlab net: any architecture spandrel recognises from a state dict's keys
(ESRGAN/RRDB, Real-ESRGAN Compact, SwinIR, HAT, SPAN, RCAN, ...), behind srlab's net contract.

spandrel builds the architecture; this adapter makes it an LR-in net of the contract: RGB in [0, 1]
in, ``h*scale x w*scale`` out, with the model's size requirements (multiples, minimum, square) met by
spandrel's own padding rule (reflect, then replicate, right and bottom) and cropped off after, and gray
models fed the RGB image's luma and their output repeated to RGB. Unlike spandrel's inference call it
keeps gradients and does not clamp, so it trains like any other net.

spandrel is an optional dependency (``pip install -e '.[zoo]'``): it is imported when such a net is
built, never when srlab starts.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from src.arch.contract import NetContractError
from src.weights import CheckpointError, read_weights

# The 8-bit luma weights (ITU-R BT.601, as Pillow's "L" mode) that feed a gray model an RGB image.
GRAY_WEIGHTS = (0.299, 0.587, 0.114)
# LR px of context around a tile for a model whose reach no margin bounds (attention, global pooling):
# tiles then approximate the whole-image result; --tile 0 gives the exact one.
APPROXIMATE_MARGIN = 32
# Layers that can mix pixels beyond a fixed window: token mixers and global pooling.
NON_LOCAL = (nn.Linear, nn.MultiheadAttention, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


def import_spandrel() -> Any:
    try:
        import spandrel
    except ImportError as e:
        raise CheckpointError(
            f"loading published weights needs spandrel ({e.msg}): pip install -e '.[zoo]' (README: 'Published models')"
        ) from None
    return spandrel


def describe_weights(state: Mapping[str, Any], source: str) -> Any:
    """spandrel's ``ImageModelDescriptor`` for a state dict; one line naming ``source`` when no
    architecture matches or the model is not an image-to-image net."""
    spandrel = import_spandrel()
    tensors = spandrel.canonicalize_state_dict(dict(state))
    try:
        desc = spandrel.ModelLoader().load_from_state_dict(tensors)
    except spandrel.UnsupportedModelError:
        keys = ", ".join(list(tensors)[:4])
        raise CheckpointError(
            f"{source}: no architecture spandrel {spandrel.__version__} knows matches its {len(tensors)} tensors "
            f"(first keys: {keys})"
        ) from None
    except Exception as e:  # an architecture matched the keys but its shapes did not fit
        raise CheckpointError(f"{source}: spandrel could not build it ({type(e).__name__}: {str(e)[:120]})") from None
    if not isinstance(desc, spandrel.ImageModelDescriptor):
        raise CheckpointError(f"{source}: a {desc.architecture.name} model for {desc.purpose}, not image to image")
    if desc.input_channels not in (1, 3) or desc.output_channels not in (1, 3):
        raise CheckpointError(
            f"{source}: {desc.architecture.name} takes {desc.input_channels} and returns {desc.output_channels} "
            "channels; srlab runs RGB and gray models (1 or 3)"
        )
    return desc


class SpandrelNet(nn.Module):
    """A net built by spandrel from published weights (``path``: ``.pth``, ``.pt``, ``.safetensors``).

    Args:
        path: the weights file; it is read weights-only (no pickle code runs).
        scale: the run's scale; must be the file's.
    """

    upsample = None  # reads the LR image
    in_channels = 3  # RGB; a gray model gets the luma inside forward

    def __init__(self, path: str, scale: int | None = None) -> None:
        super().__init__()
        state, _ = read_weights(path)
        if not isinstance(state, Mapping):
            raise CheckpointError(f"{path}: holds a {type(state).__name__}, not a state dict of tensors")
        self._adopt(describe_weights(state, str(path)), str(path), scale)

    @classmethod
    def from_published(cls, state: Mapping[str, torch.Tensor], path: str, scale: int | None = None) -> SpandrelNet:
        """Build from a published state dict already read (its keys as the file holds them)."""
        net = cls.__new__(cls)
        nn.Module.__init__(net)
        net._adopt(describe_weights(state, str(path)), str(path), scale)
        return net

    @classmethod
    def from_weights(cls, state: Mapping[str, torch.Tensor], path: str, scale: int | None = None) -> SpandrelNet:
        """Rebuild from this adapter's own ``state_dict()`` (as srlab checkpoints store it): the
        architecture is read off the weights, so the original file is not needed."""
        return cls.from_published({k.removeprefix("model."): v for k, v in state.items()}, path, scale)

    def _adopt(self, desc: Any, path: str, scale: int | None) -> None:
        if scale is not None and scale != desc.scale:
            raise NetContractError(
                f"{path}: a x{desc.scale} {desc.architecture.name} model, but the run's scale is {scale} "
                f"(data.scale={desc.scale})"
            )
        self.model = desc.model
        self.scale = desc.scale
        self.architecture = desc.architecture.name
        self.tags = list(desc.tags)
        self.source = Path(path).name
        self.model_in, self.model_out = desc.input_channels, desc.output_channels
        self.size_requirements = desc.size_requirements
        self.supports_fp16, self.supports_bf16 = bool(desc.supports_half), bool(desc.supports_bfloat16)
        tiling = getattr(desc.tiling, "name", "SUPPORTED")
        non_local = any(isinstance(m, NON_LOCAL) for m in self.model.modules())
        # None: measured from the conv layers (exact tiles); else a fixed margin and approximate tiles.
        self.tiles_exact = tiling == "SUPPORTED" and not non_local
        self.receptive_radius = None if self.tiles_exact else APPROXIMATE_MARGIN

    def describe(self) -> str:
        params = sum(p.numel() for p in self.parameters())
        tags = f", {' '.join(self.tags)}" if self.tags else ""
        return (f"{self.architecture} x{self.scale}{tags}: {params:,} params, {self.model_in} input channel(s), "
                f"from {self.source} (read by spandrel)")  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        data_ptr = x.data_ptr()
        if self.model_in == 1:
            weights = torch.tensor(GRAY_WEIGHTS, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
            x = (x * weights).sum(1, keepdim=True)
        pad_w, pad_h = self.size_requirements.get_padding(w, h)
        if pad_w or pad_h:  # spandrel's own rule, so outputs match its inference call
            rw, rh = min(pad_w, w - 1), min(pad_h, h - 1)
            x = F.pad(x, (0, rw, 0, rh), mode="reflect")
            x = F.pad(x, (0, pad_w - rw, 0, pad_h - rh), mode="replicate") if (pad_w - rw or pad_h - rh) else x
        # Some published forwards scale their input in place (RCAN: x *= rgb_range): never the caller's.
        out = self.model(x if x.data_ptr() != data_ptr else x.clone())[..., : h * self.scale, : w * self.scale]
        return out.expand(-1, 3, -1, -1) if self.model_out == 1 else out
