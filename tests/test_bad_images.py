"""One battery of awkward files through each entry point: training data, prepare, upscale, evaluate."""

import json
from pathlib import Path

import pytest
from PIL import Image

from src.data.images import list_images, load_many
from src.data.prepare import prepare
from src.inference.scoring import evaluate_folders
from src.inference.upscale import main as upscale_main
from tests.bad_images import png_bit_depth, write_battery
from tests.conftest import synthetic_photo
from tests.test_checkpoint import make_ckpt

USED_BY_DATA_TOOLS = ("good", "animated")  # the training loader, prepare and evaluate read an animation's first frame


@pytest.fixture(scope="module")
def battery(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    d = tmp_path_factory.mktemp("battery")
    return d, write_battery(d)


def test_training_loader_uses_the_good_and_names_the_rest(battery, caplog):
    d, kinds = battery
    images, kept = load_many(list_images(d), min_size=48)
    assert sorted(p.name for p in kept) == sorted(n for n, k in kinds.items() if k in USED_BY_DATA_TOOLS)
    for name, kind in kinds.items():
        if kind not in USED_BY_DATA_TOOLS:
            assert name in caplog.text, name
    rotated = images[[p.name for p in kept].index("exif_rotated.jpg")]
    assert rotated.shape == (120, 100, 3)  # 100 x 120 photo, displayed rotated


def test_prepare_stores_the_good_and_lists_the_rest(battery, tmp_path):
    d, kinds = battery
    prepare(d, tmp_path / "store", min_size=48, val_fraction=0.0, test_fraction=0.0, progress=False)
    index = json.loads((tmp_path / "store" / "index.json").read_text())
    skipped = {Path(s["name"]).name for s in index["skipped"]}
    assert skipped == {n for n, k in kinds.items() if k not in USED_BY_DATA_TOOLS}, index["skipped"]
    stored = sorted(Path(e["name"]).name for e in index["splits"]["train"])
    assert stored == sorted(n for n, k in kinds.items() if k in USED_BY_DATA_TOOLS)


def test_upscale_writes_the_good_and_names_the_bad(battery, tmp_path, capsys):
    d, kinds = battery
    ckpt = make_ckpt(tmp_path / "tiny.ckpt")
    code = upscale_main([str(d), "--ckpt", str(ckpt), "--out", str(tmp_path / "out"), "--tile", "0"])
    err = capsys.readouterr().err
    assert code == 1  # something failed, and the status says so
    written = {p.stem.removesuffix("_x2") for p in (tmp_path / "out").iterdir()}
    for name, kind in kinds.items():
        if kind in ("bad", "animated"):
            assert name in err and Path(name).stem not in written, name
        else:  # valid files, however small or big, are upscaled
            assert Path(name).stem in written, name
    assert "animated (2 frames)" in err
    assert png_bit_depth(tmp_path / "out" / "rgb16_x2.png") == (16, 2)  # 16-bit RGB stays 16-bit RGB


def test_evaluate_scores_the_good_and_names_the_rest(battery, caplog):
    d, kinds = battery
    rows = evaluate_folders([str(d)], scale=2, model=None, tile=None)  # bicubic only: the loader is what is tested
    scored = {r["image"] for r in rows}
    assert {Path(n).stem for n, k in kinds.items() if k in USED_BY_DATA_TOOLS} <= scored
    for name, kind in kinds.items():
        if kind == "bad":
            assert name in caplog.text and Path(name).stem not in scored, name


def test_one_pixel_limit_for_every_reader(tmp_path, monkeypatch, caplog):
    # Pillow only warns between its limit and twice it: each reader must refuse there alike.
    # (The real limit is ~89 MP; lowered here so the over-limit photo stays tiny.)
    d = tmp_path / "photos"
    d.mkdir()
    synthetic_photo((60, 60), seed=1).save(d / "within.png")  # 3,600 px
    synthetic_photo((80, 80), seed=2).save(d / "over.png")  # 6,400 px: over 4,000, under twice it
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 4000)
    _, kept = load_many(list_images(d), min_size=48)
    assert [p.name for p in kept] == ["within.png"] and "over.png" in caplog.text and "limit" in caplog.text
    prepare(d, tmp_path / "store", min_size=48, val_fraction=0.0, test_fraction=0.0, progress=False)
    index = json.loads((tmp_path / "store" / "index.json").read_text())
    assert [Path(s["name"]).name for s in index["skipped"]] == ["over.png"]
    assert [r["image"] for r in evaluate_folders([str(d)], scale=2, model=None, tile=None)] == ["within"]
    ckpt = make_ckpt(tmp_path / "tiny.ckpt")
    assert upscale_main([str(d), "--ckpt", str(ckpt), "--out", str(tmp_path / "out"), "--max-pixels", "4000"]) == 1
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["within_x2.png"]
