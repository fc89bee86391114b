"""Upscale photos with a trained checkpoint, a model file or a bundled model, by the model's scale.

    python -m src.upscale photo.jpg --ckpt model.ckpt --out out/               # out/photo_x2.jpg
    python -m src.upscale photos/ --model cnn_small --scale 2 --out out/       # a bundled model (src/pretrained/)
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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from tqdm import tqdm

from src.data.images import IMAGE_SUFFIXES, ImageError, PixelLimitError, list_images, open_image
from src.degrade import clear_cache, imresize
from src.devices import DEVICE_CHOICES, PRECISIONS, describe, resolve_precision, select_device
from src.errors import OutputError, SrlabError
from src.glibc import M_MMAP_THRESHOLD, M_TRIM_THRESHOLD, glibc
from src.inference.checkpoint import LoadedModel, load_model
from src.inference.png16 import is_png16_color, read_png16_color, write_png16
from src.inference.tiling import DEFAULT_TILE, auto_tile, iter_tiles
from src.safe_write import replace_atomically, unwritable_reason

_TIFF = {".tif", ".tiff"}
_ANIMATED = {"GIF", "PNG", "WEBP"}  # formats whose extra frames are an animation (an MPO's are previews)
_16BIT_GRAY = {"I;16", "I;16B", "I;16L", "I;16N", "I"}
# EXIF orientation -> numpy transform (ImageOps.exif_transpose's table, for arrays tifffile reads).
_ORIENT = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a[::-1, ::-1].swapaxes(0, 1),
    8: lambda a: np.rot90(a, 1),
}


@dataclass
class Photo:
    """A decoded photo: color (H, W, 1|3) and optional alpha (H, W, 1) as integers of ``bits`` depth.

    ``notes``: what reading it could not keep, for the user.
    """

    color: np.ndarray
    alpha: np.ndarray | None
    bits: int
    notes: list[str] = field(default_factory=list)


def _exif_orientation(im: Image.Image) -> int:
    try:
        return int(im.getexif().get(0x0112, 1))
    except Exception:  # a broken EXIF block must not lose the photo: keep it as stored
        return 1


def _read_tiff16(path: Path, orientation: int) -> Photo | None:
    """16-bit RGB(A) TIFF via tifffile (Pillow would silently reduce it to 8 bits); None if not such a file."""
    import tifffile

    arr = tifffile.imread(path)
    if arr.dtype != np.uint16 or arr.ndim != 3 or arr.shape[2] not in (3, 4):
        return None
    return _split_alpha(arr, orientation)


def _split_alpha(arr: np.ndarray, orientation: int) -> Photo:
    """A 16-bit (H, W, 3|4) array as stored -> Photo, EXIF orientation applied."""
    arr = np.ascontiguousarray(_ORIENT[orientation](arr) if orientation in _ORIENT else arr)
    return Photo(arr[..., :3], arr[..., 3:] if arr.shape[2] == 4 else None, 16)


def read_photo(path: Path) -> Photo:
    """Decode ``path`` (EXIF orientation applied); raises :class:`ImageError` naming the file."""
    try:
        with open_image(path) as im:
            if im.format in _ANIMATED and getattr(im, "is_animated", False):
                raise ImageError(f"{path}: animated ({im.n_frames} frames): only still images are upscaled, skipped")
            # Before the EXIF lookup, which makes Pillow decode a PNG (and forget how it is stored).
            png16_color = is_png16_color(im)
            gray_alpha16 = im.format == "PNG" and bool(im.tile) and im.tile[0].args == "LA;16B"  # Pillow: RGBA, high bytes
            orientation = _exif_orientation(im)
            if path.suffix.lower() in _TIFF and im.mode == "RGB" and (photo := _read_tiff16(path, orientation)):
                return photo
            if png16_color:
                return _split_alpha(read_png16_color(path), orientation)
            photo = _decode(im)
            if gray_alpha16:
                photo.color = np.ascontiguousarray(photo.color[..., :1])
                photo.notes.append("16-bit gray+alpha PNG: read as 8-bit (Pillow keeps only the high byte)")
            return photo
    except PixelLimitError as e:
        raise ImageError(f"{e} (raise the limit with --max-pixels)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise ImageError(f"{path}: cannot decode image ({type(e).__name__}: {e})") from None


def _decode(im: Image.Image) -> Photo:
    """What Pillow decodes, as a :class:`Photo` (EXIF orientation applied)."""
    im.load()
    im = ImageOps.exif_transpose(im)
    mode = im.mode
    if mode in _16BIT_GRAY:
        return Photo(np.clip(np.asarray(im, dtype=np.int64), 0, 65535).astype(np.uint16)[..., None], None, 16)
    if mode in ("P", "PA"):
        im = im.convert("RGBA" if mode == "PA" or "transparency" in im.info else "RGB")
    if im.mode in ("1", "L", "F"):
        return Photo(np.array(im.convert("L"))[..., None], None, 8)
    if im.mode in ("LA", "La"):
        arr = np.array(im.convert("LA"))
        return Photo(arr[..., :1].copy(), arr[..., 1:].copy(), 8)
    if im.mode in ("RGBA", "RGBa"):
        arr = np.array(im.convert("RGBA"))
        return Photo(arr[..., :3].copy(), arr[..., 3:].copy(), 8)
    return Photo(np.array(im.convert("RGB")), None, 8)


def _to_int(t: torch.Tensor, bits: int) -> np.ndarray:
    """SR tile (C, h, w) float -> (h, w, C) uint8/uint16, rounded like a saved image."""
    top = 255 if bits == 8 else 65535
    arr = t.clamp(0, 1).mul(top).round().permute(1, 2, 0).numpy()
    return arr.astype(np.uint8 if bits == 8 else np.uint16)


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
        out[rows, cols] = _to_int(t, photo.bits)
    alpha = None
    if photo.alpha is not None:
        a = torch.from_numpy(photo.alpha.astype(np.float32)).permute(2, 0, 1)[None].div_(top)
        alpha = _to_int(imresize(a, s)[0], photo.bits)
    return Photo(out, alpha, photo.bits)


def save_photo(photo: Photo, dest: Path) -> list[str]:
    """Write ``photo`` in the format of ``dest``'s suffix; returns notes on what that format could not keep."""
    notes: list[str] = []
    suffix = dest.suffix.lower()
    arr = photo.color if photo.alpha is None else np.concatenate([photo.color, photo.alpha], axis=2)
    if photo.bits == 16 and suffix in _TIFF and arr.shape[2] > 1:
        import tifffile

        tifffile.imwrite(dest, arr, photometric="rgb" if photo.color.shape[2] == 3 else "minisblack")
        return notes
    if photo.bits == 16 and suffix == ".png" and arr.shape[2] > 1:
        write_png16(dest, arr)  # Pillow cannot write 16-bit color or gray+alpha PNG
        return notes
    if photo.bits == 16 and arr.shape[2] == 1 and suffix in {".png", *_TIFF}:
        Image.fromarray(arr[..., 0]).save(dest)  # Pillow mode I;16
        return notes
    if photo.bits == 16:
        notes.append(f"{suffix} cannot hold 16-bit {'gray+alpha' if arr.shape[2] == 2 else 'color'} here: written as 8-bit")
        arr = np.round(arr / 257.0).astype(np.uint8)
    if suffix in {".jpg", ".jpeg"} and photo.alpha is not None:
        notes.append("JPEG has no alpha channel: alpha dropped")
        arr = arr[..., :-1]
    im = Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr, mode={1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[arr.shape[2]])
    im.save(dest)
    return notes


