"""Measure a checkpoint on benchmark folders under the SR literature's protocol, or show it on one photo.

    python -m src.evaluate ckpt_path=outputs/runs/.../checkpoints/last.ckpt          # Set5 + Set14 (../shared)
    python -m src.evaluate ckpt_path=CKPT data.root=[../shared/sr_benchmarks/Set5,/my/HR/folder]
    python -m src.evaluate pretrained=cnn_deep scale=3                              # a bundled model (src/pretrained/)
    python -m src.evaluate scale=3                                                  # bicubic baselines only
    python -m src.evaluate ckpt_path=CKPT image=photo.png                           # LR | bicubic | SR | HR panel
    python -m src.evaluate ckpt_path=CKPT image=small.jpg truth=false               # the photo is the LR input
    python -m src.evaluate ckpt_path=CKPT device=cuda precision=fp32                # where and how the net runs

Writes ``results.csv`` (one row per image), ``results.md`` (per-set tables and means) and
``summary.json`` (means per set, and the device and precision the net ran in) to the run dir, logs
every row, and logs the rows and means to W&B (offline by default; ``wandb=null`` to skip).
``device`` (auto: CUDA, then MPS, then CPU) and ``precision`` (null: the device's default, see
``src.devices``) choose where the net runs; ``tile: auto`` tiles by memory (``src.inference.tiling.auto_tile``).

The protocol (``../shared/README.md``): HR cropped to a multiple of the scale, LR by MATLAB-style
bicubic ``imresize`` with uint8 rounding, output quantised to 8 bits, BT.601 luma (gray images: their
gray values), ``scale`` px shaved, PSNR with peak 255, SSIM with an 11x11 Gaussian window (sigma 1.5)
filtered 'valid' as MATLAB's ``ssim`` does. Two bicubic columns:

- ``bicubic``: bicubic upscaling of the very LR image the model gets (RGB, as trained): the model's gain.
- ``ref_bicubic``: the published bicubic row's own recipe (SRCNN/VDSR code): luma of the uint8 HR image,
  rounded, then down- and up-scaled as a double image, rounded to uint8. It reproduces the published
  Set5/Set14 numbers within 0.01 dB / 0.001 SSIM; the RGB recipe lands up to 0.015 dB higher.
"""

from __future__ import annotations

import csv
import json
import logging
import sys
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, ListConfig
from PIL import Image, ImageDraw, ImageFont

from src import CONF_DIR
from src.data.images import ImageError, list_images, load_rgb
from src.degrade import downscale, imresize, upsample
from src.devices import describe, resolve_precision, select_device
from src.errors import ConfigError, DataError, user_error
from src.inference.checkpoint import LoadedModel, load_model
from src.inference.tiling import DEFAULT_TILE, auto_tile, upscale_tensor
from src.metrics import psnr, quantize, shave, ssim_valid, to_y

log = logging.getLogger(__name__)

METRICS = ("psnr_y", "ssim_y", "bicubic_psnr_y", "bicubic_ssim_y", "ref_bicubic_psnr_y", "ref_bicubic_ssim_y")
_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N"}


# --- the protocol ---------------------------------------------------------------------------------
def read_hr(path: Path) -> np.ndarray:
    """HR image as uint8 ``(H, W, 3)``, or ``(H, W, 1)`` for a grayscale file (scored on its gray values)."""
    arr = load_rgb(path)
    try:
        with Image.open(path) as im:
            gray = im.mode in _GRAY_MODES
    except (OSError, ValueError) as e:  # load_rgb succeeded, so this is unlikely; keep the one-line contract
        raise ImageError(f"{path}: cannot decode image ({e})") from None
    return arr[..., :1] if gray else arr


def modcrop(hr: torch.Tensor, scale: int) -> torch.Tensor:
    h, w = hr.shape[-2:]
    return hr[..., : h - h % scale, : w - w % scale]


def _scores(pred: torch.Tensor, target: torch.Tensor, scale: int) -> tuple[float, float]:
    """PSNR-Y / SSIM-Y of two images in [0, 1] (quantised to 8 bits first, as a saved result would be)."""
    a, b = shave(to_y(quantize(pred.double())), scale), shave(to_y(quantize(target.double())), scale)
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


