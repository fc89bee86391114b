"""Image degradation and resizing on the device: HR -> LR -> pre-upsampled net input.

This module is the bicubic degradation (the paper's, srlab's default). The other degradations
(``degradation=jpeg|noise|real``) are in ``src.degrade.degradations``; they run on the CPU, in the
data loader, from the single-image steps of ``src.degrade.steps``.

Resizing follows MATLAB's ``imresize`` (bicubic, a = -0.5, antialiased when shrinking, edge pixels
replicated), the protocol every published SR benchmark number uses. torch's bicubic uses a = -0.75
and would put a systematic train/test mismatch between our LR images and the benchmarks' (a few
tenths of a dB), so it is written here once.

Each axis is a linear map with a handful of taps per output pixel (4 when enlarging, 4/scale + 2
when shrinking). Short axes (training patches, tiles) use it as one dense matrix product: fastest
there, and the matrix is small. Long axes use it block-banded: output pixels in blocks of ``B``,
each block a small matrix over the window of inputs it reads, so weights and work are
O(taps x length), not O(length^2). Both forms hold the very same float64 weights; they differ only
in the order a matrix product sums them (<= 1 ulp, as the dense product itself varies with the
array's other dimension). Prepared weights are cached per (sizes, scale, dtype, device), bounded
in bytes.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict

import numpy as np
import torch
import torch.nn.functional as F

# Dense matrices up to this many entries (256 -> 512 px: 1 MB in float64): training patches and
# inference tiles (192 px + margins) keep the dense product, bit for bit as before, and it is as
# fast as the banded form up to about there (scripts/bench_infer.py --resize measures both).
DENSE_MAX_ENTRIES = 256 * 512
# Prepared weights kept across calls (device tensors), least recently used dropped first.
CACHE_BYTES = 32 * 2**20


def _cubic(x: np.ndarray) -> np.ndarray:
    # Keys' cubic convolution kernel with a = -0.5 (MATLAB imresize's "bicubic").
    ax = np.abs(x)
    ax2, ax3 = ax**2, ax**3
    return (1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1) + (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2))


def resize_taps(in_len: int, out_len: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """MATLAB imresize's weights along one axis as ``(idx, w)``, both ``(out_len, taps)``.

    ``idx`` holds 0-based input indices (edge-clipped, so an index can repeat near the borders),
    ``w`` the float64 weight of each tap; output ``i`` is ``sum_t w[i, t] * x[idx[i, t]]``.
    """
    kernel_width = 4.0 / scale if scale < 1 else 4.0  # antialiasing widens the kernel when shrinking
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)  # output pixel centres in input coordinates (1-based)
    left = np.floor(u - kernel_width / 2)
    taps = int(math.ceil(kernel_width)) + 2
    idx = left[:, None] + np.arange(taps)[None, :]
    dist = u[:, None] - idx
    w = scale * _cubic(scale * dist) if scale < 1 else _cubic(dist)
    w /= w.sum(axis=1, keepdims=True)
    # Replicate edge pixels: out-of-range taps read the nearest edge pixel.
    return np.clip(idx, 1, in_len).astype(np.int64) - 1, w


def resize_matrix(in_len: int, out_len: int, scale: float) -> np.ndarray:
    """The dense (out_len, in_len) float64 matrix of :func:`resize_taps` (repeated taps summed)."""
    idx, w = resize_taps(in_len, out_len, scale)
    m = np.zeros((out_len, in_len))
    np.add.at(m, (np.repeat(np.arange(out_len), idx.shape[1]), idx.ravel()), w.ravel())
    return m


def block_rows(scale: float) -> int:
    """Output pixels per block of the banded form: a block's window reads ~16 + taps input pixels."""
    return max(8, math.ceil(16 * scale))