def _collect(inputs: list[Path]) -> list[tuple[Path, Path]]:
    """(file, path relative to its input root) for every input file or image under an input folder."""
    out = []
    for p in inputs:
        if p.is_dir():
            out += [(f, f.relative_to(p)) for f in list_images(p)]
        elif p.is_file():
            out.append((p, Path(p.name)))
        else:
            raise SrlabError(f"{p}: no such file or folder")
    return out


def _destination(out: Path, rel: Path, suffix: str, ext: str | None, single: bool) -> Path:
    if single and out.suffix.lower() in IMAGE_SUFFIXES | {".gif", ".tga"}:
        return out
    return out / rel.parent / f"{rel.stem}{suffix}{ext or rel.suffix.lower()}"


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


def check_outputs(jobs: list[tuple[Path, Path]], out: Path) -> None:
    """Refuse, before any work, a run that would lose a file: (input, output) pairs where an output is
    an input (the same file, by any path or link), two inputs share one output, or a folder cannot be
    written. Raises :class:`OutputError` (one line naming the files)."""
    inputs = {_identity(src): src for src, _ in jobs}
    by_dest: dict[str, tuple[Path, list[Path]]] = {}
    for src, dest in jobs:
        if dest.is_dir():
            raise OutputError(f"{dest}: is a folder, not a file name (for {src})")
        if (ident := _identity(dest)) is not None and ident in inputs:
            raise OutputError(f"{dest}: is the input {inputs[ident]}; upscale never overwrites an input (choose another --out)")
        by_dest.setdefault(os.path.normcase(dest.resolve()), (dest, []))[1].append(src)
    clashes = [(dest, srcs) for dest, srcs in by_dest.values() if len(srcs) > 1]
    if clashes:
        dest, srcs = clashes[0]
        more = f" (and {len(clashes) - 1} more output name(s) like it)" if len(clashes) > 1 else ""
        raise OutputError(
            f"{dest}: {', '.join(map(str, srcs[:-1]))} and {srcs[-1]} would {'both' if len(srcs) == 2 else 'all'} "
            f"be written to this one file{more}; "
            "nothing was written: upscale them into separate --out folders, or rename them"
        )
    for folder in sorted({dest.parent for _, dest in jobs}):
        if reason := unwritable_reason(folder):
            raise OutputError(f"--out {out}: {reason}")


