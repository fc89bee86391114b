"""Runs survive faults: SIGKILL mid-epoch, a kill during a save, a killed sweep, divergence, bad checkpoints."""

import csv
import os
import pickle
import subprocess
from pathlib import Path

import pytest
import torch

from src.errors import OutputError
from src.training.checkpoint_io import AtomicCheckpointIO
from tests.commands import run_module
from tests.conftest import read_summary, run_train

DETERMINISTIC = (
    "debug=fast", "trainer.limit_train_batches=null", "data.patches_per_image=8",
    "trainer.max_epochs=2", "trainer.precision=32-true", "trainer.deterministic=true",
    "callbacks.last_checkpoint.every_n_train_steps=4", "+callbacks.kill._target_=tests.crash.KillAtStep",
)  # fmt: skip


def train_with_env(run_dir: Path, env: dict, *overrides: str) -> subprocess.CompletedProcess:
    return run_module("src.train", f"hydra.run.dir={run_dir}", *overrides, env={**os.environ, **env})


def fit_timer_state(ckpt: Path) -> dict:
    states = torch.load(ckpt, weights_only=True)["callbacks"]
    return next(v for k, v in states.items() if k.startswith("FitTimer"))


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]


# Pre-upsampling and LR-in (EDSR's own class and code path, 2 of its 16 blocks: the rest repeat them); and
# LR images JPEG-encoded in the loader, whose seeded draws must continue.
@pytest.mark.parametrize(
    ("model", "degradation"), [("cnn_small", "bicubic"), ("edsr_baseline", "bicubic"), ("cnn_small", "jpeg")]
)
def test_sigkill_mid_epoch_then_resume_gives_bitwise_identical_weights(tmp_path, photos, model, degradation):
    args = (*DETERMINISTIC, f"model={model}", f"degradation={degradation}", "data=folder", f"data.root={photos}")
    args += ("model.net.blocks=2",) if model == "edsr_baseline" else ()
    assert run_train(tmp_path / "whole", *args).returncode == 0
    steps_per_epoch = read_summary(tmp_path / "whole")["steps"] // 2
    kill_at = steps_per_epoch + 6  # mid-epoch 2, two steps after the checkpoint at a multiple of 4
    killed = train_with_env(tmp_path / "killed", {"SRLAB_KILL_AT_STEP": str(kill_at)}, *args)
    assert killed.returncode == -9 and not (tmp_path / "killed" / "summary.json").exists()
    before_kill = fit_timer_state(tmp_path / "killed" / "checkpoints" / "last.ckpt")
    resumed = run_train(tmp_path / "ignored", f"resume={tmp_path / 'killed'}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stdout + resumed.stderr
    a, b = weights(tmp_path / "whole"), weights(tmp_path / "killed")
    assert all(torch.equal(a[k], b[k]) for k in a)
    whole, done = read_summary(tmp_path / "whole"), read_summary(tmp_path / "killed")
    assert done["steps"] == whole["steps"]
    # The run's training time is the sum over both launches; each launch is recorded, in order.
    assert done["fit_seconds"] > before_kill["fit_seconds"] > 0
    first, second = done["launches"]
    assert done["started_at"] == first["start"] < second["start"] < done["ended_at"]
    # The epoch resumed mid-way is timed from the resume, not from the clock's zero.
    rows = csv.DictReader((tmp_path / "killed" / "metrics.csv").open())
    epoch_times = [float(r["time/epoch_train_s"]) for r in rows if r.get("time/epoch_train_s")]
    assert epoch_times and max(epoch_times) < done["fit_seconds"]
    assert done["patches_per_second"] > whole["patches_per_second"] / 5


def test_sigkill_of_a_ddp_run_then_resume_matches_the_uninterrupted_ddp_run(tmp_path, photos):
    # Two gloo processes on CPU; both ranks die at the same step (SIGKILL, no cleanup), then resume=
    # relaunches both ranks from last.ckpt, with the loader position each rank's slice needs.
    args = (*DETERMINISTIC, "model=cnn_small", "data=folder", f"data.root={photos}", "trainer=ddp", "trainer.devices=2")
    whole = run_train(tmp_path / "whole", *args)
    assert whole.returncode == 0, whole.stderr[-3000:]
    kill_at = read_summary(tmp_path / "whole")["steps"] // 2 + 2  # mid-epoch 2, past the checkpoint at a multiple of 4
    killed = train_with_env(tmp_path / "killed", {"SRLAB_KILL_AT_STEP": str(kill_at)}, *args)
    assert killed.returncode == -9 and not (tmp_path / "killed" / "summary.json").exists()
    resumed = run_train(tmp_path / "ignored", f"resume={tmp_path / 'killed'}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stdout + resumed.stderr  # from last.ckpt, not a fresh start
    a, b = weights(tmp_path / "whole"), weights(tmp_path / "killed")
    for k in a:
        torch.testing.assert_close(b[k], a[k], atol=0, rtol=0)
    assert read_summary(tmp_path / "killed")["steps"] == read_summary(tmp_path / "whole")["steps"]


def test_kill_during_checkpoint_save_keeps_the_previous_one(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"step": 1, "w": torch.ones(3)}, path)

    def dies_mid_write(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise KeyboardInterrupt  # as if the process were stopped while writing

    monkeypatch.setattr(torch, "save", dies_mid_write)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"step": 2, "w": torch.zeros(3)}, path)
    assert torch.load(path, weights_only=True)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_relaunched_sweep_skips_finished_jobs_and_resumes_unfinished_ones(tmp_path):
    sweep = tmp_path / "sweep"
    args = ("-m", f"hydra.sweep.dir={sweep}", "model=cnn_small,cnn_medium", "debug=fast", "trainer.limit_train_batches=6",
            "callbacks.last_checkpoint.every_n_train_steps=2", "+callbacks.kill._target_=tests.crash.KillAtStep")  # fmt: skip
    first = run_module("src.train", *args, env={**os.environ, "SRLAB_KILL_AT_STEP": "3", "SRLAB_KILL_IN": "1_cnn_medium"})
    assert first.returncode == -9
    done = sweep / "0_cnn_small" / "summary.json"
    assert read_summary(sweep / "0_cnn_small")["status"] == "completed" and not (sweep / "1_cnn_medium" / "summary.json").exists()
    stamp = done.stat().st_mtime_ns
    again = run_module("src.train", *args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert done.stat().st_mtime_ns == stamp  # the finished job was not run again
    log = again.stdout + again.stderr
    assert "finished in an earlier launch" in log and "resuming from" in log
    assert read_summary(sweep / "1_cnn_medium")["steps"] == 6


# A loss that becomes NaN or infinite (no bound on a finite one here), and one that explodes and stays finite.
@pytest.mark.parametrize(
    ("lr", "max_loss", "says"), [("1e12", "null", ("nan", "inf")), ("1e3", "100", ("above callbacks.nan_guard.max_loss=100",))]
)
def test_divergence_stops_with_one_line_naming_the_step(tmp_path, lr, max_loss, says):
    run_dir = tmp_path / "run"
    res = run_train(run_dir, "model=cnn_small", "debug=fast", f"optimizer.lr={lr}", "trainer.limit_train_batches=10",
                    "scheduler=none", "callbacks.last_checkpoint.every_n_train_steps=1",
                    f"callbacks.nan_guard.max_loss={max_loss}")  # fmt: skip
    assert res.returncode == 2 and "Traceback" not in res.stderr
    err = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and "at step" in err[0] and any(s in err[0] for s in says), err
    assert read_summary(run_dir)["status"] == "failed"
    last = run_dir / "checkpoints" / "last.ckpt"
    if last.exists():  # whatever was kept holds finite weights
        assert all(torch.isfinite(w).all() for w in weights(run_dir).values())


class _Evil:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_resume_from_a_malicious_checkpoint_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    evil = _Evil()
    evil.marker = marker
    bad = tmp_path / "evil.ckpt"
    with bad.open("wb") as f:
        pickle.dump({"state_dict": evil}, f)
    res = run_train(tmp_path / "run", "model=cnn_small", "debug=fast", f"ckpt_path={bad}")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "refused" in res.stderr and "evil.ckpt" in res.stderr
    assert not marker.exists()


def test_resume_with_a_checkpoint_of_another_model_fails_before_work(tmp_path):
    assert run_train(tmp_path / "a", "model=cnn_small", "debug=fast").returncode == 0
    res = run_train(tmp_path / "b", "model=cnn_deep", "debug=fast", f"ckpt_path={tmp_path / 'a' / 'checkpoints' / 'last.ckpt'}")
    assert res.returncode == 2 and "holds cnn_small x2, not cnn_deep x2" in res.stderr


def test_resume_without_last_ckpt_continues_from_the_newest_checkpoint_or_refuses(tmp_path):
    run = tmp_path / "run"
    assert run_train(run, "model=cnn_small", "debug=fast", "trainer.max_epochs=2").returncode == 0
    steps = read_summary(run)["steps"]
    (run / "checkpoints" / "last.ckpt").unlink()
    (run / "summary.json").unlink()
    (best,) = (run / "checkpoints").glob("epoch*.ckpt")
    resumed = run_train(tmp_path / "ignored", f"resume={run}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    log = resumed.stdout + resumed.stderr
    assert "last.ckpt is missing" in log and f"resuming from {best}" in log  # not a silent start from step 0
    assert read_summary(run)["steps"] == steps
    for ckpt in (run / "checkpoints").glob("*.ckpt"):
        ckpt.unlink()
    refused = run_train(tmp_path / "ignored", f"resume={run}")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert refused.stderr.strip().count("\n") == 0 and f"resume={run}: nothing to continue from" in refused.stderr


def test_unwritable_checkpoint_folder_is_named_not_a_missing_tmp_file(tmp_path, monkeypatch):
    # Lightning's own writer swallows the PermissionError and fails later on the missing .tmp file.
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    real_open = open

    def read_only_folder(file, mode="r", *args, **kwargs):
        if str(file).startswith(str(folder)) and any(c in mode for c in "wax+"):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr("builtins.open", read_only_folder)
    with pytest.raises(OutputError) as info:
        AtomicCheckpointIO().save_checkpoint({"w": torch.ones(2)}, folder / "last.ckpt")
    msg = str(info.value)
    assert str(folder) in msg and "Permission denied" in msg and ".tmp" not in msg and "\n" not in msg
    assert list(folder.iterdir()) == []


def test_a_run_saved_before_the_modules_moved_still_resumes(tmp_path):
    # A run's saved config names its classes by module path; runs saved before the training modules
    # moved into src/training/ (and while the Trainer had a custom no-op profiler) still resume.
    run = tmp_path / "run"
    assert run_train(run, "model=cnn_small", "debug=fast", "trainer.max_epochs=2").returncode == 0
    steps = read_summary(run)["steps"]
    saved = run / ".hydra" / "config.yaml"
    text = saved.read_text().replace("src.training.", "src.")
    text = text.replace("  profiler: null\n", "  profiler:\n    _target_: src.hook_profiler.NoProfiler\n")
    assert "src.sr_module.SRModule" in text and "src.hook_profiler" in text
    saved.write_text(text)
    (run / "checkpoints" / "last.ckpt").unlink()
    (run / "summary.json").unlink()
    resumed = run_train(tmp_path / "ignored", f"resume={run}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert read_summary(run)["status"] == "completed" and read_summary(run)["steps"] == steps
