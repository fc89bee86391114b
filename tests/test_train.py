"""The real command line, end to end: every model trains, tests and writes its results."""

import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from src.degrade import upsample
from src.metrics import to_y
from tests.conftest import ROOT, read_summary, run_train, synthetic_photo

MODELS = ["cnn_small", "cnn_medium", "cnn_deep", "waifu2x"]
SUMMARY_KEYS = [
    "model", "params", "macs_per_pixel", "train_loss", "val_loss", "test_loss", "psnr_y", "ssim_y",
    "bicubic_psnr_y", "bicubic_ssim_y", "fit_seconds", "patches_per_second", "device", "precision",
]  # fmt: skip


@pytest.mark.parametrize("model", MODELS)
def test_each_model_trains_through_hydra(tmp_path, model):
    run_dir = tmp_path / "run"
    res = run_train(run_dir, f"model={model}", "debug=fast")
    assert res.returncode == 0, res.stderr[-3000:]
    summary = read_summary(run_dir)
    assert set(SUMMARY_KEYS) <= set(summary)
    assert summary["model"] == model
    for key in SUMMARY_KEYS:
        if key not in ("model", "device", "precision"):
            assert isinstance(summary[key], (int, float)) and math.isfinite(summary[key]), key
    ckpts = list((run_dir / "checkpoints").glob("*.ckpt"))
    assert any(p.name == "last.ckpt" for p in ckpts) and len(ckpts) == 2
    # The checkpoint alone rebuilds the net: its config and scale travel in it, loadable weights-only.
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    assert ckpt["hyper_parameters"]["net"]["_target_"].startswith("src.arch.")
    assert ckpt["hyper_parameters"]["scale"] == 2
    assert (run_dir / "metrics.csv").is_file() and (run_dir / ".hydra" / "config.yaml").is_file()
    assert "PSNR-Y test" in res.stdout