def _write(photo: Photo, dest: Path) -> list[str]:
    """``save_photo`` through a temporary file renamed over ``dest``: never a half-written output."""
    notes: list[str] = []
    replace_atomically(dest, lambda tmp: notes.extend(save_photo(photo, tmp)))
    return notes


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one line (``error: <what>``, exit 2) like every other refusal here."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def _tile_option(text: str) -> int | str:
    if text.strip().lower() == "auto":
        return "auto"
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not auto or a tile side in LR px (0: no tiling)")
    return value


def _suffix_option(text: str) -> str:
    if any(sep in text for sep in ("/", "\\", os.sep)) or text in (".", ".."):
        raise argparse.ArgumentTypeError(f"{text!r}: a suffix is added to the file name, it cannot hold a folder")
    return text


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = _Parser(prog="python -m src.upscale", description="Upscale photos with a trained srlab model.")
    p.add_argument("inputs", nargs="+", type=Path, help="image files and/or folders of images")
    p.add_argument("--ckpt", type=Path, help="a checkpoint written by src.train or a model file (python -m src.model_file)")
    p.add_argument("--model", help="instead of --ckpt: a bundled model, e.g. cnn_deep (src/pretrained/<name>_x<scale>.pt)")
    p.add_argument("--scale", type=int, help="with --model: its scale (default 2); with --ckpt: the scale it must have")
    p.add_argument("--out", required=True, type=Path, help="output folder (or an output file name for one input)")
    p.add_argument("--ext", help="output format for every file, e.g. .png (default: the input's)")
    p.add_argument(
        "--suffix",
        type=_suffix_option,
        help="added to each output's name: --suffix _hd writes photo_hd.png (default _x<scale>; '' keeps the input's name)",
    )
    p.add_argument("--skip-existing", action="store_true", help="leave outputs that exist as they are (counted at the end)")
    p.add_argument("--device", default="auto", help=f"where the net runs: {DEVICE_CHOICES} (default auto: CUDA, MPS, CPU)")
    p.add_argument(
        "--precision",
        default="auto",
        help=f"the net's precision: {', '.join(PRECISIONS)} (default: the device's fastest within 0.02 dB of fp32)",
    )
    p.add_argument(
        "--tile",
        type=_tile_option,
        default="auto",
        help=f"LR px per tile side; auto (default): by memory ({DEFAULT_TILE} on the CPU, the whole image on a GPU "
        "where it fits); 0: no tiling",
    )
    p.add_argument("--tta", action="store_true", help="average the 8 flips/rotations (8x slower, a little sharper)")
    p.add_argument(
        "--max-pixels",
        type=int,
        default=Image.MAX_IMAGE_PIXELS,
        help=f"refuse inputs with more pixels (Pillow's decompression-bomb guard, default {Image.MAX_IMAGE_PIXELS}; 0: no limit)",
    )
    return p.parse_args(argv)


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


