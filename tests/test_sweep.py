"""The paper's experiment as one command: sweeps, the report, DDP inside sweeps, parallel jobs, tuning."""

import csv
import math
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from src.report import main as report_main
from tests.conftest import ROOT, read_summary, run_train


def run_sweep(sweep_dir: Path, *overrides: str, timeout: int = 400) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    cmd = [sys.executable, "-m", "src.train", "-m", f"hydra.sweep.dir={sweep_dir}", *overrides]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def assert_real_image(path: Path) -> None:
    img = np.asarray(Image.open(path).convert("L"), dtype=np.float32)
    assert img.shape[0] > 100 and img.shape[1] > 100 and img.std() > 5, path


def test_compare_models_sweep_and_report(tmp_path):
    sweep = tmp_path / "sweep"
    res = run_sweep(sweep, "experiment=compare_models", "debug=fast", "trainer.max_epochs=2", "trainer.limit_train_batches=2")
    assert res.returncode == 0, res.stderr[-3000:]
    jobs = sorted(p.name for p in sweep.iterdir() if p.is_dir())
    assert jobs == ["0_cnn_small", "1_cnn_medium", "2_cnn_deep", "3_waifu2x"]
    report_main([str(sweep)])
    rows = list(csv.DictReader((sweep / "table.csv").open()))
    assert [r["model"] for r in rows] == ["cnn_small", "cnn_medium", "cnn_deep", "waifu2x"]
    numeric = ("train_loss", "val_loss", "test_loss", "fit_seconds", "params", "macs_per_pixel", "psnr_y", "ssim_y", "gain_db")
    for r in rows:
        assert r["status"] == "completed"
        for key in numeric:
            assert math.isfinite(float(r[key])), (r["model"], key)
    assert (sweep / "table.md").read_text().count("| completed |") == 4
    for name in ["loss_all", "snapshots", "pareto", *(f"loss_{m}" for m in ("cnn_small", "cnn_medium", "cnn_deep", "waifu2x"))]:
        assert_real_image(sweep / f"{name}.png")
    # Snapshots at 5 %, 50 % and 100 % of 2 epochs: epochs 1 and 2.
    assert sorted(p.name for p in (sweep / "2_cnn_deep" / "snapshots").glob("epoch_*.png")) == ["epoch_001.png", "epoch_002.png"]


def test_failed_and_unfinished_jobs_are_reported_and_do_not_stop_the_sweep(tmp_path):
    sweep = tmp_path / "sweep"
    res = run_sweep(sweep, "model=cnn_small", "debug=fast", "data.patch_size=6,48")
    assert "data.patch_size=6" in res.stderr  # the failing job says why, in one line
    assert read_summary(sweep / "0_cnn_small")["status"] == "failed"
    assert read_summary(sweep / "1_cnn_small")["status"] == "completed"  # the sweep went on
    (sweep / "1_cnn_small" / "summary.json").rename(sweep / "1_cnn_small" / "summary.moved")  # as if killed
    report_main([str(sweep)])
    statuses = [r["status"] for r in csv.DictReader((sweep / "table.csv").open())]
    assert statuses == ["failed", "unfinished"]


def test_jobs_never_share_run_dir_wandb_run_or_checkpoint(tmp_path):
    sweep = tmp_path / "sweep"
    res = run_sweep(sweep, "model=cnn_small,cnn_medium", "debug=fast", "logger=default")
    assert res.returncode == 0, res.stderr[-3000:]
    jobs = [p for p in sweep.iterdir() if p.is_dir()]
    assert len(jobs) == 2
    summaries = [read_summary(job) for job in jobs]
    run_ids = [s["wandb_run_id"] for s in summaries]
    assert len(set(run_ids)) == 2
    assert all(list((job / "wandb").glob(f"offline-run-*-{i}")) for job, i in zip(jobs, run_ids, strict=True))
    assert all(Path(s["checkpoint"]).parent.parent == job for s, job in zip(summaries, jobs, strict=True))
    # Both runs are in one W&B group named after the sweep.
    assert {s["wandb_group"] for s in summaries} == {f"sweep_{sweep.parent.name}_{sweep.name}"}


