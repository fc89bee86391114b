"""Load a trained net from a weights file alone, without running any code the file names.

srlab's own files (a Lightning checkpoint of ``src.train``, a model file of ``src.model_file``, a
``.safetensors`` written by ``src.export``) carry the net's config: the net is rebuilt from it. Its
``_target_`` must name an ``nn.Module`` class (srlab's ``src.arch`` or a user's own package), never a
standard-library module, and its options must be plain values: otherwise a checkpoint could name any
importable callable (``os.system``...). Any other state dict (a published ``.pth`` or
``.safetensors``) is built by spandrel from its keys (``src.arch.spandrel_net``). Pickles are read
weights-only (``src.weights``).
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from src.arch.contract import NetContractError, construct, in_channels, resolve_target
from src.arch.pipeline import check_net
from src.arch.spandrel_net import SpandrelNet
from src.errors import ConfigError
from src.weights import CheckpointError, load_pickle, read_weights

MODEL_FILE_FORMAT = "srlab-model/1"  # src/inference/model_file.py writes it
BUNDLED_DIR = Path(__file__).resolve().parents[1] / "pretrained"  # the model files shipped in the package

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    """A net ready for inference (eval mode, no grads) and what the checkpoint says about it."""

    net: nn.Module
    scale: int
    name: str
    path: Path
    config: dict[str, Any]  # the net's config (_target_ and options), as a checkpoint stores it
    card: dict[str, Any] | None = None  # how it was trained (a model file's card; a checkpoint's hyper-parameters)

    @property
    def noise_level(self) -> int | None:
        """waifu2x's noise level (0-3) the model was trained to remove; ``None``: trained on clean LR."""
        level = (self.card or {}).get("noise_level")
        return int(level) if level is not None else None

    def describe(self) -> str:
        """One line: what the net is, its scale, size and input, and where it came from."""
        own = getattr(self.net, "describe", None)
        if callable(own):
            line = own()
        else:
            params = sum(p.numel() for p in self.net.parameters())
            line = (f"{self.name} x{self.scale} ({type(self.net).__name__}): {params:,} params, "
                    f"{in_channels(self.net)} input channel(s), from {self.path.name}")  # fmt: skip
        return line if self.noise_level is None else f"{line}, trained for noise level {self.noise_level}"


def _net_class(target: Any, path: Path) -> type[nn.Module]:
    if not isinstance(target, str) or not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+", target):
        raise CheckpointError(f"{path}: refused: net _target_ {target!r} is not a dotted class name")
    top = target.split(".")[0]
    if top in sys.stdlib_module_names or top == "builtins":
        raise CheckpointError(f"{path}: refused: net _target_ {target!r} is in the standard library, not a network class")
    try:
        obj = resolve_target(target)
    except (ImportError, AttributeError):
        raise CheckpointError(
            f"{path}: refused: net _target_ {target!r} cannot be imported (not in this version of srlab, or its package "
            "is not on PYTHONPATH)"
        ) from None
    if not (isinstance(obj, type) and issubclass(obj, nn.Module)):
        raise CheckpointError(f"{path}: refused: net _target_ {target!r} is not a network class")
    return obj


def _srlab_parts(content: Any, meta: Mapping[str, str]) -> tuple[dict | None, dict | None]:
    """(hyper-parameters, net weights) of an srlab file; (None, None) for anything else."""
    if meta.get("format") == MODEL_FILE_FORMAT:  # a .safetensors of src.export
        try:
            hp = {"name": meta["name"], "net": json.loads(meta["net"]), "scale": json.loads(meta["scale"])}
        except (KeyError, ValueError):
            return None, None
        prefix = meta.get("key_prefix", "")
        return hp, {k.removeprefix(prefix): v for k, v in content.items()}
    if not isinstance(content, dict):
        return None, None
    if content.get("format") == MODEL_FILE_FORMAT:  # a model file (src/inference/model_file.py)
        weights = content.get("weights")
        return {k: content.get(k) for k in ("name", "net", "scale")}, weights if isinstance(weights, dict) else None
    if isinstance(content.get("hyper_parameters"), dict) and isinstance(content.get("state_dict"), dict):
        state = content["state_dict"]  # a Lightning checkpoint of src.train
        return content["hyper_parameters"], {k.removeprefix("net."): v for k, v in state.items() if k.startswith("net.")}
    return None, None


