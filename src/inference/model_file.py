"""Model files: a trained net without Lightning (net config, scale, weights, and the card of how it was made).

    python -m src.model_file <run dir or .ckpt> --out model.pt [--fp16]
    python -m src.export --ckpt <ckpt> --format safetensors --out model.safetensors   # no pickle at all

A model file is a ``torch.save`` of plain containers and tensors, read with ``weights_only=True`` like
any checkpoint (``src.inference.checkpoint.load_checkpoint`` takes both). The bundled models in
``src/pretrained/`` are such files: ``--model cnn_deep --scale 3`` in upscale, evaluate and export.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from src.arch.spandrel_net import SpandrelNet
from src.inference.checkpoint import MODEL_FILE_FORMAT, LoadedModel, load_checkpoint
from src.weights import save_safetensors

SRLAB_KEY_PREFIX = "net."  # srlab's own key layout in a .safetensors: no other tool mistakes it for theirs


def pack(ckpt: dict[str, Any], card: dict[str, Any], fp16: bool, name: str | None = None) -> dict[str, Any]:
    """A model file's contents from a Lightning checkpoint's (already loaded weights-only), named
    ``name`` (default: the run's model name)."""
    hp = ckpt["hyper_parameters"]
    weights = {k.removeprefix("net."): v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}
    if fp16:  # halves the file; inference runs in fp32 or the chosen precision (weights are cast on load)
        weights = {k: v.half() for k, v in weights.items()}
    meta = {"format": MODEL_FILE_FORMAT, "name": name or hp["name"], "scale": hp["scale"], "net": hp["net"]}
    return meta | {"weights": weights, "card": card}


def published_weights(model: LoadedModel) -> tuple[str, dict[str, torch.Tensor]] | None:
    """(architecture, weights under its published key names) for a net other tools load by its keys
    (spandrel, chaiNNer): one built by spandrel, or an srlab net that declares ``spandrel_architecture``
    (Compact). ``None`` for the rest, whose layout no other tool knows."""
    net = model.net
    if isinstance(net, SpandrelNet):
        return net.architecture, {k.removeprefix("model."): v for k, v in net.state_dict().items()}
    arch = getattr(net, "spandrel_architecture", None)
    return (arch, net.state_dict()) if arch else None


def write_safetensors(model: LoadedModel, out: Path) -> str:
    """Write ``model`` as a ``.safetensors`` file; return the key layout written.

    A net with a published layout (:func:`published_weights`) keeps its key names, so spandrel and
    the tools built on it load the file as that architecture; srlab's header (net config, scale)
    rides along for srlab's own nets. Any other net's keys get the ``net.`` prefix, so no tool that
    detects architectures by key names (spandrel reads ``body.N`` as Compact) mistakes the file for
    another net: srlab reads it back from its header.
    """
    published = published_weights(model)
    card = {"name": model.name, "scale": model.scale, "described": model.describe()}
    if published is not None and isinstance(model.net, SpandrelNet):  # read back by its keys, like the original
        arch, weights = published
        save_safetensors(weights, {"architecture": arch, "srlab_card": card}, out)
        return f"{arch} (published key names)"
    meta = {"format": MODEL_FILE_FORMAT, "name": model.name, "scale": model.scale, "net": model.config, "srlab_card": card}
    if published is not None:
        arch, weights = published
        save_safetensors(weights, meta | {"architecture": arch, "key_prefix": ""}, out)
        return f"{arch} (published key names)"
    weights = {SRLAB_KEY_PREFIX + k: v for k, v in model.net.state_dict().items()}
    save_safetensors(weights, meta | {"key_prefix": SRLAB_KEY_PREFIX}, out)
    return "srlab (net. keys)"


def data_name(data_cfg: Any) -> str:
    """The training data by name, not by path (a card travels to other machines): a folder's image sets
    (its subfolders, e.g. "BSD200 + T91"), else its own name; the data module for built-in data."""
    if "root" not in data_cfg:
        return str(data_cfg.get("_target_"))
    root = Path(str(data_cfg.root)).resolve()
    sets = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    return " + ".join(sets) or root.name


def card_of(run_dir: Path) -> dict[str, Any]:
    """How a run's net was made: its data, recipe, budget and hardware, from the run's own files."""
    cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    summary = json.loads((run_dir / "summary.json").read_text())
    return {
        "data": data_name(cfg.data),
        "recipe": {
            "optimizer": OmegaConf.to_container(cfg.optimizer), "scheduler": OmegaConf.to_container(cfg.scheduler),
            "data": {k: cfg.data[k] for k in ("scale", "patch_size", "patches_per_image", "batch_size")},
            "epochs": summary["epochs"], "steps": summary["steps"], "precision": summary["precision"], "seed": cfg.seed,
        },
        "budget": {"fit_seconds": summary["fit_seconds"], "device": summary["device"], "host": summary.get("host")},
        # The LR it was trained for (None: a run from before degradations were options, bicubic).
        "degradation": OmegaConf.to_container(cfg.degradation) if cfg.get("degradation") else None,
        "noise_level": cfg.get("noise_level"),  # waifu2x's level it removes (upscale --noise); None: clean LR
        "val_psnr_y": summary["val_psnr_y"],
        "params": summary["params"], "macs_per_pixel": summary["macs_per_pixel"],  # per output pixel, measured
    }  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Pack a training run's best checkpoint into a model file.")
    parser.add_argument("run", type=Path, help="a run dir (its best checkpoint, from summary.json) or a .ckpt in one")
    parser.add_argument("--out", type=Path, required=True, help="the model file to write")
    parser.add_argument("--fp16", action="store_true", help="store the weights in fp16 (half the size)")
    parser.add_argument("--name", help="the model's name in cards and logs (default: the run's model, e.g. cnn_deep)")
    args = parser.parse_args(argv)
    run_dir = args.run if args.run.is_dir() else args.run.parent.parent
    ckpt_path = Path(json.loads((run_dir / "summary.json").read_text())["checkpoint"]) if args.run.is_dir() else args.run
    load_checkpoint(ckpt_path)  # refuses an unsafe or foreign file before it is packed
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    card = card_of(run_dir)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(f".{args.out.name}.tmp")
    torch.save(pack(ckpt, card, args.fp16, args.name), tmp)
    tmp.replace(args.out)
    hp = ckpt["hyper_parameters"]
    print(f"{args.out}: {args.name or hp['name']} x{hp['scale']}, {args.out.stat().st_size:,} bytes")

