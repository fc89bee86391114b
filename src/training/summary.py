"""A run's summary: summary.json (what the report, resume and sweeps read) and the table printed at the end."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig

from src.degrade.degradations import build_degradation
from src.devices import device_name

if TYPE_CHECKING:  # the app writes and prints summaries before it imports Lightning (src/training/train.py)
    import lightning.pytorch as pl

    from src.training.callbacks.fit_timer import FitTimer


def metric(metrics: dict[str, Any], key: str) -> float:
    value = metrics.get(key)
    return float(value) if value is not None else float("nan")


def run_summary(
    cfg: DictConfig,
    trainer: pl.Trainer,
    model: pl.LightningModule,
    fit_metrics: dict[str, Any],
    test_metrics: dict[str, Any],
    timer: FitTimer | None,
    best: str,
) -> dict[str, Any]:
    """What a finished run reports: its model, its LR's degradation, losses, test scores, time and where it ran."""
    # A run dir from before degradations were options has none in its config: it trained on bicubic.
    degradation = build_degradation(cfg.degradation, cfg.data.scale) if cfg.get("degradation") is not None else None
    summary = {
        "status": "completed",
        "model": cfg.model.name,
        "scale": cfg.data.scale,
        # One string (W&B's run summary and the report take it as it is), and the options as config writes them.
        "degradation": degradation.describe() if degradation else "bicubic",
        "degradation_settings": {"name": degradation.name, **degradation.settings()} if degradation else {"name": "bicubic"},
        "params": model.params,
        "macs_per_pixel": model.macs_per_pixel,
        "epochs": trainer.current_epoch,
        "steps": trainer.global_step,
        "train_loss": metric(fit_metrics, "train/loss_epoch"),
        "val_loss": metric(fit_metrics, "val/loss"),
        "val_psnr_y": metric(fit_metrics, "val/psnr_y"),
        "test_loss": metric(test_metrics, "test/loss"),
        "psnr_y": metric(test_metrics, "test/psnr_y"),
        "ssim_y": metric(test_metrics, "test/ssim_y"),
        "bicubic_psnr_y": metric(test_metrics, "test/bicubic_psnr_y"),
        "bicubic_ssim_y": metric(test_metrics, "test/bicubic_ssim_y"),
        "fit_seconds": timer.fit_seconds if timer else float("nan"),
        "patches_per_second": timer.patches_per_second if timer else float("nan"),
        "device": device_name(trainer.strategy.root_device),
        "precision": str(trainer.precision),
        "checkpoint": best,
        "run_dir": str(Path(cfg.paths.output_dir)),
    }
    if timer:
        launches = timer.all_launches()
        summary |= {"host": launches[-1]["host"], "visible_devices": launches[-1]["visible_devices"],
                    "started_at": launches[0]["start"], "ended_at": launches[-1]["end"], "launches": launches}  # fmt: skip
    return summary


def write_summary(out_dir: Path, summary: dict[str, Any]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    # NaN is not JSON: write null so every reader can parse the file.
    clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in summary.items()}
    (out_dir / "summary.json").write_text(json.dumps(clean, indent=2) + "\n")


def format_summary(s: dict[str, Any]) -> str:
    gain = s["psnr_y"] - s["bicubic_psnr_y"]
    rows = [
        ("model", f"{s['model']} x{s['scale']} ({s['params']:,} params, {s['macs_per_pixel']:,} MACs/px)"),
        ("LR degradation", s.get("degradation", "bicubic")),
        ("PSNR-Y test (dB)", f"{s['psnr_y']:.3f}  (bicubic {s['bicubic_psnr_y']:.3f}, gain {gain:+.3f})"),
        ("SSIM-Y test", f"{s['ssim_y']:.4f}  (bicubic {s['bicubic_ssim_y']:.4f})"),
        ("loss train / val / test", f"{s['train_loss']:.6f} / {s['val_loss']:.6f} / {s['test_loss']:.6f}"),
        ("training", f"{s['fit_seconds']:.1f} s, {s['patches_per_second']:.0f} patches/s, {s['device']}, {s['precision']}"),
        ("run dir", s["run_dir"]),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
