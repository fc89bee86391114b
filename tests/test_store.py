"""The memory-mapped store and SRDataModule.from_store: zero-copy views, errors, a training run."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from conftest import read_summary, run_train, synthetic_photo

from src.data import pages
from src.data.datamodule import SRDataModule
from src.data.patches import PatchBatches
from src.data.prepare import prepare
from src.data.store import open_store
from src.errors import DataError

KW = {
    "scale": 2,
    "patch_size": 48,
    "patches_per_image": 8,
    "batch_size": 4,
    "eval_crop": None,
    "num_workers": 0,
    "cut_mb": 1,
    "seed": 0,
}


@pytest.fixture
def store(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(16):
        synthetic_photo((96 + 8 * i, 80), seed=i).save(photos / f"p{i:02d}.png")
    synthetic_photo((60, 60), seed=99).save(photos / "small.png")  # stored (min-size 32), too small for 64 px patches
    prepare(photos, tmp_path / "store", min_size=32, val_fraction=0.25, test_fraction=0.25, progress=False)
    return tmp_path / "store"


def test_images_are_zero_copy_views_that_pickle_small(store):
    images = open_store(store, {})["train"]
    arr = images[0]
    assert arr.dtype == np.uint8 and arr.ndim == 3 and arr.flags.writeable
    assert np.shares_memory(arr, images.flat())  # a view of the mapping, not a copy
    torch.from_numpy(arr)  # writable (copy-on-write mapping): no torch warning, no copy
    blob = pickle.dumps(images)
    assert len(blob) < 4000  # entries only: a spawned loader worker maps the file itself
    again = pickle.loads(blob)
    np.testing.assert_array_equal(again[len(again) - 1], images[len(images) - 1])


def test_release_keeps_views_valid(store, monkeypatch):
    monkeypatch.setattr(pages, "RELEASE_BYTES", 1)  # drop the mapping's pages after every access
    images = open_store(store, {})["train"]
    first = images[0].copy()
    view = images[0]
    for i in range(len(images)):
        images[i]
    np.testing.assert_array_equal(view, first)  # re-read from the page cache after MADV_DONTNEED


def test_a_store_over_the_budget_releases_its_pages_after_each_read(store, monkeypatch):
    images = open_store(store, {})["train"]
    dropped = []
    images[0]  # maps the file

    class Mapping:  # stands in for the mmap, to see the madvise calls (mmap's type cannot be patched)
        def __init__(self, size: int) -> None:
            self.size = size

        def __len__(self) -> int:
            return self.size

        def madvise(self, *args: int) -> None:
            dropped.append(args)

    images.mapping = Mapping(1000)
    monkeypatch.setattr(pages, "RELEASE_BYTES", 1000)  # the store fits the budget: its pages stay
    images[1]
    assert dropped == []
    images.mapping = Mapping(1001)  # over it: every read drops the pages of the reads before
    images[1]
    images[2]
    assert dropped == [(pages.mmap.MADV_DONTNEED,)] * 2


def test_cuts_from_a_store_stay_within_the_mapping_budget(store, monkeypatch):
    images = open_store(store, {"train": 32})["train"]
    per_batch = 4 * pages.mapped_per_crop(images.shapes, 32)  # estimated mapping of one 4-patch batch
    monkeypatch.setattr(pages, "CUT_MAP_BYTES", 3 * per_batch)
    from_store = PatchBatches(images, 32, patches_per_image=16, batch_size=4, seed=0, cut_bytes=1 << 30)
    in_memory = PatchBatches([images[i] for i in range(len(images))], 32, 16, 4, seed=0, cut_bytes=1 << 30)
    assert from_store.batches_per_cut == 3 and in_memory.batches_per_cut > 3
    assert len(from_store._cut_ahead(0)) == 3
    assert all(torch.equal(from_store[k], in_memory[k]) for k in range(8))


def test_from_store_module(store):
    dm = SRDataModule.from_store(str(store), patch_size=64, **{k: v for k, v in KW.items() if k != "patch_size"})
    dm.setup("fit")
    assert "small" not in dm.names["train"]  # 60 px < patch size: left out (with a warning)
    batch = next(iter(dm.train_dataloader()))
    assert batch.shape == (4, 64, 64, 3) and batch.dtype == torch.uint8
    val = next(iter(dm.val_dataloader()))
    assert val.dtype == torch.uint8 and val.shape[0] == 1
    assert sorted(dm.names) == ["test", "train", "val"]


def test_store_errors_are_one_line(store, tmp_path):
    with pytest.raises(DataError, match=r"not a prepared store .*python -m src.data.prepare PHOTOS"):
        SRDataModule.from_store(str(tmp_path / "missing"), **KW)
    with open(store / "val.u8", "r+b") as f:
        f.truncate(10)
    with pytest.raises(DataError, match="val.u8: 10 bytes, its index needs"):
        SRDataModule.from_store(str(store), **KW)
    with pytest.raises(DataError, match="train split has no image of at least 500 px"):
        open_store(store, {"train": 500})


def test_train_from_store(store, tmp_path):
    r = run_train(tmp_path / "run", "model=cnn_small", "data=store", f"data.path={store}", "debug=fast")
    assert r.returncode == 0, r.stderr[-3000:]
    s = read_summary(tmp_path / "run")
    assert s["steps"] == 3 and np.isfinite(s["psnr_y"])
    r = run_train(tmp_path / "bad", "model=cnn_small", "data=store", f"data.path={tmp_path / 'nope'}", "debug=fast")
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].startswith("error: ") and "Traceback" not in r.stderr
