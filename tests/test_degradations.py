"""Degradations (conf/degradation/): the bicubic default unchanged, JPEG/noise/real LR made in the loader,
seeded draws, scale 1 (denoisers), degraded benchmarks in src.evaluate, and bad options in one line."""

from __future__ import annotations

import csv
import io
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from PIL import Image

from src.arch import contract
from src.arch.pipeline import check_net
from src.data.datamodule import SRDataModule
from src.degrade import downscale, to_float, upsample
from src.degrade.degradations import JPEG, Bicubic, Noise, Real, bicubic_lr, build_degradation
from src.degrade.draws import Span, rng_for
from src.errors import ConfigError
from src.inference.scoring import degraded_lr, scores
from src.training.sr_module import SRModule
from tests.commands import run_module
from tests.conftest import ROOT, read_summary, run_train, synthetic_photo


def degradation(name: str, **options) -> object:
    """A degradation as ``degradation=<name>`` builds it, with ``options`` overriding its YAML."""
    return instantiate(OmegaConf.merge(OmegaConf.load(ROOT / "conf" / "degradation" / f"{name}.yaml"), options))


def hr_batch(n: int = 6, size: int = 48) -> torch.Tensor:
    return torch.from_numpy(np.stack([np.asarray(synthetic_photo((size, size), seed=i)) for i in range(n)]))


