"""The paper's experiment as one command: sweeps, the report, DDP inside sweeps, parallel jobs, tuning."""

import csv
import http.server
import json
import math
import os
import sqlite3
import subprocess
import threading
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from src.report.report import main as report_main
from src.report.runs import Run, mark_shared_devices
from tests.commands import run_module
from tests.conftest import read_summary, run_train


def run_sweep(sweep_dir: Path, *overrides: str, timeout: int = 400) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    return run_module("src.train", "-m", f"hydra.sweep.dir={sweep_dir}", *overrides, env=env, timeout=timeout)


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


def test_zoo_sweep_lists_the_seven_nets_and_any_list_sweeps_with_model_equals(tmp_path):
    from hydra import compose, initialize_config_dir

    from src import CONF_DIR

    with initialize_config_dir(str(CONF_DIR), version_base=None):
        zoo = compose("train", overrides=["experiment=compare_zoo"], return_hydra_config=True)
    assert zoo.hydra.sweeper.params.model.split(",") == [
        "cnn_small", "cnn_medium", "cnn_deep", "waifu2x", "espcn", "fsrcnn", "edsr_baseline"]  # fmt: skip
    # `make sweep EXPERIMENT=compare_zoo MODELS=cnn_small,espcn,fsrcnn`: the list on the command line wins.
    sweep = tmp_path / "sweep"
    res = run_sweep(sweep, "experiment=compare_zoo", "model=cnn_small,espcn,fsrcnn", "debug=fast", "data.scale=3")
    assert res.returncode == 0, res.stderr[-3000:]
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0_cnn_small", "1_espcn", "2_fsrcnn"]
    report_main([str(sweep)])
    rows = {r["model"]: r for r in csv.DictReader((sweep / "table.csv").open())}
    # MACs per output pixel, measured: an LR-in net's layers run on 1/9 of the output pixels at x3.
    assert int(rows["cnn_small"]["macs_per_pixel"]) == 9 * (3 * 8 + 8 * 16 + 16 * 3)
    assert int(rows["espcn"]["macs_per_pixel"]) == round((25 * 3 * 64 + 9 * 64 * 32 + 9 * 32 * 27) / 9)
    assert int(rows["fsrcnn"]["macs_per_pixel"]) < int(rows["fsrcnn"]["params"])
    for r in rows.values():
        assert r["status"] == "completed" and float(r["patches_per_second"]) > 0 and float(r["fit_seconds"]) > 0
    assert_real_image(sweep / "pareto.png")


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


def wandb_inspect(run_dir: Path) -> dict:
    """What W&B itself stored for an offline run, read by W&B's own reader: config, summary, and the run
    record (group, tags, job type)."""
    def leet(*args: str) -> str:
        res = run_module("wandb", "leet", "inspect", *args, str(run_dir))
        assert res.returncode == 0, res.stderr[-2000:]
        return res.stdout

    summary = json.loads(leet("--summary", "--json"))
    records = leet("--json").splitlines()
    run = next(r["run"] for r in map(json.loads, records) if r.get("type") == "run")
    return summary | {"record": run}


def test_sweep_runs_in_wandb_one_line_per_model_with_full_config_and_summary(tmp_path):
    sweep = tmp_path / "sweep"
    res = run_sweep(sweep, "model=cnn_small,cnn_medium", "debug=fast", "logger=default")
    assert res.returncode == 0, res.stderr[-3000:]
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name[0].isdigit())
    summaries = [read_summary(job) for job in jobs]
    assert all(Path(s["checkpoint"]).parent.parent == job for s, job in zip(summaries, jobs, strict=True))
    # All jobs log into one wandb dir, the sweep's: `wandb leet <sweep>/wandb` lists them side by side.
    runs = {s["wandb_run_id"]: next((sweep / "wandb").glob(f"offline-run-*-{s['wandb_run_id']}")) for s in summaries}
    assert len(runs) == 2
    stored = [wandb_inspect(runs[s["wandb_run_id"]]) for s in summaries]
    for s, w in zip(summaries, stored, strict=True):
        config = w["config"]
        assert config["optimizer"]["lr"] == 1e-3 and config["data"]["batch_size"] == 4
        assert config["trainer"]["max_epochs"] == 1 and config["seed"] == 0
        assert config["sweep"] == f"sweep_{sweep.parent.name}_{sweep.name}"
        assert w["summary"]["psnr_y"] == s["psnr_y"] and w["summary"]["fit_seconds"] == s["fit_seconds"]
        assert "summary/psnr_y" not in w["summary"]  # final numbers are the run summary, not a history row
        assert "time/train_s" in w["summary"]
        assert w["record"]["job_type"] == "train" and config["sweep"] in w["record"]["tags"]
        assert w["record"]["display_name"] == Path(s["run_dir"]).name
    # W&B draws a group as its mean: two models must be two groups.
    assert stored[0]["record"]["run_group"] != stored[1]["record"]["run_group"]
    # The report: Table 6 and the plots in a job_type=report run of the same wandb dir.
    report_main([str(sweep)])
    reports = [w for w in map(wandb_inspect, (sweep / "wandb").glob("offline-run-*")) if w["record"]["job_type"] == "report"]
    assert len(reports) == 1
    assert reports[0]["summary"]["table6"]["_type"] == "table-file" and "plots/loss_all" in reports[0]["summary"]


