import lightning.pytorch as pl
import numpy as np
import pytest
import torch
import torch.nn.functional as F
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


def test_lr_mult_gives_the_named_layers_their_own_rate_under_the_schedule():
    from src.training.schedules import warmup_cosine

    m = make_module(net={"_target_": "src.arch.FSRCNN", "d": 8, "s": 4, "m": 1}, scale=3, lr_mult={"deconv": 0.1, "body.0": 2.0},
                    scheduler=lambda optimizer, total_steps: warmup_cosine(optimizer, total_steps, 0, 0.0))  # fmt: skip
    m.trainer = type("T", (), {"estimated_stepping_batches": 10})()
    opt = m.configure_optimizers()["optimizer"]
    rate = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    assert rate[id(m.net.deconv.weight)] == rate[id(m.net.deconv.bias)] == pytest.approx(1e-4)
    assert rate[id(m.net.body[0].weight)] == pytest.approx(2e-3)
    assert rate[id(m.net.body[2].weight)] == pytest.approx(1e-3)  # body.2 is not body.0's
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(m.net.parameters()))
    tiny = {"_target_": "src.arch.FSRCNN", "d": 8, "s": 4, "m": 1}
    every = make_module(net=tiny, scale=3, lr_mult={"body": 0.5, "deconv": 0.5})  # one rate, not the optimizer's
    assert all(g["lr"] == pytest.approx(5e-4) for g in every.configure_optimizers().param_groups)


def test_lr_mult_naming_no_layer_is_one_line():
    from src.errors import ConfigError

    with pytest.raises(ConfigError, match="model.lr_mult: 'decon' names no parameter of FSRCNN"):
        make_module(net={"_target_": "src.arch.FSRCNN"}, scale=3, lr_mult={"decon": 0.1})


def test_a_luma_net_learns_the_luma():
    m = make_module(net={"_target_": "src.arch.FSRCNN", "channels": 1, "d": 8, "s": 4, "m": 1}, scale=2)
    batch = torch.randint(0, 256, (2, 16, 16, 3), dtype=torch.uint8)
    x, _, hr = m.degrade(batch, with_bicubic=False)
    assert x.shape == (2, 1, 8, 8)
    m.trainer = type("T", (), {"log_every_n_steps": 50, "global_step": 1})()
    pred = m.pipeline.run(x).float()
    torch.testing.assert_close(m.training_step(batch, 0), F.mse_loss(pred, to_y(hr) / 255))
