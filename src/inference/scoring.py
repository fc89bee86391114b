"""Scores of an SR model on HR images under the SR literature's protocol (what ``python -m src.evaluate`` reports).

The protocol (``../shared/README.md``): HR cropped to a multiple of the scale, LR by MATLAB-style
bicubic ``imresize`` with uint8 rounding, output quantised to 8 bits, BT.601 luma (gray images: their
gray values), ``scale`` px shaved, PSNR with peak 255, SSIM with an 11x11 Gaussian window (sigma 1.5)
filtered 'valid' as MATLAB's ``ssim`` does (scale 1, a denoiser: nothing shaved). Two bicubic columns:

- ``bicubic``: bicubic upscaling of the very LR image the model gets (RGB, as trained): the model's gain.
- ``ref_bicubic``: the published bicubic row's own recipe (SRCNN/VDSR code): luma of the uint8 HR image,
  rounded, then down- and up-scaled as a double image, rounded to uint8. It reproduces the published
  Set5/Set14 numbers within 0.01 dB / 0.001 SSIM; the RGB recipe lands up to 0.015 dB higher.

With a degradation (``degradation=jpeg degradation.quality=50``) the LR is the bicubic LR, then
degraded on the CPU (JPEG by Pillow, 4:2:0, no optimize/progressive; or noise), or the real-photo
chain from the HR image, each image drawing from its own seeded generator. ``psnr_y`` and ``bicubic``
then read that degraded LR, and ``clean_bicubic`` is bicubic from the clean LR (the usual baseline).
At scale 1 the reference and clean bicubic columns are left out (they would compare an image with itself).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from src.data.images import ImageError, list_images, load_rgb
from src.degrade import downscale, imresize, upsample
from src.degrade.degradations import AfterBicubic, Degradation
from src.degrade.draws import EVALUATE, rng_for
from src.errors import DataError
from src.inference.checkpoint import LoadedModel
from src.inference.tiling import DEFAULT_TILE, auto_tile, upscale_tensor
from src.metrics import border, psnr, quantize, shave, ssim_valid, to_y

log = logging.getLogger(__name__)

METRICS = (
    "psnr_y", "ssim_y", "bicubic_psnr_y", "bicubic_ssim_y", "clean_bicubic_psnr_y", "clean_bicubic_ssim_y",
    "ref_bicubic_psnr_y", "ref_bicubic_ssim_y",
)  # fmt: skip


# --- the protocol ---------------------------------------------------------------------------------
def read_hr(path: Path) -> np.ndarray:
    """HR image as uint8 ``(H, W, 3)``, or ``(H, W, 1)`` for a grayscale file (scored on its gray values)."""
    return load_rgb(path, keep_gray=True)


def modcrop(hr: torch.Tensor, scale: int) -> torch.Tensor:
    h, w = hr.shape[-2:]
    return hr[..., : h - h % scale, : w - w % scale]


def scores(pred: torch.Tensor, target: torch.Tensor, scale: int) -> tuple[float, float]:
    """PSNR-Y / SSIM-Y of two images in [0, 1] (quantised to 8 bits first, as a saved result would be)."""
    a, b = shave(to_y(quantize(pred.double())), border(scale)), shave(to_y(quantize(target.double())), border(scale))
    return psnr(a, b), ssim_valid(a, b)


def reference_bicubic(hr: torch.Tensor, scale: int) -> tuple[float, float]:
    """The published bicubic baseline's recipe (SRCNN/VDSR MATLAB code) on one modcropped HR image in [0, 1]."""
    y = to_y(hr.double()).round()  # MATLAB rgb2ycbcr on uint8 returns uint8 luma
    up = imresize(imresize(y / 255, 1 / scale), scale).mul(255).round().clamp(0, 255)
    return psnr(shave(up, scale), shave(y, scale)), ssim_valid(shave(up, scale), shave(y, scale))


Tile = int | str | None  # LR px per tile side; None or 0: one pass; "auto": src.inference.tiling.auto_tile


def super_resolve(
    model: LoadedModel,
    lr: torch.Tensor,
    tile: Tile,
    tta: bool = False,
    device: torch.device | None = None,
    precision: str = "fp32",
) -> torch.Tensor:
    """SR of an LR image ``(1, C, h, w)`` in [0, 1]; a gray image (C=1) goes through the RGB net and comes back gray.

    The net runs on ``device`` (default: where it is) in ``precision``; the result is float32 on the CPU.
    """
    gray = lr.shape[1] == 1
    device = device or next(model.net.parameters()).device
    if tile == "auto":
        tile = auto_tile(model.net, tuple(lr.shape[-2:]), model.scale, device, precision, tta)
    x = lr.expand(-1, 3, -1, -1) if gray else lr
    sr = upscale_tensor(model.net, x, model.scale, tile, tta, device=device, precision=precision)
    return sr.mean(1, keepdim=True) if gray else sr


