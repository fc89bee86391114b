"""Photos as a user expects them kept: read with EXIF orientation, alpha, gray and 16-bit depth, and
written in the format of the output's suffix, through a temporary file (never half-written)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from src.data.images import ImageError, PixelLimitError, open_image
from src.inference.png16 import is_png16_color, read_png16_color, write_png16
from src.safe_write import replace_atomically

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


def write_photo(photo: Photo, dest: Path) -> list[str]:
    """``save_photo`` through a temporary file renamed over ``dest``: never a half-written output."""
    notes: list[str] = []
    replace_atomically(dest, lambda tmp: notes.extend(save_photo(photo, tmp)))
    return notes
