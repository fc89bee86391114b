"""Safe checkpoint loading: weights only, srlab nets only, one-line errors."""

from __future__ import annotations

import importlib
import os
import pickle
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from src.inference.checkpoint import CheckpointError, load_checkpoint
from tests.conftest import run_train


def make_ckpt(path: Path, target: str = "src.arch.CNNSmall", scale: int = 2, seed: int = 0, **net_kwargs) -> Path:
    """A checkpoint in src.train's format, with random (not identity-like) weights so outputs are non-trivial."""
    from hydra.utils import get_class

    from src.arch.contract import construct

    torch.manual_seed(seed)
    net = construct(get_class(target), net_kwargs, scale)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.05)
    ckpt = {
        "hyper_parameters": {"name": "tiny", "net": {"_target_": target, **net_kwargs}, "scale": scale, "loss": "mse"},
        "state_dict": {f"net.{k}": v for k, v in net.state_dict().items()},
    }
    torch.save(ckpt, path)
    return path


class _Evil:
    """Unpickling this runs ``open(marker, "w")``: what a malicious checkpoint would do."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_roundtrip_rebuilds_net_scale_and_name(tmp_path):
    model = load_checkpoint(make_ckpt(tmp_path / "m.ckpt", scale=3))
    assert (model.scale, model.name, type(model.net).__name__) == (3, "tiny", "CNNSmall")
    assert not model.net.training and not any(p.requires_grad for p in model.net.parameters())
    ref = torch.load(tmp_path / "m.ckpt", weights_only=True)["state_dict"]
    torch.testing.assert_close(model.net.state_dict()["body.0.weight"], ref["net.body.0.weight"])


@pytest.mark.parametrize("suffix", [".ckpt", ".pth"])  # .pth: a published model's state dict, as downloaded
@pytest.mark.parametrize("container", ["zip", "raw_pickle"])
def test_malicious_pickle_is_refused_and_runs_nothing(tmp_path, container, suffix):
    marker = tmp_path / "pwned"
    bad = tmp_path / f"evil{suffix}"
    evil = _Evil(str(marker))
    payload = {"state_dict": {}, "hyper_parameters": evil} if suffix == ".ckpt" else {"params_ema": {"conv.weight": evil}}
    if container == "zip":
        torch.save(payload, bad)  # torch's zip format, as a real checkpoint
    else:
        bad.write_bytes(pickle.dumps(payload))  # a bare pickle (torch's legacy format)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(bad)
    assert not marker.exists()
    msg = str(info.value)
    assert "\n" not in msg and str(bad) in msg and "refused" in msg


@pytest.mark.parametrize(
    "target", ["os.system", "builtins.eval", "antigravity.fly", "src.errors.SrlabError", "src.archevil.Net", "torch.load", "x; y"]
)
def test_net_target_that_is_not_a_network_class_is_refused(tmp_path, target):
    path = tmp_path / "m.ckpt"
    make_ckpt(path)
    ckpt = torch.load(path, weights_only=True)
    ckpt["hyper_parameters"]["net"]["_target_"] = target
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(path)
    assert "antigravity" not in sys.modules  # standard-library modules are refused before any import


def test_a_users_own_net_class_loads_from_its_package(tmp_path, monkeypatch):
    pkg = tmp_path / "userpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(textwrap.dedent("""
        from torch import nn

        class Up(nn.Module):
            def __init__(self, scale):
                super().__init__()
                self.conv = nn.Conv2d(3, 3 * scale * scale, 3, padding=1)
                self.shuffle = nn.PixelShuffle(scale)

            def forward(self, x):
                return self.shuffle(self.conv(x))
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    path = tmp_path / "m.ckpt"
    state = {f"net.{k}": v for k, v in importlib.import_module("userpkg").Up(3).state_dict().items()}
    torch.save({"hyper_parameters": {"name": "up", "net": {"_target_": "userpkg.Up"}, "scale": 3}, "state_dict": state}, path)
    model = load_checkpoint(path)
    assert type(model.net).__name__ == "Up" and model.net.shuffle.upscale_factor == 3  # scale passed from the file
    torch.testing.assert_close(model.net.conv.weight, state["net.conv.weight"])


def test_nested_target_in_net_options_is_refused(tmp_path):
    path = tmp_path / "m.ckpt"
    make_ckpt(path)
    ckpt = torch.load(path, weights_only=True)
    ckpt["hyper_parameters"]["net"]["upsample"] = {"_target_": "os.system", "command": "true"}
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(path)


def test_missing_corrupt_and_mismatched_files_give_one_line(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "nope.ckpt")
    (tmp_path / "junk.ckpt").write_bytes(os.urandom(64))
    with pytest.raises(CheckpointError, match="junk.ckpt"):
        load_checkpoint(tmp_path / "junk.ckpt")
    # A pickle that stops on an empty stack: the unpickler raises IndexError (what random bytes hit at times).
    (tmp_path / "empty_stack.ckpt").write_bytes(b"\x80\x02.")
    with pytest.raises(CheckpointError, match="empty_stack.ckpt: not a readable checkpoint"):
        load_checkpoint(tmp_path / "empty_stack.ckpt")
    path = make_ckpt(tmp_path / "m.ckpt")
    ckpt = torch.load(path, weights_only=True)
    ckpt["hyper_parameters"]["net"]["_target_"] = "src.arch.CNNDeep"  # weights of another net
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match="do not fit CNNDeep") as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value)


def test_checkpoint_written_by_train_loads(tmp_path):
    proc = run_train(tmp_path / "run", "model=waifu2x", "debug=fast", "data.scale=3")
    assert proc.returncode == 0, proc.stderr[-2000:]
    model = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert (model.scale, model.name, model.net.offset) == (3, "waifu2x", 7)


def test_random_bytes_are_not_a_readable_checkpoint_not_a_threat(tmp_path):
    # Random bytes stop the restricted unpickler too; only a well-formed pickle naming a callable is "refused".
    rng = np.random.default_rng(0)
    for i in range(40):
        junk = tmp_path / f"junk{i}.ckpt"
        junk.write_bytes(rng.integers(0, 256, 64, dtype=np.uint8).tobytes())
        with pytest.raises(CheckpointError) as info:
            load_checkpoint(junk)
        assert f"junk{i}.ckpt: not a readable checkpoint" in str(info.value) and "arbitrary code" not in str(info.value)
