import logging
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from src.data.crops import FlatImages
from src.data.datamodule import SRDataModule
from src.data.images import ImageError, load_many, load_rgb
from src.data.patches import EpochBatchSampler, EvalImages, PatchBatches
from src.data.sample import SAMPLE_PHOTOS, sample_splits
from src.data.splits import assign_splits, split_folder
from src.errors import ConfigError, DataError


def test_load_rgb_modes(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (10, 16, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    np.testing.assert_array_equal(load_rgb(tmp_path / "rgb.png"), rgb)
    Image.fromarray(rgb[..., 0]).save(tmp_path / "gray.png")
    assert load_rgb(tmp_path / "gray.png").shape == (10, 16, 3)
    Image.fromarray(np.dstack([rgb, np.full((10, 16), 128, np.uint8)])).save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(load_rgb(tmp_path / "rgba.png"), rgb)
    Image.fromarray(np.full((4, 5), 65535, np.uint16)).save(tmp_path / "g16.png")
    assert load_rgb(tmp_path / "g16.png").min() == 255  # scaled, not clipped garbage
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg")
    assert load_rgb(tmp_path / "cmyk.jpg").shape == (10, 16, 3)


def test_load_rgb_applies_exif_orientation(tmp_path):
    im = Image.fromarray(np.zeros((10, 20, 3), np.uint8))
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    im.save(tmp_path / "rot.jpg", exif=exif)
    assert load_rgb(tmp_path / "rot.jpg").shape == (20, 10, 3)


@pytest.mark.parametrize("content", [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n" + b"\x00" * 20])
def test_undecodable_file_names_itself(tmp_path, content):
    bad = tmp_path / "bad.png"
    bad.write_bytes(content)
    with pytest.raises(ImageError, match="bad.png"):
        load_rgb(bad)


def test_load_many_skips_bad_and_tiny_with_warning(tmp_path, caplog):
    Image.new("RGB", (40, 40), "red").save(tmp_path / "good.png")
    Image.new("RGB", (8, 8), "red").save(tmp_path / "tiny.png")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    with caplog.at_level(logging.WARNING):
        images, kept = load_many(sorted(tmp_path.iterdir()), min_size=32)
    assert [p.name for p in kept] == ["good.png"] and len(images) == 1
    assert "broken.jpg" in caplog.text and "tiny.png" in caplog.text


def test_split_folder_is_deterministic_and_stable_when_files_are_added(photo_dir):
    first = split_folder(str(photo_dir), 0.2, 0.2)
    assert first == split_folder(str(photo_dir), 0.2, 0.2)
    assert all(first[s] for s in ("train", "val", "test"))
    assert not set(first["train"]) & (set(first["val"]) | set(first["test"]))
    for i in range(12, 40):
        Image.new("RGB", (64, 64)).save(photo_dir / f"img{i:02d}.png")
    second = split_folder(str(photo_dir), 0.2, 0.2)
    for s in ("train", "val", "test"):
        assert set(first[s]) <= set(second[s])


def test_folder_splits_are_pinned():
    """A folder's files keep the splits they always had (a changed hash or threshold would leak val/test into train)."""
    splits = assign_splits([Path("/r") / f"img{i:03d}.png" for i in range(12)], "/r", 0.25, 0.25)
    assert {s: [p.name for p in v] for s, v in splits.items()} == {
        "train": ["img000.png", "img002.png", "img003.png", "img006.png", "img009.png", "img010.png", "img011.png"],
        "val": ["img004.png", "img005.png", "img007.png", "img008.png"],
        "test": ["img001.png"],
    }


def test_split_folder_errors(tmp_path):
    with pytest.raises(DataError, match="no such directory"):
        split_folder(str(tmp_path / "missing"), 0.1, 0.1)
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(DataError, match="no image files"):
        split_folder(str(tmp_path), 0.1, 0.1)


def test_patch_batches_are_deterministic_and_cover_images():
    images = [np.full((50, 60, 3), i, np.uint8) for i in range(3)]
    ds = PatchBatches(images, patch_size=16, patches_per_image=8, batch_size=4, seed=1)
    assert len(ds) == 6
    b = ds[0]
    assert b.shape == (4, 16, 16, 3) and b.dtype == torch.uint8
    assert torch.equal(b, PatchBatches(images, 16, 8, 4, seed=1)[0])
    epoch0 = torch.cat([ds[k] for k in range(6)])
    assert sorted(torch.bincount(epoch0[:, 0, 0, 0].long()).tolist()) == [8, 8, 8]  # each image 8x per epoch
    assert not torch.equal(torch.cat([ds[k] for k in range(6, 12)]), epoch0)  # next epoch: new order/crops


def test_patch_augmentation_uses_flips_and_rotations():
    img = np.arange(16 * 16 * 3, dtype=np.uint8).reshape(16, 16, 3)
    ds = PatchBatches([img], patch_size=16, patches_per_image=64, batch_size=64, seed=0)
    variants = {tuple(p.flatten().tolist()) for p in ds[0]}
    assert len(variants) == 8
    # Each is one of the 8 flips/rotations of the image (a 16 px patch of a 16 px image is the image).
    d4 = {
        tuple(np.ascontiguousarray(v).flatten().tolist())
        for r in (img, img[::-1])
        for c in (r, r[:, ::-1])
        for v in (c, c.transpose(1, 0, 2))
    }
    assert variants == d4


def _odd_images(n: int = 5) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [rng.integers(0, 256, (int(rng.integers(20, 60)), int(rng.integers(20, 60)), 3), dtype=np.uint8) for _ in range(n)]


def test_batches_cut_ahead_equal_batches_cut_one_at_a_time():
    images = _odd_images()
    one = PatchBatches(images, 16, patches_per_image=12, batch_size=8, seed=2)
    ahead = PatchBatches(images, 16, patches_per_image=12, batch_size=8, seed=2, cut_bytes=3 * 8 * 16 * 16 * 3)
    assert one.batches_per_cut == 1 and ahead.batches_per_cut == 3 and len(one) == 7
    ks = list(range(2 * len(one))) + [9, 3, 4]  # across the epoch's end (7 % 3 != 0), then a jump back (a resume)
    for k in ks:
        assert torch.equal(ahead[k], one[k]), k


def test_cut_ahead_in_loader_workers_matches_the_training_process():
    images = _odd_images()
    ds = PatchBatches(images, 16, patches_per_image=12, batch_size=8, seed=2, cut_bytes=1 << 20)
    ref = [ds[k].clone() for k in range(len(ds))]
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2)
    assert all(torch.equal(a, b) for a, b in zip(loader, ref, strict=True))


def test_a_loader_worker_cuts_ahead_only_the_items_it_will_be_asked_for(monkeypatch):
    ds = PatchBatches(_odd_images(), 16, patches_per_image=12, batch_size=8, seed=2, cut_bytes=1 << 20)
    monkeypatch.setattr("src.data.patches.get_worker_info", lambda: SimpleNamespace(num_workers=2))
    assert sorted(ds._cut_ahead(1)) == [1, 3, 5]  # worker 1 of 2, to the epoch's end (7 batches)


def test_flat_images_hold_the_images_unchanged():
    images = [np.random.default_rng(i).integers(0, 256, (5 + i, 7 + 2 * i, 3), dtype=np.uint8) for i in range(3)]
    flat = FlatImages(images)
    assert len(flat) == 3 and flat.shapes.tolist() == [[5, 7], [6, 9], [7, 11]]
    for a, b in zip(images, flat, strict=True):
        np.testing.assert_array_equal(a, b)
    assert flat.flat().size == sum(im.size for im in images) and len(FlatImages([])) == 0


def test_epoch_sampler_follows_set_epoch():
    s = EpochBatchSampler(5)
    assert list(s) == [0, 1, 2, 3, 4]
    s.set_epoch(2)
    assert list(s) == [10, 11, 12, 13, 14] and len(s) == 5


def test_eval_images_modcrop_and_centre_crop():
    img = np.zeros((31, 45, 3), np.uint8)
    assert EvalImages([img], scale=3)[0].shape == (30, 45, 3)
    assert EvalImages([img], scale=4, crop=20)[0].shape == (20, 20, 3)


def test_sample_photos_ship_with_installed_packages():
    splits = sample_splits(list(SAMPLE_PHOTOS), [], [])
    assert all(p.is_file() for p in splits["train"])
    with pytest.raises(DataError, match="unknown"):
        sample_splits(["mona_lisa"], [], [])


def test_datamodule_end_to_end(photo_dir):
    dm = SRDataModule(split_folder(str(photo_dir), 0.2, 0.2), 2, 32, 4, 8, None, 0, cut_mb=1, seed=0)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch.shape == (8, 32, 32, 3) and batch.dtype == torch.uint8
    assert next(iter(dm.val_dataloader())).shape == (1, 96, 96, 3)


def test_rescaled_copies_join_the_train_split_only(photo_dir):
    # The FSRCNN paper's augmentation: each training photo again at 0.9 ... 0.6 of its size.
    kw = dict(scale=2, patch_size=48, patches_per_image=4, batch_size=8, eval_crop=None, num_workers=0, cut_mb=1, seed=0)
    plain = SRDataModule.from_folder(str(photo_dir), 0.2, 0.2, **kw)
    dm = SRDataModule.from_folder(str(photo_dir), 0.2, 0.2, rescales=[0.75, 0.4], **kw)
    n = len(plain.names["train"])
    assert dm.names["train"][:n] == plain.names["train"]
    assert dm.names["train"][n:] == [f"{x}@0.75" for x in plain.names["train"]]  # the 38 px copies: under the patch
    assert tuple(dm.images["train"].shapes[n]) == (72, 72) and len(dm.images["train"]) == 2 * n
    assert [im.shape for im in dm.images["val"]] == [im.shape for im in plain.images["val"]]
    with pytest.raises(ConfigError, match=r"data.rescales=\[1.5\]: each factor must be between 0 and 1"):
        SRDataModule.from_folder(str(photo_dir), 0.2, 0.2, rescales=[1.5], **kw)


def test_restored_position_continues_the_epoch_once(photo_dir):
    dm = SRDataModule.from_folder(str(photo_dir), 0.2, 0.2, scale=2, patch_size=32, patches_per_image=4, batch_size=8,
                                  eval_crop=None, num_workers=0, cut_mb=1, seed=0)  # fmt: skip
    dm.load_state_dict({"epoch": 1, "batches_done": 3})
    assert list(dm.train_sampler(5)) == [8, 9]  # epoch 1, batches 3 and 4
    assert list(dm.train_sampler(5)) == [0, 1, 2, 3, 4]  # applied once only
    dm.load_state_dict({"epoch": 1, "batches_done": 5})  # saved at the end of epoch 1
    assert list(dm.train_sampler(5)) == [10, 11, 12, 13, 14]


def _names_in(val_fraction: float, test_fraction: float, n: int) -> tuple[list[str], str, str]:
    """``n`` file names, and one that hashes into test and one into val (as the split would draw them)."""
    from src.data.splits import _unit_hash

    names = [f"img{i:03d}.png" for i in range(200)]
    into_test = next(x for x in names if _unit_hash(x) < test_fraction)
    into_val = next(x for x in names if test_fraction <= _unit_hash(x) < test_fraction + val_fraction)
    good = [x for x in names if _unit_hash(x) >= test_fraction + val_fraction][: n - 2]
    return good, into_val, into_test


def test_corrupt_files_drawn_for_val_and_test_do_not_stop_training(tmp_path, caplog):
    good, into_val, into_test = _names_in(0.1, 0.1, 10)
    for i, name in enumerate(good):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(tmp_path / name)
    (tmp_path / into_val).write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (tmp_path / into_test).write_bytes(b"")
    dm = SRDataModule.from_folder(str(tmp_path), 0.1, 0.1, scale=2, patch_size=32, patches_per_image=4, batch_size=4,
                                  eval_crop=None, num_workers=0, cut_mb=1, seed=0)  # fmt: skip
    dm.setup("fit")
    assert all(dm.names[s] for s in ("train", "val", "test"))
    assert sum(len(v) for v in dm.names.values()) == 8
    assert into_val in caplog.text and into_test in caplog.text


def test_a_folder_with_too_few_readable_images_says_how_many_are_needed(tmp_path):
    for i in range(2):
        Image.new("RGB", (40, 40), (i, 0, 0)).save(tmp_path / f"ok{i}.png")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    with pytest.raises(DataError, match=r"too few images: only 2 usable image\(s\) among 3 file\(s\).*at least 3") as info:
        SRDataModule.from_folder(str(tmp_path), 0.1, 0.1, scale=2, patch_size=32, patches_per_image=4, batch_size=4,
                                 eval_crop=None, num_workers=0, cut_mb=1, seed=0)  # fmt: skip
    assert "no readable image" not in str(info.value) and "\n" not in str(info.value)