def score_image(
    hr_uint8: np.ndarray,
    scale: int,
    model: LoadedModel | None,
    tile: Tile = DEFAULT_TILE,
    device: torch.device | None = None,
    precision: str = "fp32",
) -> dict[str, float]:
    """All metrics of one HR image ``(H, W, C)`` uint8: model (if any), bicubic of the same LR, reference bicubic."""
    hr = modcrop(torch.from_numpy(hr_uint8).permute(2, 0, 1)[None].double() / 255, scale)
    lr = downscale(hr, scale)
    row = dict(zip(("bicubic_psnr_y", "bicubic_ssim_y"), _scores(upsample(lr, scale, "bicubic"), hr, scale), strict=True))
    row.update(zip(("ref_bicubic_psnr_y", "ref_bicubic_ssim_y"), reference_bicubic(hr, scale), strict=True))
    if model is not None:
        sr = super_resolve(model, lr.float(), tile, device=device, precision=precision)
        row.update(zip(("psnr_y", "ssim_y"), _scores(sr, hr, scale), strict=True))
    return row


# --- benchmark folders ------------------------------------------------------------------------------
def evaluate_folders(
    roots: list[str],
    scale: int,
    model: LoadedModel | None,
    tile: Tile,
    device: torch.device | None = None,
    precision: str = "fp32",
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for root in roots:
        paths = list_images(root)
        if not paths:
            raise DataError(f"data.root={root}: no images found")
        for p in paths:
            try:
                hr = read_hr(p)
            except ImageError as e:
                log.warning("skipping %s", e)
                continue
            if min(hr.shape[:2]) < 2 * scale + 11:  # after shaving, SSIM needs one 11x11 window
                log.warning("skipping %s: %dx%d px is too small for x%d", p, hr.shape[1], hr.shape[0], scale)
                continue
            scores = score_image(hr, scale, model, tile, device, precision)
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


def markdown(rows: list[dict[str, Any]], means: dict[str, dict[str, float]], title: str) -> str:
    keys = [k for k in METRICS if rows and k in rows[0]]
    head = "| image | " + " | ".join(keys) + " |\n|---|" + "---|" * len(keys) + "\n"
    out = [f"# {title}\n"]
    for name, m in means.items():
        body = "".join(f"| {r['image']} | " + " | ".join(f"{r[k]:.4f}" for k in keys) + " |\n" for r in rows if r["set"] == name)
        mean = f"| **mean ({int(m['images'])})** | " + " | ".join(f"**{m[k]:.4f}**" for k in keys) + " |\n"
        out.append(f"## {name}\n\n{head}{body}{mean}")
    return "\n".join(out)


def write_results(
    out_dir: Path, rows: list[dict[str, Any]], title: str, extra: dict[str, Any] | None = None
) -> dict[str, dict[str, float]]:
    """results.csv, results.md and summary.json (set means, plus ``extra``) in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / "results.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    means = set_means(rows)
    (out_dir / "results.md").write_text(markdown(rows, means, title))
    summary = {"title": title, "scale": rows[0]["scale"], **(extra or {}), "sets": means}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return means


def log_to_wandb(
    wandb_cfg: DictConfig, rows: list[dict[str, Any]], means: dict[str, dict[str, float]], name: str, tags: list[str]
) -> str | None:
    """The per-image rows as a W&B table and each set's means as metrics; the run id (None if W&B failed)."""
    try:
        logger = hydra.utils.instantiate(wandb_cfg, name=name, tags=tags)
        logger.log_table(key="evaluate/images", columns=list(rows[0]), data=[list(r.values()) for r in rows])
        logger.log_metrics({f"{s}/{k}": v for s, m in means.items() for k, v in m.items()})
        run_id = logger.experiment.id
        logger.experiment.finish()
        return run_id
    except Exception as e:  # the results are on disk already: W&B trouble must not turn them into a failure
        log.warning("W&B: logging the results failed (%s: %s); they are in results.csv", type(e).__name__, e)
        return None


# --- one photo: a side-by-side panel --------------------------------------------------------------------
def _to_pil(img: torch.Tensor) -> Image.Image:
    arr = quantize(img[0].float()).mul(255).byte().permute(1, 2, 0).numpy()
    return Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr).convert("RGB")


