"""Read weight files without running any code they name: torch's pickles and safetensors.

A ``.pt``/``.pth``/``.ckpt`` is a pickle. ``torch.load(weights_only=True)`` only rebuilds tensors and
plain containers, so a crafted file cannot execute code while loading; a file it stops is told apart
from junk by reading its opcodes (:func:`pickle_globals`), so the user learns which. A
``.safetensors`` file is tensors and a string header, with no code in it at all.
"""

from __future__ import annotations

import json
import os
import pickle
import pickletools
import re
import zipfile
from pathlib import Path
from typing import Any, BinaryIO

import torch

from src.errors import SrlabError

SAFETENSORS_SUFFIX = ".safetensors"


class CheckpointError(SrlabError):
    """A weights file cannot be used (missing, corrupt, unsafe, or not a model)."""


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


def load_pickle(path: Path, mmap: bool = False) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, with every failure as one ``CheckpointError`` line."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
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


def load_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors of a ``.safetensors`` file and its header's metadata (``{}`` when it has none)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file ({str(e).strip().splitlines()[0][:120]})") from None


def read_weights(path: str | os.PathLike) -> tuple[Any, dict[str, str]]:
    """A weights file's contents, by its format (safetensors by suffix, else a torch pickle), and the
    safetensors metadata (``{}`` for a pickle)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.suffix.lower() == SAFETENSORS_SUFFIX:
        return load_safetensors(path)
    return load_pickle(path), {}


def save_safetensors(tensors: dict[str, torch.Tensor], metadata: dict[str, Any], path: Path) -> None:
    """Write ``tensors`` with ``metadata`` (each value JSON-encoded: the header holds strings only),
    through a temporary file, so an interrupted write leaves no half file."""
    from safetensors.torch import save_file

    tmp = path.with_name(f".{path.name}.tmp")
    header = {k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=header)
    tmp.replace(path)
