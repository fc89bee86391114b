"""Tiled inference equals one whole-image pass, for every net shape, scale and the self-ensemble."""

from __future__ import annotations

import pytest
import torch

from src.arch import CNNDeep, CNNSmall, Waifu2x
from src.tiling import receptive_radius, sr_region, sr_whole, tile_margin, upscale_tensor


def _random_net(cls, **kwargs):
    torch.manual_seed(0)
    net = cls(**kwargs).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.05)  # random, not the near-identity init: every layer's reach shows in the output
    return net


def test_receptive_radius_counts_3x3_layers():
    assert receptive_radius(CNNSmall()) == 3
    assert receptive_radius(CNNDeep()) == 7
    assert receptive_radius(Waifu2x()) == Waifu2x().offset == 7
    assert tile_margin(CNNDeep(), 2) == 4 + 3


@pytest.mark.parametrize(
    ("cls", "scale", "kwargs"),
    [(CNNSmall, 2, {}), (CNNDeep, 3, {}), (Waifu2x, 2, {}), (Waifu2x, 4, {}), (CNNSmall, 3, {"in_channels": 1})],
)
def test_tiled_equals_untiled(cls, scale, kwargs):
    net = _random_net(cls, **kwargs)
    lr = torch.rand(1, 3, 17, 22)
    with torch.inference_mode():
        whole = sr_whole(net, lr, scale)
    assert whole.shape == (1, 3, 17 * scale, 22 * scale)
    for tile in (5, 12):  # tiles smaller than the margin, uneven last tiles
        torch.testing.assert_close(upscale_tensor(net, lr, scale, tile=tile), whole, atol=1e-5, rtol=0)


def test_margin_is_needed():
    # Without context around the tiles the seams differ: the equality above is not vacuous.
    net = _random_net(CNNDeep)
    lr = torch.rand(1, 3, 16, 16)
    with torch.inference_mode():
        whole = sr_whole(net, lr, 2)
        halves = torch.cat([sr_whole(net, lr[..., :8], 2), sr_whole(net, lr[..., 8:], 2)], dim=-1)
    assert (halves - whole).abs().max() > 1e-3


def test_self_ensemble_tiled_and_symmetric():
    net = _random_net(CNNSmall)
    lr = torch.rand(1, 3, 14, 19)
    with torch.inference_mode():
        whole = sr_region(net, lr, 2, tta=True)
        # An ensemble over all 8 symmetries is itself symmetric: flipping the input flips the output.
        flipped = sr_region(net, lr.flip(-1), 2, tta=True).flip(-1)
    torch.testing.assert_close(upscale_tensor(net, lr, 2, tile=6, tta=True), whole, atol=1e-5, rtol=0)
    torch.testing.assert_close(flipped, whole, atol=1e-5, rtol=0)
    assert (whole - sr_whole(net, lr, 2)).abs().max() > 1e-4
