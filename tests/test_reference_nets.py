"""The reference nets (ESPCN, FSRCNN, EDSR baseline, Compact): published layouts, the LR-in contract,
measured cost and reach, and tiles that reproduce the whole image."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from src.arch import EDSR, ESPCN, FSRCNN, CNNDeep, Compact
from src.arch.contract import NetContractError, build_net, reads_lr
from src.arch.measure import macs_per_output_pixel, receptive_radius
from src.arch.pipeline import SRPipeline
from src.degrade import upsample
from src.inference.tiling import sr_whole, tile_margin, upscale_tensor
from src.metrics import to_y

SCALES = (2, 3, 4)


def n_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def test_fsrcnn_has_the_papers_12464_weights():
    # Dong et al. 2016, FSRCNN(56, 12, 4) on one channel: weights only (biases and PReLU excluded).
    net = FSRCNN(scale=3, channels=1)
    weights = sum(m.weight.numel() for m in net.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)))
    assert weights == 12_464
    assert [type(m) for m in net.body][1::2] == [nn.PReLU] * 7 and net.deconv.kernel_size == (9, 9)


def test_edsr_baseline_has_the_papers_1_37m_parameters():
    assert n_params(EDSR(scale=2)) == 1_369_859  # Lim et al. 2017: "1.37M" (16 blocks, 64 features, x2, RGB)
    assert sum(isinstance(m, nn.PixelShuffle) for m in EDSR(scale=4).modules()) == 2  # x4 = two x2 stages
    assert not any(isinstance(m, nn.BatchNorm2d) for m in EDSR(scale=2).modules())


@pytest.mark.parametrize("scale", SCALES)
def test_espcn_layers_are_the_papers(scale):
    # Shi et al. 2016: 5x5x64, 3x3x32, 3x3x(C r^2), then the sub-pixel shuffle.
    convs = [m for m in ESPCN(scale, channels=1).modules() if isinstance(m, nn.Conv2d)]
    assert [(c.kernel_size[0], c.out_channels) for c in convs] == [(5, 64), (3, 32), (3, scale * scale)]
    assert n_params(ESPCN(scale, channels=1)) == (25 * 64 + 64) + (9 * 64 * 32 + 32) + (9 * 32 + 1) * scale**2


def test_compact_keys_are_real_esrgans():
    keys = list(Compact(scale=4, num_feat=8, num_conv=2).state_dict())
    assert keys == ["body.0.weight", "body.0.bias", "body.1.weight", "body.2.weight", "body.2.bias", "body.3.weight",
                    "body.4.weight", "body.4.bias", "body.5.weight", "body.6.weight", "body.6.bias"]  # fmt: skip


def reference_nets(scale: int, small: bool = False) -> list[nn.Module]:
    """Each reference net at ``scale``; ``small``: EDSR and Compact with fewer blocks, same layer kinds."""
    return [ESPCN(scale), FSRCNN(scale), EDSR(scale, blocks=2 if small else 16), Compact(scale, num_conv=3 if small else 16)]


@pytest.mark.parametrize("scale", SCALES)
def test_reference_nets_read_lr_and_return_h_times_scale(scale):
    for net in reference_nets(scale, small=True):
        assert reads_lr(net)
        with torch.no_grad():
            out = SRPipeline(net.eval(), scale)(torch.rand(1, 3, 7, 10))
        assert out.shape == (1, 3, 7 * scale, 10 * scale), type(net).__name__


def test_scale_is_passed_when_the_constructor_takes_it():
    assert build_net({"_target_": "src.arch.FSRCNN", "d": 8}, 3).deconv.stride == (3, 3)
    assert isinstance(build_net({"_target_": "src.arch.CNNDeep"}, 3), CNNDeep)  # no scale parameter: none given


@pytest.mark.parametrize("scale", SCALES)
def test_macs_per_output_pixel_are_the_layers_cost(scale):
    # Work per LR pixel spread over scale^2 output pixels; the deconvolution's per LR pixel too.
    lr_convs = (5 * 5 * 3 * 64) + (9 * 64 * 32) + (9 * 32 * 3 * scale * scale)
    assert macs_per_output_pixel(ESPCN(scale), scale) == round(lr_convs / scale**2)
    fsrcnn = 25 * 56 + 56 * 12 + 4 * 9 * 144 + 12 * 56 + 81 * 56  # the paper's 12,464, one channel
    assert macs_per_output_pixel(FSRCNN(scale, channels=1), scale) == round(fsrcnn / scale**2)
    # At x2 EDSR's 16 blocks run on 1/4 of the output pixels: far fewer MACs per output pixel than its weights.
    edsr = EDSR(scale)
    assert macs_per_output_pixel(edsr, scale) < n_params(edsr) / 3


def _random(net: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.05)  # every layer's reach shows in the output
    return net.eval()


def _gradient_reach(net: nn.Module, scale: int, side: int = 41) -> int:
    """LR pixels on each side of its own that one central output pixel really depends on (autograd)."""
    x = torch.rand(1, 3, side, side, dtype=torch.float64, requires_grad=True)
    c = side // 2
    with torch.enable_grad():  # upscale's main, run in-process by other tests, switches it off
        out = net.double()(x)
        out[0, :, c * scale, c * scale].sum().backward()
    rows = (x.grad[0].abs().sum(0).sum(1) > 0).nonzero().flatten()
    net.float()
    return int(max(c - rows.min(), rows.max() - c))


@pytest.mark.parametrize("scale", SCALES)
def test_measured_radius_covers_what_the_output_depends_on(scale):
    for net in reference_nets(scale, small=True):
        net = _random(net)
        reach, radius = _gradient_reach(net, scale), receptive_radius(net, scale)
        assert reach <= radius <= reach + 3, type(net).__name__  # covers it, and not wastefully


@pytest.mark.parametrize("scale", SCALES)
def test_tiled_equals_whole_for_every_reference_net(scale):
    lr = torch.rand(1, 3, 23, 19, generator=torch.Generator().manual_seed(scale))  # odd sizes
    for net in reference_nets(scale, small=True):
        net = _random(net)
        with torch.inference_mode():
            whole = sr_whole(net, lr, scale)
        assert whole.shape == (1, 3, 23 * scale, 19 * scale)
        assert tile_margin(net, scale) < 19  # the tiles below really cut the image
        for tile in (4, 9):
            tiled = upscale_tensor(net, lr, scale, tile=tile)
            assert (tiled - whole).abs().max() < 1e-5, (type(net).__name__, tile)


def test_without_the_margin_the_seams_differ():
    net = _random(FSRCNN(2))
    lr = torch.rand(1, 3, 16, 16)
    with torch.inference_mode():
        whole = sr_whole(net, lr, 2)
        halves = torch.cat([sr_whole(net, lr[..., :8], 2), sr_whole(net, lr[..., 8:], 2)], dim=-1)
    assert (halves - whole).abs().max() > 1e-3


class WrongSize(nn.Module):
    """Reads LR but forgets to upsample: the mistake the size check exists for."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def test_a_net_of_the_wrong_size_stops_with_one_line_naming_it():
    with pytest.raises(NetContractError) as info:
        SRPipeline(WrongSize(), 2)(torch.rand(1, 3, 24, 24))
    msg = str(info.value)
    assert "\n" not in msg and "WrongSize" in msg and "24x24" in msg and "48x48" in msg
    with pytest.raises(NetContractError):
        upscale_tensor(WrongSize(), torch.rand(1, 3, 30, 30), 2, tile=8)  # tiles no longer crop it silently


