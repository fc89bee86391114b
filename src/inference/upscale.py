"""Upscale photos with a trained checkpoint, a model file or a bundled model, by the model's scale.

    python -m src.upscale photo.jpg --ckpt model.ckpt --out out/               # out/photo_x2.jpg
    python -m src.upscale photos/ --scale 3 --out out/                         # the best bundled model at x3
    python -m src.upscale photos/ --model cnn_small --scale 2 --out out/       # a bundled model by name (src/pretrained/)
    python -m src.upscale photos/ --ckpt model.pt --out out/ --ext .png --suffix _hd --skip-existing
    python -m src.upscale photo.png --ckpt model.ckpt --out big.webp --tta     # format from the suffix; 8-fold ensemble
    python -m src.upscale huge.tif --ckpt model.ckpt --out out/ --device cuda --precision fp16 --max-pixels 400000000

Where and how the net runs: ``--device`` (auto: CUDA, then MPS, then the CPU) and ``--precision``
(default: the device's, ``src.devices``); one line at the start names them. ``--tile auto`` picks the
tile by memory (``src.inference.tiling.auto_tile``: tiles on the CPU, the whole image on a GPU where it fits).
Progress bars (over files, and over the tiles of a photo) go to stderr when it is a terminal; stdout
lists the files written, one a line; the last stderr line counts images, seconds and images/s.

What a user expects is kept: EXIF orientation is applied; an alpha channel is upscaled separately
(MATLAB bicubic); grayscale stays grayscale; 16-bit input gives 16-bit output (PNG/TIFF gray via
Pillow, RGB(A) TIFF via tifffile, RGB(A) PNG via src/inference/png16.py: Pillow reads 16-bit RGB as 8-bit);
the output format follows the output suffix. Any size works: inference runs in tiles
(src/inference/tiling.py) written straight into the 8/16-bit output array, and memory stays flat over a folder
of any length (scripts/measure_upscale_memory.py).

Nothing is lost: before any image is upscaled, the run is refused (exit 2, one line) when an output
would overwrite an input, when two inputs would be written to one output name (two folders with the
same file names, or --ext turning a.png and a.jpg into one name), or when an output folder cannot
be written. Each output is written to a temporary file and renamed into place, so a failed or
killed write leaves no half-written file (an output of an earlier run is replaced whole, or kept
as it is with --skip-existing). A file that cannot be read (not an image, truncated, empty,
animated, over the --max-pixels limit) is reported by name and skipped; the exit status is then 1
(2: bad options or model).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from src.arch import contract
from src.data.images import IMAGE_SUFFIXES, ImageError
from src.degrade import imresize
from src.devices import describe, resolve_precision, select_device
from src.errors import ConfigError, OutputError, SrlabError
from src.inference.checkpoint import LoadedModel, best_bundled, check_noise_level, load_model
from src.inference.memory import after_photo
from src.inference.outputs import check_outputs, collect, destination
from src.inference.photos import Photo, read_photo, write_photo
from src.inference.tiling import auto_tile, iter_tiles
from src.inference.upscale_options import parse_args
from src.metrics import to_int

Tile = int | str | None  # LR px per tile side; None or 0: one pass; "auto": src.inference.tiling.auto_tile


def upscale_photo(
    model: LoadedModel,
    photo: Photo,
    tile: Tile,
    tta: bool,
    progress: bool = False,
    *,
    device: torch.device | None = None,
    precision: str = "fp32",
) -> Photo:
    """SR of a decoded photo: color through the net in tiles, alpha by bicubic, same bit depth.

    The net runs on ``device`` (default: where it is) in ``precision``; ``tile="auto"`` picks the tile
    for this photo's size by memory (whole image on a GPU where it fits).
    """
    s, top = model.scale, 255.0 if photo.bits == 8 else 65535.0
    h, w, c = photo.color.shape
    device = device or next(model.net.parameters()).device
    if tile == "auto":
        tile = auto_tile(model.net, (h, w), s, device, precision, tta)
    lr = torch.from_numpy(photo.color.astype(np.float32)).permute(2, 0, 1)[None].div_(top)
    if c == 1:
        lr = lr.expand(-1, 3, -1, -1)  # the nets are RGB; gray in, gray out (channel mean below)
    out = np.empty((h * s, w * s, c), dtype=photo.color.dtype)
    for rows, cols, t in iter_tiles(model.net, lr, s, tile, tta, progress, device=device, precision=precision):
        t = t[0].mean(0, keepdim=True) if c == 1 else t[0]
        out[rows, cols] = to_int(t, photo.bits)
    alpha = None
    if photo.alpha is not None:
        a = torch.from_numpy(photo.alpha.astype(np.float32)).permute(2, 0, 1)[None].div_(top)
        alpha = to_int(imresize(a, s)[0], photo.bits)
    return Photo(out, alpha, photo.bits)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.ext and f".{args.ext.lstrip('.').lower()}" not in IMAGE_SUFFIXES:
        print(f"error: --ext {args.ext}: not one of {', '.join(sorted(IMAGE_SUFFIXES))}", file=sys.stderr)
        return 2
    ext = f".{args.ext.lstrip('.').lower()}" if args.ext else None
    # Pillow's limit is a process global: set it for this run only (main may be called from Python).
    old_limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, args.max_pixels or None
    try:
        return _run(args, ext)
    finally:
        Image.MAX_IMAGE_PIXELS = old_limit


def _rate(n: int, seconds: float) -> str:
    if seconds <= 0:
        return "- images/s"
    rate = n / seconds
    return f"{rate:.0f} images/s" if rate >= 100 else f"{rate:.3g} images/s"  # 3 digits: 0.00502 on a slow CPU too


def _run(args: argparse.Namespace, ext: str | None) -> int:
    if args.ckpt is not None and args.model is not None:  # load_model refuses it too, in words for any entry point
        print(f"error: --ckpt {args.ckpt} and --model {args.model}: give one of them, not both", file=sys.stderr)
        return 2
    try:
        device = select_device(args.device)
        precision = resolve_precision(args.precision, device)
        name = args.model if args.ckpt or args.model else best_bundled(args.scale or 2, args.noise)
        model = load_model(args.ckpt, name, args.scale)
        if args.noise is not None:
            check_noise_level(model, args.noise)
        precision = _net_precision(model, precision, asked=args.precision)
        files = collect(args.inputs)
    except SrlabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not files:
        print(f"error: no images in {', '.join(map(str, args.inputs))}", file=sys.stderr)
        return 2
    single = len(files) == 1
    suffix = f"_x{model.scale}" if args.suffix is None else args.suffix
    jobs = [(path, destination(args.out, rel, suffix, ext, single)) for path, rel in files]
    try:
        check_outputs(jobs, args.out)
    except OutputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    # An existing output is left untouched, not even read: lexists also counts a link to elsewhere.
    todo = [(path, dest) for path, dest in jobs if not (args.skip_existing and os.path.lexists(dest))]
    return _upscale_all(args, model, device, precision, todo, skipped=len(jobs) - len(todo))


def _net_precision(model: LoadedModel, precision: str, asked: str) -> str:
    """``precision``, or fp32 where the net does not support it (a refusal if the user asked for it)."""
    if contract.supports_precision(model.net, precision):
        return precision
    if str(asked).strip().lower() != "auto":
        raise ConfigError(f"--precision {asked}: {model.name} does not support it (use fp32)")
    return "fp32"


def _upscale_all(
    args: argparse.Namespace, model: LoadedModel, device: torch.device, precision: str, todo: list[tuple[Path, Path]],
    skipped: int,
) -> int:
    """Upscale each (input, output) pair in turn; a bad file is named and skipped. Exit status: 0, 1 or 130."""
    tty = sys.stderr.isatty()
    tile = "auto" if args.tile == "auto" else args.tile or None
    where = f"{model.name} x{model.scale} ({model.path}) on {describe(device, precision)}, tile {args.tile if tile else 'none'}"
    print(f"upscale: {where}; {len(todo)} image(s){f', {skipped} skipped (output exists)' if skipped else ''}", file=sys.stderr)
    print(f"model: {model.describe()}", file=sys.stderr)
    if tile and getattr(model.net, "tiles_exact", True) is False:
        print(f"note: {model.name} mixes pixels beyond any tile margin: tiles approximate it (--tile 0: one pass)",
              file=sys.stderr)  # fmt: skip
    torch.set_grad_enabled(False)
    failed = done = 0
    t0 = time.perf_counter()
    bar = tqdm(todo, desc="images", unit="img", file=sys.stderr, disable=not tty or len(todo) < 2, dynamic_ncols=True)
    try:
        for path, dest in bar:
            try:
                _upscale_file(model, path, dest, tile, args.tta, tty, device, precision)
            except ImageError as e:
                tqdm.write(f"error: {e}", file=sys.stderr)
                failed += 1
            except (OSError, ValueError, KeyError) as e:  # Pillow: unknown suffix, unwritable folder, mode/format mismatch
                tqdm.write(f"error: {dest}: cannot write ({type(e).__name__}: {e})", file=sys.stderr)
                failed += 1
            else:
                done += 1
                tqdm.write(str(dest), file=sys.stdout)
            finally:
                after_photo()
    except KeyboardInterrupt:
        bar.close()
        print(f"interrupted: {done} of {len(todo)} image(s) written; --skip-existing continues from there", file=sys.stderr)
        return 130
    bar.close()
    seconds = time.perf_counter() - t0
    parts = [f"{done} image(s) in {seconds:.1f} s ({_rate(done, seconds)})"]
    if skipped:
        parts.append(f"{skipped} skipped (output exists)")
    if failed:
        parts.append(f"{failed} of {len(todo)} failed (named above)")
    print(f"{'error' if failed else 'upscale'}: {'; '.join(parts)}", file=sys.stderr)
    return 1 if failed else 0


def _upscale_file(
    model: LoadedModel, path: Path, dest: Path, tile: Tile, tta: bool, progress: bool, device: torch.device, precision: str
) -> None:
    """Read, upscale and write one photo. Its pixels are locals, freed on return (before the heap is trimmed)."""
    photo = read_photo(path)
    for note in photo.notes:
        tqdm.write(f"warning: {path}: {note}", file=sys.stderr)
    result = upscale_photo(model, photo, tile, tta, progress, device=device, precision=precision)
    del photo  # not needed while the output is encoded
    dest.parent.mkdir(parents=True, exist_ok=True)
    for note in write_photo(result, dest):
        tqdm.write(f"warning: {dest}: {note}", file=sys.stderr)

