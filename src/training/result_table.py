"""The short result table printed at the end of a run."""

from __future__ import annotations

from typing import Any


def format_summary(s: dict[str, Any]) -> str:
    gain = s["psnr_y"] - s["bicubic_psnr_y"]
    rows = [
        ("model", f"{s['model']} x{s['scale']} ({s['params']:,} params, {s['macs_per_pixel']:,} MACs/px)"),
        ("PSNR-Y test (dB)", f"{s['psnr_y']:.3f}  (bicubic {s['bicubic_psnr_y']:.3f}, gain {gain:+.3f})"),
        ("SSIM-Y test", f"{s['ssim_y']:.4f}  (bicubic {s['bicubic_ssim_y']:.4f})"),
        ("loss train / val / test", f"{s['train_loss']:.6f} / {s['val_loss']:.6f} / {s['test_loss']:.6f}"),
        ("training", f"{s['fit_seconds']:.1f} s, {s['patches_per_second']:.0f} patches/s, {s['device']}, {s['precision']}"),
        ("run dir", s["run_dir"]),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
