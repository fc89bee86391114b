"""The runs of a sweep as the report reads them, and which of them shared a device while training."""

from __future__ import annotations

import csv
import json
import sys
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf


@dataclass
class Run:
    dir: Path
    model: str
    status: str
    summary: dict = field(default_factory=dict)
    epochs: dict[str, list[tuple[int, float]]] = field(default_factory=dict)  # metric -> [(epoch, value)]
    label: str = ""  # the model's name, or the job dir's where a sweep trains a model more than once
    shared_with: list[str] = field(default_factory=list)  # jobs whose training overlapped this one's on a device
    degradation: str = "bicubic"  # how its LR images were made (summary.json's, or its config's name for a run without one)


def find_runs(sweep_dir: Path) -> list[Run]:
    """Every job dir of the sweep (one with ``.hydra/config.yaml``), whatever became of it."""
    runs = []
    for cfg_file in sorted(sweep_dir.glob("*/.hydra/config.yaml"), key=lambda p: _job_order(p.parent.parent.name)):
        run_dir = cfg_file.parent.parent
        cfg = OmegaConf.load(cfg_file)
        model = str(cfg.model.name)
        summary_file = run_dir / "summary.json"
        summary = json.loads(summary_file.read_text()) if summary_file.is_file() else {}
        # No summary: the job was killed or is still running; a failed job writes status "failed".
        status = summary.get("status", "unfinished")
        run = Run(run_dir, model, status, summary, _epoch_metrics(run_dir / "metrics.csv"))
        run.degradation = summary.get("degradation") or _degradation_name(cfg)
        runs.append(run)
    unique = len({r.model for r in runs}) == len(runs)
    for r in runs:
        r.label = r.model if unique else r.dir.name
    mark_shared_devices(runs)
    return runs


def _degradation_name(cfg: Any) -> str:
    target = OmegaConf.select(cfg, "degradation._target_")
    return str(target).rsplit(".", 1)[-1].lower() if target else "bicubic"


def device_slots(launch: dict[str, Any]) -> set[tuple[str, str]]:
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
    return bool(device_slots(a) & device_slots(b)) and a0 < b1 and b0 < a1


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