def _uint8(img: torch.Tensor) -> np.ndarray:
    """``(1, C, H, W)`` in [0, 1], on the 8-bit grid -> ``(H, W, C)`` uint8."""
    return img[0].permute(1, 2, 0).mul(255).round().to(torch.uint8).numpy()


def degraded_lr(
    hr: torch.Tensor, scale: int, degradation: Degradation | None, rng: np.random.Generator | None
) -> torch.Tensor:
    """The LR image of a modcropped HR image ``(1, C, H, W)`` in [0, 1] (float64): MATLAB bicubic, then the
    degradation (``None`` or bicubic: none), drawing from ``rng``."""
    lr = downscale(hr, scale)
    if degradation is None or degradation.on_device:
        return lr
    if isinstance(degradation, AfterBicubic):  # damage the very LR image the clean columns score
        out = degradation.damage(_uint8(lr), rng)
    else:
        out = degradation.lr(_uint8(hr), scale, rng)
    return torch.from_numpy(out).permute(2, 0, 1)[None].double() / 255


def score_image(
    hr_uint8: np.ndarray,
    scale: int,
    model: LoadedModel | None,
    tile: Tile = DEFAULT_TILE,
    device: torch.device | None = None,
    precision: str = "fp32",
    degradation: Degradation | None = None,
    rng: np.random.Generator | None = None,
) -> dict[str, float]:
    """All metrics of one HR image ``(H, W, C)`` uint8: model (if any), bicubic of the same LR, reference bicubic;
    with a degradation (drawing from ``rng``) the LR is degraded and bicubic from the clean LR joins them."""
    hr = modcrop(torch.from_numpy(hr_uint8).permute(2, 0, 1)[None].double() / 255, scale)
    lr = degraded_lr(hr, scale, degradation, rng)
    row = dict(zip(("bicubic_psnr_y", "bicubic_ssim_y"), scores(upsample(lr, scale, "bicubic"), hr, scale), strict=True))
    degraded = degradation is not None and not degradation.on_device
    if degraded and scale > 1:
        clean = upsample(downscale(hr, scale), scale, "bicubic")
        row.update(zip(("clean_bicubic_psnr_y", "clean_bicubic_ssim_y"), scores(clean, hr, scale), strict=True))
    if scale > 1:
        row.update(zip(("ref_bicubic_psnr_y", "ref_bicubic_ssim_y"), reference_bicubic(hr, scale), strict=True))
    if model is not None:
        sr = super_resolve(model, lr.float(), tile, device=device, precision=precision)
        row.update(zip(("psnr_y", "ssim_y"), scores(sr, hr, scale), strict=True))
    return row


# --- benchmark folders ------------------------------------------------------------------------------
def evaluate_folders(
    roots: list[str],
    scale: int,
    model: LoadedModel | None,
    tile: Tile,
    device: torch.device | None = None,
    precision: str = "fp32",
    degradation: Degradation | None = None,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Score every image of each folder; a degradation draws per image from a generator keyed by
    (seed, folder, image), so a set's degraded LR images are the same on every run."""
    rows: list[dict[str, Any]] = []
    for set_index, root in enumerate(roots):
        paths = list_images(root)
        if not paths:
            raise DataError(f"data.root={root}: no images found")
        for image_index, p in enumerate(paths):
            try:
                hr = read_hr(p)
            except ImageError as e:
                log.warning("skipping %s", e)
                continue
            if min(hr.shape[:2]) < 2 * scale + 11:  # after shaving, SSIM needs one 11x11 window
                log.warning("skipping %s: %dx%d px is too small for x%d", p, hr.shape[1], hr.shape[0], scale)
                continue
            rng = rng_for(seed, EVALUATE, set_index, image_index)
            scores = score_image(hr, scale, model, tile, device, precision, degradation, rng)
            row = {"set": Path(root).name, "image": p.stem, "scale": scale, **scores}
            log.info("%s/%s: %s", row["set"], row["image"], ", ".join(f"{k}={row[k]:.4f}" for k in METRICS if k in row))
            rows.append(row)
    return rows


def set_means(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Mean of every metric per set (the number papers report: per-image values averaged)."""
    means: dict[str, dict[str, float]] = {}
    for name in dict.fromkeys(r["set"] for r in rows):
        sel = [r for r in rows if r["set"] == name]
        means[name] = {k: float(np.mean([r[k] for r in sel])) for k in METRICS if k in sel[0]}
        means[name]["images"] = len(sel)
    return means
