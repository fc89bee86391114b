"""Image degradation and resizing on the device: HR -> LR -> pre-upsampled net input.

Resizing follows MATLAB's ``imresize`` (bicubic, a = -0.5, antialiased when shrinking, edge pixels
replicated), the protocol every published SR benchmark number uses. torch's bicubic uses a = -0.75
and would put a systematic train/test mismatch between our LR images and the benchmarks' (a few
tenths of a dB), so it is written here once. Each axis is one matrix product with a cached
weight matrix, so a whole batch resizes in two batched matmuls.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F


def _cubic(x: np.ndarray) -> np.ndarray:
    # Keys' cubic convolution kernel with a = -0.5 (MATLAB imresize's "bicubic").
    ax = np.abs(x)
    ax2, ax3 = ax**2, ax**3
    return (1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1) + (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2))


@functools.lru_cache(maxsize=64)
def resize_matrix(in_len: int, out_len: int, scale: float) -> np.ndarray:
    """The (out_len, in_len) matrix MATLAB's imresize applies along one axis (float64)."""
    kernel_width = 4.0 / scale if scale < 1 else 4.0  # antialiasing widens the kernel when shrinking
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)  # output pixel centres in input coordinates (1-based)
    left = np.floor(u - kernel_width / 2)
    taps = int(math.ceil(kernel_width)) + 2
    idx = left[:, None] + np.arange(taps)[None, :]
    dist = u[:, None] - idx
    w = scale * _cubic(scale * dist) if scale < 1 else _cubic(dist)
    w /= w.sum(axis=1, keepdims=True)
    # Replicate edge pixels: out-of-range taps add their weight to the nearest edge pixel.
    idx = np.clip(idx, 1, in_len).astype(np.int64) - 1
    m = np.zeros((out_len, in_len))
    np.add.at(m, (np.repeat(np.arange(out_len), taps), idx.ravel()), w.ravel())
    return m


def _matrix(in_len: int, out_len: int, scale: float, like: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(resize_matrix(in_len, out_len, scale)).to(like.device, like.dtype)


def imresize(x: torch.Tensor, scale: float, round_uint8: bool = False) -> torch.Tensor:
    """MATLAB-compatible bicubic resize of a float batch ``(..., H, W)`` by ``scale``.

    Rows first, then columns, as MATLAB does for equal factors. ``round_uint8`` rounds and clips to
    whole 0-255 steps after each pass, as MATLAB does for uint8 images (values in [0, 1] here).
    """
    h, w = x.shape[-2:]
    oh, ow = math.ceil(h * scale), math.ceil(w * scale)
    x = _matrix(h, oh, scale, x) @ x
    if round_uint8:
        x = x.mul(255).round_().clamp_(0, 255).div_(255)
    x = x @ _matrix(w, ow, scale, x).T
    if round_uint8:
        x = x.mul(255).round_().clamp_(0, 255).div_(255)
    return x


def to_float(hr_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 NHWC batch (as the loaders deliver it) -> float NCHW in [0, 1], channels_last in memory."""
    return hr_uint8.permute(0, 3, 1, 2).float().div_(255)


def downscale(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """The LR image a camera at 1/scale resolution would store: antialiased bicubic, 8-bit."""
    return imresize(hr, 1 / scale, round_uint8=True)


def upsample(lr: torch.Tensor, scale: int, mode: str) -> torch.Tensor:
    """Pre-upsample an LR batch to the HR size, as the nets expect their input."""
    if mode == "nearest":
        return F.interpolate(lr, scale_factor=scale, mode="nearest")
    return imresize(lr, scale).clamp_(0, 1)