def resize_bands(in_len: int, out_len: int, scale: float, block: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The banded form of :func:`resize_matrix`: ``(weights (nb, block, K) float64, starts (nb,) int64)``.

    Block ``b`` computes outputs ``b*block .. b*block+block-1`` (the last block padded with zero rows)
    as ``weights[b] @ x[starts[b] : starts[b]+K]``. Each row of ``weights[b]`` is the dense matrix's
    row ``starts[b] .. starts[b]+K-1``, summed in the same order, so the entries are bit-identical.
    """
    block = block or block_rows(scale)
    idx, w = resize_taps(in_len, out_len, scale)
    nb = -(-out_len // block)
    rows = np.arange(out_len)
    blk = rows // block
    lo = np.full(nb, in_len, dtype=np.int64)
    hi = np.zeros(nb, dtype=np.int64)
    np.minimum.at(lo, blk, idx.min(1))
    np.maximum.at(hi, blk, idx.max(1))
    k = min(int((hi - lo).max()) + 1, in_len)
    lo = np.minimum(lo, in_len - k)  # keep every window inside the image (same taps, shifted columns)
    bands = np.zeros((nb, block, k))
    taps = idx.shape[1]
    np.add.at(bands, (np.repeat(blk, taps), np.repeat(rows % block, taps), (idx - lo[blk][:, None]).ravel()), w.ravel())
    return bands, lo


# --- prepared weights, cached in bytes ------------------------------------------------------------------
_cache: OrderedDict[tuple, tuple[torch.Tensor, ...]] = OrderedDict()
_cache_bytes = 0
_cache_lock = threading.Lock()


def _cached(key: tuple, make) -> tuple[torch.Tensor, ...]:
    global _cache_bytes
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
            return hit
    value = make()
    size = sum(t.numel() * t.element_size() for t in value)
    with _cache_lock:
        if key not in _cache and size <= CACHE_BYTES:
            _cache[key] = value
            _cache_bytes += size
            while _cache_bytes > CACHE_BYTES:
                _, old = _cache.popitem(last=False)
                _cache_bytes -= sum(t.numel() * t.element_size() for t in old)
    return value


def cache_info() -> tuple[int, int]:
    """(entries, bytes) held by the resize-weight cache."""
    with _cache_lock:
        return len(_cache), _cache_bytes


def clear_cache() -> None:
    global _cache_bytes
    with _cache_lock:
        _cache.clear()
        _cache_bytes = 0


def use_dense(in_len: int, out_len: int) -> bool:
    return in_len * out_len <= DENSE_MAX_ENTRIES


def _resize_axis(x: torch.Tensor, dim: int, out_len: int, scale: float, dense: bool | None) -> torch.Tensor:
    """Resize ``x (..., H, W)`` along H (``dim=-2``) or W (``dim=-1``) to ``out_len`` pixels."""
    in_len = x.shape[dim]
    dense = use_dense(in_len, out_len) if dense is None else dense
    key = (in_len, out_len, scale, dense, x.dtype, x.device)
    if dense:
        (m,) = _cached(key, lambda: (torch.from_numpy(resize_matrix(in_len, out_len, scale)).to(x.device, x.dtype),))
        return m @ x if dim == -2 else x @ m.T
    bands, index = _cached(key, lambda: _prepare_bands(in_len, out_len, scale, x))
    nb, block, k = bands.shape
    # The resized axis first and everything else as one wide matrix: each block is then one
    # (block x K) @ (K x everything) product, the shape BLAS runs at full speed.
    moved = x.movedim(dim, 0)
    windows = moved.index_select(0, index).view(nb, k, -1)  # each block's K input lines
    y = torch.bmm(bands, windows).view(nb * block, *moved.shape[1:])[:out_len]
    return y.movedim(0, dim).contiguous()  # NCHW strides, as the dense product returns


def _prepare_bands(in_len: int, out_len: int, scale: float, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    bands, lo = resize_bands(in_len, out_len, scale)
    index = torch.from_numpy((lo[:, None] + np.arange(bands.shape[2])[None, :]).ravel())
    return torch.from_numpy(bands).to(like.device, like.dtype), index.to(like.device)


def imresize(x: torch.Tensor, scale: float, round_uint8: bool = False, dense: bool | None = None) -> torch.Tensor:
    """MATLAB-compatible bicubic resize of a float batch ``(..., H, W)`` by ``scale``.

    Rows first, then columns, as MATLAB does for equal factors. ``round_uint8`` rounds and clips to
    whole 0-255 steps after each pass, as MATLAB does for uint8 images (values in [0, 1] here).
    ``dense``: force the dense (True) or banded (False) form; None picks by size.
    """
    h, w = x.shape[-2:]
    oh, ow = math.ceil(h * scale), math.ceil(w * scale)
    x = _resize_axis(x, -2, oh, scale, dense)
    if round_uint8:
        x = x.mul(255).round_().clamp_(0, 255).div_(255)
    x = _resize_axis(x, -1, ow, scale, dense)
    if round_uint8:
        x = x.mul(255).round_().clamp_(0, 255).div_(255)
    return x


def to_float(hr_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 NHWC batch (as the loaders deliver it) -> float NCHW in [0, 1], channels_last in memory."""
    return hr_uint8.permute(0, 3, 1, 2).float().div_(255)


def downscale(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """The LR image a camera at 1/scale resolution would store: antialiased bicubic, 8-bit."""
    if scale == 1:  # a denoiser's input: the image itself (imresize would multiply by identity matrices)
        return hr.clone()
    return imresize(hr, 1 / scale, round_uint8=True)


def upsample(lr: torch.Tensor, scale: int, mode: str) -> torch.Tensor:
    """Pre-upsample an LR batch to the HR size, as the nets expect their input."""
    if scale == 1:
        return lr.clone()
    if mode == "nearest":
        return F.interpolate(lr, scale_factor=scale, mode="nearest")
    return imresize(lr, scale).clamp_(0, 1)
