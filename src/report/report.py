"""Compare the runs of a sweep: the seed's Table 6, loss plots (Fig. 5-8), snapshots (Table 7), Pareto.

    python -m src.report outputs/sweeps/<date>/<time>     # one sweep dir
    python -m src.report                                 # the latest sweep under outputs/sweeps
    make report

Writes table.md, table.csv, loss_<model>.png, loss_all.png, snapshots.png and pareto.png into the
sweep dir, from what each run wrote (summary.json, metrics.csv, snapshots/). A job whose training
overlapped another job's on the same device is marked: its time measured contention, not the model.
The table and the plots also go to W&B, as a ``job_type=report`` run in the sweep's wandb dir (offline
unless the sweep's runs logged online; ``--no-wandb`` skips it).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.ticker  # noqa: E402

matplotlib.use("Agg")  # files only: no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402
from PIL import Image  # noqa: E402

COLUMNS = [
    ("model", "model"), ("status", "status"), ("train_loss", "final train loss"), ("val_loss", "final val loss"),
    ("test_loss", "best test loss"), ("fit_seconds", "training time (s)"), ("params", "params"),
    ("macs_per_pixel", "MACs/px"), ("patches_per_second", "patches/s"), ("psnr_y", "PSNR-Y"), ("ssim_y", "SSIM-Y"),
    ("gain_db", "gain over bicubic (dB)"), ("where", "device"), ("shared_with", "timing shared device with"),
]  # fmt: skip


@dataclass
class Run:
    dir: Path
    model: str
    status: str
    summary: dict = field(default_factory=dict)
    epochs: dict[str, list[tuple[int, float]]] = field(default_factory=dict)  # metric -> [(epoch, value)]
    label: str = ""  # the model's name, or the job dir's where a sweep trains a model more than once
    shared_with: list[str] = field(default_factory=list)  # jobs whose training overlapped this one's on a device


def find_runs(sweep_dir: Path) -> list[Run]:
    """Every job dir of the sweep (one with ``.hydra/config.yaml``), whatever became of it."""
    runs = []
    for cfg_file in sorted(sweep_dir.glob("*/.hydra/config.yaml"), key=lambda p: _job_order(p.parent.parent.name)):
        run_dir = cfg_file.parent.parent
        model = str(OmegaConf.load(cfg_file).model.name)
        summary_file = run_dir / "summary.json"
        summary = json.loads(summary_file.read_text()) if summary_file.is_file() else {}
        # No summary: the job was killed or is still running; a failed job writes status "failed".
        status = summary.get("status", "unfinished")
        runs.append(Run(run_dir, model, status, summary, _epoch_metrics(run_dir / "metrics.csv")))
    unique = len({r.model for r in runs}) == len(runs)
    for r in runs:
        r.label = r.model if unique else r.dir.name
    mark_shared_devices(runs)
    return runs


def _slots(launch: dict[str, Any]) -> set[tuple[str, str]]:
    """The devices a launch trained on: (host, GPU id) for each visible GPU, or (host, "cpu")."""
    host, device = launch.get("host") or "?", launch.get("device") or "cpu"
    if device in ("cpu", "mps"):
        return {(host, device)}
    ids = (launch.get("visible_devices") or "default").split(",")
    return {(host, f"gpu {i.strip()}") for i in ids}


def _overlap(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two launches trained at the same time on a device they share."""
    try:
        a0, a1, b0, b1 = (datetime.fromisoformat(t) for t in (a["start"], a["end"], b["start"], b["end"]))
    except (KeyError, TypeError, ValueError):
        return False
    return bool(_slots(a) & _slots(b)) and a0 < b1 and b0 < a1


def mark_shared_devices(runs: list[Run]) -> None:
    """Fill ``shared_with``: the jobs whose launches ran at the same time as this one's on a device they share."""
    launches = [(r, launch) for r in runs for launch in r.summary.get("launches") or []]
    for i, (a, la) in enumerate(launches):
        for b, lb in launches[i + 1 :]:
            if a is not b and _overlap(la, lb):
                for x, y in ((a, b), (b, a)):
                    if y.label not in x.shared_with:
                        x.shared_with.append(y.label)


def _job_order(name: str) -> tuple[int, str]:
    head = name.split("_", 1)[0]
    return (int(head), name) if head.isdigit() else (sys.maxsize, name)


def _epoch_metrics(path: Path) -> dict[str, list[tuple[int, float]]]:
    """Per-epoch values of the train and val loss from Lightning's CSV log."""
    per_epoch: dict[str, dict[int, float]] = {"train/loss_epoch": {}, "val/loss": {}}
    if path.is_file():
        with path.open() as f:
            for row in csv.DictReader(f):
                for key, values in per_epoch.items():
                    if row.get(key) not in (None, "") and row.get("epoch") not in (None, ""):
                        values[int(row["epoch"]) + 1] = float(row[key])  # a resumed run may repeat an epoch: keep the last
    return {key: sorted(values.items()) for key, values in per_epoch.items()}


