"""The benchmark protocol: MATLAB-compatible resize, MATLAB-style SSIM, published bicubic numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torchmetrics.functional.image import structural_similarity_index_measure

from src.data.images import list_images
from src.degrade import downscale, imresize, resize_matrix, upsample
from src.inference.scoring import modcrop, read_hr, reference_bicubic, score_image
from src.metrics import ssim_per_image, ssim_valid, y_inputs
from src.training.metrics import y_metrics
from tests.conftest import ROOT

SET5 = ROOT.parent / "shared" / "sr_benchmarks" / "Set5"


def test_x3_upscale_impulse_response_is_the_cubic_kernel():
    # x3: output pixel 3k+1 sits exactly on input k (weight cubic(0) = 1); 3k and 3k+2 sit 1/3 px away,
    # reading cubic(1/3) = 7/9, cubic(2/3) = 1/3, cubic(4/3) = -2/27, cubic(5/3) = -1/27 (a = -0.5).
    x = torch.zeros(1, 1, 1, 12, dtype=torch.float64)
    x[..., 5] = 1
    out = imresize(x, 3)[0, 0, 0]
    expected = np.zeros(36)
    expected[11:22] = [-1 / 27, -2 / 27, 0, 1 / 3, 7 / 9, 1, 7 / 9, 1 / 3, 0, -2 / 27, -1 / 27]
    np.testing.assert_allclose(out.numpy(), expected, atol=1e-12)


def _cubic(t: float) -> float:
    # Keys' kernel, a = -0.5, written out again here independently of src.degrade.
    t = abs(t)
    if t <= 1:
        return 1.5 * t**3 - 2.5 * t**2 + 1
    if t <= 2:
        return -0.5 * t**3 + 2.5 * t**2 - 4 * t + 2
    return 0.0


def test_third_downscale_is_the_stretched_kernel_normalised():
    # x1/3 with antialiasing: output i is centred on input 3i+1 and weighs input j by cubic((j-3i-1)/3)/3,
    # normalised to sum 1 (MATLAB's imresize). An impulse at input 13 shows the weights directly.
    x = torch.zeros(1, 1, 1, 30, dtype=torch.float64)
    x[..., 13] = 1
    out = imresize(x, 1 / 3)[0, 0, 0].numpy()
    for i in range(10):
        w = {j: _cubic((j - 3 * i - 1) / 3) / 3 for j in range(3 * i - 6, 3 * i + 9)}
        assert out[i] == pytest.approx(w.get(13, 0.0) / sum(w.values()), abs=1e-12)


def test_uint8_rounding_happens_after_each_pass():
    # MATLAB rounds uint8 images after the row pass and again after the column pass; rounding only once
    # at the end gives a different image here (checked below), so the test can tell the two apart.
    x = torch.tensor(
        [[0, 10, 200, 30, 7, 99], [250, 0, 7, 90, 3, 1], [5, 60, 0, 255, 128, 64], [1, 2, 3, 4, 5, 6]], dtype=torch.float64
    )
    rows, cols = torch.from_numpy(resize_matrix(4, 2, 0.5)), torch.from_numpy(resize_matrix(6, 3, 0.5))
    per_pass = ((rows @ x).round().clamp(0, 255) @ cols.T).round().clamp(0, 255)
    once = (rows @ x @ cols.T).round().clamp(0, 255)
    assert not torch.equal(per_pass, once)
    assert torch.equal(imresize(x[None, None] / 255, 0.5, round_uint8=True)[0, 0] * 255, per_pass)


def test_ssim_valid_matches_the_formula_on_constants_and_one_window():
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    a, b = torch.full((1, 1, 15, 15), 100.0, dtype=torch.float64), torch.full((1, 1, 15, 15), 120.0, dtype=torch.float64)
    assert ssim_valid(a, b) == pytest.approx((2 * 100 * 120 + c1) / (100**2 + 120**2 + c1), abs=1e-12)
    assert ssim_valid(a, a) == pytest.approx(1.0)
    # An 11x11 image has exactly one valid window: SSIM is the Gaussian-weighted formula computed by hand.
    rng = np.random.default_rng(0)
    x, y = rng.uniform(0, 255, (11, 11)), rng.uniform(0, 255, (11, 11))
    g = np.exp(-((np.arange(11) - 5) ** 2) / (2 * 1.5**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    mx, my = (w * x).sum(), (w * y).sum()
    vx, vy, cxy = (w * x * x).sum() - mx**2, (w * y * y).sum() - my**2, (w * x * y).sum() - mx * my
    expected = (2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    assert ssim_valid(torch.from_numpy(x)[None, None], torch.from_numpy(y)[None, None]) == pytest.approx(expected, abs=1e-12)


def test_ssim_in_float32_agrees_with_float64_on_bright_flat_images():
    # Training feeds float32 luma: without mean-centring, E[x^2] - E[x]^2 near 200^2 cancels to noise.
    g = torch.Generator().manual_seed(0)
    a = (200 + 3 * torch.rand(2, 1, 60, 80, generator=g, dtype=torch.float64)).round()
    b = (a + torch.randn(a.shape, generator=g, dtype=torch.float64)).round()
    diff = ssim_per_image(a.float(), b.float()) - ssim_per_image(a, b)
    assert diff.abs().max() < 1e-6


def test_torchmetrics_ssim_differs_because_it_averages_the_padded_border():
    # Why src.metrics has its own SSIM: torchmetrics averages SSIM over reflect-padded borders too.
    # A corner error: MATLAB's valid windows barely see it, torchmetrics' border windows centre on it.
    x = torch.linspace(20, 220, 16, dtype=torch.float64).expand(1, 1, 16, 16).contiguous()
    y = x.clone()
    y[..., :3, :3] += 60
    tm = structural_similarity_index_measure(y, x, data_range=255.0, gaussian_kernel=True, sigma=1.5, kernel_size=11)
    assert abs(float(tm) - ssim_valid(y, x)) > 1e-3


def test_training_metrics_score_like_evaluate():
    # SRModule's val/test metrics (y_metrics on y_inputs) and src.evaluate give the same numbers: here
    # both score the bicubic upscale of the same LR images, of different sizes, one image per update.
    rng = np.random.default_rng(3)
    metrics = y_metrics()
    rows = []
    for size in (40, 52):
        hr_uint8 = rng.integers(0, 256, (size, size + 8, 3), dtype=np.uint8)
        hr = torch.from_numpy(hr_uint8).permute(2, 0, 1)[None].float() / 255
        metrics.update(*y_inputs(upsample(downscale(hr, 2), 2, "bicubic"), hr, 2))
        rows.append(score_image(hr_uint8, 2, None))
    got = metrics.compute()
    # (training rounds float32 luma, evaluate float64: ~2e-5 apart on these noise images)
    assert float(got["ssim_y"]) == pytest.approx(np.mean([r["bicubic_ssim_y"] for r in rows]), abs=1e-4)
    assert float(got["psnr_y"]) == pytest.approx(np.mean([r["bicubic_psnr_y"] for r in rows]), abs=1e-3)


def test_gray_images_are_scored_on_gray_values_not_luma():
    # Luma of a gray RGB image is 16 + 219/255 * gray: errors shrink by 219/255, PSNR rises 20*log10(255/219) dB.
    gray = np.asarray(np.random.default_rng(2).integers(0, 256, (36, 36, 1)), dtype=np.uint8)
    as_gray = score_image(gray, 2, None)
    as_rgb = score_image(np.repeat(gray, 3, axis=2), 2, None)
    assert as_rgb["bicubic_psnr_y"] - as_gray["bicubic_psnr_y"] == pytest.approx(20 * math.log10(255 / 219), abs=1e-6)


@pytest.mark.skipif(not SET5.is_dir(), reason="../shared/sr_benchmarks/Set5 is not on this machine")
def test_published_set5_bicubic_is_reproduced():
    published = {2: (33.66, 0.9299), 3: (30.39, 0.8682), 4: (28.42, 0.8104)}  # ../shared/README.md (VDSR/EDSR papers)
    images = [torch.from_numpy(read_hr(p)).permute(2, 0, 1)[None].double() / 255 for p in list_images(SET5)]
    assert len(images) == 5
    for scale, (psnr, ssim) in published.items():
        got_psnr, got_ssim = np.mean([reference_bicubic(modcrop(hr, scale), scale) for hr in images], axis=0)
        assert abs(got_psnr - psnr) <= 0.01 and abs(got_ssim - ssim) <= 0.001, (scale, got_psnr, got_ssim)