def load_checkpoint(path: str | os.PathLike) -> LoadedModel:
    """Rebuild the net, its scale and its name from an srlab file or a published state dict."""
    path = Path(path)
    content, meta = read_weights(path)
    hp, weights = _srlab_parts(content, meta)
    if hp is None:
        return _published(content, path)
    if not isinstance(hp.get("net"), dict) or not isinstance(weights, dict):
        raise CheckpointError(f"{path}: not an srlab checkpoint (no hyper_parameters.net / state_dict)")
    net_cfg = dict(hp["net"])
    cls = _net_class(net_cfg.pop("_target_", None), path)
    # Plain values only: a nested dict could carry another _target_, and "_" keys are Hydra directives.
    bad = [k for k, v in net_cfg.items() if str(k).startswith("_") or isinstance(v, (dict, list, tuple))]
    if bad:
        raise CheckpointError(f"{path}: refused: unexpected net options {bad}")
    scale = hp.get("scale")
    if not isinstance(scale, int) or scale < 1:
        raise CheckpointError(f"{path}: hyper_parameters.scale={scale!r} is not a positive integer")
    try:
        # A net whose layers follow from its weights (a published architecture) is rebuilt from them.
        from_weights = getattr(cls, "from_weights", None)
        net = from_weights(weights, **net_cfg, scale=scale) if callable(from_weights) else construct(cls, net_cfg, scale)
        net.load_state_dict(weights)
    except (TypeError, ValueError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0]
        raise CheckpointError(f"{path}: the weights do not fit {cls.__name__} ({first[:160]})") from None
    loaded = _ready(net, scale, str(hp.get("name", cls.__name__)), path, dict(hp["net"]))
    loaded.card = _card(content)
    return loaded


def _card(content: Any) -> dict[str, Any] | None:
    """A model file's card; for a training checkpoint, what its hyper-parameters say of the LR it trained on."""
    if not isinstance(content, dict):
        return None
    if isinstance(content.get("card"), dict):
        return content["card"]
    hp = content.get("hyper_parameters")
    if isinstance(hp, dict):
        return {"degradation": hp.get("degradation"), "noise_level": hp.get("noise_level")}
    return None


def _published(content: Any, path: Path) -> LoadedModel:
    """A state dict from elsewhere (an OpenModelDB ``.pth``, a ``.safetensors``), built by spandrel."""
    if not isinstance(content, Mapping) or not content:
        raise CheckpointError(f"{path}: neither an srlab checkpoint nor a state dict (holds a {type(content).__name__})")
    net = SpandrelNet.from_published(content, str(path))
    config = {"_target_": f"{SpandrelNet.__module__}.{SpandrelNet.__name__}", "path": str(path)}
    return _ready(net, net.scale, net.architecture, path, config)


def _ready(net: nn.Module, scale: int, name: str, path: Path, config: dict[str, Any]) -> LoadedModel:
    try:
        check_net(net, scale)  # a net that breaks the size contract is refused here, not mid-photo
    except NetContractError as e:
        raise CheckpointError(f"{path}: {e}") from None
    net.eval().requires_grad_(False)
    return LoadedModel(net=net, scale=scale, name=name, path=path, config=config)


def bundled_file(model: str, scale: int) -> Path:
    return BUNDLED_DIR / f"{model}_x{scale}.pt"


def bundled_models() -> list[str]:
    """``<model> x<scale>`` of every bundled model file."""
    return [p.stem.replace("_x", " x") for p in sorted(BUNDLED_DIR.glob("*_x*.pt"))]


