"""Published weights through spandrel (the [zoo] extra; `make test-zoo` runs these in their own venv):
srlab's pipeline reproduces spandrel's own forward for architectures of five families, whole and in
tiles, scores them, fine-tunes one, and writes files that spandrel reads back as the same net."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import spandrel
import torch
from PIL import Image
from safetensors.torch import save_file
from spandrel.architectures.Compact import Compact as SpandrelCompact
from spandrel.architectures.ESRGAN import ESRGAN
from spandrel.architectures.RCAN import RCAN
from spandrel.architectures.SPAN import SPAN
from spandrel.architectures.SwinIR import SwinIR

from src.inference.checkpoint import CheckpointError, load_checkpoint
from src.inference.tiling import upscale_tensor
from tests.conftest import ROOT, read_summary, run_train, synthetic_photo
from tests.test_reliability import DETERMINISTIC, train_with_env, weights

# Small members of each family (random weights): what matters is that the layouts are the published ones.
ARCHS = {
    "ESRGAN": lambda: ESRGAN(in_nc=3, out_nc=3, num_filters=16, num_blocks=1, scale=2),
    "Compact": lambda: SpandrelCompact(num_in_ch=3, num_out_ch=3, num_feat=16, num_conv=3, upscale=4),
    "Compact gray": lambda: SpandrelCompact(num_in_ch=1, num_out_ch=1, num_feat=8, num_conv=2, upscale=2),
    "SwinIR": lambda: SwinIR(upscale=2, in_chans=3, img_size=16, window_size=4, embed_dim=12, depths=[1], num_heads=[2],
                             upsampler="pixelshuffle", mlp_ratio=2),
    "SPAN": lambda: SPAN(num_in_ch=3, num_out_ch=3, feature_channels=16, upscale=3),
    "RCAN": lambda: RCAN(scale=2, n_resgroups=1, n_resblocks=1, n_feats=16, reduction=4),
}  # fmt: skip
ENV = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}


def run(*args: str) -> subprocess.CompletedProcess:
    """``python -m <args>`` as a user runs it."""
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)


def published(tmp_path: Path, arch: str, suffix: str) -> Path:
    """A model file as the community shares them: a bare state dict, .pth or .safetensors."""
    torch.manual_seed(0)
    state = ARCHS[arch]().state_dict()
    path = tmp_path / f"{arch.replace(' ', '_')}{suffix}"
    torch.save(state, path) if suffix == ".pth" else save_file(state, str(path))
    return path


def spandrel_forward(path: Path, lr: torch.Tensor) -> torch.Tensor:
    """spandrel's own inference call (it pads to the size requirements and clamps)."""
    desc = spandrel.ModelLoader().load_from_file(path).eval()
    lr = lr.clone()  # RCAN's forward scales its input in place
    x = lr if desc.input_channels == 3 else (lr * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    out = desc(x)
    return out.expand(-1, 3, -1, -1) if out.shape[1] == 1 else out


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
@pytest.mark.parametrize("arch", list(ARCHS))
def test_srlab_runs_published_weights_as_spandrel_does(tmp_path, arch, suffix):
    path = published(tmp_path, arch, suffix)
    model = load_checkpoint(path)
    assert model.name == spandrel.ModelLoader().load_from_file(path).architecture.name
    assert f"from {path.name}" in model.describe() and "params" in model.describe()
    lr = torch.rand(1, 3, 40, 36, generator=torch.Generator().manual_seed(1))
    ref = spandrel_forward(path, lr)
    for tile in (None, 12):  # one pass, and 12 px tiles with the margin srlab picks
        out = upscale_tensor(model.net, lr, model.scale, tile, precision="fp32").clamp(0, 1)
        assert out.shape == ref.shape == (1, 3, 40 * model.scale, 36 * model.scale)
        # fp32 summed in another order (srlab runs channels_last); RCAN computes in 0-255, so its noise is 255x.
        assert float((out - ref).abs().max()) < 1e-4, (arch, tile)


@pytest.mark.parametrize("arch", ["ESRGAN", "SwinIR", "RCAN"])
def test_upscale_and_evaluate_commands_take_published_weights(tmp_path, arch):
    path = published(tmp_path, arch, ".pth")
    photo = tmp_path / "photo.png"
    synthetic_photo((30, 26), seed=3).save(photo)
    out = tmp_path / "out"
    up = run("src.upscale", str(photo), "--ckpt", str(path), "--out", str(out), "--precision", "fp32", "--tile", "16")
    assert up.returncode == 0, up.stderr[-2000:]
    assert f"model: {arch}" in up.stderr
    lr = torch.from_numpy(np.asarray(Image.open(photo), dtype=np.float32)).permute(2, 0, 1)[None] / 255
    ref = (spandrel_forward(path, lr)[0].permute(1, 2, 0).numpy() * 255).round()
    written = np.asarray(Image.open(next(out.iterdir())), dtype=np.float32)
    assert written.shape == ref.shape and np.abs(written - ref).max() <= 1  # the same 8-bit image, up to a rounding tie
    hr = tmp_path / "hr"
    hr.mkdir()
    for i in range(2):
        synthetic_photo((48, 40), seed=i).save(hr / f"{i}.png")
    ev = run("src.evaluate", f"ckpt_path={path}", f"data.root=[{hr}]", "wandb=null", f"hydra.run.dir={tmp_path / 'ev'}")
    assert ev.returncode == 0, ev.stderr[-2000:]
    rows = list(csv.DictReader((tmp_path / "ev" / "results.csv").open()))
    assert len(rows) == 2 and all(np.isfinite(float(r["psnr_y"])) for r in rows)


def test_a_file_no_architecture_matches_is_one_line(tmp_path):
    path = tmp_path / "mystery.pth"
    torch.save({"encoder.weight": torch.zeros(4, 3, 3, 3), "decoder.bias": torch.zeros(3)}, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    msg = str(info.value)
    assert "\n" not in msg and "mystery.pth: no architecture spandrel" in msg and "encoder.weight" in msg


def test_srlab_exports_are_not_mistaken_by_spandrel(tmp_path):
    from src.inference.export import main as export
    from tests.test_checkpoint import make_ckpt

    for target, kwargs in [("src.arch.FSRCNN", {}), ("src.arch.ESPCN", {}), ("src.arch.EDSR", {"blocks": 2})]:
        out = tmp_path / f"{target}.safetensors"
        assert export(["--ckpt", str(make_ckpt(tmp_path / "m.ckpt", target=target, **kwargs)), "--out", str(out)]) == 0
        with pytest.raises(spandrel.UnsupportedModelError):
            spandrel.ModelLoader().load_from_file(out)
        assert type(load_checkpoint(out).net).__name__ == target.rsplit(".", 1)[1]  # srlab reads it by its header


def test_fine_tune_published_compact_resumes_bitwise_and_exports_for_spandrel(tmp_path, photos):
    path = published(tmp_path, "Compact", ".pth")
    args = (*DETERMINISTIC, "model=file", f"model.net.path={path}", "data.scale=4", "data=folder", f"data.root={photos}")
    whole = run_train(tmp_path / "whole", *args)
    assert whole.returncode == 0, whole.stderr[-3000:]
    kill_at = read_summary(tmp_path / "whole")["steps"] // 2 + 6
    killed = train_with_env(tmp_path / "killed", {"SRLAB_KILL_AT_STEP": str(kill_at)}, *args)
    assert killed.returncode == -9
    resumed = run_train(tmp_path / "ignored", f"resume={tmp_path / 'killed'}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a, b = weights(tmp_path / "whole"), weights(tmp_path / "killed")
    assert all(torch.equal(a[k], b[k]) for k in a)
    start = torch.load(path, weights_only=True)
    assert not torch.equal(a["net.model.body.0.weight"], start["body.0.weight"])  # it trained from the file's weights
    out = tmp_path / "tuned.safetensors"
    exp = run("src.export", "--ckpt", str(tmp_path / "whole" / "checkpoints" / "last.ckpt"), "--out", str(out))
    assert exp.returncode == 0, exp.stderr[-2000:]
    lr = torch.rand(1, 3, 21, 17)
    tuned = load_checkpoint(tmp_path / "whole" / "checkpoints" / "last.ckpt")
    mine = upscale_tensor(tuned.net, lr, 4, None, precision="fp32").clamp(0, 1)
    assert float((spandrel_forward(out, lr) - mine).abs().max()) < 1e-5


def test_srlab_compact_exports_to_a_file_spandrel_reads_as_compact(tmp_path, photos):
    run_dir = tmp_path / "run"
    done = run_train(run_dir, "debug=fast", "model=compact", "model.net.num_conv=2", "model.net.num_feat=8", "data.scale=3",
                     "data=folder", f"data.root={photos}")  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    out = tmp_path / "compact.safetensors"
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    exp = run("src.export", "--ckpt", str(ckpt), "--format", "safetensors", "--out", str(out))
    assert exp.returncode == 0, exp.stderr[-2000:]
    desc = spandrel.ModelLoader().load_from_file(out)
    assert (desc.architecture.id, desc.scale) == ("Compact", 3)
    lr = torch.rand(1, 3, 19, 23)
    srlab = upscale_tensor(load_checkpoint(ckpt).net, lr, 3, None, precision="fp32").clamp(0, 1)
    assert float((desc.eval()(lr.clone()) - srlab).abs().max()) < 1e-5
