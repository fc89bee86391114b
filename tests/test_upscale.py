"""src.upscale: what a user's photo keeps, folders with bad files, the CLI's exit status."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from src.checkpoint import load_checkpoint
from src.upscale import Photo, main, read_photo, upscale_photo
from tests.conftest import ROOT, synthetic_photo
from tests.test_checkpoint import make_ckpt


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return make_ckpt(tmp_path_factory.mktemp("ckpt") / "tiny.ckpt")


def test_folder_with_bad_files_writes_the_good_ones_and_fails(tmp_path, ckpt, capsys):
    src = tmp_path / "in"
    src.mkdir()
    synthetic_photo((20, 14), seed=0).save(src / "good.jpg")
    synthetic_photo((12, 12), seed=1).save(src / "good2.png")
    (src / "text.png").write_text("not an image")
    (src / "empty.jpg").write_bytes(b"")
    full = src / "good2.png"
    (src / "truncated.png").write_bytes(full.read_bytes()[: len(full.read_bytes()) // 2])
    synthetic_photo((40, 40), seed=2).save(src / "big.png")
    code = main([str(src), "--ckpt", str(ckpt), "--out", str(tmp_path / "out"), "--max-pixels", "1000"])
    err = capsys.readouterr().err
    assert code == 1
    for bad in ("text.png", "empty.jpg", "truncated.png", "big.png"):
        assert sum(bad in line for line in err.splitlines()) == 1, err
    assert "--max-pixels" in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good2_x2.png", "good_x2.jpg"]
    with Image.open(tmp_path / "out" / "good_x2.jpg") as im:
        assert (im.format, im.size) == ("JPEG", (40, 28))
    # Raising the limit lets the big photo through.
    assert main([str(src / "big.png"), "--ckpt", str(ckpt), "--out", str(tmp_path / "big.webp"), "--max-pixels", "2000"]) == 0
    with Image.open(tmp_path / "big.webp") as im:
        assert (im.format, im.size) == ("WEBP", (80, 80))
    assert Image.MAX_IMAGE_PIXELS == 89478485  # main sets Pillow's global only for its own run


def test_exif_orientation_alpha_and_gray(tmp_path, ckpt):
    model = load_checkpoint(ckpt)
    base = synthetic_photo((16, 10), seed=4)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: the camera says "rotate 90 clockwise to view"
    base.save(tmp_path / "rot.jpg", exif=exif)
    assert read_photo(tmp_path / "rot.jpg").color.shape == (16, 10, 3)

    rgba = base.convert("RGBA")
    alpha = np.zeros((10, 16), np.uint8)
    alpha[:, 8:] = 255
    rgba.putalpha(Image.fromarray(alpha))
    rgba.save(tmp_path / "a.png")
    out = upscale_photo(model, read_photo(tmp_path / "a.png"), tile=6, tta=False)
    assert out.color.shape == (20, 32, 3) and out.alpha.shape == (20, 32, 1)
    assert out.alpha[:, :14].max() == 0 and out.alpha[:, 18:].min() == 255  # bicubic edge, opaque/clear kept

    base.convert("L").save(tmp_path / "g.png")
    gray = upscale_photo(model, read_photo(tmp_path / "g.png"), tile=6, tta=False)
    assert gray.color.shape == (20, 32, 1) and gray.color.dtype == np.uint8


def test_16bit_in_16bit_out(tmp_path, ckpt):
    rng = np.random.default_rng(0)
    g16 = (rng.random((12, 10)) * 65535).astype(np.uint16)
    Image.fromarray(g16).save(tmp_path / "g16.png")
    rgb16 = (rng.random((12, 10, 3)) * 65535).astype(np.uint16)
    tifffile.imwrite(tmp_path / "c16.tif", rgb16, photometric="rgb")
    assert main([str(tmp_path / "g16.png"), str(tmp_path / "c16.tif"), "--ckpt", str(ckpt), "--out", str(tmp_path / "o")]) == 0
    with Image.open(tmp_path / "o" / "g16_x2.png") as im:
        assert im.mode.startswith("I;16") and im.size == (20, 24)
        out = np.asarray(im)
    assert len(np.unique(out)) > 256  # real 16-bit levels, not 8-bit values scaled up
    c = tifffile.imread(tmp_path / "o" / "c16_x2.tif")
    assert c.dtype == np.uint16 and c.shape == (24, 20, 3) and len(np.unique(c)) > 256


def test_16bit_photo_matches_8bit_pipeline(ckpt):
    # The same picture at 16 bits gives the same SR (to 8-bit precision): the scaling to [0, 1] is right.
    model = load_checkpoint(ckpt)
    c8 = np.asarray(synthetic_photo((12, 10), seed=5))
    out8 = upscale_photo(model, Photo(c8, None, 8), tile=None, tta=False).color.astype(float)
    out16 = upscale_photo(model, Photo(c8.astype(np.uint16) * 257, None, 16), tile=None, tta=False).color / 257.0
    assert np.abs(out16 - out8).max() <= 0.51


def test_tta_and_tiles_do_not_change_size(tmp_path, ckpt):
    model = load_checkpoint(ckpt)
    photo = Photo(np.asarray(synthetic_photo((13, 12), seed=6)), None, 8)
    a = upscale_photo(model, photo, tile=4, tta=True).color
    b = upscale_photo(model, photo, tile=None, tta=True).color
    assert a.shape == (24, 26, 3) and np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_cli_refuses_malicious_checkpoint(tmp_path):
    from tests.test_checkpoint import _Evil

    marker = tmp_path / "pwned"
    torch.save({"hyper_parameters": _Evil(str(marker))}, tmp_path / "evil.ckpt")
    synthetic_photo((12, 12), seed=0).save(tmp_path / "p.png")
    evil = tmp_path / "evil.ckpt"
    cmd = [sys.executable, "-m", "src.upscale", str(tmp_path / "p.png"), "--ckpt", str(evil), "--out", str(tmp_path)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and not marker.exists()
    assert proc.stderr.strip().count("\n") == 0 and "evil.ckpt" in proc.stderr and "refused" in proc.stderr
