"""src.devices: which device and precision inference uses, and one-line errors for the unavailable."""

from __future__ import annotations

import pytest
import torch

from src import devices
from src.arch import CNNSmall
from src.devices import default_precision, describe, precision_context, resolve_precision, select_device
from src.errors import ConfigError
from src.inference.tiling import sr_whole, upscale_tensor


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(devices, "mps_available", lambda: False)


def _one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def test_auto_order_is_cuda_then_mps_then_cpu(monkeypatch, no_gpu):
    assert select_device("auto") == torch.device("cpu")
    assert select_device(None) == torch.device("cpu")
    monkeypatch.setattr(devices, "mps_available", lambda: True)
    assert select_device("auto") == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    assert select_device("auto") == torch.device("cuda", 0)


@pytest.mark.skipif(torch.cuda.is_available() or devices.mps_available(), reason="this machine has a GPU")
def test_auto_picks_the_cpu_here():
    assert select_device("auto").type == "cpu"


def test_unavailable_devices_are_one_line_errors(no_gpu):
    with pytest.raises(ConfigError) as e:
        select_device("cuda")
    assert _one_line(e).startswith("--device=cuda: CUDA is not available")
    with pytest.raises(ConfigError) as e:
        select_device("cuda:1", option="device")
    assert _one_line(e).startswith("device=cuda:1: CUDA is not available")
    with pytest.raises(ConfigError) as e:
        select_device("mps")
    assert "MPS is not available" in _one_line(e)


@pytest.mark.parametrize("spec", ["gpu", "cpu:0", "mps:1", "cuda:x", "cuda0", ""])
def test_malformed_device_names_the_choices(spec, no_gpu):
    if spec == "":  # empty means auto, as null does
        assert select_device(spec) == torch.device("cpu")
        return
    with pytest.raises(ConfigError) as e:
        select_device(spec)
    assert _one_line(e) == f"--device={spec}: not a device (use one of auto, cpu, cuda, cuda:N, mps)"


def test_cuda_index_beyond_the_count(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert select_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(ConfigError) as e:
        select_device("cuda:2")
    assert "there are 2 CUDA device(s) here (cuda:0 to cuda:1)" in _one_line(e)


def test_precision_defaults_and_errors(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(devices, "cpu_has_bf16", lambda: False)
    assert default_precision(cpu) == resolve_precision(None, cpu) == resolve_precision("auto", cpu) == "fp32"
    monkeypatch.setattr(devices, "cpu_has_bf16", lambda: True)
    assert default_precision(cpu) == "bf16"
    assert default_precision(torch.device("mps")) == "fp16"
    cuda = torch.device("cuda", 0)
    for has_bf16, expected in ((True, "bf16"), (False, "fp16")):
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda has=has_bf16: has)
        assert default_precision(cuda) == expected
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: "Old GPU")
    with pytest.raises(ConfigError) as e:
        resolve_precision("bf16", cuda)
    assert _one_line(e) == "--precision=bf16: Old GPU has no bf16; use fp16 or fp32"
    assert resolve_precision("FP16", cuda) == "fp16"
    with pytest.raises(ConfigError) as e:
        resolve_precision("fp8", cpu, option="precision")
    assert _one_line(e) == "precision=fp8: not a precision (use one of fp32, bf16, fp16 or auto)"


def _net(zero_body: bool = False) -> CNNSmall:
    torch.manual_seed(0)
    net = CNNSmall().eval()
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.05)
        if zero_body:
            net.body[-1].weight.zero_()
            net.body[-1].bias.zero_()
    return net


def test_bf16_is_close_to_fp32_and_keeps_the_residual_sum_fp32():
    lr = torch.rand(1, 3, 12, 15, generator=torch.Generator().manual_seed(0))
    net = _net()
    with torch.inference_mode():
        fp32, bf16 = sr_whole(net, lr, 2, "fp32"), sr_whole(net, lr, 2, "bf16")
    assert bf16.dtype == torch.float32
    diff = (bf16 - fp32).abs().max().item()
    assert 0 < diff < 0.01  # reduced precision ran (the result moved), and stayed within a few 8-bit levels
    # A net whose correction is exactly 0 returns its fp32 input exactly: the residual sum is not rounded
    # to bf16 (that would move [0, 1] values by up to 2e-3).
    net = _net(zero_body=True)
    with torch.inference_mode():
        x = sr_whole(net, lr, 2, "fp32")
        assert torch.equal(sr_whole(net, lr, 2, "bf16"), x)
        assert not torch.equal(x.bfloat16().float(), x)
    # Tiles in bf16 come back float32 and land where the whole image's pixels are.
    tiled = upscale_tensor(_net(), lr, 2, tile=6, precision="bf16")
    torch.testing.assert_close(tiled, bf16, atol=0.01, rtol=0)


def test_precision_context_fp32_is_a_no_op_on_cpu():
    with precision_context(torch.device("cpu"), "fp32"):
        assert not torch.is_autocast_enabled("cpu")
    with precision_context(torch.device("cpu"), "bf16"):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16


def test_describe_names_device_and_precision():
    line = describe(torch.device("cpu"), "fp32")
    assert line.startswith("cpu (") and line.endswith(", fp32") and "threads" in line


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_path_matches_the_cpu():
    from src.inference.tiling import auto_tile

    device = select_device("cuda")
    assert device.type == "cuda" and "cuda" in describe(device, "fp32")
    net = _net()
    lr = torch.rand(1, 3, 40, 52, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        cpu = sr_whole(net, lr, 2, "fp32")
    assert auto_tile(net, (40, 52), 2, device, "fp32") is None  # a small image fits: one pass
    gpu = upscale_tensor(net, lr, 2, tile=None, device=device, precision="fp32")
    assert gpu.device.type == "cpu" and next(net.parameters()).device.type == "cuda"
    torch.testing.assert_close(gpu, cpu, atol=1e-4, rtol=0)
    precision = default_precision(device)
    reduced = upscale_tensor(net, lr, 2, tile=16, device=device, precision=precision)
    torch.testing.assert_close(reduced, cpu, atol=0.02, rtol=0)
    with pytest.raises(ConfigError):
        select_device(f"cuda:{torch.cuda.device_count()}")
