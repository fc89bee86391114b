"""Load a trained net from a checkpoint file alone, without running any code the file names.

A Lightning checkpoint is a pickle. ``torch.load(weights_only=True)`` only rebuilds tensors and plain
containers, so a crafted file cannot execute code while loading. The net is then rebuilt from the
config stored in the checkpoint (``hyper_parameters.net``); its ``_target_`` is checked against the
``src.arch`` package first, or a checkpoint could name any importable callable (``os.system``...).
"""

from __future__ import annotations

import importlib
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from src.errors import SrlabError

ALLOWED_PREFIX = "src.arch."


class CheckpointError(SrlabError):
    """The checkpoint file cannot be used (missing, corrupt, unsafe, or not an srlab model)."""


@dataclass
class LoadedModel:
    """A net ready for inference (eval mode, no grads) and what the checkpoint says about it."""

    net: nn.Module
    scale: int
    name: str
    path: Path


def _net_class(target: Any, path: Path) -> type[nn.Module]:
    if not isinstance(target, str) or not target.startswith(ALLOWED_PREFIX):
        raise CheckpointError(f"{path}: refused: net _target_ {target!r} is not in {ALLOWED_PREFIX}* (only srlab nets are built)")
    module_name, _, attr = target.rpartition(".")
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError):
        raise CheckpointError(f"{path}: net _target_ {target!r} does not exist in this version of srlab") from None
    if not (isinstance(obj, type) and issubclass(obj, nn.Module)):
        raise CheckpointError(f"{path}: refused: net _target_ {target!r} is not a network class")
    return obj


def load_checkpoint(path: str | os.PathLike) -> LoadedModel:
    """Rebuild the net, its scale and its name from a ``.ckpt`` written by ``src.train``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # weights_only's restricted unpickler met a global it does not allow: code would have run.
        first = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path}: refused: loading it would run arbitrary code ({first[:160]})") from None
    except Exception as e:  # corrupt bytes can fail anywhere in the unpickler (IndexError, KeyError, ...)
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(e).__name__})") from None
    hp = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    state = ckpt.get("state_dict") if isinstance(ckpt, dict) else None
    if not isinstance(hp, dict) or not isinstance(hp.get("net"), dict) or not isinstance(state, dict):
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
        net = cls(**net_cfg)
        weights = {k.removeprefix("net."): v for k, v in state.items() if k.startswith("net.")}
        net.load_state_dict(weights)
    except (TypeError, ValueError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0]
        raise CheckpointError(f"{path}: the weights do not fit {cls.__name__} ({first[:160]})") from None
    net.eval().requires_grad_(False)
    return LoadedModel(net=net, scale=scale, name=str(hp.get("name", cls.__name__)), path=path)
