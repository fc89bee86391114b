"""Bad input gets one clear line naming the option or file, never a traceback."""

import os

import pytest
from PIL import Image

from tests.commands import run_module
from tests.conftest import run_train


def assert_clean_error(res, *needles):
    assert res.returncode != 0
    assert "Traceback" not in res.stderr, res.stderr[-2000:]
    for n in needles:
        assert n in res.stderr, res.stderr[-2000:]


def test_unknown_model_lists_the_choices(tmp_path):
    res = run_train(tmp_path / "run", "model=resnet")
    assert_clean_error(res, "model/resnet", "cnn_small", "cnn_medium", "cnn_deep", "waifu2x")


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        (["data.scale=5"], "data.scale=5: must be one of 1, 2, 3, 4"),
        (["data.scale=3", "data.patch_size=64"], "data.patch_size=64: must be a multiple of data.scale=3"),
        (["model=waifu2x", "data.patch_size=16"], "data.patch_size=16: too small for waifu2x"),
        (["model.loss=huber"], "model.loss=huber: must be one of mse, l1"),
        (["optimizer.lr=-1"], "optimizer.lr=-1: must be a positive number"),
        (["trainer.max_epochs=0"], "trainer.max_epochs=0: must be at least 1"),
        (["callbacks.nan_guard.max_loss=-1"], "callbacks.nan_guard.max_loss=-1: must be a positive number or null"),
        (["+foo=1"], "foo: not an option of src.train"),
        (["data=folder"], "data.root: not set; give it on the command line (data.root=...)"),
        (["model=file"], "model.net.path: not set; give it on the command line (model.net.path=...)"),
    ],
)
def test_bad_options_fail_before_any_work(tmp_path, overrides, needle):
    res = run_train(tmp_path / "run", "debug=fast", *overrides)
    assert_clean_error(res, needle)
    assert res.stderr.strip().count("\n") == 0  # exactly one line
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_missing_data_folder(tmp_path):
    res = run_train(tmp_path / "run", "debug=fast", "data=folder", f"data.root={tmp_path / 'nope'}")
    assert_clean_error(res, "no such directory", "nope")


def test_unwritable_checkpoint_folder_is_one_line_before_training(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoints").write_text("a file where the checkpoint folder goes")  # unwritable even for root
    res = run_train(run, "model=cnn_small", "debug=fast")
    assert_clean_error(res, f"{run / 'checkpoints'} is a file, not a folder")
    assert res.stderr.strip().count("\n") == 0 and "dirpath" in res.stderr
    assert not (run / "metrics.csv").exists()  # nothing trained


def test_unwritable_run_dir_is_one_line(tmp_path):
    (tmp_path / "file").write_text("a file where the run dir's parent goes")
    res = run_train(tmp_path / "file" / "run", "debug=fast")
    assert_clean_error(res, f"hydra.run.dir={tmp_path / 'file' / 'run'}: {tmp_path / 'file'} is a file, not a folder")
    assert res.stderr.strip().count("\n") == 0


def test_folder_without_readable_images(tmp_path):
    d = tmp_path / "photos"
    d.mkdir()
    (d / "a.jpg").write_bytes(b"garbage")
    (d / "b.png").write_bytes(b"")
    res = run_train(tmp_path / "run", "debug=fast", "data=folder", f"data.root={d}")
    assert_clean_error(res, "no readable image")


def test_undecodable_file_is_skipped_and_the_run_goes_on(tmp_path, photo_dir):
    (photo_dir / "zz_corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    Image.new("RGB", (8, 8)).save(photo_dir / "zz_tiny.png")
    res = run_train(tmp_path / "run", "model=cnn_small", "debug=fast", "data=folder", f"data.root={photo_dir}")
    assert res.returncode == 0, res.stderr[-3000:]
    log = res.stdout + res.stderr
    assert "zz_corrupt.jpg" in log and "skipping" in log


def test_a_bad_option_fails_before_lightning_is_imported(tmp_path):
    # Python's own import log (-X importtime) of the real command: the checks ran on torch alone.
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}
    res = run_module("src.train", f"hydra.run.dir={tmp_path / 'run'}", "data.scale=5", env=env, timeout=120, fresh=True)
    assert res.returncode == 2 and "error: data.scale=5: must be one of 1, 2, 3, 4" in res.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in res.stderr.splitlines() if line.startswith("import time:")}
    assert "torch" in imported and "src.training.config_checks" in imported
    assert not {m for m in imported if m.startswith("lightning.")}, "Lightning was imported before the config was checked"
    assert "torchmetrics" not in imported, "torchmetrics was imported before the config was checked"
