"""The prepared-photo store: each split's uint8 pixels in one flat file plus a JSON index, memory-mapped.

A store directory (written by ``python -m src.data.prepare`` through ``StoreWriter``, read through
``open_store`` by ``SRDataModule.from_store``):

    index.json   the committed state: prepare's options; per split, its images in file order
                 (``name``, file ``sha``, pixel hash ``px``, byte ``offset``, ``shape`` [H, W]);
                 ``skipped`` files with the reason; ``duplicates`` with the file they repeat
    train.u8     the split's images back to back, each H x W x 3 uint8 in C order (also val.u8, test.u8)
    .lock        held while a writer appends

Pixels are appended before the index that points at them is replaced (atomically). Readers map the
files: memory stays that of the images being touched (``pages.py``), the page cache holds the rest.
"""

# Over ~250 lines on purpose: the store's whole on-disk format (write, read, repair) stays in one module.

from __future__ import annotations

import hashlib
import json
import logging
import mmap
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock, Timeout

from src.data import pages
from src.data.splits import SPLITS, split_at, unit
from src.errors import DataError

log = logging.getLogger(__name__)

INDEX = "index.json"
FORMAT = 1


def split_path(root: str | os.PathLike, split: str) -> Path:
    return Path(root) / f"{split}.u8"


def committed_bytes(entries: list[dict[str, Any]]) -> int:
    """Length of a split file that the index vouches for (anything past it is an unfinished write)."""
    if not entries:
        return 0
    h, w = entries[-1]["shape"]
    return entries[-1]["offset"] + h * w * 3


