"""Measure a checkpoint on benchmark folders under the SR literature's protocol, or show it on one photo.

    python -m src.evaluate ckpt_path=outputs/runs/.../checkpoints/last.ckpt          # Set5 + Set14 (../shared)
    python -m src.evaluate ckpt_path=CKPT data.root=[../shared/sr_benchmarks/Set5,/my/HR/folder]
    python -m src.evaluate pretrained=cnn_deep scale=3                              # a bundled model (src/pretrained/)
    python -m src.evaluate scale=3                                                  # bicubic baselines only
    python -m src.evaluate ckpt_path=CKPT image=photo.png                           # LR | bicubic | SR | HR panel
    python -m src.evaluate ckpt_path=CKPT image=small.jpg truth=false               # the photo is the LR input
    python -m src.evaluate ckpt_path=CKPT device=cuda precision=fp32                # where and how the net runs
    python -m src.evaluate ckpt_path=CKPT degradation=jpeg degradation.quality=50    # LR saved as JPEG (quality 50)

Writes ``results.csv`` (one row per image), ``results.md`` (per-set tables and means) and
``summary.json`` (means per set, and the device and precision the net ran in) to the run dir, logs
every row, and logs the rows and means to W&B (offline by default; ``wandb=null`` to skip).
``device`` (auto: CUDA, then MPS, then CPU) and ``precision`` (null: the device's default, see
``src.devices``) choose where the net runs; ``tile: auto`` tiles by memory (``src.inference.tiling.auto_tile``).
The protocol: see ``src/inference/scoring.py``. With a degradation (``conf/degradation/``: a JPEG
quality, a noise strength, ...) the LR images are degraded the documented way and ``results.md``
ends with a table of means by method: bicubic from the clean LR, bicubic from the degraded LR, and
the model on the degraded LR.
"""

from __future__ import annotations

import csv
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, ListConfig
from PIL import Image, ImageDraw, ImageFont

from src import CONF_DIR
from src.degrade import upsample
from src.degrade.degradations import Degradation, build_degradation
from src.degrade.draws import EVALUATE, rng_for
from src.devices import describe, resolve_precision, select_device
from src.errors import ConfigError, DataError, user_error
from src.inference.checkpoint import LoadedModel, load_model
from src.inference.scoring import (
    METRICS,
    Tile,
    degraded_lr,
    evaluate_folders,
    modcrop,
    read_hr,
    scores,
    set_means,
    super_resolve,
)
from src.metrics import to_int

log = logging.getLogger(__name__)


def by_method(means: dict[str, dict[str, float]], model_name: str | None, lr: str) -> str:
    """Each set's means as one row per method and LR: what a degraded benchmark adds to the table."""
    methods = [("bicubic", "clean", "clean_bicubic"), ("bicubic", lr, "bicubic")]
    if model_name is not None:
        methods.append((model_name, lr, ""))
    sets = list(means)
    head = "| method | LR | " + " | ".join(f"{s} PSNR-Y / SSIM-Y" for s in sets) + " |\n|---|---|" + "---|" * len(sets) + "\n"
    body = ""
    for method, lr_name, prefix in methods:
        key = f"{prefix}_" if prefix else ""
        if all(f"{key}psnr_y" in means[s] for s in sets):
            cells = " | ".join(f"{means[s][f'{key}psnr_y']:.2f} / {means[s][f'{key}ssim_y']:.4f}" for s in sets)
            body += f"| {method} | {lr_name} | {cells} |\n"
    return f"## means by method\n\n{head}{body}"


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
    out_dir: Path,
    rows: list[dict[str, Any]],
    title: str,
    extra: dict[str, Any] | None = None,
    tail: Callable[[dict[str, dict[str, float]]], str] | None = None,
) -> dict[str, dict[str, float]]:
    """results.csv, results.md (ending with ``tail(means)``) and summary.json (set means, plus ``extra``) in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / "results.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    means = set_means(rows)
    (out_dir / "results.md").write_text(markdown(rows, means, title) + (f"\n{tail(means)}" if tail else ""))
    summary = {"title": title, "scale": rows[0]["scale"], **(extra or {}), "sets": means}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return means


def log_to_wandb(
    wandb_cfg: DictConfig,
    rows: list[dict[str, Any]],
    means: dict[str, dict[str, float]],
    name: str,
    tags: list[str],
    degradation: dict[str, Any] | None = None,
) -> str | None:
    """The per-image rows as a W&B table and each set's means as metrics (the LR's degradation in the run's
    config); the run id (None if W&B failed)."""
    try:
        logger = hydra.utils.instantiate(wandb_cfg, name=name, tags=tags)
        if degradation is not None:
            logger.log_hyperparams({"degradation": degradation})
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
    arr = to_int(img[0])
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
    degradation: Degradation | None = None,
    seed: int = 0,
) -> Path:
    """Write ``<stem>_x<scale>_panel.png``: LR | bicubic | SR (| HR when ``truth``), metrics in the captions.

    With ``truth``, the LR is the HR image downscaled, then degraded (``degradation``, drawing from ``seed``)."""
    s = model.scale
    img = torch.from_numpy(read_hr(path)).permute(2, 0, 1)[None].double() / 255
    hr = modcrop(img, s) if truth else None
    lr = degraded_lr(hr, s, degradation, rng_for(seed, EVALUATE)) if truth else img
    bicubic = upsample(lr, s, "bicubic")
    sr = super_resolve(model, lr.float(), tile, tta, device, precision)
    lr_big = F.interpolate(lr, scale_factor=s, mode="nearest")
    if hr is None:
        columns = [(f"LR (nearest x{s})", lr_big), ("bicubic", bicubic), (model.name, sr)]
    else:
        (bp, bs), (mp, ms) = scores(bicubic, hr, s), scores(sr, hr, s)
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
    degradation = build_degradation(cfg.degradation, int(scale))
    degradation.check_for_evaluation()
    degraded = not degradation.on_device
    if cfg.image and degraded and not cfg.truth:
        raise ConfigError(f"degradation={degradation.name}: with truth=false the photo is the LR input as it is; leave it out")
    if cfg.image:
        if model is None:
            raise ConfigError("image: needs a model (ckpt_path=<file> or pretrained=<bundled name>)")
        path = Path(cfg.image)
        if not path.is_file():
            raise ConfigError(f"image={path}: no such file")
        dest = evaluate_image(
            path, model, bool(cfg.truth), tile, bool(cfg.tta), out_dir, device, precision, degradation, cfg.seed
        )
        print(dest)
        return dest
    rows = evaluate_folders(_roots(cfg.data.root), int(scale), model, tile, device, precision, degradation, cfg.seed)
    if not rows:
        raise DataError(f"data.root={cfg.data.root}: no usable images")
    name = f"{model.name if model else 'bicubic'} x{scale}"
    lr_label = degradation.describe()
    title = name + (f", LR: {lr_label}" if degraded else "")
    title += f" ({model.path}; {describe(device, precision)})" if model else ""
    extra = {"device": str(device), "precision": precision} if model else {}
    extra["degradation"] = {"name": degradation.name, **degradation.settings()}
    tail = (lambda means: by_method(means, model.name if model else None, lr_label)) if degraded else None
    means = write_results(out_dir, rows, title, extra, tail)
    if cfg.get("wandb"):
        # After the files, so W&B trouble never costs the results; the run id joins the summary.
        tags = ["evaluate", name.split()[0], f"x{scale}", f"degradation {degradation.name}"]
        run_name = f"evaluate {name}" + (f" {lr_label}" if degraded else "")
        run_id = log_to_wandb(cfg.wandb, rows, means, run_name, tags, extra["degradation"])
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

