"""src.export: the ONNX graph equals the PyTorch pipeline for any size."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

from src.degrade import upsample
from src.inference.checkpoint import load_checkpoint
from src.inference.export import PARITY_ATOL, BicubicUp, main, parity
from src.inference.tiling import sr_whole
from tests.test_checkpoint import make_ckpt


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_conv_bicubic_equals_matlab_resize(scale):
    x = torch.rand(2, 3, 9, 13)
    torch.testing.assert_close(BicubicUp(scale)(x), upsample(x, scale, "bicubic"), atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    ("target", "scale", "kwargs"),
    [("src.arch.CNNSmall", 3, {}), ("src.arch.Waifu2x", 2, {}), ("src.arch.ESPCN", 2, {}), ("src.arch.FSRCNN", 3, {}),
     ("src.arch.FSRCNN", 4, {"channels": 1}),
     ("src.arch.EDSR", 4, {"blocks": 2}), ("src.arch.Compact", 3, {"num_conv": 2})],
)  # fmt: skip
def test_onnxruntime_matches_pytorch_at_two_sizes(tmp_path, target, scale, kwargs, capsys):
    ckpt = make_ckpt(tmp_path / "m.ckpt", target=target, scale=scale, **kwargs)
    assert main(["--ckpt", str(ckpt), "--out", str(tmp_path / "m.onnx"), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "parity: max |onnxruntime - PyTorch on cpu (" in out and ", fp32| = " in out
    net = load_checkpoint(ckpt).net
    onnx_run = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    for h, w in [(17, 23), (30, 12)]:  # neither is the export example's size: H and W are dynamic
        lr = torch.rand(1, 3, h, w)
        with torch.inference_mode():
            ref = sr_whole(net, lr, scale).numpy()
        out = onnx_run.run(None, {"lr": lr.numpy()})[0]
        assert out.shape == (1, 3, h * scale, w * scale)
        np.testing.assert_allclose(out, ref, atol=1e-4, rtol=0)


def test_bad_checkpoint_is_one_line(tmp_path, capsys):
    assert main(["--ckpt", str(tmp_path / "none.ckpt"), "--out", str(tmp_path / "m.onnx")]) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0


def test_a_net_of_the_wrong_size_is_not_exported(tmp_path, capsys, monkeypatch):
    # An LR-in net that forgets to upsample: before the size check, its graph and its parity passed.
    pkg = tmp_path / "lazy_nets"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from torch import nn\n\nclass Lazy(nn.Conv2d):\n"
                                     "    def __init__(self):\n        super().__init__(3, 3, 3, padding=1)\n")  # fmt: skip
    monkeypatch.syspath_prepend(str(tmp_path))
    ckpt = make_ckpt(tmp_path / "m.ckpt", target="lazy_nets.Lazy")
    assert main(["--ckpt", str(ckpt), "--out", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "net Lazy at x2" in err and "expected 24x24" in err


def test_parity_check_catches_a_graph_of_another_net(tmp_path, capsys):
    a, b = make_ckpt(tmp_path / "a.ckpt", seed=0), make_ckpt(tmp_path / "b.ckpt", seed=1)
    assert main(["--ckpt", str(a), "--out", str(tmp_path / "a.onnx"), "--no-check"]) == 0
    assert "parity:" not in capsys.readouterr().out
    assert parity(tmp_path / "a.onnx", a, torch.device("cpu")) <= PARITY_ATOL
    assert parity(tmp_path / "a.onnx", b, torch.device("cpu")) > 100 * PARITY_ATOL


@pytest.mark.parametrize("device", ["gpu", "cuda"])
def test_bad_or_missing_device_is_one_line(tmp_path, capsys, monkeypatch, device):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    ckpt = make_ckpt(tmp_path / "m.ckpt")
    assert main(["--ckpt", str(ckpt), "--out", str(tmp_path / "m.onnx"), "--device", device]) == 2
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0 and err.startswith(f"error: --device={device}: ")
    assert not (tmp_path / "m.onnx").exists()  # refused before any work