RAY_4_GPUS = ("hydra/launcher=ray_gpus", "hydra.launcher.ray.init.num_gpus=4", "hydra.launcher.ray.init.num_cpus=6")


@pytest.mark.xdist_group("ray")  # one Ray cluster at a time on a test machine
def test_ray_sweep_gives_each_job_its_own_gpu_and_queues_the_rest(tmp_path):
    # Ray schedules logical GPUs on any machine: 3 here, for 4 jobs (2 models x 2 seeds), so one waits.
    # Ray sets each job's CUDA_VISIBLE_DEVICES, which the job records in summary.json; the jobs train on the CPU.
    sweep = tmp_path / "sweep"
    ray_3_gpus = ("hydra/launcher=ray_gpus", "hydra.launcher.ray.init.num_gpus=3", "hydra.launcher.ray.init.num_cpus=6")
    res = run_sweep(sweep, "model=cnn_small,cnn_medium", "seed=0,1", "debug=fast", "logger=default", *ray_3_gpus, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    summaries = [read_summary(job) for job in sorted(sweep.glob("*_cnn_*"))]
    assert len(summaries) == 4 and {s["status"] for s in summaries} == {"completed"}
    spans = []
    for s in summaries:
        (launch,) = s["launches"]
        assert launch["visible_devices"] in {"0", "1", "2"}  # exactly one device id each
        spans.append((launch["visible_devices"], datetime.fromisoformat(launch["start"]), datetime.fromisoformat(launch["end"])))
    for i, (dev_a, start_a, end_a) in enumerate(spans):
        for dev_b, start_b, end_b in spans[i + 1 :]:
            assert dev_a != dev_b or end_a <= start_b or end_b <= start_a, "two jobs at once on one device"
    assert any(a[1] < b[2] and b[1] < a[2] for i, a in enumerate(spans) for b in spans[i + 1 :]), "no two jobs ran in parallel"
    report_main([str(sweep), "--no-wandb"])
    rows = list(csv.DictReader((sweep / "table.csv").open()))
    assert len(rows) == 4 and all(r["status"] == "completed" for r in rows)
    # W&B groups what repeats: seeds of one model share a group, the two models do not.
    groups = {(s["model"], s["wandb_group"]) for s in summaries}
    assert len(groups) == 2 and len({g for _, g in groups}) == 2


@pytest.mark.xdist_group("ray")
def test_ddp_inside_a_ray_job_is_refused_in_one_line(tmp_path):
    sweep = tmp_path / "sweep"
    res = run_sweep(sweep, "model=cnn_small", "debug=fast", "trainer=ddp", "trainer.devices=2", *RAY_4_GPUS)
    summary = read_summary(sweep / "0_cnn_small")
    assert summary["status"] == "failed" and "trainer=ddp inside a Ray job" in summary["error"]
    assert "error: trainer=ddp inside a Ray job" in res.stdout + res.stderr


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
    # Both ran on this machine's CPU at once; whether their sub-second fits overlapped depends on each
    # process's start-up. The report marks their times as shared exactly when the recorded windows overlap.
    la, lb = (read_summary(sweep / job)["launches"][0] for job in ("0_cnn_small", "1_cnn_medium"))
    overlapped = datetime.fromisoformat(la["start"]) < datetime.fromisoformat(lb["end"]) and datetime.fromisoformat(
        lb["start"]
    ) < datetime.fromisoformat(la["end"])
    report_main([str(sweep), "--no-wandb"])
    rows = {r["model"]: r for r in csv.DictReader((sweep / "table.csv").open())}
    assert (rows["cnn_small"]["shared_with"], rows["cnn_medium"]["shared_with"]) == (
        ("cnn_medium", "cnn_small") if overlapped else ("", "")
    )


def launch(start: str, end: str, device: str = "cpu", visible: str | None = None, host: str = "a") -> dict:
    day = "2026-01-01T00:00:"
    return {"host": host, "device": device, "visible_devices": visible, "start": day + start, "end": day + end}


def test_report_marks_jobs_whose_training_overlapped_on_one_device(tmp_path):
    gpu = "NVIDIA H200"
    runs = {
        "a": [launch("00", "10", gpu, "0")],
        "b": [launch("05", "15", gpu, "0,1")],  # overlaps a on GPU 0
        "c": [launch("05", "15", gpu, "2")],  # same time, another GPU
        "d": [launch("15", "20", gpu, "2"), launch("30", "40", gpu, "0")],  # starts as c ends; its resumed launch is alone
        "e": [launch("00", "50", "cpu", host="b")],  # another host
    }
    found = [Run(tmp_path / k, k, "completed", {"launches": v}, label=k) for k, v in runs.items()]
    mark_shared_devices(found)
    assert {r.label: r.shared_with for r in found} == {"a": ["b"], "b": ["a"], "c": [], "d": [], "e": []}


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


def train_online(run_dir: Path, home: Path, **env_vars: str) -> subprocess.CompletedProcess:
    """A debug run asked to log online, with no W&B variables but ``env_vars`` and an empty home (no netrc)."""
    home.mkdir()
    args = (f"hydra.run.dir={run_dir}", "model=cnn_small", "debug=fast", "logger=default", "logger.wandb.mode=online")
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB")} | {"HOME": str(home), "WANDB_SILENT": "true"}
    return run_module("src.train", *args, env=env | env_vars, timeout=180)


def assert_fell_back_offline(res: subprocess.CompletedProcess, run_dir: Path, reason: str) -> None:
    assert res.returncode == 0, res.stderr[-3000:]
    lines = [line for line in (res.stdout + res.stderr).splitlines() if "W&B:" in line]
    assert len(lines) == 1 and reason in lines[0] and "logging offline" in lines[0], lines
    assert read_summary(run_dir)["status"] == "completed"
    assert list((run_dir / "wandb").glob("offline-run-*"))


@pytest.mark.parametrize(("key", "reason"), [(None, "no API key"), ("0" * 40, "unreachable")])  # no key; a key, no network
def test_wandb_online_without_key_or_network_falls_back_in_one_line(tmp_path, key, reason):
    env = {"WANDB_API_KEY": key} if key else {}
    assert_fell_back_offline(train_online(tmp_path / "run", tmp_path / "home", **env), tmp_path / "run", reason)


@pytest.fixture(params=[401, 404, 500])
def failing_wandb_server(request):
    """A W&B server on 127.0.0.1 that answers every request with one HTTP error status."""
    status = request.param

    class Answer(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"errors": [{"message": "no"}]}')

        do_GET = do_POST = do_PUT = _answer

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_wandb_server_that_rejects_the_key_or_fails_falls_back_in_one_line(tmp_path, failing_wandb_server):
    env = {"WANDB_API_KEY": "a" * 40, "WANDB_BASE_URL": failing_wandb_server, "WANDB_PROJECT": "my-project"}
    assert_fell_back_offline(train_online(tmp_path / "run", tmp_path / "home", **env), tmp_path / "run", "127.0.0.1")
    assert wandb_inspect(next((tmp_path / "run" / "wandb").glob("offline-run-*")))["project"] == "my-project"  # WANDB_PROJECT


def test_wandb_mode_comes_from_the_environment(tmp_path):
    env = {**os.environ, "WANDB_MODE": "disabled", "WANDB_SILENT": "true"}
    args = (f"hydra.run.dir={tmp_path}", "model=cnn_small", "debug=fast", "logger=default")
    res = run_module("src.train", *args, env=env, timeout=180)
    assert res.returncode == 0, res.stderr[-3000:]
    assert read_summary(tmp_path)["status"] == "completed"
    assert not list(tmp_path.glob("wandb/*run-*"))  # WANDB_MODE=disabled: no W&B run written