def _row(run: Run) -> dict[str, object]:
    s = run.summary
    row = {key: s.get(key) for key, _ in COLUMNS}
    row["model"], row["status"] = run.label, run.status
    launches = s.get("launches") or []
    row["where"] = ", ".join(sorted({f"{host} {dev}" for la in launches for host, dev in _slots(la)})) or None
    row["shared_with"] = " ".join(run.shared_with) or None
    if isinstance(s.get("psnr_y"), (int, float)) and isinstance(s.get("bicubic_psnr_y"), (int, float)):
        row["gain_db"] = s["psnr_y"] - s["bicubic_psnr_y"]
    return row


def _fmt(key: str, v: object) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        if not math.isfinite(v):
            return "–"
        if key.endswith("loss"):
            return f"{v:.6f}"
        if key in ("ssim_y",):
            return f"{v:.4f}"
        if key in ("psnr_y", "gain_db"):
            return f"{v:+.2f}" if key == "gain_db" else f"{v:.2f}"
        return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.1f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def write_tables(runs: list[Run], out: Path) -> str:
    rows = [_row(r) for r in runs]
    with (out / "table.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[k for k, _ in COLUMNS])
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| " + " | ".join(h for _, h in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_fmt(k, row[k]) for k, _ in COLUMNS) + " |" for row in rows]
    table = "\n".join(lines) + "\n"
    (out / "table.md").write_text(table)
    return table


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
    for ax, key, xlabel in ((axes[0], "fit_seconds", "training time (s)"), (axes[1], "macs_per_pixel", "MACs per pixel")):
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


def log_to_wandb(sweep_dir: Path, runs: list[Run]) -> str | None:
    """Table 6 as a ``wandb.Table`` and the plots as images, in a ``job_type=report`` run beside the sweep's runs.

    Project, entity and mode are the sweep's own (its first job's logger config); ``None`` (and nothing
    logged) when its jobs did not log to W&B.
    """
    cfg = OmegaConf.load(runs[0].dir / ".hydra" / "config.yaml")
    wandb_cfg = OmegaConf.select(cfg, "logger.wandb")
    if wandb_cfg is None:
        return None
    import wandb

    from src.training.run_context import sweep_label
    from src.training.wandb_logger import make_wandb_logger

    sweep = sweep_label(sweep_dir)
    logger = make_wandb_logger(
        mode=wandb_cfg.mode, connect_timeout=wandb_cfg.connect_timeout, project=wandb_cfg.project,
        entity=wandb_cfg.get("entity"), name=f"report {sweep}", group="report", job_type="report",
        tags=["report", sweep], save_dir=str(sweep_dir),
    )  # fmt: skip
    rows = [_row(r) for r in runs]
    keys = [k for k, _ in COLUMNS]
    logger.log_hyperparams({"sweep": sweep, "runs": [r.dir.name for r in runs]})
    logger.log_table(key="table6", columns=keys, data=[[row[k] for k in keys] for row in rows])
    plots = sorted(sweep_dir.glob("*.png"))
    logger.experiment.log({f"plots/{p.stem}": wandb.Image(str(p)) for p in plots})
    run_dir = getattr(logger.experiment, "dir", None)
    logger.experiment.finish()
    return run_dir


def report(sweep_dir: Path, to_wandb: bool = True) -> str:
    runs = find_runs(sweep_dir)
    if not runs:
        raise SystemExit(f"error: {sweep_dir}: no run dirs (subdirs with .hydra/config.yaml) found")
    table = write_tables(runs, sweep_dir)
    plot_losses(runs, sweep_dir)
    plot_snapshots(runs, sweep_dir)
    plot_pareto(runs, sweep_dir)
    if to_wandb:
        log_to_wandb(sweep_dir, runs)
    return table


def latest_sweep(root: Path = Path("outputs/sweeps")) -> Path:
    sweeps = sorted(p.parent for p in root.glob("*/*/multirun.yaml"))
    if not sweeps:
        raise SystemExit(f"error: no sweep under {root}/ (run `make sweep` first, or pass a sweep dir)")
    return sweeps[-1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("sweep_dir", nargs="?", type=Path, help="a sweep dir (default: the latest under outputs/sweeps)")
    parser.add_argument("--no-wandb", action="store_true", help="write the files only; log nothing to W&B")
    parser.add_argument("--wandb-dir", action="store_true", help="print the sweep's wandb dir (for `wandb leet`) and exit")
    args = parser.parse_args(argv)
    sweep_dir = args.sweep_dir or latest_sweep()
    if not sweep_dir.is_dir():
        raise SystemExit(f"error: {sweep_dir}: no such directory")
    if args.wandb_dir:
        if not (sweep_dir / "wandb").is_dir():
            raise SystemExit(f"error: {sweep_dir}: no wandb dir (its jobs ran with logger=csv or logger=none)")
        print(sweep_dir / "wandb")
        return
    print(report(sweep_dir, to_wandb=not args.no_wandb))
    print(f"written to {sweep_dir}: table.md table.csv loss_*.png snapshots.png pareto.png")
    if (sweep_dir / "wandb").is_dir():
        print(f"compare in W&B's terminal dashboard: wandb leet {sweep_dir / 'wandb'}   (or: make compare)")

