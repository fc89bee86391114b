"""data.on_device=true: crop plans on the host, crops cut on the device (here the CPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import read_summary, run_train, synthetic_photo

from src.data.crops import TRANSFORM_ORDER, BatchCropper, CropPlan, CropPlans
from src.data.datamodule import SRDataModule
from src.data.device_patches import DeviceCrops
from src.data.prepare import prepare
from src.data.store import open_store


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dev")
    (tmp / "photos").mkdir()
    for i in range(10):
        synthetic_photo((90 + 7 * i, 70 + 5 * i), seed=i).save(tmp / "photos" / f"p{i}.png")
    prepare(tmp / "photos", tmp / "store", min_size=64, val_fraction=0.2, test_fraction=0.2, progress=False)
    return tmp / "store"


def reference_crop(img: np.ndarray, y: int, x: int, t: int, p: int) -> np.ndarray:
    """The crop and flip/rotation as PatchBatches cuts it in numpy."""
    patch = img[y : y + p, x : x + p]
    if t & 1:
        patch = patch[::-1]
    if t & 2:
        patch = patch[:, ::-1]
    if t & 4:
        patch = patch.transpose(1, 0, 2)
    return patch


def test_crops_match_numpy_for_all_8_transforms(store):
    images = open_store(store, {"train": 32})["train"]
    cropper = BatchCropper(images, 32, torch.device("cpu"))
    rng = np.random.default_rng(0)
    plan = []
    for t in range(8):
        for n in range(len(images)):
            h, w = images.shapes[n]
            plan.append([n, rng.integers(0, h - 31), rng.integers(0, w - 31), t])
    plan.sort(key=lambda r: TRANSFORM_ORDER.index(r[3]))
    out = cropper.crops(CropPlan(torch.tensor(plan), tuple([len(images)] * 8)))
    assert out.shape == (len(plan), 32, 32, 3) and out.dtype == torch.uint8
    for (n, y, x, t), patch in zip(plan, out.numpy(), strict=True):
        np.testing.assert_array_equal(patch, reference_crop(images[n], y, x, t, 32))


def test_plans_are_deterministic_cover_the_epoch_and_shard():
    shapes = np.array([[50, 60], [40, 80], [100, 33]])
    plans = CropPlans(shapes, 32, patches_per_image=4, batch_size=6, seed=1)
    assert len(plans) == 2
    first = plans[0]
    groups = [TRANSFORM_ORDER.index(t) for t in first.where[:, 3].tolist()]
    assert groups == sorted(groups)  # grouped by transform, in the order the device's batched flips need
    assert list(first.counts) == np.bincount(first.where[:, 3], minlength=8).tolist()
    epoch0 = torch.cat([plans[0].where, plans[1].where])
    assert torch.equal(plans[0].where, CropPlans(shapes, 32, 4, 6, seed=1)[0].where)
    assert sorted(epoch0[:, 0].tolist()) == [0] * 4 + [1] * 4 + [2] * 4  # every image patches_per_image times
    room = torch.as_tensor(shapes)[epoch0[:, 0]] - 32
    assert (epoch0[:, 1] <= room[:, 0]).all() and (epoch0[:, 2] <= room[:, 1]).all() and (epoch0[:, 1:3] >= 0).all()
    assert not torch.equal(plans[2].where, plans[0].where)  # the next epoch draws afresh
    halves = [CropPlans(shapes, 32, 4, 6, seed=1, shard=(r, 2))[0].where for r in range(2)]
    assert sorted(torch.cat(halves).tolist()) == sorted(plans[0].where.tolist())
    short = CropPlans(shapes[:1], 32, patches_per_image=2, batch_size=6, seed=1)  # fewer patches than a batch
    assert len(short) == 1 and short[0].where[:, 0].tolist() == [0, 0] and sum(short[0].counts) == 2


def test_module_turns_plans_into_uint8_batches(store):
    kw = {
        "scale": 2,
        "patch_size": 48,
        "patches_per_image": 4,
        "batch_size": 5,
        "eval_crop": None,
        "num_workers": 0,
        "cut_mb": 1,
        "seed": 3,
    }
    dm = SRDataModule.from_store(str(store), on_device=True, **kw)
    assert isinstance(dm.device_crops, DeviceCrops)
    dm.setup("fit")
    plan = next(iter(dm.train_dataloader()))
    assert plan.where.shape == (5, 4) and plan.where.dtype == torch.int64 and sum(plan.counts) == 5
    batch = dm.on_after_batch_transfer(plan, 0)
    assert batch.shape == (5, 48, 48, 3) and batch.dtype == torch.uint8
    val = next(iter(dm.val_dataloader()))
    assert dm.on_after_batch_transfer(val, 0) is val  # eval images pass through


def test_train_on_device(store, tmp_path):
    r = run_train(tmp_path / "run", "model=cnn_small", "data=store", f"data.path={store}", "data.on_device=true", "debug=fast")
    assert r.returncode == 0, r.stderr[-3000:]
    s = read_summary(tmp_path / "run")
    assert s["steps"] == 3 and np.isfinite(s["psnr_y"]) and s["patches_per_second"] > 0
