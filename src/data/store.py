"""The prepared-photo store: each split's uint8 pixels in one flat file plus a JSON index, memory-mapped.

A store directory (written by ``python -m src.data.prepare``, read by ``SRDataModule.from_store``):

    index.json   the committed state: prepare's options; per split, its images in file order
                 (``name``, file ``sha``, pixel hash ``px``, byte ``offset``, ``shape`` [H, W]);
                 ``skipped`` files with the reason; ``duplicates`` with the file they repeat
    train.u8     the split's images back to back, each H x W x 3 uint8 in C order (also val.u8, test.u8)

Readers map the files instead of reading them: memory stays that of the images being touched, and
the OS page cache (shared by every process and every run) holds the rest.
"""

from __future__ import annotations

import json
import logging
import mmap
import os
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from src.data.splits import SPLITS
from src.errors import DataError

log = logging.getLogger(__name__)

INDEX = "index.json"
FORMAT = 1
# A process's resident set counts the mapped file pages it touched. Past this many bytes handed
# out (all splits together), the mappings' pages are dropped from the process (the page cache keeps
# them): RSS stays bounded whatever the store's size, while stores smaller than this are never dropped.
RELEASE_BYTES = 512 << 20
# A page fault maps the cached pages around the one touched too (Linux fault-around, 64 KB
# windows): a 48-row crop spanning 144 KB ends up mapping ~256 KB. Counted per access.
FAULT_AROUND_BYTES = 128 << 10
# The estimate above only paces the checks: every this many estimated bytes, the process's resident
# file pages are read from /proc and the mappings dropped if they are over RELEASE_BYTES. Why not the
# estimate alone: on a freshly written store, large page-cache folios map 700+ KB per 48 px crop, and
# RSS reached ~2x its budget.
CHECK_BYTES = 32 << 20
# The most one cut (several batches in one BatchCropper call, see PatchBatches) may map, by the estimate
# above: a call maps all its pages before it can account for them.
CUT_MAP_BYTES = RELEASE_BYTES // 4


def split_path(root: str | os.PathLike, split: str) -> Path:
    return Path(root) / f"{split}.u8"


def entry_bytes(entry: dict[str, Any]) -> int:
    h, w = entry["shape"]
    return h * w * 3


def committed_bytes(entries: list[dict[str, Any]]) -> int:
    """Length of a split file that the index vouches for (anything past it is an unfinished write)."""
    return entries[-1]["offset"] + entry_bytes(entries[-1]) if entries else 0


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


def resident_file_bytes() -> int | None:
    """This process's resident file-backed memory (mapped store pages, libraries), or None without /proc."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[2]) * mmap.PAGESIZE
    except (OSError, ValueError, IndexError):
        return None


class _Pages:
    """Bytes read through every open split mapping of this process since their pages were last dropped."""

    handed_out = 0
    live: weakref.WeakSet[StoreImages] = weakref.WeakSet()


class StoreImages(Sequence):
    """One split's images as zero-copy ``(H, W, 3)`` uint8 views of its memory-mapped file.

    A list as far as ``PatchBatches`` and ``EvalImages`` can tell. Pickles as (file, entries), so a
    loader worker started by spawn or forkserver maps the file again instead of receiving a copy.
    """

    def __init__(self, path: str | os.PathLike, entries: list[dict[str, Any]], rows_read: int | None = None) -> None:
        self.path = Path(path)
        self.entries = entries
        # Rows a caller reads of each image it takes (a patch's height; None: all), to count pages touched.
        self.rows_read = rows_read
        self.offsets = np.array([e["offset"] for e in entries], dtype=np.int64)
        self.shapes = np.array([e["shape"] for e in entries], dtype=np.int64).reshape(-1, 2)
        self._mmap: mmap.mmap | None = None
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
                self._mmap = mmap.mmap(f.fileno(), size, access=mmap.ACCESS_COPY)
            _Pages.live.add(self)
            self._flat = np.frombuffer(self._mmap, dtype=np.uint8)
        return self._flat

    def __getitem__(self, i: int) -> np.ndarray:  # type: ignore[override]
        h, w = self.shapes[i]
        off = self.offsets[i]
        self.account(int(min(h, self.rows_read or h) * w * 3) + FAULT_AROUND_BYTES)
        return self.flat()[off : off + h * w * 3].reshape(h, w, 3)

    def account(self, nbytes: int) -> None:
        """Note ``nbytes`` read through the mapping; drop all mappings' pages from this process when enough piled up.

        ``MADV_DONTNEED`` on a file mapping never loses data: the next access maps the page again
        from the page cache (or the file), so views already handed out stay valid.
        """
        _Pages.handed_out += nbytes
        if _Pages.handed_out < min(CHECK_BYTES, RELEASE_BYTES):
            return
        resident = resident_file_bytes()
        if resident is None and _Pages.handed_out <= RELEASE_BYTES:
            return  # no /proc (not Linux): go by the estimate
        _Pages.handed_out = 0
        if resident is not None and resident <= RELEASE_BYTES:
            return
        maps = [m for m in (images._mmap for images in list(_Pages.live)) if m is not None]
        if sum(len(m) for m in maps) > RELEASE_BYTES:  # a store smaller than the budget is never dropped
            for m in maps:
                m.madvise(mmap.MADV_DONTNEED)

    def subset(self, keep: list[int]) -> StoreImages:
        return StoreImages(self.path, [self.entries[i] for i in keep], self.rows_read)

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "entries": self.entries, "rows_read": self.rows_read}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"], state["entries"], state["rows_read"])


def open_store(
    root: str | os.PathLike, min_sizes: dict[str, int], rows_read: dict[str, int | None] | None = None
) -> dict[str, StoreImages]:
    """Each split of the store at ``root`` as ``StoreImages``, keeping images of at least ``min_sizes[split]`` px.

    ``rows_read[split]``: rows of an image that one access reads (the patch size for train).

    Raises a one-line ``DataError`` when the store is missing, damaged, or leaves a split empty.
    """
    index = read_index(root)
    out: dict[str, StoreImages] = {}
    for split in SPLITS:
        entries = index["splits"].get(split, [])
        path = split_path(root, split)
        have = path.stat().st_size if path.exists() else 0
        if have < committed_bytes(entries):
            raise DataError(
                f"{path}: {have} bytes, its index needs {committed_bytes(entries)}: the store is damaged; prepare it again"
            )
        images = StoreImages(path, entries, (rows_read or {}).get(split))
        min_size = min_sizes.get(split, 1)
        keep = [i for i, (h, w) in enumerate(images.shapes) if min(h, w) >= min_size]
        if len(keep) < len(images):
            log.warning(
                "%s split: %d of %d images are smaller than %d px, not used",
                split,
                len(images) - len(keep),
                len(images),
                min_size,
            )
            images = images.subset(keep)
        if not len(images):
            raise DataError(
                f"{root}: the {split} split has no image of at least {min_size} px "
                f"({len(entries)} stored); prepare more photos or raise --{split}-fraction"
                if split != "train"
                else f"{root}: the train split has no image of at least {min_size} px ({len(entries)} stored)"
            )
        out[split] = images
    log.info("store %s: %s", root, {k: len(v) for k, v in out.items()})
    return out