_LIBC = glibc()


# Shape-keyed caches of the CPU convolutions (oneDNN's primitives, PyTorch's ideep descriptors; 1024
# entries each by default). Every photo size brings new edge-tile shapes, so at the defaults they grow
# ~0.6 MB a photo for hundreds of photos; 64 holds all of one photo's tile shapes (<= 4 shapes x ~10 layers).
CONV_CACHE_ENTRIES = 64


def bound_memory(mmap_mb: int = 1) -> None:
    """Process-wide settings that keep memory flat over a folder of photos of many sizes.

    Call before the first convolution (the caches read their capacity then); a capacity already in
    the environment is kept. glibc: by default it raises its mmap threshold to the size of each large
    block freed (up to 32 MB), so later image buffers and feature maps come from the heap, leave
    holes of every size in it and RSS grows with the number of files (1.77 GB for Urban100's 100
    images). Blocks of ``mmap_mb`` or more get their own mappings, returned to the OS when freed, as
    evaluation does (``callbacks.heap.eval_mmap_mb``); the extra page faults cost ~1 % of the CPU time
    (12 photos of 0.8 MP out: 13.2 vs 12.0 s of system time in ~125 s). No-op parts off glibc.
    """
    for var in ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "LRU_CACHE_CAPACITY"):
        os.environ.setdefault(var, str(CONV_CACHE_ENTRIES))
    if _LIBC is not None:
        _LIBC.mallopt(M_MMAP_THRESHOLD, mmap_mb << 20)
        _LIBC.mallopt(M_TRIM_THRESHOLD, mmap_mb << 20)


def _after_photo() -> None:
    """Between photos: drop the resize weights prepared for this photo's tile sizes (the next photo's
    edge tiles have others; rebuilding them costs milliseconds) and hand the heap's free pages back."""
    clear_cache()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _rate(n: int, seconds: float) -> str:
    if seconds <= 0:
        return "- images/s"
    rate = n / seconds
    return f"{rate:.0f} images/s" if rate >= 100 else f"{rate:.3g} images/s"  # 3 digits: 0.00502 on a slow CPU too


def _run(args: argparse.Namespace, ext: str | None) -> int:
    if (args.ckpt is None) == (args.model is None):  # load_model refuses these too, in words for any entry point
        from src.inference.checkpoint import bundled_models

        have = f"bundled: {', '.join(bundled_models()) or 'none'}"
        what = "give one of them, not both" if args.ckpt else "give one"
        print(f"error: --ckpt <checkpoint or model file> or --model <name> [--scale N]: {what} ({have})", file=sys.stderr)
        return 2
    try:
        device = select_device(args.device)
        precision = resolve_precision(args.precision, device)
        model = load_model(args.ckpt, args.model, args.scale)
        files = _collect(args.inputs)
    except SrlabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not files:
        print(f"error: no images in {', '.join(map(str, args.inputs))}", file=sys.stderr)
        return 2
    single = len(files) == 1
    suffix = f"_x{model.scale}" if args.suffix is None else args.suffix
    jobs = [(path, _destination(args.out, rel, suffix, ext, single)) for path, rel in files]
    try:
        check_outputs(jobs, args.out)
    except OutputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    # An existing output is left untouched, not even read: lexists also counts a link to elsewhere.
    todo = [(path, dest) for path, dest in jobs if not (args.skip_existing and os.path.lexists(dest))]
    skipped = len(jobs) - len(todo)
    tty = sys.stderr.isatty()
    tile = "auto" if args.tile == "auto" else args.tile or None
    where = f"{model.name} x{model.scale} ({model.path}) on {describe(device, precision)}, tile {args.tile if tile else 'none'}"
    print(f"upscale: {where}; {len(todo)} image(s){f', {skipped} skipped (output exists)' if skipped else ''}", file=sys.stderr)
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
                _after_photo()
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
    for note in _write(result, dest):
        tqdm.write(f"warning: {dest}: {note}", file=sys.stderr)