def _chroma(rgb: torch.Tensor) -> torch.Tensor:
    """BT.601 Cb and Cr (0-255) of an RGB batch in [0, 1]."""
    r, g, b = rgb.unbind(-3)
    return torch.stack([-37.797 * r - 74.203 * g + 112.0 * b, 112.0 * r - 93.786 * g - 18.214 * b], -3)


@pytest.mark.parametrize("scale", SCALES)
def test_a_luma_net_returns_its_luma_with_the_bicubic_chroma(scale):
    # The SRCNN/FSRCNN papers' nets: luma in, luma out; the colour comes from the bicubic upscale.
    net = _random(FSRCNN(scale, channels=1))
    lr = torch.rand(1, 3, 13, 11)
    with torch.inference_mode():
        sr = sr_whole(net, lr, scale)
        luma = net(to_y(lr) / 255)
    bicubic = upsample(lr, scale, "bicubic")
    assert sr.shape == (1, 3, 13 * scale, 11 * scale)
    torch.testing.assert_close(to_y(sr), luma * 255, atol=1e-3, rtol=0)
    torch.testing.assert_close(_chroma(sr), _chroma(bicubic), atol=1e-3, rtol=0)
    assert (to_y(sr) - to_y(bicubic)).abs().max() > 1  # the luma is the net's, not the bicubic's


@pytest.mark.parametrize("scale", SCALES)
def test_tiled_equals_whole_for_luma_nets(scale):
    lr = torch.rand(1, 3, 23, 19, generator=torch.Generator().manual_seed(scale))
    for net in (FSRCNN(scale, channels=1), ESPCN(scale, channels=1), EDSR(scale, channels=1, blocks=1, features=8)):
        net = _random(net)
        with torch.inference_mode():
            whole = sr_whole(net, lr, scale)
        for tile in (4, 9):
            assert (upscale_tensor(net, lr, scale, tile=tile) - whole).abs().max() < 1e-5, (type(net).__name__, tile)
