"""Load a trained net from a checkpoint file alone, without running any code the file names.

A Lightning checkpoint is a pickle. ``torch.load(weights_only=True)`` only rebuilds tensors and plain
containers, so a crafted file cannot execute code while loading. The net is then rebuilt from the
config stored in the checkpoint (``hyper_parameters.net``). Its ``_target_`` must name an
``nn.Module`` class (srlab's ``src.arch`` or a user's own package), never a standard-library module,
and its options must be plain values: otherwise a checkpoint could name any importable callable
(``os.system``...).
"""

from __future__ import annotations

import logging
import os
import pickle
import pickletools
import re
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import torch
from torch import nn

from src.arch.contract import NetContractError, construct, resolve_target
from src.arch.pipeline import check_net
from src.errors import ConfigError, SrlabError

MODEL_FILE_FORMAT = "srlab-model/1"  # src/inference/model_file.py writes it
BUNDLED_DIR = Path(__file__).resolve().parents[1] / "pretrained"  # the model files shipped in the package

log = logging.getLogger(__name__)


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


def pickle_globals(path: Path) -> list[str] | None:
    """The callables a pickle (bare, or the ``data.pkl`` of torch's zip format) names, read without
    running it; ``None`` if the file is not a well-formed pickle."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                inner = [n for n in z.namelist() if n.endswith("data.pkl")]
                if not inner:
                    return None
                return _globals_in(z.read(inner[0]))
        with open(path, "rb") as f:
            return _globals_in(f)
    except Exception:  # genops raises ValueError on junk, and anything else on stranger junk
        return None


def _globals_in(data: bytes | BinaryIO) -> list[str]:
    found, strings = [], []
    for op, arg, _ in pickletools.genops(data):  # reads up to STOP; raises if there is none
        if op.name in ("GLOBAL", "INST"):
            found.append(str(arg).replace(" ", "."))
        elif op.name == "STACK_GLOBAL":  # module and name were pushed as the last two strings
            found.append(".".join(strings[-2:]) if len(strings) >= 2 else "a global")
        if isinstance(arg, str):
            strings.append(arg)
    return found


def load_checkpoint(path: str | os.PathLike) -> LoadedModel:
    """Rebuild the net, its scale and its name from a ``.ckpt`` written by ``src.train``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # The restricted unpickler stopped. Code would have run only if the file is a well-formed pickle
        # that names a callable; random bytes stop it too, and are just not a checkpoint.
        named = re.search(r"GLOBAL ([\w.]+)", str(e))
        found = pickle_globals(path)
        if found is not None and (named or found):
            raise CheckpointError(
                f"{path}: refused: loading it would run arbitrary code (it calls {named.group(1) if named else found[0]})"
            ) from None
        raise CheckpointError(f"{path}: not a readable checkpoint (not a well-formed pickle)") from None
    except Exception as e:  # corrupt bytes can fail anywhere in the unpickler (IndexError, KeyError, ...)
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(e).__name__})") from None
    if isinstance(ckpt, dict) and ckpt.get("format") == MODEL_FILE_FORMAT:  # a model file (src/inference/model_file.py)
        hp = {k: ckpt.get(k) for k in ("name", "net", "scale")}
        weights = ckpt.get("weights")
        state = {f"net.{k}": v for k, v in weights.items()} if isinstance(weights, dict) else None
    else:  # a Lightning checkpoint of src.train
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
        net = construct(cls, net_cfg, scale)
        weights = {k.removeprefix("net."): v for k, v in state.items() if k.startswith("net.")}
        net.load_state_dict(weights)
    except (TypeError, ValueError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0]
        raise CheckpointError(f"{path}: the weights do not fit {cls.__name__} ({first[:160]})") from None
    try:
        check_net(net, scale)  # a net that breaks the size contract is refused here, not mid-photo
    except NetContractError as e:
        raise CheckpointError(f"{path}: {e}") from None
    net.eval().requires_grad_(False)
    return LoadedModel(net=net, scale=scale, name=str(hp.get("name", cls.__name__)), path=path)


def bundled_file(model: str, scale: int) -> Path:
    return BUNDLED_DIR / f"{model}_x{scale}.pt"


def bundled_models() -> list[str]:
    """``<model> x<scale>`` of every bundled model file."""
    return [p.stem.replace("_x", " x") for p in sorted(BUNDLED_DIR.glob("*_x*.pt"))]


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
    if scale is not None and loaded.scale != scale:
        raise CheckpointError(f"{ckpt}: holds a x{loaded.scale} model, not x{scale} (the scale picks a bundled model only)")
    return loaded


def resumable_step(path: Path) -> int | None:
    """The global step of a full training checkpoint (weights, optimizer, loops); ``None`` if it cannot be resumed."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # unreadable for any reason: not one to resume from
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
