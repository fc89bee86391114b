"""python -m src.data.prepare: decoding, skip list, duplicates, content-hash splits, resume after a kill."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, synthetic_photo
from PIL import Image

from src.data import prepare as prep
from src.data.images import load_rgb
from src.data.prepare import prepare
from src.data.store import open_store, split_of
from src.errors import DataError

OPTS = {"min_size": 64, "val_fraction": 0.25, "test_fraction": 0.25, "progress": False}


def store_files(store: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(store.iterdir()) if p.name != ".lock"}


@pytest.fixture
def mixed_dir(tmp_path: Path) -> Path:
    """Good photos plus one of every awkward kind of file."""
    d = tmp_path / "mixed"
    (d / "sub").mkdir(parents=True)
    for i in range(6):
        synthetic_photo((120, 90), seed=i).save(d / f"good{i}.png")
    synthetic_photo((120, 90), seed=10).save(d / "sub" / "nested.jpg", quality=90)
    rgb = np.asarray(synthetic_photo((100, 80), seed=11))
    Image.fromarray(rgb[..., 0]).save(d / "gray.png")
    Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 200, np.uint8)])).save(d / "rgba.png")
    Image.fromarray(rgb[..., 1].astype(np.uint16) * 257).save(d / "g16.png")
    Image.fromarray(rgb).convert("CMYK").save(d / "cmyk.jpg")
    im = synthetic_photo((120, 80), seed=12)
    exif = im.getexif()
    exif[0x0112] = 6  # shown rotated 90 degrees: stored 80 wide, 120 high
    im.save(d / "rotated.jpg", exif=exif)
    (d / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    synthetic_photo((50, 40), seed=13).save(d / "tiny.png")
    shutil.copy(d / "good0.png", d / "zcopy.png")  # the same bytes
    Image.open(d / "good1.png").save(d / "good1_again.bmp")  # the same pixels, other bytes
    (d / "notes.txt").write_text("not an image suffix: ignored")
    return d


def test_prepare_mixed_folder(mixed_dir, tmp_path):
    summary = prepare(mixed_dir, tmp_path / "store", **OPTS)
    index = json.loads((tmp_path / "store" / "index.json").read_text())
    stored = {e["name"]: (split, e) for split in ("train", "val", "test") for e in index["splits"][split]}
    expected = {f"good{i}.png" for i in range(6)} | {
        "sub/nested.jpg",
        "gray.png",
        "rgba.png",
        "g16.png",
        "cmyk.jpg",
        "rotated.jpg",
    }
    assert set(stored) == expected and summary["stored"] == len(expected)
    skipped = {r["name"]: r["reason"] for r in index["skipped"]}
    assert set(skipped) == {"corrupt.jpg", "tiny.png"}
    assert skipped["corrupt.jpg"].startswith("cannot decode image (")
    assert skipped["tiny.png"] == "50x40 px is smaller than --min-size 64"
    assert {r["name"]: r["of"] for r in index["duplicates"]} == {"zcopy.png": "good0.png", "good1_again.bmp": "good1.png"}
    images = open_store(tmp_path / "store", {})
    for split, imgs in images.items():
        for entry, arr in zip(imgs.entries, imgs, strict=True):
            assert split == split_of(entry["sha"], 0.25, 0.25)
            np.testing.assert_array_equal(arr, load_rgb(mixed_dir / entry["name"]))  # decoded like every loader
    assert stored["rotated.jpg"][1]["shape"] == [120, 80]
    assert stored["g16.png"][1]["shape"] == [80, 100]
    assert sum(len(v) for v in images.values()) == len(expected)


def test_store_splits_are_pinned():
    """Photos of existing stores keep their splits: the rule from a file's SHA-256 to its split never changes."""
    shas = [hashlib.sha256(f"photo{i}".encode()).hexdigest() for i in range(12)]
    assert [split_of(sha, 0.25, 0.25) for sha in shas] == [
        "test", "test", "val", "train", "test", "train", "train", "test", "test", "train", "test", "val"
    ]  # fmt: skip


def test_rerun_is_a_no_op_and_max_side_caps(mixed_dir, tmp_path):
    prepare(mixed_dir, tmp_path / "store", **OPTS)
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "store").iterdir()}
    assert prepare(mixed_dir, tmp_path / "store", **OPTS)["stored"] == 0
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "store").iterdir()} == before
    prepare(mixed_dir, tmp_path / "capped", max_side=100, **OPTS)
    shapes = [e["shape"] for s in open_store(tmp_path / "capped", {}).values() for e in s.entries]
    assert max(max(s) for s in shapes) == 100 and [75, 100] in shapes
    with pytest.raises(DataError, match="prepared with max_side=100"):
        prepare(mixed_dir, tmp_path / "capped", **OPTS)