def pillow_jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    """What any Pillow user gets: save at ``quality`` with 4:2:0 chroma (Pillow's subsampling=2), decode."""
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=quality, subsampling=2)
    return np.array(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def datamodule(photo_dir: Path, seed: int, deg: object, **kwargs) -> SRDataModule:
    options = dict(scale=2, patch_size=32, patches_per_image=4, batch_size=8, eval_crop=None, num_workers=0, cut_mb=1)
    dm = SRDataModule.from_folder(str(photo_dir), 0.2, 0.2, **{**options, **kwargs}, seed=seed, degradation=deg)
    dm.setup("fit")
    return dm


# --- the default: bicubic, bit for bit the old path ------------------------------------------------
def test_bicubic_default_is_the_old_device_path(photo_dir):
    dm = datamodule(photo_dir, 0, degradation("bicubic"))
    batch = next(iter(dm.train_dataloader()))
    assert isinstance(batch, torch.Tensor)  # the loader still ships HR only: the LR is made on the device
    assert isinstance(next(iter(dm.val_dataloader())), torch.Tensor)
    cfg = OmegaConf.load(ROOT / "conf" / "model" / "cnn_small.yaml")
    module = SRModule("cnn_small", OmegaConf.to_container(cfg.net), 2, "mse", channels_last=False, compile=False)
    x, bicubic, hr = module.degrade(batch)
    old_lr = downscale(to_float(batch), 2)
    assert torch.equal(hr, to_float(batch))
    assert torch.equal(x, upsample(old_lr, 2, "bicubic")) and torch.equal(bicubic, x)
    # The loader-side bicubic (the first step of jpeg and noise) is that very LR, as 8-bit pixels.
    assert torch.equal(to_float(bicubic_lr(batch, 2)), old_lr)
    assert torch.equal(to_float(Bicubic().lr_batch(batch, 2, [])), old_lr)


def test_a_batch_with_its_own_lr_is_trained_on_that_lr():
    cfg = OmegaConf.load(ROOT / "conf" / "model" / "espcn.yaml")
    module = SRModule("espcn", OmegaConf.to_container(cfg.net), 2, "mse", channels_last=False, compile=False)
    hr = hr_batch(2)
    lr = JPEG(20, "4:2:0").lr_batch(hr, 2, [rng_for(0), rng_for(1)])
    x, bicubic, target = module.degrade((hr, lr))
    assert torch.equal(x, to_float(lr)) and torch.equal(target, to_float(hr))
    assert torch.equal(bicubic, upsample(to_float(lr), 2, "bicubic"))  # the baseline reads the degraded LR too


# --- seeded draws ---------------------------------------------------------------------------------
def _batches(dm: SRDataModule) -> tuple[list, list, list]:
    return list(dm.train_dataloader()), list(dm.val_dataloader()), list(dm.test_dataloader())


def _equal(a: list, b: list) -> bool:
    return all(torch.equal(x, y) for pa, pb in zip(a, b, strict=True) for x, y in zip(pa, pb, strict=True))


@pytest.mark.parametrize("name", ["jpeg", "noise", "real"])
def test_same_seed_same_lr_another_seed_other_lr(photo_dir, name):
    deg = degradation(name)
    a, b, other = (_batches(datamodule(photo_dir, seed, deg)) for seed in (0, 0, 1))
    assert all(isinstance(item, (list, tuple)) and len(item) == 2 for split in a for item in split)  # (HR, LR) pairs
    hr, lr = a[0][0]
    assert lr.dtype == torch.uint8 and lr.shape == (8, 16, 16, 3) and hr.shape == (8, 32, 32, 3)
    assert not torch.equal(lr, bicubic_lr(hr, 2))  # degraded, not the clean LR
    for split_a, split_b in zip(a, b, strict=True):  # train, val and test: bitwise equal
        assert _equal(split_a, split_b)
    # Another seed: the same val and test images, other draws (two images may draw alike: not all of them).
    pairs = [(x, y) for split in (1, 2) for x, y in zip(a[split], other[split], strict=True)]
    assert all(torch.equal(x[0], y[0]) for x, y in pairs) and not all(torch.equal(x[1], y[1]) for x, y in pairs)


def test_the_stream_survives_a_resume_and_loader_workers(photo_dir):
    deg = degradation("jpeg")
    whole = datamodule(photo_dir, 0, deg)
    per_epoch = len(whole.train_dataloader())
    stream = [b for _, b in zip(range(per_epoch + 3), _endless(whole), strict=False)]
    resumed = datamodule(photo_dir, 0, deg)
    resumed.load_state_dict({"epoch": 1, "batches_done": 1})  # a checkpoint mid-way through epoch 1
    loader = resumed.train_dataloader()
    loader.sampler.set_epoch(1)
    assert _equal(list(loader)[:2], stream[per_epoch + 1 : per_epoch + 3])
    workers = datamodule(photo_dir, 0, deg, num_workers=1)  # the LR made in a loader process
    assert _equal(list(workers.train_dataloader())[:2], stream[:2])


def _endless(dm: SRDataModule):
    loader = dm.train_dataloader()
    for epoch in range(3):
        loader.sampler.set_epoch(epoch)
        yield from loader


def test_ranges_draw_both_ends_and_fixed_values_do_not_draw():
    span = Span([30, 32], "degradation.quality", 1, 100, integer=True)
    rng = rng_for(0)
    assert {span.draw(rng) for _ in range(200)} == {30, 31, 32}
    fixed = Span(50, "degradation.quality", 1, 100, integer=True)
    assert fixed.fixed and fixed.draw(rng) == 50


# --- what each degradation makes ------------------------------------------------------------------
def test_jpeg_lr_is_pillows_decode_of_the_bicubic_lr():
    hr = hr_batch(3)
    clean = bicubic_lr(hr, 2).numpy()
    lr = JPEG(50, "4:2:0").lr_batch(hr, 2, [rng_for(i) for i in range(3)]).numpy()
    for i in range(3):
        assert np.array_equal(lr[i], pillow_jpeg(clean[i], 50))
    # Evaluation: the benchmark's double-precision bicubic LR, then the same Pillow JPEG.
    img = np.array(synthetic_photo((40, 34), seed=7))
    hr64 = torch.from_numpy(img).permute(2, 0, 1)[None].double() / 255
    lr64 = degraded_lr(hr64, 2, JPEG(50, "4:2:0"), rng_for(0))
    clean64 = downscale(hr64, 2)[0].permute(1, 2, 0).mul(255).round().byte().numpy()
    assert np.array_equal(lr64[0].permute(1, 2, 0).mul(255).round().byte().numpy(), pillow_jpeg(clean64, 50))


def test_jpeg_clean_prob_leaves_that_share_clean_and_evaluation_refuses_it():
    hr = hr_batch(40, 32)
    clean = bicubic_lr(hr, 2).numpy()
    lr = JPEG([30, 95], "4:2:0", clean_prob=0.5).lr_batch(hr, 2, [rng_for(i) for i in range(40)]).numpy()
    kept = sum(np.array_equal(a, b) for a, b in zip(lr, clean, strict=True))
    assert 10 <= kept <= 30  # about half; the others JPEG-encoded
    with pytest.raises(ConfigError, match=r"^degradation.clean_prob=0.5: evaluation JPEG-encodes every image"):
        JPEG(50, "4:2:0", clean_prob=0.5).check_for_evaluation()
    with pytest.raises(ConfigError, match=r"^degradation.clean_prob=2: must be between 0 and 1"):
        JPEG(50, "4:2:0", clean_prob=2)


def test_noise_has_the_strength_asked_for():
    flat = torch.full((1, 64, 64, 3), 128, dtype=torch.uint8)
    clean = bicubic_lr(flat, 2).float()
    for sigma in (5.0, 20.0):
        noisy = Noise(sigma, 0, 0.0).lr_batch(flat, 2, [rng_for(1)]).float()
        assert (noisy - clean).std().item() == pytest.approx(sigma, rel=0.1)
    shot = Noise(0, 2.0, 0.0).lr_batch(flat, 2, [rng_for(1)]).float()
    assert (shot - clean).var().item() == pytest.approx(2.0 * 128, rel=0.15)  # variance = gain x level
    gray = Noise(10.0, 0, 1.0).lr_batch(flat, 2, [rng_for(1)])
    assert torch.equal(gray[..., 0], gray[..., 1]) and torch.equal(gray[..., 1], gray[..., 2])


def test_real_chain_lands_at_the_lr_size_with_its_draws_seeded():
    hr = hr_batch(4, size=60)
    deg = degradation("real")
    lr = deg.lr_batch(hr, 3, [rng_for(i) for i in range(4)])
    assert lr.shape == (4, 20, 20, 3) and lr.dtype == torch.uint8
    assert torch.equal(lr, deg.lr_batch(hr, 3, [rng_for(i) for i in range(4)]))
    assert not torch.equal(lr, deg.lr_batch(hr, 3, [rng_for(i + 10) for i in range(4)]))
    # Two passes through blur, resize, noise and JPEG move the image further from the clean LR than none.
    assert (lr.float() - bicubic_lr(hr, 3).float()).abs().mean() > 1.0


def test_gray_images_degrade_as_gray():
    gray = torch.from_numpy(np.array(synthetic_photo((40, 40), seed=2).convert("L")))[None, ..., None]
    for name in ("jpeg", "noise", "real"):
        assert degradation(name).lr_batch(gray, 2, [rng_for(0)]).shape == (1, 20, 20, 1)


# --- scale 1: denoisers ---------------------------------------------------------------------------
@pytest.mark.parametrize("model", ["cnn_small", "espcn", "fsrcnn", "edsr_baseline", "compact"])
def test_every_net_builds_at_scale_1(model):
    cfg = OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "model" / f"{model}.yaml").net)
    net = contract.build_net(cfg, 1)
    check_net(net, 1)  # output the input's size
    lr = torch.rand(1, 3, 20, 20)
    assert net.eval()(lr if contract.reads_lr(net) else upsample(lr, 1, "bicubic")).shape == (1, 3, 20, 20)


