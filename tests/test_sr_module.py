import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from torchmetrics.functional.image import peak_signal_noise_ratio

from src.data.datamodule import SRDataModule
from src.degrade import downscale, to_float, upsample
from src.metrics import ssim_valid, to_y
from src.training.sr_module import SRModule
from tests.conftest import synthetic_photo

NET = {"_target_": "src.arch.CNNSmall"}


def make_module(**kw) -> SRModule:
    args = dict(name="cnn_small", net=NET, scale=2, loss="mse", channels_last=True, compile=False)
    return SRModule(**(args | kw), optimizer=lambda params: torch.optim.Adam(params, 1e-3))


def test_hparams_rebuild_the_net():
    m = make_module(net={"_target_": "src.arch.Waifu2x", "residual": False})
    assert m.hparams.net == {"_target_": "src.arch.Waifu2x", "residual": False} and m.net.offset == 7
    assert m.params == sum(p.numel() for p in m.net.parameters())


def test_training_target_is_cropped_by_the_offset():
    m = make_module(net={"_target_": "src.arch.Waifu2x"})
    batch = torch.randint(0, 256, (2, 32, 32, 3), dtype=torch.uint8)
    x, bicubic, hr = m.degrade(batch)
    assert x.shape == hr.shape == bicubic.shape == (2, 3, 32, 32)
    assert m.net(x).shape == (2, 3, 18, 18) and m(x).shape == (2, 3, 32, 32)


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_test_metrics_follow_the_protocol_under_any_precision(tmp_path, precision):
    img = np.array(synthetic_photo((64, 48), seed=3))
    path = tmp_path / "a.png"
    synthetic_photo((64, 48), seed=3).save(path)
    dm = SRDataModule({"train": [path], "val": [path], "test": [path]}, 2, 32, 1, 1, None, 0, cut_mb=1, seed=0)
    trainer = pl.Trainer(accelerator="cpu", precision=precision, logger=False, enable_progress_bar=False)
    trainer.test(make_module(), datamodule=dm, verbose=False)
    got = trainer.callback_metrics
    # Reference: fp32 bicubic, 8-bit, BT.601 luma, 2 px shaved; PSNR from torchmetrics, SSIM filtered 'valid' (MATLAB's).
    hr = to_float(torch.from_numpy(img)[None])
    bic = upsample(downscale(hr, 2), 2, "bicubic")
    y = [to_y((t.clamp(0, 1) * 255).round() / 255)[..., 2:-2, 2:-2] for t in (bic, hr)]
    ref_psnr = peak_signal_noise_ratio(*y, data_range=255.0)
    ref_ssim = ssim_valid(*y)
    assert float(got["test/bicubic_psnr_y"]) == pytest.approx(float(ref_psnr), abs=1e-4)
    assert float(got["test/bicubic_ssim_y"]) == pytest.approx(float(ref_ssim), abs=1e-5)
