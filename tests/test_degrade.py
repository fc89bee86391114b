import numpy as np
import pytest
import torch

from src import degrade
from src.degrade import (
    _resize_axis,
    block_rows,
    cache_info,
    clear_cache,
    downscale,
    imresize,
    resize_bands,
    resize_matrix,
    to_float,
    upsample,
    use_dense,
)


def test_x2_kernel_matches_cubic_a_minus_half():
    # Antialiased x1/2: taps at distances 0.5..3.5 px, weight = 0.5 * cubic(d / 2) with a = -0.5:
    # cubic(0.25) = 0.8671875, cubic(0.75) = 0.2265625, cubic(1.25) = -0.0703125, cubic(1.75) = -0.0234375.
    row = resize_matrix(16, 8, 0.5)[4]  # output pixel 4 (0-based) is centred on input 8.5: taps 5..12
    expected = np.array([-0.01171875, -0.03515625, 0.11328125, 0.43359375, 0.43359375, 0.11328125, -0.03515625, -0.01171875])
    np.testing.assert_allclose(row[5:13], expected, atol=1e-12)
    assert not row[:5].any() and not row[13:].any()


def test_rows_sum_to_one_and_edges_replicate():
    for n, scale in [(12, 0.5), (12, 1 / 3), (12, 0.25), (6, 2.0), (5, 3.0)]:
        m = resize_matrix(n, int(np.ceil(n * scale)), scale)
        np.testing.assert_allclose(m.sum(1), 1, atol=1e-12)
    # A constant image stays constant, borders included (edge pixels replicated, no zero padding).
    x = torch.full((1, 3, 12, 18), 0.4)
    torch.testing.assert_close(imresize(x, 0.5), torch.full((1, 3, 6, 9), 0.4))


def test_downscale_is_8bit_and_upsample_restores_size():
    hr = to_float(torch.randint(0, 256, (2, 24, 30, 3), dtype=torch.uint8))
    assert hr.shape == (2, 3, 24, 30)
    lr = downscale(hr, 3)
    assert lr.shape == (2, 3, 8, 10)
    torch.testing.assert_close(lr * 255, (lr * 255).round())
    assert upsample(lr, 3, "bicubic").shape == hr.shape
    assert torch.equal(upsample(lr, 3, "nearest")[..., ::3, ::3], lr)


# --- the banded form (long axes) against the dense matrix (short axes, and the reference) -----------------
ODD_CASES = [(97, 0.5), (301, 1 / 3), (255, 0.25), (37, 2.0), (123, 3.0), (61, 4.0), (333, 0.37), (50, 1.5)]


@pytest.mark.parametrize(("n", "scale"), ODD_CASES)
def test_bands_hold_the_dense_matrix_entries_exactly(n, scale):
    out = int(np.ceil(n * scale))
    bands, starts = resize_bands(n, out, scale, block=block_rows(scale))
    nb, block, k = bands.shape
    rebuilt = np.zeros((nb * block, n))
    for b in range(nb):
        rebuilt[b * block : (b + 1) * block, starts[b] : starts[b] + k] = bands[b]
    assert np.array_equal(rebuilt[:out], resize_matrix(n, out, scale))  # bit for bit, edge sums included
    assert not rebuilt[out:].any()
    assert k <= block / scale + 4 / min(scale, 1) + 3  # O(taps) per output, not O(n)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize(("n", "scale"), ODD_CASES)
def test_banded_resize_equals_dense_to_the_last_bits(n, scale, dtype):
    # The two forms sum the same products in a different order: they may differ in the last bit or
    # two (as the dense product itself does when the other axis changes length), never more.
    x = torch.rand(2, 3, n, n + 6, dtype=dtype, generator=torch.Generator().manual_seed(n))
    dense, banded = imresize(x, scale, dense=True), imresize(x, scale, dense=False)
    assert banded.shape == dense.shape and banded.is_contiguous()
    ulp = torch.finfo(dtype).eps
    torch.testing.assert_close(banded, dense, atol=4 * ulp, rtol=0)


@pytest.mark.parametrize(("n", "scale"), [(301, 0.5), (640, 0.5), (301, 1 / 3), (97, 0.25)])
def test_banded_lr_rounds_like_dense_except_at_exact_ties(n, scale):
    # MATLAB's uint8 LR: a value exactly half-way between two levels rounds by the last bit of its sum,
    # which no summation order fixes; everywhere else the banded LR is the dense LR.
    x = torch.randint(0, 256, (3, n, 40), generator=torch.Generator().manual_seed(1)).double() / 255
    out = int(np.ceil(n * scale))
    a = _resize_axis(x, -2, out, scale, dense=True) * 255
    b = _resize_axis(x, -2, out, scale, dense=False) * 255
    differ = a.round() != b.round()
    assert (a.round() - b.round()).abs().max() <= 1
    assert ((a[differ] - a[differ].floor() - 0.5).abs() < 1e-9).all()


def test_short_axes_keep_the_dense_product():
    # Training batches and inference tiles resize exactly as before: one dense matmul per axis.
    x = to_float(torch.randint(0, 256, (16, 48, 48, 3), dtype=torch.uint8))
    rows = torch.from_numpy(resize_matrix(48, 24, 0.5)).float()
    expected = (rows @ x).mul(255).round().clamp(0, 255).div(255)
    expected = (expected @ rows.T).mul(255).round().clamp(0, 255).div(255)
    assert torch.equal(downscale(x, 2), expected)
    lr = downscale(x, 2)
    up = torch.from_numpy(resize_matrix(24, 48, 2.0)).float()
    assert torch.equal(upsample(lr, 2, "bicubic"), (up @ lr @ up.T).clamp(0, 1))
    assert use_dense(206, 412)  # a 192 px tile with its margin, x2
    assert not use_dense(640, 1280)  # a whole photo's side


def test_cache_is_bounded_in_bytes(monkeypatch):
    monkeypatch.setattr(degrade, "CACHE_BYTES", 200_000)
    clear_cache()
    for n in range(200, 260, 3):  # long axes: banded weights, ~20-60 kB each
        imresize(torch.rand(1, 1, n, 8), 2.0)
    entries, size = cache_info()
    assert 0 < size <= 200_000 and entries < 2 * len(range(200, 260, 3))
    imresize(torch.rand(1, 1, 8, 3000), 2.0, dense=True)  # one 6000 x 3000 matrix (72 MB): used, not kept
    assert cache_info()[1] <= 200_000
    clear_cache()
    assert cache_info() == (0, 0)
