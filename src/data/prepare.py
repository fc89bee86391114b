"""Decode a photo folder once into a store that training memory-maps (format: ``src/data/store.py``).

    python -m src.data.prepare PHOTOS STORE                   # decode, drop duplicates, split, pack
    python -m src.data.prepare PHOTOS STORE --max-side 1500   # also cap the long side (Lanczos)
    python -m src.data.prepare PHOTOS STORE                   # again: resumes after a kill; adds new photos
    python -m src.train data=store data.path=STORE

Each photo is decoded like every loader does (``load_rgb``: EXIF orientation, RGB, 16-bit to
8-bit). Files that cannot be decoded or are smaller than ``--min-size`` are skipped and listed;
a file whose bytes or pixels repeat an earlier one is listed as a duplicate. The split comes from
a hash of the file's bytes, so a photo keeps its split when others are added (or it is renamed).

Safe to kill at any moment (``StoreWriter``): pixels are appended first, then the index is
replaced atomically, and a re-run cuts whatever the index does not vouch for and goes on from
there. Finished photos are recognised by their hash and never decoded again.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from src.data.images import ImageError, list_images, load_rgb
from src.data.splits import SPLITS
from src.data.store import StoreWriter, committed_bytes, file_sha
from src.errors import DataError, SrlabError


def _decode(path: Path, min_size: int, max_side: int | None) -> tuple[np.ndarray, str] | str:
    """(pixels, pixel hash) or the reason the file is skipped. Runs in threads: Pillow releases the GIL."""
    try:
        arr = load_rgb(path)
    except ImageError as e:
        return str(e).removeprefix(f"{path}: ")
    h, w = arr.shape[:2]
    if min(h, w) < min_size:
        return f"{w}x{h} px is smaller than --min-size {min_size}"
    # Pixels decide duplicates: the same photo saved twice (other metadata, other lossless format).
    digest = hashlib.blake2b(f"{h}x{w}".encode(), digest_size=16)
    digest.update(arr.data)
    px = digest.hexdigest()
    if max_side and max(h, w) > max_side:
        f = max_side / max(h, w)
        size = (max(1, round(w * f)), max(1, round(h * f)))
        arr = np.asarray(Image.fromarray(arr).resize(size, Image.Resampling.LANCZOS))
        if min(arr.shape[:2]) < min_size:
            return f"{w}x{h} px is smaller than --min-size {min_size} once capped to --max-side {max_side}"
    return np.ascontiguousarray(arr), px


def _in_order(pool: ThreadPoolExecutor, fn, items: list, ahead: int) -> Iterator[tuple[Any, Any]]:
    """``(item, fn(item))`` in input order, with at most ``ahead`` decodes in flight (bounded memory)."""
    pending: deque[tuple[Any, Future]] = deque()
    for item in items:
        pending.append((item, pool.submit(fn, item)))
        if len(pending) >= ahead:
            it, fut = pending.popleft()
            yield it, fut.result()
    while pending:
        it, fut = pending.popleft()
        yield it, fut.result()


def prepare(
    photos: str | os.PathLike,
    store: str | os.PathLike,
    max_side: int | None = None,
    min_size: int = 96,
    val_fraction: float = 0.05,
    test_fraction: float = 0.05,
    workers: int | None = None,
    commit_seconds: float = 5.0,
    commit_every: int = 512,
    progress: bool = True,
) -> dict[str, Any]:
    """Bring the store at ``store`` up to date with the photos under ``photos``; returns counts and the skip list.

    ``commit_seconds`` / ``commit_every``: how often the index is committed (how much a kill can
    lose); they change nothing in the result.
    """
    photos, store = Path(photos), Path(store)
    if not photos.is_dir():
        raise DataError(f"{photos}: no such photo directory")
    if not (0 <= val_fraction and 0 <= test_fraction and val_fraction + test_fraction < 1):
        raise DataError(f"--val-fraction {val_fraction} --test-fraction {test_fraction}: need 0 <= each, sum < 1")
    options = {"max_side": max_side, "min_size": min_size, "val_fraction": val_fraction, "test_fraction": test_fraction}
    with StoreWriter(store, options) as writer:
        return _run(photos, writer, workers or min(4, os.cpu_count() or 1), commit_seconds, commit_every, progress)


# One pass over the files (decode ahead in threads, append in order, commit): ~65 lines kept together.
def _run(
    photos: Path, writer: StoreWriter, workers: int, commit_seconds: float, commit_every: int, progress: bool
) -> dict[str, Any]:
    index, opts = writer.index, writer.index["options"]
    # What earlier runs settled, by file hash: a stored, skipped or duplicate file is never decoded again.
    by_sha: dict[str, list[str]] = {}
    for rec in [e for s in SPLITS for e in index["splits"][s]] + index["skipped"] + index["duplicates"]:
        by_sha.setdefault(rec["sha"], []).append(rec["name"])
    stored_px = {e["px"]: e["name"] for s in SPLITS for e in index["splits"][s]}

    files = [(p.relative_to(photos).as_posix(), p) for p in list_images(photos)]
    with ThreadPoolExecutor(workers) as pool:
        shas = list(
            tqdm(pool.map(file_sha, [p for _, p in files]), total=len(files), desc="hashing", unit="file", disable=not progress)
        )
    todo: list[tuple[str, Path, str]] = []
    new_dups = 0
    for (name, path), sha in zip(files, shas, strict=True):
        if name in by_sha.get(sha, ()):
            continue  # done by an earlier run
        if sha in by_sha:  # the same bytes as a file already handled: no need to decode it
            index["duplicates"].append({"name": name, "sha": sha, "of": by_sha[sha][0]})
            new_dups += 1
        else:
            todo.append((name, path, sha))
        by_sha.setdefault(sha, []).append(name)

    counts = {"stored": 0, "skipped": 0, "duplicates": new_dups}
    last_commit, since_commit = time.monotonic(), 0
    bar = tqdm(total=len(todo), desc="decoding", unit="img", disable=not progress)
    try:
        with ThreadPoolExecutor(workers) as pool:
            decode = lambda item: _decode(item[1], opts["min_size"], opts["max_side"])  # noqa: E731
            for (name, _, sha), result in _in_order(pool, decode, todo, ahead=2 * workers):
                if isinstance(result, str):
                    index["skipped"].append({"name": name, "sha": sha, "reason": result})
                    counts["skipped"] += 1
                elif result[1] in stored_px:
                    index["duplicates"].append({"name": name, "sha": sha, "of": stored_px[result[1]]})
                    counts["duplicates"] += 1
                else:
                    arr, px = result
                    writer.append(name, sha, px, arr)
                    stored_px[px] = name
                    counts["stored"] += 1
                bar.update()
                bar.set_postfix(counts, refresh=False)
                since_commit += 1
                if since_commit >= commit_every or time.monotonic() - last_commit > commit_seconds:
                    writer.commit()
                    last_commit, since_commit = time.monotonic(), 0
        if todo or new_dups or not writer.has_index():
            writer.commit()  # a run with nothing new leaves the store untouched
    except KeyboardInterrupt:
        writer.commit()  # keep what is finished; every listed image is complete
        raise
    finally:
        bar.close()
    return {
        **counts,
        "splits": {s: len(index["splits"][s]) for s in SPLITS},
        "bytes": sum(committed_bytes(index["splits"][s]) for s in SPLITS),
        "skipped_files": index["skipped"],
        "duplicate_files": index["duplicates"],
    }


def _report(summary: dict[str, Any], store: Path) -> str:
    lines = [
        f"{store}: {summary['stored']} photos added, {summary['skipped']} skipped, {summary['duplicates']} duplicates this run",
        "store: " + ", ".join(f"{s} {n}" for s, n in summary["splits"].items()) + f" images, {summary['bytes'] / 1e9:.2f} GB",
    ]
    lines += [f"skipped {r['name']}: {r['reason']}" for r in summary["skipped_files"]]
    lines += [f"duplicate {r['name']} of {r['of']}" for r in summary["duplicate_files"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m src.data.prepare", description=__doc__.split("\n\n")[0])
    ap.add_argument("photos", help="folder of photos (searched recursively)")
    ap.add_argument("store", help="store directory (created; resumed when it exists)")
    ap.add_argument("--max-side", type=int, default=None, help="cap the long side at this many px (default: keep)")
    ap.add_argument("--min-size", type=int, default=96, help="skip photos whose short side is below this (default 96)")
    ap.add_argument("--val-fraction", type=float, default=0.05)
    ap.add_argument("--test-fraction", type=float, default=0.05)
    ap.add_argument("--workers", type=int, default=None, help="decoding threads (default: cores, at most 4)")
    ap.add_argument("--commit-every", type=int, default=512, help="commit the index after this many photos (or 5 s)")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    try:
        summary = prepare(
            args.photos,
            args.store,
            args.max_side,
            args.min_size,
            args.val_fraction,
            args.test_fraction,
            args.workers,
            commit_every=args.commit_every,
            progress=not args.quiet,
        )
    except SrlabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished photos are kept; run the same command again to go on", file=sys.stderr)
        return 130
    print(_report(summary, Path(args.store)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