def panel(columns: list[tuple[str, torch.Tensor]]) -> Image.Image:
    """Images of equal size side by side, each captioned above."""
    ims = [_to_pil(t) for _, t in columns]
    w, h = ims[0].size
    font = ImageFont.load_default(size=max(12, min(28, w // 22)))
    bar = int(font.size * 1.8)
    out = Image.new("RGB", (w * len(ims), h + bar), "white")
    draw = ImageDraw.Draw(out)
    for i, ((caption, _), im) in enumerate(zip(columns, ims, strict=True)):
        out.paste(im, (i * w, bar))
        draw.text((i * w + 4, bar // 5), caption, fill="black", font=font)
    return out


def evaluate_image(
    path: Path,
    model: LoadedModel,
    truth: bool,
    tile: Tile,
    tta: bool,
    out_dir: Path,
    device: torch.device | None = None,
    precision: str = "fp32",
) -> Path:
    """Write ``<stem>_x<scale>_panel.png``: LR | bicubic | SR (| HR when ``truth``), metrics in the captions."""
    s = model.scale
    img = torch.from_numpy(read_hr(path)).permute(2, 0, 1)[None].double() / 255
    hr = modcrop(img, s) if truth else None
    lr = downscale(hr, s) if truth else img
    bicubic = upsample(lr, s, "bicubic")
    sr = super_resolve(model, lr.float(), tile, tta, device, precision)
    lr_big = F.interpolate(lr, scale_factor=s, mode="nearest")
    if hr is None:
        columns = [(f"LR (nearest x{s})", lr_big), ("bicubic", bicubic), (model.name, sr)]
    else:
        (bp, bs), (mp, ms) = _scores(bicubic, hr, s), _scores(sr, hr, s)
        columns = [
            (f"LR (nearest x{s})", lr_big),
            (f"bicubic {bp:.2f} dB / {bs:.4f}", bicubic),
            (f"{model.name} {mp:.2f} dB / {ms:.4f}", sr),
            ("HR", hr),
        ]
        log.info("%s x%d: bicubic %.3f dB / %.4f, %s %.3f dB / %.4f", path.name, s, bp, bs, model.name, mp, ms)
    out_dir.mkdir(parents=True, exist_ok=True)
    dest = out_dir / f"{path.stem}_x{s}_panel.png"
    panel(columns).save(dest)
    return dest


# --- entry point -------------------------------------------------------------------------------------
def _roots(root: Any) -> list[str]:
    if isinstance(root, (list, tuple, ListConfig)):
        return [str(r) for r in root]
    return [str(root)]


def _tile(value: Any) -> Tile:
    if value is None or value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
        return value
    raise ConfigError(f"tile={value}: use auto, a number of LR px per tile side, or 0/null for one pass")


def evaluate(cfg: DictConfig) -> Path:
    """Run what ``cfg`` asks for; return the file written (the panel, or results.md)."""
    out_dir = Path(cfg.paths.output_dir)
    device = select_device(cfg.get("device"), option="device")
    precision = resolve_precision(cfg.get("precision"), device, option="precision")
    tile = _tile(cfg.tile)
    bundled = cfg.get("pretrained")
    model = load_model(cfg.ckpt_path, bundled, cfg.scale if bundled else None) if cfg.ckpt_path or bundled else None
    if model is not None:
        log.info("net on %s", describe(device, precision))
    scale = cfg.scale or (model.scale if model else None)
    if scale is None:
        raise ConfigError("scale: give scale=2|3|4 for the bicubic baselines alone, or a model (ckpt_path= or pretrained=)")
    if model is not None and scale != model.scale:
        raise ConfigError(f"scale={scale}: the checkpoint {model.path} was trained for x{model.scale}")
    if cfg.image:
        if model is None:
            raise ConfigError("image: needs a model (ckpt_path=<file> or pretrained=<bundled name>)")
        path = Path(cfg.image)
        if not path.is_file():
            raise ConfigError(f"image={path}: no such file")
        dest = evaluate_image(path, model, bool(cfg.truth), tile, bool(cfg.tta), out_dir, device, precision)
        print(dest)
        return dest
    rows = evaluate_folders(_roots(cfg.data.root), int(scale), model, tile, device, precision)
    if not rows:
        raise DataError(f"data.root={cfg.data.root}: no usable images")
    name = f"{model.name if model else 'bicubic'} x{scale}"
    title = name + (f" ({model.path}; {describe(device, precision)})" if model else "")
    extra = {"device": str(device), "precision": precision} if model else {}
    means = write_results(out_dir, rows, title, extra)
    if cfg.get("wandb"):
        # After the files, so W&B trouble never costs the results; the run id joins the summary.
        run_id = log_to_wandb(cfg.wandb, rows, means, f"evaluate {name}", ["evaluate", name.split()[0], f"x{scale}"])
        summary_path = out_dir / "summary.json"
        summary_path.write_text(json.dumps(json.loads(summary_path.read_text()) | {"wandb_run_id": run_id}, indent=2) + "\n")
    text = (out_dir / "results.md").read_text()
    print(text)
    return out_dir / "results.md"


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="evaluate")
def main(cfg: DictConfig) -> None:
    try:
        evaluate(cfg)
    except Exception as e:
        if (cause := user_error(e)) is None:
            raise
        print(f"error: {cause}", file=sys.stderr)
        sys.exit(2)

