"""The report's figures: loss curves (seed Fig. 5-8), snapshots (Table 7) and quality against cost."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.ticker  # noqa: E402

matplotlib.use("Agg")  # files only: no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from src.report.runs import Run  # noqa: E402


def plot_losses(runs: list[Run], out: Path) -> None:
    fig_all, ax_all = plt.subplots(figsize=(7, 4.5))
    for i, run in enumerate(runs):
        color = f"C{i}"
        fig, ax = plt.subplots(figsize=(6, 4))
        for key, style, name in (("train/loss_epoch", "-", "train"), ("val/loss", "--", "val")):
            pts = run.epochs.get(key) or []
            if pts:
                x, y = zip(*pts, strict=True)
                ax.plot(x, y, style, color=color, marker=".", label=name)
                ax_all.plot(x, y, style, color=color, marker=".", label=f"{run.label} {name}")
        ax.set(title=f"{run.label} ({run.status})", xlabel="epoch", ylabel="loss (MSE)", yscale="log")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / f"loss_{run.label}.png", dpi=110)
        plt.close(fig)
    ax_all.set(title="train (solid) and validation (dashed) loss", xlabel="epoch", ylabel="loss (MSE)", yscale="log")
    ax_all.grid(alpha=0.3)
    ax_all.legend(fontsize=7, ncol=2)
    fig_all.tight_layout()
    fig_all.savefig(out / "loss_all.png", dpi=110)
    plt.close(fig_all)


def plot_snapshots(runs: list[Run], out: Path) -> bool:
    """Rows: models; columns: LR input (nearest-upscaled), SR at each snapshot epoch, HR truth."""
    shots = [(r, sorted((r.dir / "snapshots").glob("epoch_*.png"))) for r in runs]
    shots = [(r, s) for r, s in shots if s]
    if not shots:
        return False
    ncols = max(len(s) for _, s in shots) + 2
    fig, axes = plt.subplots(len(shots), ncols, figsize=(2.2 * ncols, 2.3 * len(shots)), squeeze=False)
    for (run, files), row in zip(shots, axes, strict=True):
        hr = Image.open(run.dir / "snapshots" / "hr.png")
        lr = Image.open(run.dir / "snapshots" / "lr.png").resize(hr.size, Image.NEAREST)
        panels = [("LR input", lr)] + [(f"epoch {int(f.stem.split('_')[1])}", Image.open(f)) for f in files]
        panels += [("", None)] * (ncols - 1 - len(panels)) + [("HR truth", hr)]
        for ax, (title, img) in zip(row, panels, strict=True):
            ax.axis("off")
            if img is not None:
                ax.imshow(np.asarray(img))
                ax.set_title(title, fontsize=8)
        row[0].text(-0.08, 0.5, run.label, transform=row[0].transAxes, rotation=90, va="center", ha="right", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "snapshots.png", dpi=110)
    plt.close(fig)
    return True


def plot_pareto(runs: list[Run], out: Path) -> None:
    done = [r for r in runs if r.status == "completed" and isinstance(r.summary.get("psnr_y"), (int, float))]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, xlabel in ((axes[0], "fit_seconds", "training time (s)"), (axes[1], "macs_per_pixel", "MACs per output pixel")):
        for i, r in enumerate(done):
            ax.scatter(r.summary[key], r.summary["psnr_y"], color=f"C{i}", s=40)
            ax.annotate(r.label, (r.summary[key], r.summary["psnr_y"]), fontsize=8, xytext=(4, 4), textcoords="offset points")
        if done and isinstance(done[0].summary.get("bicubic_psnr_y"), (int, float)):
            ax.axhline(done[0].summary["bicubic_psnr_y"], color="gray", ls=":", label="bicubic")
            ax.legend(fontsize=8)
        ax.set(xlabel=xlabel, ylabel="test PSNR-Y (dB)", xscale="log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # minor labels overlap on short ranges
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "pareto.png", dpi=110)
    plt.close(fig)
