import pytest
import torch
from torch import nn

from src.arch import CNNDeep, CNNMedium, CNNSmall, Waifu2x
from src.arch.measure import macs_per_output_pixel

# Per-layer parameter counts of the seed paper's Tables 1-4 (1 input channel, 3 output channels).
SEED_TABLES = {
    CNNSmall: [80, 1168, 435],
    CNNMedium: [160, 4640, 18496, 18464, 867],
    CNNDeep: [320, 18496, 73856, 147584, 73792, 18464, 867],
    Waifu2x: [320, 9248, 18496, 36928, 73856, 147584, 3459],
}


def conv_params(net: nn.Module) -> list[int]:
    return [sum(p.numel() for p in m.parameters()) for m in net.modules() if isinstance(m, nn.Conv2d)]


@pytest.mark.parametrize("cls", SEED_TABLES)
def test_layer_params_match_seed_tables(cls):
    assert conv_params(cls(in_channels=1, out_channels=3, residual=False)) == SEED_TABLES[cls]


@pytest.mark.parametrize("cls", SEED_TABLES)
@pytest.mark.parametrize("residual", [True, False])
def test_output_size_is_input_minus_offset(cls, residual):
    net = cls(residual=residual)
    out = net(torch.rand(2, 3, 37, 41))
    assert out.shape == (2, 3, 37 - 2 * net.offset, 41 - 2 * net.offset)


def test_offsets_and_upsampling():
    assert [c().offset for c in (CNNSmall, CNNMedium, CNNDeep)] == [0, 0, 0]
    assert Waifu2x().offset == 7 and Waifu2x().upsample == "nearest" and CNNDeep().upsample == "bicubic"


def test_seed_luma_in_rgb_out_runs_with_residual():
    net = CNNDeep(in_channels=1, out_channels=3)
    assert net(torch.rand(1, 1, 16, 16)).shape == (1, 3, 16, 16)


def test_residual_starts_near_identity_and_plain_does_not():
    torch.manual_seed(0)
    x = torch.rand(1, 3, 24, 24)
    assert (CNNDeep()(x) - x).abs().mean() < 0.05
    assert (CNNDeep(residual=False)(x) - x).abs().mean() > 0.1


def test_final_activation_flag():
    torch.manual_seed(0)
    x = torch.rand(1, 3, 16, 16) - 0.5
    assert CNNSmall(residual=False, final_activation=True)(x).min() >= 0
    assert CNNSmall(residual=False, final_activation=False)(x).min() < 0
    layers = [type(m) for m in CNNSmall(final_activation=True).body]
    assert layers[-1] is nn.ReLU and [type(m) for m in CNNSmall().body][-1] is nn.Conv2d


def test_macs_per_pixel_counts_conv_weights():
    # A pre-upsampling net runs every conv at the output size: one MAC per weight and output pixel,
    # the unpadded waifu2x too (its border losses are left out of a large image's cost).
    assert macs_per_output_pixel(CNNSmall(), 2) == 9 * (3 * 8 + 8 * 16 + 16 * 3)
    for net in (CNNDeep(), Waifu2x()):
        weights = sum(m.weight.numel() for m in net.modules() if isinstance(m, nn.Conv2d))
        assert macs_per_output_pixel(net, 3) == weights


def test_bad_upsample_mode():
    with pytest.raises(ValueError, match="upsample"):
        CNNSmall(upsample="lanczos")


NETS = [Waifu2x(), CNNSmall(in_channels=1), CNNDeep(upsample="nearest")]


@pytest.mark.parametrize("net", NETS, ids=["valid", "luma", "nearest"])
def test_pipeline_maps_lr_to_the_hr_size_and_is_what_training_and_export_run(net):
    from src.arch.pipeline import SRPipeline
    from src.degrade import upsample
    from src.inference.export import exported_pipeline
    from src.training.sr_module import SRModule

    lr = torch.rand(2, 3, 11, 13, generator=torch.Generator().manual_seed(0))
    pipeline = SRPipeline(net, 3).eval()
    with torch.no_grad():
        sr = pipeline(lr)
        assert sr.shape == (2, 3, 33, 39)
        # The residual starts near the identity: the output is close to the resized image (or its luma).
        resized = upsample(lr, 3, net.upsample)
        assert (sr - pipeline.net_input(resized)).abs().mean() < 0.1
        # Training's forward is the same pipeline, and the exported one the same linear map.
        module = SRModule("m", {"_target_": "torch.nn.Identity"}, 3, "mse", channels_last=False, compile=False)
        module.net, module.pipeline.net = net, net
        torch.testing.assert_close(module(pipeline.net_input(resized)), sr)
        torch.testing.assert_close(exported_pipeline(net, 3)(lr), sr, atol=1e-5, rtol=0)


def test_the_pipeline_adds_no_weights_to_a_checkpoint():
    from src.training.sr_module import SRModule

    module = SRModule("m", {"_target_": "src.arch.CNNSmall"}, 2, "mse", channels_last=False, compile=False)
    assert {k.split(".")[0] for k in module.state_dict()} == {"net"}
    assert module.pipeline.net is module.net
