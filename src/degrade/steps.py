"""Single-image degradation steps on the CPU: uint8 ``(H, W, C)`` arrays in and out (C = 3 or 1).

Each step is what a camera or a photo site does to an image once: blur, resize, sensor noise, JPEG.
They work on whole 8-bit images, one at a time, as Pillow's codec does; ``src.degrade.degradations``
chains them with drawn settings. Pillow is the codec and the filter throughout (no hand-written JPEG).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageFilter

# Pillow's names for JPEG chroma subsampling (its `subsampling` save option takes them as they are).
SUBSAMPLING = ("4:4:4", "4:2:2", "4:2:0")


def _pil(img: np.ndarray) -> Image.Image:
    return Image.fromarray(img[..., 0] if img.shape[2] == 1 else img)


def _array(im: Image.Image, channels: int) -> np.ndarray:
    mode = "L" if channels == 1 else "RGB"
    arr = np.array(im if im.mode == mode else im.convert(mode))  # a writable copy: torch.from_numpy takes it as is
    return arr[..., None] if channels == 1 else arr


def jpeg(img: np.ndarray, quality: int, subsampling: str = "4:2:0") -> np.ndarray:
    """``img`` saved as a baseline JPEG by Pillow (libjpeg's standard tables at ``quality``) and decoded again.

    No ``optimize`` or ``progressive``: the file a camera or a photo site writes by default (neither
    changes the decoded pixels anyway). Gray images are saved as one-channel JPEGs.
    """
    buf = io.BytesIO()
    _pil(img).save(buf, format="JPEG", quality=int(quality), subsampling=subsampling)
    buf.seek(0)
    with Image.open(buf) as im:
        return _array(im, img.shape[2])


def gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of standard deviation ``sigma`` px (Pillow's extended-box approximation); 0: unchanged."""
    if sigma <= 0:
        return img
    return _array(_pil(img).filter(ImageFilter.GaussianBlur(sigma)), img.shape[2])


def resize(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize to ``(height, width)`` with Pillow's bicubic (a = -0.5, antialiased when shrinking, as MATLAB's)."""
    h, w = size
    if (h, w) == img.shape[:2]:
        return img
    return _array(_pil(img).resize((w, h), Image.Resampling.BICUBIC), img.shape[2])


def add_noise(img: np.ndarray, sigma: float, gain: float, gray: bool, rng: np.random.Generator) -> np.ndarray:
    """Sensor noise: Poisson (shot) noise of ``gain`` 8-bit levels per photon, then Gaussian (read) noise of
    standard deviation ``sigma`` levels; rounded to 8 bits. ``gray``: the same noise in every channel.

    Shot noise's variance is ``gain x level``: at gain 1 a mid-gray pixel (128) gets a standard deviation
    of ~11 levels, brighter pixels more, as on a sensor. 0 switches either off.
    """
    if sigma <= 0 and gain <= 0:
        return img
    x = img.astype(np.float32)
    shape = (*img.shape[:2], 1) if gray else img.shape
    if gain > 0:
        base = x.mean(axis=2, keepdims=True) if gray else x
        x = x + (rng.poisson(base / gain).astype(np.float32) * gain - base)
    if sigma > 0:
        x = x + rng.standard_normal(shape, dtype=np.float32) * np.float32(sigma)
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)
