"""Writing files so that nothing is lost: folders checked before any work, files replaced atomically."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from src.errors import OutputError


def unwritable_reason(folder: str | os.PathLike) -> str | None:
    """Why files cannot be created in ``folder`` (or in the folders that would be made for it); ``None`` if they can.

    Nothing is created: the nearest existing folder on the way up is probed with a nameless temporary
    file (what a read-only folder, a read-only mount or a file in the way all refuse).
    """
    p = Path(folder).absolute()
    try:
        while not p.exists():
            if p.is_symlink():
                return f"{p} is a broken link"
            p = p.parent
        if not p.is_dir():
            return f"{p} is a file, not a folder"
        with tempfile.TemporaryFile(dir=p):
            pass
    except OSError as e:
        return f"cannot write in {p} ({e.strerror or type(e).__name__})"
    return None


def check_writable(folder: str | os.PathLike, what: str) -> None:
    """Raise :class:`OutputError` ``"<what>: <reason>"`` if files cannot be written into ``folder``."""
    if reason := unwritable_reason(folder):
        raise OutputError(f"{what}: {reason}")


def replace_atomically(dest: Path, write: Callable[[Path], object], tmp: Path | None = None) -> None:
    """``write(tmp)``, flush it to disk, then rename it over ``dest``: a crash or an error mid-write leaves
    ``dest`` as it was, never half-written. ``tmp`` (default: a hidden file beside ``dest`` with the same
    suffix, so format-by-suffix writers pick the same format) must be on the same file system.
    """
    tmp = tmp or dest.with_name(f".{dest.stem}.{os.getpid()}.tmp{dest.suffix}")
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