def test_overrides_reach_the_run(tmp_path, photo_dir):
    run_dir = tmp_path / "run"
    res = run_train(
        run_dir, "model=cnn_small", "debug=fast", "data=folder", f"data.root={photo_dir}", "data.scale=3",
        "data.patch_size=48", "optimizer=sgd", "optimizer.lr=1e-4", "model.loss=l1", "trainer.max_epochs=2",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    s = read_summary(run_dir)
    assert s["scale"] == 3 and s["epochs"] == 2 and s["steps"] == 6


def test_seed_luma_in_setting_trains(tmp_path):
    res = run_train(tmp_path / "run", "model=cnn_small", "debug=fast", "model.net.in_channels=1", "model.net.residual=false")
    assert res.returncode == 0, res.stderr[-3000:]


def test_a_luma_net_trains_and_upscales_photos_in_colour(tmp_path):
    # FSRCNN as its paper trains it: the luma alone, the deconvolution at a tenth of the rate.
    run = tmp_path / "run"
    res = run_train(run, "model=fsrcnn", "model.net.channels=1", "model.lr_mult={deconv: 0.1}", "data.scale=3", "debug=fast")
    assert res.returncode == 0, res.stderr[-3000:]
    snap = Image.open(next((run / "snapshots").glob("epoch_*.png")))
    assert snap.mode == "RGB"
    from src.inference.upscale import main

    # A net of 3 steps returns near-black luma, clamped away: give it a flat mid-grey luma to see the colour.
    ckpt = torch.load(read_summary(run)["checkpoint"], weights_only=True)
    ckpt["state_dict"]["net.deconv.weight"].zero_()
    ckpt["state_dict"]["net.deconv.bias"].fill_(0.5)
    torch.save(ckpt, tmp_path / "grey.ckpt")
    photo = synthetic_photo((30, 27), seed=3)
    photo.save(tmp_path / "p.png")
    assert main([str(tmp_path / "p.png"), "--ckpt", str(tmp_path / "grey.ckpt"), "--out", str(tmp_path / "o.png")]) == 0
    sr = torch.from_numpy(np.asarray(Image.open(tmp_path / "o.png"), dtype=np.float32) / 255).permute(2, 0, 1)[None]
    bicubic = upsample(torch.from_numpy(np.asarray(photo, dtype=np.float32) / 255).permute(2, 0, 1)[None], 3, "bicubic")
    assert sr.shape == bicubic.shape == (1, 3, 81, 90)
    inside = ((sr > 0) & (sr < 1)).all(1)  # pixels no channel was clipped in
    assert inside.float().mean() > 0.3
    # The net's luma (0.5: Y 127.5) with the bicubic upscale's colour: R-G and B-G, which carry no luma, kept.
    assert (to_y(sr)[:, 0][inside] - 127.5).abs().max() < 2
    diff = ((sr - sr[:, 1:2]) - (bicubic - bicubic[:, 1:2])).abs().amax(1)
    assert diff[inside].max() < 2 / 255 and (sr[:, 0] - sr[:, 1])[inside].abs().max() > 0.1


def test_wandb_offline_logger_never_blocks(tmp_path):
    run_dir = tmp_path / "run"
    res = run_train(run_dir, "model=cnn_small", "debug=fast", "logger=default", timeout=180)
    assert res.returncode == 0, res.stderr[-3000:]
    assert list((run_dir / "wandb").glob("offline-run-*"))
    assert (run_dir / "metrics.csv").is_file()


def test_same_seed_same_result(tmp_path):
    args = ("model=cnn_small", "debug=fast", "trainer.deterministic=true", "trainer.precision=32-true")
    a, b = run_train(tmp_path / "a", *args), run_train(tmp_path / "b", *args)
    assert a.returncode == 0 and b.returncode == 0
    assert read_summary(tmp_path / "a")["train_loss"] == read_summary(tmp_path / "b")["train_loss"]


def test_default_run_dirs_never_collide(tmp_path):
    # No hydra.run.dir: the default template, as `make train` uses it; two runs started together.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WANDB_MODE": "offline"}
    cmd = [sys.executable, "-m", "src.train", "model=cnn_small", "debug=fast"]
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    procs = [subprocess.Popen(cmd, cwd=tmp_path, env=env, **pipes) for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
    runs = sorted((tmp_path / "outputs" / "runs").glob("*/*_cnn_small"))
    assert len(runs) == 2 and all((r / "summary.json").is_file() for r in runs)


def test_init_from_another_scale_and_depth_copies_the_shared_layers():
    from src.arch import EDSR
    from src.errors import ConfigError
    from src.training.fit import start_from

    torch.manual_seed(0)
    x4, x2 = EDSR(4, blocks=3, features=8), EDSR(2, blocks=2, features=8)
    before = {k: v.clone() for k, v in x2.state_dict().items()}
    fresh = start_from(x2, x4, "init=x4.pt")
    # body.2 is the end conv of 2 blocks but the third block of 3; x4's second upsampling stage has no place in x2.
    assert fresh == ["body.2.bias", "body.2.weight"]
    theirs = x4.state_dict()
    for k, v in x2.state_dict().items():
        assert torch.equal(v, before[k] if k in fresh else theirs[k]), k
    with pytest.raises(ConfigError, match=r"^init=x4.pt: no layer of it has the name and shape of one in EDSR"):
        start_from(EDSR(2, channels=1, blocks=1, features=4), x4, "init=x4.pt")


def test_a_run_that_ends_on_max_steps_mid_epoch_is_validated_at_its_last_step(tmp_path, photo_dir):
    # Lightning validates at an epoch's end, on max_time and on an early stop, but not on max_steps.
    run = tmp_path / "run"
    res = run_train(run, "model=cnn_small", "debug=fast", "data=folder", f"data.root={photo_dir}",
                    "trainer.limit_train_batches=null", "trainer.max_epochs=3", "+trainer.max_steps=5")  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    summary = read_summary(run)
    assert summary["steps"] == 5
    assert torch.load(summary["checkpoint"], weights_only=True)["global_step"] == 5  # the best: validated at step 5
    assert math.isfinite(summary["val_loss"])