def file_sha(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes: a photo's identity in the index, and what its split comes from."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def split_of(sha: str, val_fraction: float, test_fraction: float) -> str:
    """train/val/test from the file's hash alone: a photo keeps its split when others are added or it is renamed."""
    return split_at(unit(bytes.fromhex(sha[:16])), val_fraction, test_fraction)


def read_index(root: str | os.PathLike) -> dict[str, Any]:
    """The store's index; a one-line ``DataError`` when ``root`` is not a store."""
    path = Path(root) / INDEX
    if not path.is_file():
        raise DataError(f"{root}: not a prepared store (no {INDEX}); make one with: python -m src.data.prepare PHOTOS {root}")
    try:
        index = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: unreadable store index ({e})") from None
    if index.get("format") != FORMAT:
        raise DataError(f"{path}: store format {index.get('format')!r}, this srlab reads format {FORMAT}; prepare it again")
    return index


def write_index(root: str | os.PathLike, index: dict[str, Any]) -> None:
    """Replace the index atomically: a reader or a killed writer sees the old one or the new one, never half."""
    root = Path(root)
    tmp = root / f"{INDEX}.tmp"
    with open(tmp, "w") as f:
        json.dump(index, f, indent=1)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, root / INDEX)
    dir_fd = os.open(root, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename itself survives a crash
    finally:
        os.close(dir_fd)


def _open_index(root: Path, options: dict[str, Any]) -> dict[str, Any]:
    if not (root / INDEX).exists():
        return {"format": FORMAT, "options": options, "splits": {s: [] for s in SPLITS}, "skipped": [], "duplicates": []}
    index = read_index(root)
    if index["options"] != options:
        # Other options would give other pixels or other splits for the photos already stored.
        old = ", ".join(f"{k}={v}" for k, v in index["options"].items())
        raise DataError(f"{root}: prepared with {old}; use the same options or another store directory")
    return index


def _file_bytes(path: Path, entries: list[dict[str, Any]], remedy: str) -> int:
    """The split file's length; a one-line ``DataError`` when it is shorter than its index needs."""
    have, want = (path.stat().st_size if path.exists() else 0), committed_bytes(entries)
    if have < want:
        raise DataError(f"{path}: {have} bytes, its index needs {want}: the store is damaged; {remedy}")
    return have


def _truncate_to_index(root: Path, index: dict[str, Any]) -> None:
    """Cut pixels that a killed writer appended past its last committed index."""
    for split in SPLITS:
        path = split_path(root, split)
        want = committed_bytes(index["splits"][split])
        have = _file_bytes(path, index["splits"][split], "delete it and prepare again")
        if have > want or not path.exists():
            with open(path, "ab") as f:
                f.truncate(want)


class StoreWriter:
    """The one writer of a store (a context manager): appends images, commits the index.

    Opening takes an exclusive lock (two writers would interleave their pixels; ``filelock`` works on
    Windows too), refuses other ``options`` than the store was made with, and repairs what a killed
    writer left: pixels past the index are cut and a half-written index removed.
    """

    def __init__(self, root: str | os.PathLike, options: dict[str, Any]) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = FileLock(self.root / ".lock")
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            raise DataError(f"{self.root}: another prepare is writing this store") from None
        try:
            self.index = _open_index(self.root, options)
            _truncate_to_index(self.root, self.index)
            (self.root / f"{INDEX}.tmp").unlink(missing_ok=True)  # a killed commit's leftover
            self._files = {s: open(split_path(self.root, s), "ab") for s in SPLITS}
        except BaseException:
            self._lock.release()
            raise

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        for f in self._files.values():
            f.close()
        self._lock.release()

    def has_index(self) -> bool:
        """Whether the store has a committed index (a new one has none until its first commit)."""
        return (self.root / INDEX).exists()

    def append(self, name: str, sha: str, px: str, pixels: np.ndarray) -> None:
        """Append one ``(H, W, 3)`` uint8 image to the split of its file hash ``sha`` (``px``: its pixel hash)."""
        split = split_of(sha, self.index["options"]["val_fraction"], self.index["options"]["test_fraction"])
        entries = self.index["splits"][split]
        offset = committed_bytes(entries)
        self._files[split].write(pixels.data)
        # Listed only once its pixels are written: the index never points past the data.
        entries.append({"name": name, "sha": sha, "px": px, "offset": offset, "shape": list(pixels.shape[:2])})

    def commit(self) -> None:
        """Make what was appended durable: the pixels reach the disk before the index that points at them."""
        for f in self._files.values():
            f.flush()
            os.fsync(f.fileno())
        write_index(self.root, self.index)


class StoreImages(Sequence):
    """One split's images as zero-copy ``(H, W, 3)`` uint8 views of its memory-mapped file.

    A list as far as ``PatchBatches`` and ``EvalImages`` can tell. Pickles as (file, entries), so a
    loader worker started by spawn or forkserver maps the file again instead of receiving a copy.
    """

    def __init__(self, path: str | os.PathLike, entries: list[dict[str, Any]]) -> None:
        self.path = Path(path)
        self.entries = entries
        self.offsets = np.array([e["offset"] for e in entries], dtype=np.int64)
        self.shapes = np.array([e["shape"] for e in entries], dtype=np.int64).reshape(-1, 2)
        self.mapping: mmap.mmap | None = None
        self._flat: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def names(self) -> list[str]:
        return [Path(e["name"]).stem for e in self.entries]

    def flat(self) -> np.ndarray:
        """The whole split file as one writable 1-D uint8 array (copy-on-write: writes never reach the file)."""
        if self._flat is None:
            with open(self.path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size == 0:
                    self._flat = np.empty(0, np.uint8)
                    return self._flat
                # ACCESS_COPY, not read-only: torch warns on (and refuses some uses of) read-only arrays.
                self.mapping = mmap.mmap(f.fileno(), size, access=mmap.ACCESS_COPY)
            pages.track(self)
            self._flat = np.frombuffer(self.mapping, dtype=np.uint8)
        return self._flat

    def __getitem__(self, i: int) -> np.ndarray:  # type: ignore[override]
        h, w = self.shapes[i]
        off = self.offsets[i]
        pages.release()  # the previous image's pages, before this one maps its own
        return self.flat()[off : off + h * w * 3].reshape(h, w, 3)

    def subset(self, keep: list[int]) -> StoreImages:
        return StoreImages(self.path, [self.entries[i] for i in keep])

    def __reduce__(self) -> tuple[type[StoreImages], tuple[Path, list[dict[str, Any]], int | None]]:
        return type(self), (self.path, self.entries)  # a worker maps the file again


def open_store(root: str | os.PathLike, min_sizes: dict[str, int]) -> dict[str, StoreImages]:
    """Each split of the store at ``root`` as ``StoreImages``, keeping images of at least ``min_sizes[split]`` px.

    Raises a one-line ``DataError`` when the store is missing, damaged, or leaves a split empty.
    """
    index = read_index(root)
    out: dict[str, StoreImages] = {}
    for split in SPLITS:
        entries = index["splits"].get(split, [])
        path = split_path(root, split)
        _file_bytes(path, entries, "prepare it again")
        images = StoreImages(path, entries)
        min_size = min_sizes.get(split, 1)
        keep = [i for i, (h, w) in enumerate(images.shapes) if min(h, w) >= min_size]
        if len(keep) < len(images):
            n = len(images)
            log.warning("%s split: %d of %d images are smaller than %d px, not used", split, n - len(keep), n, min_size)
            images = images.subset(keep)
        if not len(images):
            hint = "" if split == "train" else f"; prepare more photos or raise --{split}-fraction"
            raise DataError(f"{root}: the {split} split has no image of at least {min_size} px ({len(entries)} stored){hint}")
        out[split] = images
    log.info("store %s: %s", root, {k: len(v) for k, v in out.items()})
    return out