def best_bundled(scale: int, noise_level: int | None = None) -> str:
    """The bundled model at ``scale`` trained for ``noise_level`` (``None``: clean LR) with the highest
    validation PSNR-Y on its card (all bundled models trained on the same photos with the same split, so
    their validation images are the same)."""
    scores = {name: float(card.get("val_psnr_y", float("-inf")))
              for name, card in bundled_cards(scale).items() if card.get("noise_level") == noise_level}  # fmt: skip
    if scores:
        return max(scores, key=scores.__getitem__)
    if noise_level is None:
        raise CheckpointError(f"--scale {scale}: no bundled model at x{scale} (bundled: {', '.join(bundled_models()) or 'none'})")
    noisy = {f"level {card['noise_level']} x{s}" for s in (1, 2, 3, 4) for card in bundled_cards(s).values()
             if card.get("noise_level") is not None}  # fmt: skip
    raise CheckpointError(f"--noise {noise_level} --scale {scale}: no bundled model for noise level {noise_level} at "
                          f"x{scale} (bundled noise models: {', '.join(sorted(noisy)) or 'none'})")  # fmt: skip


def bundled_cards(scale: int) -> dict[str, dict[str, Any]]:
    """The card of each bundled model at ``scale``, by name."""
    return {path.stem.removesuffix(f"_x{scale}"): load_pickle(path, mmap=True).get("card") or {}
            for path in sorted(BUNDLED_DIR.glob(f"*_x{scale}.pt"))}  # fmt: skip


def check_noise_level(model: LoadedModel, level: int) -> None:
    """Refuse, in one line, ``--noise level`` with a model trained for another level or for clean LR."""
    if model.noise_level == level:
        return
    trained = "clean LR (no noise level)" if model.noise_level is None else f"noise level {model.noise_level}"
    raise CheckpointError(f"--noise {level}: {model.path.name} was trained for {trained}; leave --noise out, "
                          f"or pick a model trained for level {level}")  # fmt: skip


def load_model(ckpt: str | os.PathLike | None, model: str | None = None, scale: int | None = None) -> LoadedModel:
    """The net of a checkpoint or model file (``ckpt``), or a bundled model (``model`` at ``scale``, default 2)."""
    bundled = f"bundled: {', '.join(bundled_models()) or 'none'}"
    if ckpt and model:
        raise CheckpointError(f"checkpoint {ckpt} and bundled model {model}: give one of them, not both")
    if not (ckpt or model):
        raise CheckpointError(f"no model: give a checkpoint or model file, or a bundled model's name and scale ({bundled})")
    path = bundled_file(model, scale or 2) if model else Path(ckpt)
    if model and not path.is_file():
        raise CheckpointError(f"{model} x{scale or 2}: no such bundled model ({bundled})")
    loaded = load_checkpoint(path)
    log.info("model: %s", loaded.describe())
    if scale is not None and loaded.scale != scale:
        raise CheckpointError(f"--scale {scale}: {ckpt} holds a x{loaded.scale} model (the scale picks a bundled model only)")
    return loaded


def resumable_step(path: Path) -> int | None:
    """The global step of a full training checkpoint (weights, optimizer, loops); ``None`` if it cannot be resumed."""
    try:
        ckpt = load_pickle(path, mmap=True)
    except CheckpointError:  # unreadable for any reason: not one to resume from
        return None
    if not isinstance(ckpt, dict) or not {"state_dict", "optimizer_states", "loops"} <= ckpt.keys():
        return None
    step = ckpt.get("global_step")
    return step if isinstance(step, int) else None


def resume_checkpoint(run_dir: Path, required: bool) -> Path | None:
    """The checkpoint a killed run continues from: ``checkpoints/last.ckpt``, else the newest (by step)
    other checkpoint there that can be resumed (with a warning).

    With none, ``required`` refuses in one line (a resumed run starting over in its own dir would mix
    two runs' metrics); otherwise ``None`` (a sweep job that never saved starts afresh).
    """
    folder = run_dir / "checkpoints"
    last = folder / "last.ckpt"
    if last.is_file() and resumable_step(last) is not None:
        return last
    steps = {p: resumable_step(p) for p in folder.glob("*.ckpt") if p != last}
    others = [(step, p.stat().st_mtime, p) for p, step in steps.items() if step is not None]
    if others:
        step, _, best = max(others)
        why = "cannot be read" if last.exists() else "is missing"
        log.warning("resume: %s %s; continuing from %s (step %d)", last, why, best.name, step)
        return best
    if required:
        what = "last.ckpt cannot be read and no other checkpoint can" if last.exists() else "no checkpoint"
        raise ConfigError(f"resume={run_dir}: nothing to continue from ({what} in {folder}); start a new run instead")
    return None