def test_split_is_stable_when_files_are_added(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(12):
        synthetic_photo((96, 72), seed=i).save(photos / f"a{i:02d}.png")
    prepare(photos, tmp_path / "store", **OPTS)
    first = json.loads((tmp_path / "store" / "index.json").read_text())["splits"]
    for i in range(12):
        synthetic_photo((96, 72), seed=100 + i).save(photos / f"{i:02d}_new.png")  # sorts before the old ones
    assert prepare(photos, tmp_path / "store", **OPTS)["stored"] == 12
    second = json.loads((tmp_path / "store" / "index.json").read_text())["splits"]
    for split in first:
        assert second[split][: len(first[split])] == first[split]  # old entries, offsets and bytes untouched
    fresh = prepare(photos, tmp_path / "fresh", **OPTS)
    assert fresh["splits"] == {s: len(v) for s, v in second.items()}
    assert {s: {e["name"] for e in v} for s, v in second.items()} == {
        s: {e["name"] for e in v} for s, v in json.loads((tmp_path / "fresh" / "index.json").read_text())["splits"].items()
    }
    assert all(second[s] for s in ("train", "val", "test"))


def test_resume_after_crash_equals_uninterrupted(mixed_dir, tmp_path, monkeypatch):
    prepare(mixed_dir, tmp_path / "whole", **OPTS)
    real, calls = prep._decode, []

    def crashing(*args):
        calls.append(1)
        if len(calls) == 7:
            raise RuntimeError("simulated crash")
        return real(*args)

    monkeypatch.setattr(prep, "_decode", crashing)
    with pytest.raises(RuntimeError):
        prepare(mixed_dir, tmp_path / "resumed", **OPTS, commit_every=2, workers=1)
    store = tmp_path / "resumed"
    index = json.loads((store / "index.json").read_text())
    assert 0 < sum(len(v) for v in index["splits"].values()) < 12  # a partial store was committed
    # What a kill leaves besides: pixels past the index, a half-written index.
    with open(store / "train.u8", "ab") as f:
        f.write(b"\x07" * 12345)
    (store / "index.json.tmp").write_text('{"format": 1, "spl')
    monkeypatch.setattr(prep, "_decode", real)
    prepare(mixed_dir, store, **OPTS)
    assert store_files(store) == store_files(tmp_path / "whole")


def test_interrupt_keeps_finished_photos(mixed_dir, tmp_path, monkeypatch):
    real, calls = prep._decode, []

    def interrupted(*args):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(prep, "_decode", interrupted)
    with pytest.raises(KeyboardInterrupt):
        prepare(mixed_dir, tmp_path / "store", **OPTS, workers=1)
    index = json.loads((tmp_path / "store" / "index.json").read_text())
    assert sum(len(v) for v in index["splits"].values()) + len(index["skipped"]) + len(index["duplicates"]) >= 4


def test_killed_process_resumes_to_the_same_store(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(40):
        synthetic_photo((160, 120), seed=i).save(photos / f"p{i:02d}.png")
    prepare(photos, tmp_path / "whole", **OPTS)
    cmd = [sys.executable, "-m", "src.data.prepare", str(photos), str(tmp_path / "killed"), "--quiet", "--min-size", "64"]
    cmd += ["--val-fraction", "0.25", "--test-fraction", "0.25", "--workers", "1"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for attempt in range(5):  # a kill that lands after the last photo proves nothing: start again, kill sooner
        shutil.rmtree(tmp_path / "killed", ignore_errors=True)
        proc = subprocess.Popen(
            [*cmd, "--commit-every", "1"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 60
        while not (tmp_path / "killed" / "index.json").exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
        time.sleep(random.uniform(0, 0.05) / (attempt + 1))  # whenever the kill lands, the re-run must give the same store
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        index = json.loads((tmp_path / "killed" / "index.json").read_text())
        if sum(len(v) for v in index["splits"].values()) < 40:  # killed part-way
            break
    else:
        pytest.fail("prepare finished all 40 photos before each of 5 kills")
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert store_files(tmp_path / "killed") == store_files(tmp_path / "whole")


def test_cli_reports_and_errors(mixed_dir, tmp_path):
    cmd = [sys.executable, "-m", "src.data.prepare", str(mixed_dir), str(tmp_path / "store"), "--quiet", "--min-size", "64"]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "12 photos added, 2 skipped, 2 duplicates" in r.stdout
    assert "skipped tiny.png: 50x40 px is smaller than --min-size 64" in r.stdout
    assert "duplicate zcopy.png of good0.png" in r.stdout
    r = subprocess.run([sys.executable, "-m", "src.data.prepare", str(tmp_path / "nope"), str(tmp_path / "s2")], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    assert r.returncode == 2 and r.stderr.strip() == f"error: {tmp_path / 'nope'}: no such photo directory"


def test_a_second_prepare_on_a_store_being_written_is_refused(mixed_dir, tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    hold = f"import filelock, time; lock = filelock.FileLock({str(store / '.lock')!r}); lock.acquire(); print('held', flush=True); time.sleep(60)"  # noqa: E501
    holder = subprocess.Popen([sys.executable, "-c", hold], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(DataError, match="another prepare is writing this store"):
            prepare(mixed_dir, store, max_side=None, **OPTS)
    finally:
        holder.kill()
        holder.wait()
    prepare(mixed_dir, store, max_side=None, **OPTS)  # the lock went with its process
    assert (store / "index.json").is_file()
