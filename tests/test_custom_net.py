"""Your own net, from your own package, without editing srlab: train, evaluate, upscale, export."""

from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path

import pytest
from PIL import Image

from tests.commands import run_module
from tests.conftest import read_summary, run_train, synthetic_photo

# A plain nn.Module written the natural way: LR in, upsampled inside; its constructor asks for the scale.
USER_NET = '''
import torch
from torch import nn


class TinyShuffle(nn.Module):
    def __init__(self, scale: int, width: int = 16) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(width, 3 * scale * scale, 3, padding=1), nn.PixelShuffle(scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class Forgets(nn.Module):
    """Reads LR and never upsamples."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)
'''


@pytest.fixture
def user_pkg(tmp_path: Path) -> Path:
    pkg = tmp_path / "userland" / "mynets"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(textwrap.dedent(USER_NET))
    return tmp_path / "userland"


def _env(user_pkg: Path) -> dict[str, str]:
    return {"PYTHONPATH": f"{user_pkg}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


def _run(module: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return run_module(module, *args, env={**os.environ, **env})


def test_a_net_from_the_users_own_package_trains_evaluates_upscales_and_exports(tmp_path, user_pkg, monkeypatch):
    env = _env(user_pkg)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    run = tmp_path / "run"
    res = run_train(run, "model=custom", "model.net._target_=mynets.TinyShuffle", "+model.net.width=8", "model.name=tiny",
                    "data.scale=3", "debug=fast")  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    s = read_summary(run)
    # scale reached the constructor (8*3*9 + 8 + (9*8 + 1)*27 params); MACs measured per output pixel
    assert s["model"] == "tiny" and s["params"] == 3 * 9 * 8 + 8 + (9 * 8 + 1) * 27
    assert s["macs_per_pixel"] == round((9 * 3 * 8 + 9 * 8 * 27) / 9)
    ckpt = s["checkpoint"]

    photos = tmp_path / "photos"
    photos.mkdir()
    synthetic_photo((45, 39), seed=1).save(photos / "a.png")
    ev = _run("src.evaluate", f"ckpt_path={ckpt}", f"data.root={photos}", f"hydra.run.dir={tmp_path / 'ev'}", env=env)
    assert ev.returncode == 0, ev.stderr[-2000:]
    assert "| a |" in ev.stdout

    outs = {}
    for tile in ("0", "7"):
        up = _run("src.upscale", str(photos / "a.png"), "--ckpt", ckpt, "--out", str(tmp_path / f"up{tile}"), "--tile", tile,
                  "--precision", "fp32", env=env)  # fmt: skip
        assert up.returncode == 0, up.stderr[-2000:]
        outs[tile] = Image.open(tmp_path / f"up{tile}" / "a_x3.png")
    assert outs["0"].size == (45 * 3, 39 * 3) and outs["0"].tobytes() == outs["7"].tobytes()  # tiled = whole

    ex = _run("src.export", "--ckpt", ckpt, "--out", str(tmp_path / "tiny.onnx"), "--device", "cpu", env=env)
    assert ex.returncode == 0, ex.stderr[-2000:]
    assert "parity: max" in ex.stdout


def test_a_net_of_the_wrong_size_stops_training_with_one_line(tmp_path, user_pkg, monkeypatch):
    for k, v in _env(user_pkg).items():
        monkeypatch.setenv(k, v)
    res = run_train(tmp_path / "run", "model=custom", "model.net._target_=mynets.Forgets", "debug=fast")
    assert res.returncode == 2
    err = res.stderr.strip()
    assert "Traceback" not in err and err.count("\n") == 0, err[-2000:]
    assert "net Forgets at x2" in err and "expected 24x24" in err


def test_model_custom_without_a_target_or_with_a_missing_package_is_one_line(tmp_path):
    res = run_train(tmp_path / "a", "model=custom", "debug=fast")
    assert res.returncode == 2 and "model.net._target_" in res.stderr and "Traceback" not in res.stderr
    res = run_train(tmp_path / "b", "model=custom", "model.net._target_=nopkg.Net", "debug=fast")
    assert res.returncode == 2 and "nopkg.Net" in res.stderr and "PYTHONPATH" in res.stderr