DETERMINISTIC = ("model=cnn_small", "debug=fast", "trainer.max_epochs=2", "trainer.precision=32-true")


def test_ddp_inside_a_sweep_runs_each_job_once_and_matches_one_process(tmp_path):
    sweep = tmp_path / "sweep"
    # Two identical jobs, each a 2-process DDP run (gloo on CPU); the old trap re-ran the sweep per process.
    res = run_sweep(sweep, *DETERMINISTIC, "trainer=ddp", "trainer.devices=2", "seed=0,0")
    assert res.returncode == 0, res.stderr[-3000:]
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0_cnn_small", "1_cnn_small"]
    for job in ("0_cnn_small", "1_cnn_small"):
        assert (sweep / job / "train_ddp_process_1.log").is_file()  # the second process ran this job, here
    single = tmp_path / "single"
    assert run_train(single, *DETERMINISTIC).returncode == 0
    one, ddp = read_summary(single), read_summary(sweep / "0_cnn_small")
    assert ddp["steps"] == one["steps"]
    # Same global batch, gradients averaged over ranks: equal up to float summation order.
    # (train_loss is not compared: it is rank 0's half of each batch, not synced, to keep steps sync-free.)
    for key in ("val_loss", "test_loss", "psnr_y", "ssim_y"):
        assert math.isclose(ddp[key], one[key], rel_tol=1e-4), (key, ddp[key], one[key])
    w_one, w_ddp = (torch.load(d / "checkpoints/last.ckpt", weights_only=True)["state_dict"] for d in (single, sweep / "0_cnn_small"))  # noqa: E501
    for name, w in w_one.items():
        torch.testing.assert_close(w_ddp[name], w, atol=1e-6, rtol=1e-5)


def test_sweep_with_two_parallel_local_jobs(tmp_path):
    sweep = tmp_path / "sweep"
    launcher = ("hydra/launcher=submitit_local", "hydra.launcher.cpus_per_task=1")
    res = run_sweep(sweep, "model=cnn_small,cnn_medium", "debug=fast", *launcher)
    assert res.returncode == 0, res.stderr[-3000:]
    for job in ("0_cnn_small", "1_cnn_medium"):
        assert read_summary(sweep / job)["status"] == "completed"
    logs = list((sweep / ".submitit").rglob("*_log.out"))
    assert len(logs) == 2  # two submitit jobs, each its own process


def test_optuna_search_is_resumable(tmp_path):
    sweep = tmp_path / "sweep"
    args = ("hparams_search=optuna", "model=cnn_small", "debug=fast", "hydra.sweeper.sampler.n_startup_trials=1")
    res = run_sweep(sweep, *args, "hydra.sweeper.n_trials=2")
    assert res.returncode == 0, res.stderr[-3000:]
    assert (sweep / "optimization_results.yaml").is_file()
    res = run_sweep(sweep, *args, "hydra.sweeper.n_trials=1")  # re-launched into the same sweep dir
    assert res.returncode == 0, res.stderr[-3000:]
    with sqlite3.connect(sweep / "optuna.db") as db:
        states = [s for (s,) in db.execute("select state from trials")]
    assert states == ["COMPLETE"] * 3
    assert len([p for p in sweep.iterdir() if p.is_dir() and p.name[0].isdigit()]) == 3  # no trial dir overwritten


@pytest.mark.parametrize(("key", "reason"), [(None, "no API key"), ("0" * 40, "")])  # no key; a bad key, no network
def test_wandb_online_without_key_or_network_falls_back_in_one_line(tmp_path, key, reason):
    env_home = tmp_path / "home"
    env_home.mkdir()
    cmd = [sys.executable, "-m", "src.train", f"hydra.run.dir={tmp_path / 'run'}", "model=cnn_small", "debug=fast",
           "logger=default", "logger.wandb.offline=false"]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB")} | {"HOME": str(env_home), "WANDB_SILENT": "true"}
    if key:
        env["WANDB_API_KEY"] = key
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert res.returncode == 0, res.stderr[-3000:]
    lines = [line for line in (res.stdout + res.stderr).splitlines() if "W&B:" in line]
    assert len(lines) == 1 and reason in lines[0] and "logging offline" in lines[0]
    assert read_summary(tmp_path / "run")["status"] == "completed"
