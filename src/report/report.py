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
import math
from pathlib import Path

from omegaconf import OmegaConf

from src.report.plots import plot_losses, plot_pareto, plot_snapshots
from src.report.runs import Run, device_slots, find_runs

COLUMNS = [
    ("model", "model"), ("status", "status"), ("degradation", "LR degradation"), ("train_loss", "final train loss"),
    ("val_loss", "final val loss"),
    ("test_loss", "best test loss"), ("fit_seconds", "training time (s)"), ("params", "params"),
    ("macs_per_pixel", "MACs/output px"), ("patches_per_second", "patches/s"), ("psnr_y", "PSNR-Y"), ("ssim_y", "SSIM-Y"),
    ("gain_db", "gain over bicubic (dB)"), ("where", "device"), ("shared_with", "timing shared device with"),
]  # fmt: skip


def _row(run: Run) -> dict[str, object]:
    s = run.summary
    row = {key: s.get(key) for key, _ in COLUMNS}
    row["model"], row["status"], row["degradation"] = run.label, run.status, run.degradation
    launches = s.get("launches") or []
    row["where"] = ", ".join(sorted({f"{host} {dev}" for la in launches for host, dev in device_slots(la)})) or None
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

