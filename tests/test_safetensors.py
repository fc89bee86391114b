"""Model files as safetensors: srlab's nets in and out without pickles, and in the published key
layout where one exists (Compact), so that other tools do not mistake one net for another."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from safetensors import safe_open

from src.inference.checkpoint import CheckpointError, load_checkpoint
from src.inference.export import main
from src.inference.tiling import sr_whole
from tests.test_checkpoint import make_ckpt

NETS = [("src.arch.ESPCN", 2, {}), ("src.arch.FSRCNN", 3, {}), ("src.arch.EDSR", 4, {"blocks": 2}),
        ("src.arch.Compact", 2, {"num_conv": 2}), ("src.arch.CNNSmall", 3, {})]  # fmt: skip


@pytest.mark.parametrize(("target", "scale", "kwargs"), NETS)
def test_export_reloads_with_the_same_output(tmp_path, capsys, target, scale, kwargs):
    ckpt = make_ckpt(tmp_path / "m.ckpt", target=target, scale=scale, **kwargs)
    out = tmp_path / "m.safetensors"
    assert main(["--ckpt", str(ckpt), "--out", str(out), "--device", "cpu"]) == 0
    assert "parity: max |reloaded - source| = " in capsys.readouterr().out
    source, back = load_checkpoint(ckpt), load_checkpoint(out)
    assert (back.name, back.scale, type(back.net)) == (source.name, source.scale, type(source.net))
    lr = torch.rand(1, 3, 13, 17)
    assert torch.equal(sr_whole(back.net, lr, scale), sr_whole(source.net, lr, scale))
    with safe_open(str(out), "pt") as f:
        keys, meta = list(f.keys()), f.metadata()
    assert meta["format"] == "srlab-model/1" and '"_target_": "' + target in meta["net"]
    if target == "src.arch.Compact":  # Real-ESRGAN's own names, as spandrel and chaiNNer read them
        assert "body.0.weight" in keys and meta["architecture"] == "Compact"
    else:  # no other tool's key layout: body.N of a conv stack would read as Compact
        assert all(k.startswith("net.") for k in keys) and "architecture" not in meta


def test_a_header_naming_a_non_network_is_refused(tmp_path):
    out = tmp_path / "m.safetensors"
    assert main(["--ckpt", str(make_ckpt(tmp_path / "m.ckpt")), "--out", str(out), "--no-check"]) == 0
    from safetensors.torch import load_file, save_file

    with safe_open(str(out), "pt") as f:
        meta = f.metadata()
    save_file(load_file(str(out)), str(out), metadata=meta | {"net": '{"_target_": "os.system", "command": "true"}'})
    with pytest.raises(CheckpointError, match="refused: net _target_ 'os.system' is in the standard library"):
        load_checkpoint(out)


def test_junk_safetensors_is_one_line(tmp_path):
    bad = tmp_path / "junk.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    with pytest.raises(CheckpointError, match="junk.safetensors: not a readable safetensors file") as info:
        load_checkpoint(bad)
    assert "\n" not in str(info.value)


@pytest.mark.skipif(importlib.util.find_spec("spandrel") is not None, reason="with spandrel the file loads (tests/zoo)")
@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_published_weights_without_spandrel_say_what_to_install(tmp_path, suffix):
    from safetensors.torch import save_file

    path = tmp_path / f"x4_model{suffix}"
    state = {"body.0.weight": torch.zeros(8, 3, 3, 3), "body.0.bias": torch.zeros(8)}
    torch.save(state, path) if suffix == ".pth" else save_file(state, str(path))
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert "pip install -e '.[zoo]'" in str(info.value) and "\n" not in str(info.value)