@pytest.mark.parametrize(("model", "name"), [("cnn_small", "jpeg"), ("espcn", "noise")])  # pre-upsampling and LR-in
def test_scale_1_trains_a_denoiser(tmp_path, model, name):
    run_dir = tmp_path / "run"
    res = run_train(run_dir, f"model={model}", "data.scale=1", f"degradation={name}", "debug=fast")
    assert res.returncode == 0, res.stderr[-3000:]
    s = read_summary(run_dir)
    assert s["scale"] == 1 and s["steps"] == 3
    assert np.isfinite([s["psnr_y"], s["bicubic_psnr_y"]]).all()  # 0 px shaved, input != truth: finite
    assert s["degradation"].startswith(f"{name} (") and s["degradation_settings"]["name"] == name
    assert f"LR degradation           {s['degradation']}" in res.stdout
    hp = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["hyper_parameters"]
    assert hp["scale"] == 1 and hp["degradation"]["_target_"].rsplit(".", 1)[-1].lower() == name  # the model card's source


# --- src.evaluate on degraded benchmarks ----------------------------------------------------------
def _evaluate(*overrides: str) -> subprocess.CompletedProcess:
    return run_module("src.evaluate", "wandb=null", *overrides, timeout=120)


def test_evaluate_with_jpeg_adds_bicubic_from_the_degraded_lr(tmp_path):
    from tests.test_checkpoint import make_ckpt

    ckpt = make_ckpt(tmp_path / "tiny.ckpt")
    hr_dir = tmp_path / "SetA"
    hr_dir.mkdir()
    for i in range(2):
        synthetic_photo((40, 36), seed=i).save(hr_dir / f"p{i}.png")
    args = (f"ckpt_path={ckpt}", "degradation=jpeg", "degradation.quality=50", f"data.root=[{hr_dir}]")
    run = tmp_path / "run"
    proc = _evaluate(*args, f"hydra.run.dir={run}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = list(csv.DictReader((run / "results.csv").open()))
    # bicubic from the Pillow JPEG (quality 50) of each MATLAB-bicubic LR, computed here independently.
    expected = []
    for i in range(2):
        hr = torch.from_numpy(np.array(synthetic_photo((40, 36), seed=i))).permute(2, 0, 1)[None].double() / 255
        clean = downscale(hr, 2)[0].permute(1, 2, 0).mul(255).round().byte().numpy()
        lr = torch.from_numpy(pillow_jpeg(clean, 50)).permute(2, 0, 1)[None].double() / 255
        expected.append(scores(upsample(lr, 2, "bicubic"), hr, 2)[0])
        assert float(rows[i]["bicubic_psnr_y"]) == pytest.approx(expected[-1], abs=1e-9)
        assert float(rows[i]["clean_bicubic_psnr_y"]) > float(rows[i]["bicubic_psnr_y"])
    table = proc.stdout.split("## means by method")[1].strip().splitlines()[2:]
    jpeg = "jpeg (quality 50, subsampling 4:2:0)"
    assert [tuple(line.split(" | ")[:2]) for line in table] == [("| bicubic", "clean"), ("| bicubic", jpeg), ("| tiny", jpeg)]
    assert f"| {np.mean(expected):.2f} / " in table[1]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["degradation"] == {"name": "jpeg", "quality": 50, "subsampling": "4:2:0"}


# --- bad input: one line, exit 2 ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        (["degradation=jpeg", "degradation.quality=0"], "degradation.quality=0: must be between 1 and 100"),
        (["degradation=noise", "degradation.gaussian=-2"], "degradation.gaussian=-2: must be at least 0"),
        (["degradation=blurry"], "degradation=blurry: no conf/degradation/blurry.yaml; the options: bicubic, jpeg, noise, real"),
        (["data.scale=1"], "data.scale=1 with degradation=bicubic"),
        (["noise_level=3"], "noise_level=3: needs a degradation with noise (e.g. degradation=jpeg), not bicubic"),
        (["degradation=jpeg", "noise_level=5"], "noise_level=5: must be one of 0, 1, 2, 3, or null"),
    ],
)
def test_bad_degradation_options_give_one_line(tmp_path, overrides, needle):
    res = run_train(tmp_path / "run", "debug=fast", *overrides, timeout=120)
    assert res.returncode == 2 and res.stderr.strip().count("\n") == 0, res.stderr[-2000:]
    assert res.stderr.startswith(f"error: {needle}")


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        (["degradation=jpeg", "degradation.quality=101"], "degradation.quality=101: must be between 1 and 100"),
        (["degradation=jpeg"], "degradation.quality=[30, 95]: evaluation uses one value"),
        (["degradation=nope"], "degradation=nope: no conf/degradation/nope.yaml"),
    ],
)
def test_evaluate_refuses_bad_degradations_in_one_line(tmp_path, overrides, needle):
    res = _evaluate("scale=2", *overrides, f"hydra.run.dir={tmp_path / 'run'}")
    assert res.returncode == 2 and res.stderr.strip().count("\n") == 0, res.stderr[-2000:]
    assert res.stderr.startswith(f"error: {needle}")
    assert not (tmp_path / "run" / "results.csv").exists()


