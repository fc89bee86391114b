"""Where upscale writes: an output name per input, and the checks that no file is lost before any work."""

from __future__ import annotations

import os
from pathlib import Path

from src.data.images import IMAGE_SUFFIXES, list_images
from src.errors import OutputError, SrlabError
from src.safe_write import unwritable_reason


def collect(inputs: list[Path]) -> list[tuple[Path, Path]]:
    """(file, path relative to its input root) for every input file or image under an input folder."""
    out = []
    for p in inputs:
        if p.is_dir():
            out += [(f, f.relative_to(p)) for f in list_images(p)]
        elif p.is_file():
            out.append((p, Path(p.name)))
        else:
            raise SrlabError(f"{p}: no such file or folder")
    return out


def destination(out: Path, rel: Path, suffix: str, ext: str | None, single: bool) -> Path:
    if single and out.suffix.lower() in IMAGE_SUFFIXES | {".gif", ".tga"}:
        return out
    return out / rel.parent / f"{rel.stem}{suffix}{ext or rel.suffix.lower()}"


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


def check_outputs(jobs: list[tuple[Path, Path]], out: Path) -> None:
    """Refuse, before any work, a run that would lose a file: (input, output) pairs where an output is
    an input (the same file, by any path or link), two inputs share one output, or a folder cannot be
    written. Raises :class:`OutputError` (one line naming the files)."""
    inputs = {_identity(src): src for src, _ in jobs}
    by_dest: dict[str, tuple[Path, list[Path]]] = {}
    for src, dest in jobs:
        if dest.is_dir():
            raise OutputError(f"{dest}: is a folder, not a file name (for {src})")
        if (ident := _identity(dest)) is not None and ident in inputs:
            raise OutputError(f"{dest}: is the input {inputs[ident]}; upscale never overwrites an input (choose another --out)")
        by_dest.setdefault(os.path.normcase(dest.resolve()), (dest, []))[1].append(src)
    clashes = [(dest, srcs) for dest, srcs in by_dest.values() if len(srcs) > 1]
    if clashes:
        dest, srcs = clashes[0]
        more = f" (and {len(clashes) - 1} more output name(s) like it)" if len(clashes) > 1 else ""
        raise OutputError(
            f"{dest}: {', '.join(map(str, srcs[:-1]))} and {srcs[-1]} would {'both' if len(srcs) == 2 else 'all'} "
            f"be written to this one file{more}; "
            "nothing was written: upscale them into separate --out folders, or rename them"
        )
    for folder in sorted({dest.parent for _, dest in jobs}):
        if reason := unwritable_reason(folder):
            raise OutputError(f"--out {out}: {reason}")
