"""src.evaluate: benchmark folders to CSV/markdown, the photo panel, one-line errors."""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import DictConfig
from PIL import Image

from src.devices import default_precision, select_device
from src.errors import ConfigError, DataError
from src.inference.checkpoint import load_checkpoint
from src.inference.evaluate import evaluate, evaluate_image
from src.inference.scoring import evaluate_folders, read_hr, score_image
from tests.commands import run_module
from tests.conftest import ROOT, synthetic_photo
from tests.test_checkpoint import make_ckpt


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return make_ckpt(tmp_path_factory.mktemp("ckpt") / "tiny.ckpt")


def _config(*overrides: str) -> DictConfig:
    """conf/evaluate.yaml with ``overrides``, as ``python -m src.evaluate`` composes it."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose(config_name="evaluate", overrides=list(overrides))


def _evaluate(*overrides: str) -> subprocess.CompletedProcess:
    return run_module("src.evaluate", *overrides, timeout=120)


def test_cli_scores_several_sets_to_csv_and_markdown(tmp_path, ckpt):
    a, b = tmp_path / "SetA", tmp_path / "SetB"
    a.mkdir(), b.mkdir()
    synthetic_photo((40, 34), seed=0).save(a / "photo.png")
    synthetic_photo((33, 41), seed=1).convert("L").save(a / "gray.png")  # odd sizes: modcrop
    (a / "broken.png").write_text("not an image")
    synthetic_photo((36, 36), seed=2).save(b / "other.png")
    run = tmp_path / "run"
    proc = _evaluate(f"ckpt_path={ckpt}", f"data.root=[{a},{b}]", f"hydra.run.dir={run}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "broken.png" in proc.stdout + proc.stderr
    rows = list(csv.DictReader((run / "results.csv").open()))
    assert [(r["set"], r["image"]) for r in rows] == [("SetA", "gray"), ("SetA", "photo"), ("SetB", "other")]
    md = (run / "results.md").read_text()
    assert "## SetA" in md and "## SetB" in md and "mean (2)" in md and "mean (1)" in md
    # The net ran where auto chose, in that device's default precision, and the summary says so.
    summary = json.loads((run / "summary.json").read_text())
    device = select_device("auto")
    assert (summary["device"], summary["precision"]) == (str(device), default_precision(device))
    assert f"{summary['device']} (" in md.splitlines()[0]
    # The CLI's numbers are the library's (nothing lost in formatting).
    model = load_checkpoint(ckpt)
    expected = score_image(read_hr(a / "photo.png"), 2, model, "auto", device, summary["precision"])
    for key, value in expected.items():
        assert float(rows[1][key]) == pytest.approx(value, abs=1e-9)
    assert np.isfinite([float(rows[0][k]) for k in expected]).all()
    # The same rows went to an offline W&B run (job_type evaluate) whose id the summary names.
    run_id = json.loads((run / "summary.json").read_text())["wandb_run_id"]
    assert run_id and list((run / "wandb").glob(f"offline-run-*-{run_id}/run-{run_id}.wandb"))


def test_bad_checkpoint_and_folder_give_one_line_errors(tmp_path, ckpt):
    proc = _evaluate(f"ckpt_path={tmp_path / 'missing.ckpt'}", f"hydra.run.dir={tmp_path / 'r1'}")
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0 and "missing.ckpt" in proc.stderr
    # The device and precision options: one line through the CLI, and each refusal in-process.
    gpu = "cuda" if not torch.cuda.is_available() else "cuda:99"
    proc = _evaluate(f"ckpt_path={ckpt}", f"device={gpu}", f"hydra.run.dir={tmp_path / 'r2'}")
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0 and proc.stderr.startswith(f"error: device={gpu}: ")
    for option, what in [("device=gpu", "device=gpu: not a device"), ("precision=fp8", "precision=fp8: not a precision")]:
        with pytest.raises(ConfigError, match=f"^{what}"):
            evaluate(_config(f"ckpt_path={ckpt}", option, f"paths.output_dir={tmp_path / 'r3'}"))
    with pytest.raises(ConfigError, match="^tile=-3: use auto"):
        evaluate(_config(f"ckpt_path={ckpt}", "tile=-3", f"paths.output_dir={tmp_path / 'r3'}"))
    assert not (tmp_path / "r3").exists()  # refused before any work
    with pytest.raises(DataError, match="nowhere"):
        evaluate_folders([str(tmp_path / "nowhere")], 2, None, None)


@pytest.mark.parametrize("truth", [True, False])
def test_image_panel_has_all_columns(tmp_path, ckpt, truth):
    photo = tmp_path / "p.png"
    synthetic_photo((41, 30), seed=3).save(photo)
    dest = evaluate_image(photo, load_checkpoint(ckpt), truth=truth, tile=8, tta=False, out_dir=tmp_path / "out")
    with Image.open(dest) as im:
        w, h = im.size
    if truth:  # 4 columns of the modcropped HR size: LR (nearest), bicubic, SR, HR
        assert w == 4 * 40 and h > 30
    else:  # the photo is the LR: 3 columns at twice its size
        assert w == 3 * 82 and h > 60