def test_constructors_name_the_option():
    with pytest.raises(ConfigError, match=r"^degradation.quality=\[50, 101\]: must be between 1 and 100"):
        JPEG([50, 101], "4:2:0")
    with pytest.raises(ConfigError, match=r"^degradation.poisson=\[-1, 1\]: must be at least 0"):
        build_degradation(OmegaConf.merge(OmegaConf.load(ROOT / "conf" / "degradation" / "real.yaml"), {"poisson": [-1, 1]}), 2)
    with pytest.raises(ConfigError, match=r"^degradation.subsampling=4:1:1: must be one of"):
        JPEG(50, "4:1:1")
    with pytest.raises(ConfigError, match=r"^degradation.gray_prob=1.5: must be between 0 and 1"):
        Noise(1, 0, 1.5)
    with pytest.raises(ConfigError, match=r"^degradation.blur=\[2, 1\]: a range \[lo, hi\] needs lo <= hi"):
        Real([2, 1], 1, 0, 0, 0, 90, "4:2:0", 0)


# --- the report and the panel carry the degradation -----------------------------------------------
def test_sweep_report_names_each_runs_degradation(tmp_path):
    from src.report.report import write_tables
    from src.report.runs import find_runs

    for i, (target, summary) in enumerate([
        ("src.degrade.degradations.JPEG", {"status": "completed", "degradation": "jpeg (quality 30-95, subsampling 4:2:0)"}),
        ("src.degrade.degradations.Noise", None),  # killed before its summary: the name comes from its config
    ]):  # fmt: skip
        run = tmp_path / f"{i}_cnn_small"
        (run / ".hydra").mkdir(parents=True)
        OmegaConf.save({"model": {"name": "cnn_small"}, "degradation": {"_target_": target}}, run / ".hydra" / "config.yaml")
        if summary:
            (run / "summary.json").write_text(json.dumps(summary))
    table = write_tables(find_runs(tmp_path), tmp_path)
    assert "LR degradation" in table.splitlines()[0]
    assert "| jpeg (quality 30-95, subsampling 4:2:0) |" in table and "| unfinished | noise |" in table


def test_evaluate_panel_shows_the_degraded_lr(tmp_path):
    from src.inference.checkpoint import load_checkpoint
    from src.inference.evaluate import evaluate_image
    from tests.test_checkpoint import make_ckpt

    model = load_checkpoint(make_ckpt(tmp_path / "tiny.ckpt"))
    photo = tmp_path / "p.png"
    synthetic_photo((40, 30), seed=3).save(photo)
    clean = evaluate_image(photo, model, truth=True, tile=8, tta=False, out_dir=tmp_path / "clean")
    jpeg = evaluate_image(photo, model, True, 8, False, tmp_path / "jpeg", degradation=JPEG(10, "4:2:0"))
    with Image.open(clean) as a, Image.open(jpeg) as b:
        assert a.size == b.size and np.asarray(a).tobytes() != np.asarray(b).tobytes()
