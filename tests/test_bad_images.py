"""One battery of awkward files through each entry point: training data, prepare, upscale, evaluate."""

import json
from pathlib import Path

import pytest

from src.data.images import list_images, load_many
from src.data.prepare import prepare
from src.evaluate import evaluate_folders
from src.upscale import main as upscale_main
from tests.bad_images import write_battery
from tests.test_checkpoint import make_ckpt


@pytest.fixture(scope="module")
def battery(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    d = tmp_path_factory.mktemp("battery")
    return d, write_battery(d)


def test_training_loader_uses_the_good_and_names_the_rest(battery, caplog):
    d, kinds = battery
    images, kept = load_many(list_images(d), min_size=48)
    assert sorted(p.name for p in kept) == sorted(n for n, k in kinds.items() if k == "good")
    for name, kind in kinds.items():
        if kind != "good":
            assert name in caplog.text, name
    rotated = images[[p.name for p in kept].index("exif_rotated.jpg")]
    assert rotated.shape == (120, 100, 3)  # 100 x 120 photo, displayed rotated


def test_prepare_stores_the_good_and_lists_the_rest(battery, tmp_path):
    d, kinds = battery
    prepare(d, tmp_path / "store", min_size=48, val_fraction=0.0, test_fraction=0.0, progress=False)
    index = json.loads((tmp_path / "store" / "index.json").read_text())
    skipped = {Path(s["name"]).name for s in index["skipped"]}
    assert skipped == {n for n, k in kinds.items() if k != "good"}, index["skipped"]
    assert sorted(Path(e["name"]).name for e in index["splits"]["train"]) == sorted(n for n, k in kinds.items() if k == "good")


def test_upscale_writes_the_good_and_names_the_bad(battery, tmp_path, capsys):
    d, kinds = battery
    ckpt = make_ckpt(tmp_path / "tiny.ckpt")
    code = upscale_main([str(d), "--ckpt", str(ckpt), "--out", str(tmp_path / "out"), "--tile", "0"])
    err = capsys.readouterr().err
    assert code == 1  # something failed, and the status says so
    written = {p.stem.removesuffix("_x2") for p in (tmp_path / "out").iterdir()}
    for name, kind in kinds.items():
        if kind == "bad":
            assert name in err and Path(name).stem not in written, name
        else:  # valid files, however small or big, are upscaled
            assert Path(name).stem in written, name


def test_evaluate_scores_the_good_and_names_the_rest(battery, caplog):
    d, kinds = battery
    rows = evaluate_folders([str(d)], scale=2, model=None, tile=None)  # bicubic only: the loader is what is tested
    scored = {r["image"] for r in rows}
    assert {Path(n).stem for n, k in kinds.items() if k == "good"} <= scored
    for name, kind in kinds.items():
        if kind == "bad":
            assert name in caplog.text and Path(name).stem not in scored, name
