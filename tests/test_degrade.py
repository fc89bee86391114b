import numpy as np
import torch

from src.degrade import downscale, imresize, resize_matrix, to_float, upsample


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
