"""src.upscale: what a user's photo keeps, folders with bad files, the CLI's exit status."""

from __future__ import annotations

import re
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

import src.inference.checkpoint as checkpoint_module
import src.inference.model_file as model_file_module
import src.inference.upscale as upscale_module
from src.devices import default_precision, describe
from src.inference.checkpoint import BUNDLED_DIR, load_checkpoint
from src.inference.upscale import Photo, main, read_photo, upscale_photo
from tests.bad_images import png16, png_bit_depth, write_battery
from tests.commands import run_module
from tests.conftest import synthetic_photo
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
    proc = run_module("src.upscale", str(tmp_path / "p.png"), "--ckpt", str(evil), "--out", str(tmp_path), timeout=120)
    assert proc.returncode == 2 and not marker.exists()
    assert proc.stderr.strip().count("\n") == 0 and "evil.ckpt" in proc.stderr and "refused" in proc.stderr


def _count_upscales(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = upscale_module.upscale_photo
    monkeypatch.setattr(upscale_module, "upscale_photo", lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls


def _error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.strip()]


def test_two_inputs_for_one_output_name_are_refused_before_any_work(tmp_path, ckpt, capsys, monkeypatch):
    calls = _count_upscales(monkeypatch)
    for folder, seed in (("100", 0), ("101", 1)):
        (tmp_path / "dcim" / folder).mkdir(parents=True)
        synthetic_photo((12, 10), seed=seed).save(tmp_path / "dcim" / folder / "a.png")
    out = tmp_path / "out"
    assert main([str(tmp_path / "dcim" / "100"), str(tmp_path / "dcim" / "101"), "--ckpt", str(ckpt), "--out", str(out)]) == 2
    err = _error_lines(capsys.readouterr().err)
    assert len(err) == 1 and "100/a.png" in err[0] and "101/a.png" in err[0] and "a_x2.png" in err[0], err
    # --ext maps a.png and a.jpg to one name.
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    synthetic_photo((12, 10), seed=2).save(mixed / "a.png")
    synthetic_photo((12, 10), seed=3).save(mixed / "a.jpg")
    assert main([str(mixed), "--ckpt", str(ckpt), "--out", str(out), "--ext", ".png"]) == 2
    err = _error_lines(capsys.readouterr().err)
    assert len(err) == 1 and "a.png" in err[0] and "a.jpg" in err[0], err
    assert calls == [] and not out.exists()


def test_out_that_is_an_input_is_refused_and_the_input_kept(tmp_path, ckpt, capsys, monkeypatch):
    calls = _count_upscales(monkeypatch)
    photo = tmp_path / "self.png"
    synthetic_photo((12, 10), seed=0).save(photo)
    before = photo.read_bytes()
    assert main([str(photo), "--ckpt", str(ckpt), "--out", str(photo)]) == 2
    err = _error_lines(capsys.readouterr().err)
    assert len(err) == 1 and "self.png" in err[0] and "never overwrites an input" in err[0], err
    # A folder upscaled into itself, holding a file named like another one's output (also through a link).
    synthetic_photo((12, 10), seed=1).save(tmp_path / "self_x2.png")
    (tmp_path / "link.png").symlink_to(photo)
    assert main([str(tmp_path), "--ckpt", str(ckpt), "--out", str(tmp_path)]) == 2
    assert "self_x2.png" in capsys.readouterr().err
    assert main([str(photo), "--ckpt", str(ckpt), "--out", str(tmp_path / "link.png")]) == 2
    assert photo.read_bytes() == before and calls == []


def test_a_failed_write_leaves_the_earlier_output_whole(tmp_path, ckpt, monkeypatch):
    photo, out = tmp_path / "p.png", tmp_path / "out"
    synthetic_photo((12, 10), seed=0).save(photo)
    assert main([str(photo), "--ckpt", str(ckpt), "--out", str(out)]) == 0
    before = (out / "p_x2.png").read_bytes()

    def dies_mid_write(self, fp, *args, **kwargs):
        Path(fp).write_bytes(b"\x89PNG half an image")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", dies_mid_write)
    assert main([str(photo), "--ckpt", str(ckpt), "--out", str(out)]) == 1
    assert (out / "p_x2.png").read_bytes() == before
    assert [p.name for p in out.iterdir()] == ["p_x2.png"]  # no temporary file left behind


def test_unusable_out_is_refused_before_any_image_is_upscaled(tmp_path, ckpt, capsys, monkeypatch):
    calls = _count_upscales(monkeypatch)
    src = tmp_path / "in"
    src.mkdir()
    for i in range(3):
        synthetic_photo((12, 10), seed=i).save(src / f"p{i}.png")
    (tmp_path / "notes.txt").write_text("a file, not a folder")
    assert main([str(src), "--ckpt", str(ckpt), "--out", str(tmp_path / "notes.txt" / "out")]) == 2
    err = _error_lines(capsys.readouterr().err)
    assert len(err) == 1 and "notes.txt" in err[0] and "not a folder" in err[0], err
    assert calls == []


def _png16_all_filters(path: Path, arr: np.ndarray) -> None:
    # Rows with each of PNG's five filters, as other encoders write them (the decoder must undo each).
    h, w, c = arr.shape
    rows = arr.astype(">u2").reshape(h, w * c).view(np.uint8).astype(int)
    bpp, prev, data = 2 * c, np.zeros(rows.shape[1], int), b""
    for y, row in enumerate(rows):
        kind = y % 5
        out = []
        for x, v in enumerate(row):
            a, b, cc = (row[x - bpp] if x >= bpp else 0), prev[x], (prev[x - bpp] if x >= bpp else 0)
            p = a + b - cc
            paeth = a if abs(p - a) <= abs(p - b) and abs(p - a) <= abs(p - cc) else b if abs(p - b) <= abs(p - cc) else cc
            out.append((v - (0, a, b, (a + b) // 2, paeth)[kind]) % 256)
        data += bytes([kind, *out])
        prev = row

    def chunk(k: bytes, d: bytes) -> bytes:
        return struct.pack(">I", len(d)) + k + d + struct.pack(">I", zlib.crc32(k + d))

    ihdr = struct.pack(">IIBBBBB", w, h, 16, {3: 2, 4: 6}[c], 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(data)) + chunk(b"IEND", b""))


def test_16bit_rgb_png_stays_16bit(tmp_path, ckpt):
    rng = np.random.default_rng(1)
    rgb16 = rng.integers(0, 65536, (12, 10, 3), dtype=np.uint16)
    png16(tmp_path / "c16.png", rgb16)
    tifffile.imwrite(tmp_path / "c16.tif", rgb16, photometric="rgb")  # the 16-bit path that already worked
    rgba16 = rng.integers(0, 65536, (12, 10, 4), dtype=np.uint16)
    _png16_all_filters(tmp_path / "a16.png", rgba16)
    np.testing.assert_array_equal(np.concatenate([(p := read_photo(tmp_path / "a16.png")).color, p.alpha], axis=2), rgba16)
    np.testing.assert_array_equal(read_photo(tmp_path / "c16.png").color, rgb16)
    ins = [str(tmp_path / n) for n in ("c16.png", "c16.tif", "a16.png")]
    assert main([*ins, "--ckpt", str(ckpt), "--out", str(tmp_path / "o")]) == 0
    assert png_bit_depth(tmp_path / "o" / "c16_x2.png") == (16, 2) and png_bit_depth(tmp_path / "o" / "a16_x2.png") == (16, 6)
    out = read_photo(tmp_path / "o" / "c16_x2.png")
    assert out.bits == 16 and out.color.shape == (24, 20, 3) and len(np.unique(out.color)) > 256
    np.testing.assert_array_equal(out.color, tifffile.imread(tmp_path / "o" / "c16_x2.tif"))  # same as the TIFF route
    assert read_photo(tmp_path / "o" / "a16_x2.png").alpha.dtype == np.uint16


def test_animated_gif_is_refused_by_name(tmp_path, ckpt, capsys):
    frames = [synthetic_photo((12, 10), seed=i) for i in range(3)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    frames[0].save(tmp_path / "still.gif")
    assert main([str(tmp_path / "anim.gif"), str(tmp_path / "still.gif"), "--ckpt", str(ckpt), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "anim.gif: animated (3 frames)" in err
    assert [p.name for p in (tmp_path / "o").iterdir()] == ["still_x2.gif"]


# --- device, precision, tiles, names, progress and the summary -------------------------------------------


@pytest.fixture
def no_gpu(monkeypatch):
    from src import devices

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(devices, "mps_available", lambda: False)


def _photos(folder: Path, n: int, size: tuple[int, int] = (14, 10)) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"p{i}.png" for i in range(n)]
    for i, p in enumerate(paths):
        synthetic_photo(size, seed=i).save(p)
    return paths


def _start_and_end(err: str) -> tuple[str, str]:
    lines = _error_lines(err)
    assert lines[0].startswith("upscale: "), lines
    return lines[0], lines[-1]


_SUMMARY = re.compile(r"^upscale: (\d+) image\(s\) in (\d+\.\d) s \(([\d.e+-]+) images/s\)(.*)$")


def test_start_line_names_device_and_precision_and_the_summary_counts(tmp_path, ckpt, capsys, no_gpu):
    paths = _photos(tmp_path / "in", 3)
    assert main([str(tmp_path / "in"), "--ckpt", str(ckpt), "--out", str(tmp_path / "out")]) == 0
    cap = capsys.readouterr()
    start, end = _start_and_end(cap.err)
    # auto picks the CPU here (no CUDA, no MPS), in the CPU's default precision.
    assert f"on {describe(torch.device('cpu'), default_precision(torch.device('cpu')))}" in start and "3 image(s)" in start
    m = _SUMMARY.match(end)
    assert m and m.group(1) == "3" and m.group(4) == "" and float(m.group(3)) > 0, end
    # The model's card on the second line; no progress bars when stderr is not a terminal.
    lines = _error_lines(cap.err)
    assert len(lines) == 3 and lines[1] == "model: tiny x2 (CNNSmall): 1,827 params, 3 input channel(s), from tiny.ckpt"
    # stdout: the files written, one a line, nothing else.
    assert cap.out.splitlines() == [str(tmp_path / "out" / f"{p.stem}_x2.png") for p in paths]


def test_progress_bars_on_a_terminal(tmp_path, ckpt, capsys, monkeypatch):
    _photos(tmp_path / "in", 2, size=(30, 20))
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert main([str(tmp_path / "in"), "--ckpt", str(ckpt), "--out", str(tmp_path / "out"), "--tile", "8"]) == 0
    err = capsys.readouterr().err
    assert "images:" in err and "2/2" in err  # the files' bar stays; the tiles' bar is cleared after each photo
    assert "tiles:" in err and "/12 [" in err  # 30x20 in 8 px tiles: 4 x 3
    assert _SUMMARY.match(err.rstrip().splitlines()[-1])


@pytest.mark.parametrize(
    ("option", "value", "says"),
    [
        ("--device", "cuda", "--device=cuda: CUDA is not available"),
        ("--device", "cuda:1", "--device=cuda:1: CUDA is not available"),
        ("--device", "mps", "--device=mps: MPS is not available"),
        ("--device", "tpu", "--device=tpu: not a device"),
        ("--precision", "fp64", "--precision=fp64: not a precision"),
        ("--tile", "-3", "argument --tile: '-3' is not auto or a tile side"),
        ("--suffix", "../up", "argument --suffix: '../up'"),
    ],
)
def test_bad_options_are_one_line_before_any_work(tmp_path, ckpt, capsys, monkeypatch, no_gpu, option, value, says):
    calls = _count_upscales(monkeypatch)
    _photos(tmp_path / "in", 1)
    try:
        code = main([str(tmp_path / "in"), "--ckpt", str(ckpt), "--out", str(tmp_path / "out"), option, value])
    except SystemExit as e:  # argparse's own errors exit
        code = e.code
    assert code == 2
    err = _error_lines(capsys.readouterr().err)
    assert len(err) == 1 and err[0].startswith(f"error: {says}"), err
    assert calls == [] and not (tmp_path / "out").exists()


def test_cli_unavailable_device_exit_status(tmp_path, ckpt):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    _photos(tmp_path / "in", 1)
    args = (str(tmp_path / "in"), "--ckpt", str(ckpt), "--out", str(tmp_path / "o"), "--device", "cuda")
    proc = run_module("src.upscale", *args, timeout=120)
    assert proc.returncode == 2 and _error_lines(proc.stderr) == [proc.stderr.strip()] and "--device=cuda" in proc.stderr
    assert proc.stdout == "" and not (tmp_path / "o").exists()


def test_precision_option_runs_the_net_in_it(tmp_path, ckpt, capsys, monkeypatch):
    _photos(tmp_path / "in", 1)
    seen: list[str] = []
    real = upscale_module.iter_tiles
    monkeypatch.setattr(upscale_module, "iter_tiles", lambda *a, **k: seen.append(k["precision"]) or real(*a, **k))
    outs = {}
    for prec in ("fp32", "bf16"):
        dest = tmp_path / f"{prec}.png"
        assert main([str(tmp_path / "in"), "--ckpt", str(ckpt), "--out", str(dest), "--precision", prec, "--device", "cpu"]) == 0
        start, _ = _start_and_end(capsys.readouterr().err)
        assert start.split(" on ")[1].startswith("cpu (") and f", {prec}, tile" in start, start
        outs[prec] = np.asarray(Image.open(dest), dtype=int)
    assert seen == ["fp32", "bf16"]
    diff = np.abs(outs["bf16"] - outs["fp32"])
    assert 0 < diff.max() <= 8, diff.max()  # bf16 really ran (8-bit mantissas), and stays close to fp32


def test_tile_auto_tiles_on_the_cpu_and_equals_the_whole_image(ckpt, monkeypatch):
    model = load_checkpoint(ckpt)
    photo = Photo(np.asarray(synthetic_photo((37, 23), seed=8)), None, 8)
    monkeypatch.setattr("src.inference.tiling.DEFAULT_TILE", 10)  # the CPU's tile, small enough to cut this photo
    tiles: list[object] = []
    real = upscale_module.iter_tiles
    spy = lambda net, lr, s, tile, *a, **k: tiles.append(tile) or real(net, lr, s, tile, *a, **k)  # noqa: E731
    monkeypatch.setattr(upscale_module, "iter_tiles", spy)
    auto = upscale_photo(model, photo, tile="auto", tta=False, device=torch.device("cpu")).color
    whole = upscale_photo(model, photo, tile=None, tta=False).color
    assert tiles == [10, None]
    assert np.abs(auto.astype(int) - whole.astype(int)).max() <= 1  # equal but for rounding ties (tiles: 1e-5)
    assert (auto == whole).mean() > 0.999


def test_suffix_names_the_outputs(tmp_path, ckpt, capsys):
    paths = _photos(tmp_path / "in", 2)
    assert main([str(tmp_path / "in"), "--ckpt", str(ckpt), "--out", str(tmp_path / "a"), "--suffix", "_hd", "--ext", "jpg"]) == 0
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["p0_hd.jpg", "p1_hd.jpg"]
    assert main([str(tmp_path / "in"), "--ckpt", str(ckpt), "--out", str(tmp_path / "b"), "--suffix", ""]) == 0
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["p0.png", "p1.png"]
    capsys.readouterr()
    # An empty suffix into the inputs' own folder would overwrite them: refused, inputs kept.
    before = [p.read_bytes() for p in paths]
    assert main([str(tmp_path / "in"), "--ckpt", str(ckpt), "--out", str(tmp_path / "in"), "--suffix", ""]) == 2
    err = _error_lines(capsys.readouterr().err)
    assert len(err) == 1 and "never overwrites an input" in err[0], err
    assert [p.read_bytes() for p in paths] == before


def test_skip_existing_leaves_outputs_untouched_and_counts_them(tmp_path, ckpt, capsys):
    _photos(tmp_path / "in", 3)
    out = tmp_path / "out"
    out.mkdir()
    (out / "p0_x2.png").write_bytes(b"an earlier output, kept as it is")
    (out / "p2_x2.png").symlink_to(tmp_path / "elsewhere.png")  # a link counts as existing too, even a broken one
    assert main([str(tmp_path / "in"), "--ckpt", str(ckpt), "--out", str(out), "--skip-existing"]) == 0
    cap = capsys.readouterr()
    start, end = _start_and_end(cap.err)
    assert "1 image(s), 2 skipped (output exists)" in start
    m = _SUMMARY.match(end)
    assert m and m.group(1) == "1" and m.group(4) == "; 2 skipped (output exists)", end
    assert (out / "p0_x2.png").read_bytes() == b"an earlier output, kept as it is"
    assert (out / "p2_x2.png").is_symlink() and not (tmp_path / "elsewhere.png").exists()
    assert cap.out.splitlines() == [str(out / "p1_x2.png")]
    # The checks before any work still hold: an output that is an input is refused, not skipped.
    into_inputs = ["--out", str(tmp_path / "in"), "--suffix", "", "--skip-existing"]
    assert main([str(tmp_path / "in"), "--ckpt", str(ckpt), *into_inputs]) == 2
    # Without the option an existing output is replaced (whole, through a temporary file).
    assert main([str(tmp_path / "in"), "--ckpt", str(ckpt), "--out", str(out)]) == 0
    with Image.open(out / "p0_x2.png") as im:
        assert im.size == (28, 20)


def test_interrupted_run_says_how_far_it_got_and_skip_existing_continues(tmp_path, ckpt, capsys, monkeypatch):
    _photos(tmp_path / "in", 3)
    real, calls = upscale_module._upscale_file, []

    def interrupted_at_the_second(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(upscale_module, "_upscale_file", interrupted_at_the_second)
    args = [str(tmp_path / "in"), "--ckpt", str(ckpt), "--out", str(tmp_path / "out"), "--skip-existing"]
    assert main(args) == 130
    err = _error_lines(capsys.readouterr().err)
    assert err[-1] == "interrupted: 1 of 3 image(s) written; --skip-existing continues from there", err
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["p0_x2.png"]
    monkeypatch.setattr(upscale_module, "_upscale_file", real)
    assert main(args) == 0
    assert _error_lines(capsys.readouterr().err)[-1].endswith("; 1 skipped (output exists)")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["p0_x2.png", "p1_x2.png", "p2_x2.png"]


def test_skip_existing_reruns_the_bad_image_battery(tmp_path, capsys):
    # The shared battery through --skip-existing and --suffix: a rerun skips what was written and
    # names the bad files again (they have no output to skip).
    d = tmp_path / "battery"
    kinds = write_battery(d)
    (d / "huge_valid.png").unlink()  # big: tested by tests/test_bad_images.py, too slow to run twice here
    del kinds["huge_valid.png"]
    ckpt = make_ckpt(tmp_path / "tiny.ckpt")
    args = [str(d), "--ckpt", str(ckpt), "--out", str(tmp_path / "out"), "--suffix", "_s", "--skip-existing"]
    assert main(args) == 1
    first = capsys.readouterr().err
    good = [n for n, k in kinds.items() if k not in ("bad", "animated")]
    assert sorted(p.name.rsplit("_s.", 1)[0] for p in (tmp_path / "out").iterdir()) == sorted(Path(n).stem for n in good)
    assert main(args) == 1
    second = capsys.readouterr().err
    for name, kind in kinds.items():
        if kind in ("bad", "animated"):
            assert name in first and name in second, name
    bad = sum(k in ("bad", "animated") for k in kinds.values())
    assert second.rstrip().splitlines()[-1].endswith(f"{len(good)} skipped (output exists); {bad} of {bad} failed (named above)")


def _bundled(tmp_path: Path, monkeypatch, ckpt: Path) -> Path:
    folder = tmp_path / "pretrained"
    folder.mkdir()
    torch.save(model_file_module.pack(torch.load(ckpt, weights_only=True), {"data": "tiny"}, fp16=False), folder / "tiny_x2.pt")
    monkeypatch.setattr(checkpoint_module, "BUNDLED_DIR", folder)
    return folder


def test_bundled_model_by_name_and_scale(tmp_path, ckpt, capsys, monkeypatch):
    _bundled(tmp_path, monkeypatch, ckpt)
    _photos(tmp_path / "in", 1)
    run = [str(tmp_path / "in" / "p0.png"), "--out"]
    assert main([*run, str(tmp_path / "m.png"), "--model", "tiny", "--scale", "2"]) == 0
    assert main([*run, str(tmp_path / "m2.png"), "--model", "tiny"]) == 0  # scale 2 by default
    assert main([*run, str(tmp_path / "c.png"), "--ckpt", str(ckpt)]) == 0
    start = _error_lines(capsys.readouterr().err)[0]
    assert start.startswith("upscale: tiny x2 (") and "tiny_x2.pt" in start
    c = (tmp_path / "c.png").read_bytes()
    assert (tmp_path / "m.png").read_bytes() == c == (tmp_path / "m2.png").read_bytes()  # the same net
    for bad, says in [
        (["--model", "tiny", "--scale", "3"], ("tiny x3", "no such bundled model", "bundled: tiny x2")),
        (["--model", "tiny", "--ckpt", str(ckpt)], ("--ckpt", "--model", "give one of them, not both")),
        (["--ckpt", str(ckpt), "--scale", "4"], ("--scale 4:", str(ckpt), "holds a x2 model")),
        (["--scale", "3"], ("--scale 3: no bundled model at x3", "bundled: tiny x2")),
    ]:
        assert main([*run, str(tmp_path / "x.png"), *bad]) == 2
        err = _error_lines(capsys.readouterr().err)
        assert len(err) == 1 and all(part in err[0] for part in says), err
    assert not (tmp_path / "x.png").exists()


def _noise_model(ckpt: Path, out: Path, level: int | None, scale: int = 2, val: float = 0.0) -> Path:
    """A model file of ``ckpt``'s net whose card says it removes noise ``level`` (the net reads the
    pre-resized image, so the same weights serve any scale)."""
    pack = model_file_module.pack(torch.load(ckpt, weights_only=True), {"val_psnr_y": val, "noise_level": level}, fp16=False)
    torch.save(pack | {"scale": scale, "name": out.stem.rsplit("_x", 1)[0]}, out)
    return out


def test_noise_level_picks_the_bundled_model_trained_for_it(tmp_path, ckpt, capsys, monkeypatch):
    folder = _bundled(tmp_path, monkeypatch, ckpt)  # tiny x2: clean
    other = make_ckpt(tmp_path / "other.ckpt", seed=1)
    for name, scale in [("dejpeg3_x2", 2), ("dejpeg3_x1", 1)]:  # the best validation PSNR: only --noise picks them
        _noise_model(other, folder / f"{name}.pt", 3, scale, val=99.0)
    _photos(tmp_path / "in", 1)
    src = str(tmp_path / "in" / "p0.png")
    assert main([src, "--out", str(tmp_path / "clean.png")]) == 0
    assert "tiny_x2.pt" in _error_lines(capsys.readouterr().err)[0]
    assert main([src, "--out", str(tmp_path / "n3.png"), "--noise", "3"]) == 0
    assert "dejpeg3_x2.pt" in _error_lines(capsys.readouterr().err)[0]
    assert main([src, "--out", str(tmp_path / "n3x1.png"), "--noise", "3", "--scale", "1"]) == 0
    assert "dejpeg3_x1.pt" in _error_lines(capsys.readouterr().err)[0]
    size = Image.open(src).size
    assert Image.open(tmp_path / "n3.png").size == (2 * size[0], 2 * size[1]) and Image.open(tmp_path / "n3x1.png").size == size
    assert (tmp_path / "n3.png").read_bytes() != (tmp_path / "clean.png").read_bytes()
    # A training checkpoint of a noise run carries its level (its hyper-parameters): --noise accepts it.
    noisy_ckpt = torch.load(other, weights_only=True)
    noisy_ckpt["hyper_parameters"]["noise_level"] = 3
    torch.save(noisy_ckpt, tmp_path / "noisy.ckpt")
    assert main([src, "--out", str(tmp_path / "c3.png"), "--noise", "3", "--ckpt", str(tmp_path / "noisy.ckpt")]) == 0
    assert (tmp_path / "c3.png").read_bytes() == (tmp_path / "n3.png").read_bytes()
    capsys.readouterr()
    for bad, says in [
        (["--noise", "1"], "--noise 1 --scale 2: no bundled model for noise level 1 at x2 (bundled noise models: "
                           "level 3 x1, level 3 x2)"),
        (["--noise", "3", "--model", "tiny"], "--noise 3: tiny_x2.pt was trained for clean LR (no noise level)"),
        (["--noise", "1", "--ckpt", str(tmp_path / "noisy.ckpt")], "--noise 1: noisy.ckpt was trained for noise level 3"),
        (["--noise", "3", "--ckpt", str(ckpt)], "--noise 3: tiny.ckpt was trained for clean LR"),
        (["--noise", "5"], "argument --noise: invalid choice: 5"),
        (["--scale", "1", "--ckpt", str(ckpt)], f"--scale 1: {ckpt} holds a x2 model"),
        (["--scale", "1"], "--scale 1: no bundled model at x1"),  # the x1 model removes noise: only --noise picks it
    ]:
        try:
            code = main([src, "--out", str(tmp_path / "x.png"), *bad])
        except SystemExit as e:  # argparse's refusal
            code = e.code
        assert code == 2
        err = _error_lines(capsys.readouterr().err)
        assert len(err) == 1 and says in err[0], err
    assert not (tmp_path / "x.png").exists()


def test_without_a_model_the_best_bundled_one_at_the_scale_runs(tmp_path, ckpt, capsys, monkeypatch):
    folder = _bundled(tmp_path, monkeypatch, ckpt)
    other = make_ckpt(tmp_path / "other.ckpt", seed=1)
    for name, val in [("weak", 20.0), ("strong", 30.0)]:  # by the validation PSNR-Y on their cards
        pack = model_file_module.pack(torch.load(other, weights_only=True), {"val_psnr_y": val}, fp16=False)
        torch.save(pack | {"name": name}, folder / f"{name}_x2.pt")
    _photos(tmp_path / "in", 1)
    assert main([str(tmp_path / "in" / "p0.png"), "--out", str(tmp_path / "auto.png")]) == 0
    assert "strong_x2.pt" in _error_lines(capsys.readouterr().err)[0]
    assert main([str(tmp_path / "in" / "p0.png"), "--out", str(tmp_path / "named.png"), "--model", "strong"]) == 0
    assert (tmp_path / "auto.png").read_bytes() == (tmp_path / "named.png").read_bytes()


def test_help_names_the_model_options(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "a checkpoint written by src.train or a model file (python -m src.model_file)" in text
    for option in ("--model", "--scale", "--device", "--precision", "--suffix", "--skip-existing", "--tile"):
        assert option in text


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_the_cpu(tmp_path, ckpt, capsys):
    _photos(tmp_path / "in", 2, size=(40, 30))
    base = [str(tmp_path / "in"), "--ckpt", str(ckpt)]
    assert main([*base, "--out", str(tmp_path / "cpu"), "--device", "cpu", "--precision", "fp32"]) == 0
    for prec in ("fp32", "fp16", "auto"):
        out = tmp_path / f"cuda_{prec}"
        assert main([*base, "--out", str(out), "--device", "cuda", "--precision", prec]) == 0
        start = _error_lines(capsys.readouterr().err)[0]
        assert " on cuda:" in start, start
        for name in ("p0_x2.png", "p1_x2.png"):
            a = np.asarray(Image.open(out / name), dtype=int)
            b = np.asarray(Image.open(tmp_path / "cpu" / name), dtype=int)
            assert np.abs(a - b).max() <= (1 if prec == "fp32" else 8), (prec, name)


@pytest.mark.parametrize("bundled", sorted(BUNDLED_DIR.glob("*_x*.pt")), ids=lambda p: p.stem)
def test_each_shipped_model_upscales_by_name(bundled, tmp_path, capsys):
    name, scale = bundled.stem.rsplit("_x", 1)
    _photos(tmp_path / "in", 1)
    assert main([str(tmp_path / "in"), "--model", name, "--scale", scale, "--out", str(tmp_path / "out")]) == 0
    assert _error_lines(capsys.readouterr().err)[0].startswith(f"upscale: {name} x{scale} (")
    with Image.open(tmp_path / "out" / f"p0_x{scale}.png") as im:
        assert im.size == (14 * int(scale), 10 * int(scale))
