"""Model files (net config + scale + weights + card, no Lightning) and the bundled models in src/pretrained/."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from src.inference.checkpoint import BUNDLED_DIR, CheckpointError, bundled_models, load_checkpoint, load_model
from src.inference.model_file import pack
from src.inference.tiling import upscale_tensor
from tests.commands import run_module
from tests.conftest import read_summary, run_train, synthetic_photo
from tests.test_checkpoint import make_ckpt

BUNDLED = sorted(BUNDLED_DIR.glob("*.pt"))


def test_a_model_file_loads_like_its_checkpoint_and_halves_in_fp16(tmp_path):
    ckpt = make_ckpt(tmp_path / "a.ckpt", "src.arch.CNNMedium", scale=3)
    packed = pack(torch.load(ckpt, weights_only=True), {"data": "tiny"}, fp16=True)
    torch.save(packed, tmp_path / "m.pt")
    a, b = load_checkpoint(ckpt), load_checkpoint(tmp_path / "m.pt")
    assert (b.name, b.scale, type(b.net)) == (a.name, 3, type(a.net))
    x = torch.rand(1, 3, 24, 24)
    torch.testing.assert_close(b.net(x), a.net(x), atol=2e-3, rtol=0)  # fp16 weights, fp32 compute
    assert (tmp_path / "m.pt").stat().st_size < 0.6 * ckpt.stat().st_size


def test_a_model_file_naming_foreign_code_is_refused(tmp_path):
    packed = pack(torch.load(make_ckpt(tmp_path / "a.ckpt"), weights_only=True), {}, fp16=False)
    packed["net"]["_target_"] = "os.system"
    torch.save(packed, tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match="refused: net _target_ .os.system. is in the standard library"):
        load_checkpoint(tmp_path / "m.pt")


def test_model_choice_errors_are_one_line(tmp_path):
    with pytest.raises(CheckpointError, match="no such bundled model"):
        load_model(None, "cnn_huge", 2)
    with pytest.raises(CheckpointError, match="give one of them"):
        load_model(tmp_path / "x.ckpt", "cnn_deep", 2)
    with pytest.raises(CheckpointError, match="no model"):
        load_model(None)
    with pytest.raises(CheckpointError, match="--scale 3: .* holds a x2 model"):
        load_model(make_ckpt(tmp_path / "a.ckpt", scale=2), None, 3)


def test_the_bundled_models_are_small():
    assert sum(p.stat().st_size for p in BUNDLED) < 20 * 2**20  # the package stays light: all files under 20 MB


@pytest.mark.parametrize("path", BUNDLED, ids=[p.stem for p in BUNDLED])
def test_each_bundled_model_loads_weights_only_and_upscales(path):
    torch.load(path, weights_only=True)  # nothing but tensors and plain containers inside
    name, scale = path.stem.rsplit("_x", 1)
    loaded = load_model(None, name, int(scale))
    assert (loaded.name, loaded.scale) == (name, int(scale)) and f"{name} x{scale}" in bundled_models()
    card = torch.load(path, weights_only=True)["card"]
    assert card["data"] and card["recipe"]["steps"] > 0 and card["budget"]["fit_seconds"] > 0
    lr = torch.from_numpy(np.asarray(synthetic_photo((20, 16), seed=1))).permute(2, 0, 1)[None].float() / 255
    sr = upscale_tensor(loaded.net, lr, loaded.scale, tile=None)
    assert sr.shape == (1, 3, 16 * loaded.scale, 20 * loaded.scale) and torch.isfinite(sr).all()


def test_the_bundled_recipe_packs_and_fine_tuning_starts_from_its_weights(tmp_path, photo_dir):
    base = tmp_path / "base"  # the recipe of `make pretrained`, shrunk: data=folder, then packed
    res = run_train(base, "experiment=pretrained", f"data.root={photo_dir}", "model=cnn_small", "debug=fast")
    assert res.returncode == 0, res.stderr[-2000:]
    pack_res = run_module("src.model_file", str(base), "--out", str(tmp_path / "m.pt"))
    assert pack_res.returncode == 0, pack_res.stderr
    card = torch.load(tmp_path / "m.pt", weights_only=True)["card"]
    assert card["data"] == "photos" and card["recipe"]["steps"] == read_summary(base)["steps"]
    assert card["degradation"]["_target_"].endswith(".Bicubic")  # the LR it was trained for
    tuned = tmp_path / "tuned"
    overrides = ("experiment=pretrained", f"data.root={photo_dir}", "model=cnn_small", "debug=fast")
    res = run_train(tuned, *overrides, f"init={tmp_path / 'm.pt'}", "optimizer.lr=1e-12", "scheduler=none")
    assert res.returncode == 0, res.stderr[-2000:]
    # With a vanishing learning rate the fine-tuned net is the packed one.
    assert read_summary(tuned)["psnr_y"] == pytest.approx(read_summary(base)["psnr_y"], abs=1e-3)
    res = run_train(tmp_path / "wrong", *overrides, "model=cnn_deep", f"init={tmp_path / 'm.pt'}")
    assert res.returncode == 2 and "holds cnn_small x2, not cnn_deep x2" in res.stderr
    # The noise recipe: a 1x JPEG remover from the x2 weights (a pre-upsampling net's weights fit any scale).
    denoise = tmp_path / "denoise"
    res = run_train(denoise, "experiment=pretrained_cnn_deep_noise3", "data.scale=1", f"data.root={photo_dir}", "model=cnn_small",
                    "debug=fast", f"init={tmp_path / 'm.pt'}")  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    pack_res = run_module("src.model_file", str(denoise), "--out", str(tmp_path / "d.pt"))
    assert pack_res.returncode == 0, pack_res.stderr
    loaded = load_checkpoint(tmp_path / "d.pt")
    assert (loaded.scale, loaded.noise_level) == (1, 3) and loaded.card["degradation"]["quality"] == [25, 60]
    assert loaded.describe().endswith("trained for noise level 3")
