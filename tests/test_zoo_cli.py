"""Each reference net through every command a user runs: train, evaluate, upscale (whole and tiled), export."""

from __future__ import annotations

import os
import subprocess

import numpy as np
import pytest
from PIL import Image

from tests.commands import run_module
from tests.conftest import read_summary, run_train, synthetic_photo


def _run(module: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    return run_module(module, *args, env=env)


@pytest.mark.parametrize(("model", "scale"), [("espcn", 2), ("fsrcnn", 3), ("edsr_baseline", 4)])
def test_reference_net_trains_evaluates_upscales_and_exports(tmp_path, model, scale):
    res = run_train(tmp_path / "run", f"model={model}", f"data.scale={scale}", "debug=fast")
    assert res.returncode == 0, res.stderr[-2000:]
    summary = read_summary(tmp_path / "run")
    assert summary["model"] == model and summary["scale"] == scale and summary["macs_per_pixel"] > 0
    ckpt = summary["checkpoint"]

    photos = tmp_path / "photos"
    photos.mkdir()
    synthetic_photo((53, 41), seed=2).save(photos / "odd.png")  # odd sizes, not multiples of the scale
    ev = _run("src.evaluate", f"ckpt_path={ckpt}", f"data.root={photos}", f"hydra.run.dir={tmp_path / 'ev'}")
    assert ev.returncode == 0, ev.stderr[-2000:]
    assert "| odd |" in ev.stdout

    sizes = {}
    for tile in ("0", "9"):
        up = _run("src.upscale", str(photos / "odd.png"), "--ckpt", ckpt, "--out", str(tmp_path / f"up{tile}"),
                  "--tile", tile, "--precision", "fp32")  # fmt: skip
        assert up.returncode == 0, up.stderr[-2000:]
        sizes[tile] = Image.open(tmp_path / f"up{tile}" / f"odd_x{scale}.png")
    assert sizes["0"].size == (53 * scale, 41 * scale)
    # Tiles in LR space reproduce the whole image: in float to < 1e-5 (tests/test_reference_nets.py), so
    # the 8-bit files differ at most by one level, where a value sits on a rounding boundary.
    whole, tiled = (np.asarray(sizes[t], dtype=np.int16) for t in ("0", "9"))
    assert np.abs(whole - tiled).max() <= 1 and (whole != tiled).mean() < 1e-3

    ex = _run("src.export", "--ckpt", ckpt, "--out", str(tmp_path / "m.onnx"), "--device", "cpu")
    assert ex.returncode == 0, ex.stderr[-2000:]
    assert "parity: max" in ex.stdout
