"""Tiled inference equals one whole-image pass, for every net shape, scale and the self-ensemble."""

from __future__ import annotations

import pytest
import torch

from src.arch import CNNDeep, CNNSmall, Waifu2x
from src.arch.measure import receptive_radius
from src.inference.tiling import (
    DEFAULT_TILE,
    GPU_MEMORY_FRACTION,
    auto_tile,
    bytes_per_output_pixel,
    prepare_net,
    sr_region,
    sr_whole,
    tile_margin,
    upscale_tensor,
)


def _random_net(cls, **kwargs):
    torch.manual_seed(0)
    net = cls(**kwargs).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.05)  # random, not the near-identity init: every layer's reach shows in the output
    return net


def test_receptive_radius_counts_3x3_layers():
    assert receptive_radius(CNNSmall(), 2) == 3
    assert receptive_radius(CNNDeep(), 3) == 7
    assert receptive_radius(Waifu2x(), 2) == Waifu2x().offset == 7
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


def test_auto_tile_keeps_tiles_on_the_cpu():
    assert auto_tile(CNNDeep(), (3000, 4000), 2, torch.device("cpu")) == DEFAULT_TILE
    assert auto_tile(CNNDeep(), (10, 10), 2, "cpu", "bf16") == DEFAULT_TILE


def test_auto_tile_on_a_gpu_uses_free_memory(monkeypatch):
    # No GPU needed: the policy only reads torch.cuda.mem_get_info.
    net, cuda = CNNDeep(), torch.device("cuda", 0)
    per_hr_px = bytes_per_output_pixel(net, "bf16")
    assert per_hr_px == 2 * ((128 + 128) * 2 + 6 * 3 * 4)  # widest conv pair (128 -> 128) in bf16 + fp32 planes
    assert bytes_per_output_pixel(net, "fp32") > per_hr_px
    free = {"bytes": 100 * 2**30}
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (free["bytes"], 2 * free["bytes"]))
    assert auto_tile(net, (3000, 4000), 2, cuda, "bf16") is None  # 48 MP of output (~56 GB) fits in 60 % of 100 GB: one pass
    free["bytes"] = 2 * 2**30
    tile = auto_tile(net, (3000, 4000), 2, cuda, "bf16")
    m = tile_margin(net, 2)
    need = lambda side: (side + 2 * m) ** 2 * 4 * per_hr_px  # noqa: E731
    budget = free["bytes"] * GPU_MEMORY_FRACTION
    assert tile is not None and need(tile) <= budget < need(tile + 2)  # the largest tile that fits
    assert auto_tile(net, (3000, 4000), 2, cuda, "fp32") < tile  # fp32 activations are twice as big
    free["bytes"] = 1000
    assert auto_tile(net, (3000, 4000), 2, cuda, "bf16") == 16


def test_prepared_net_is_channels_last_and_tiles_still_match():
    net = _random_net(CNNDeep)
    lr = torch.rand(1, 3, 17, 22)
    with torch.inference_mode():
        whole = sr_whole(net, lr, 2)  # NCHW net
    prepare_net(net)
    assert net.body[0].weight.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(upscale_tensor(net, lr, 2, tile=7, device="cpu"), whole, atol=1e-5, rtol=0)
