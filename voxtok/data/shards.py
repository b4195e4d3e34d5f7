"""Sharded stores of per-utterance arrays (codes [Q, T'], features [T, D]) that stream and scale.

A store is a folder:
    meta.json                  what the arrays are (e.g. the codec's token header), dtype, layout
    shard-00000.bin ...        arrays back to back, raw little-endian
    shard-00000.index.tsv ...  key <TAB> byte offset <TAB> shape (comma separated)
A shard's index is written (atomically) only when the shard is complete, so a killed writer
leaves complete shards and no half-indexed one; `ShardWriter(resume=True)` skips keys already
stored. The killed writer's open shard is an orphan .bin (no index): readers never see it, and
`remove_incomplete` deletes it (and temp files of interrupted atomic writes) before a rerun.
Reading memory-maps one shard at a time, so millions of utterances need little memory.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from voxtok.atomic import atomic_write
from voxtok.errors import BadDataDirError, VoxTokError


class BadShardError(VoxTokError):
    """A shard store that is missing, inconsistent or holds arrays of the wrong shape."""


# atomic_write's temp names (voxtok/atomic.py): .<target name>.<12 hex>.tmp
_ATOMIC_TEMP = re.compile(r"^\..+\.[0-9a-f]{12}\.tmp$")


def stale_temps(folder: str | os.PathLike) -> list[Path]:
    """Temp files that interrupted atomic writes left in `folder` (not its subfolders)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob(".*.tmp") if _ATOMIC_TEMP.match(p.name) and p.is_file())


def remove_incomplete(root: str | os.PathLike) -> int:
    """Delete what killed writers left in the store at `root`: shard .bin files that have no index
    (their shard never completed) and temp files of interrupted atomic writes. Call it only while
    no writer is open on the store. Returns how many files were removed."""
    root = Path(root)
    if not root.is_dir():
        return 0
    leftovers = [b for b in root.glob("shard-*.bin") if not (root / f"{b.name[:-len('.bin')]}.index.tsv").exists()]
    leftovers += stale_temps(root)
    for path in leftovers:
        path.unlink(missing_ok=True)
    return len(leftovers)


class ShardWriter:
    """Append arrays by key; a new shard starts every `shard_items` arrays, or once the open shard
    is `flush_seconds` old (so a kill loses at most that much work however slow the writer is).

    `rank` (0-based) keeps files of parallel writers apart: shard names carry it.
    `expect_ndim` asserts the rank of every array (e.g. 2 for [T, D] features).
    """

    def __init__(self, root: str | os.PathLike, meta: dict[str, Any], dtype: str = "int16",
                 shard_items: int = 1000, rank: int = 0, resume: bool = True, expect_ndim: int | None = None,
                 flush_seconds: float | None = None):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.dtype = np.dtype(dtype).newbyteorder("<")
        self.shard_items = shard_items
        self.flush_seconds = flush_seconds
        self.rank = rank
        self.expect_ndim = expect_ndim
        meta_path = self.root / "meta.json"
        full_meta = {**meta, "dtype": self.dtype.str}
        if meta_path.exists():
            old = json.loads(meta_path.read_text())
            if old != full_meta:
                raise BadShardError("store was written with different settings; remove it or use another dir", self.root)
        else:
            with atomic_write(meta_path) as handle:
                handle.write(json.dumps(full_meta, indent=2, sort_keys=True))
        self.done = set(ShardStore(self.root).keys()) if resume else set()
        # The next number after this rank's last complete shard (an orphan .bin of that number, left
        # by a kill, is overwritten).
        taken = [int(m.group(1)) for p in self.root.glob(f"shard-r{rank:03d}-*.index.tsv")
                 if (m := re.fullmatch(rf"shard-r{rank:03d}-(\d+)\.index\.tsv", p.name))]
        self._next = max(taken) + 1 if taken else 0
        self._bin = None
        self._opened = 0.0
        self._rows: list[str] = []

    def __contains__(self, key: str) -> bool:
        return key in self.done

    def add(self, key: str, array: np.ndarray) -> None:
        """Store `array` under `key` (converted to the store's dtype)."""
        if "\t" in key or "\n" in key:
            raise BadShardError(f"key {key!r} has a tab or newline")
        arr = np.ascontiguousarray(array, dtype=self.dtype)
        if self.expect_ndim is not None and arr.ndim != self.expect_ndim:
            raise BadShardError(f"array for {key} has shape {arr.shape}, expected {self.expect_ndim} dims")
        if self._bin is None:
            self._name = f"shard-r{self.rank:03d}-{self._next:05d}"
            self._bin = open(self.root / f"{self._name}.bin", "wb")
            self._opened = time.monotonic()
        offset = self._bin.tell()
        self._bin.write(arr.tobytes())
        self._rows.append(f"{key}\t{offset}\t{','.join(map(str, arr.shape))}")
        self.done.add(key)
        if len(self._rows) >= self.shard_items or (
                self.flush_seconds is not None and time.monotonic() - self._opened >= self.flush_seconds):
            self._finish_shard()

    def _finish_shard(self) -> None:
        if self._bin is None:
            return
        self._bin.close()
        with atomic_write(self.root / f"{self._name}.index.tsv") as handle:
            handle.write("\n".join(self._rows) + "\n")
        self._bin, self._rows = None, []
        self._next += 1

    def close(self) -> None:
        """Complete the open shard (call once, or use the writer as a context manager)."""
        self._finish_shard()

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class ShardStore:
    """Read-only view of a store: `keys()`, `store[key]`, streaming `items()`."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        if not (self.root / "meta.json").is_file():
            raise BadDataDirError("not a shard store (no meta.json)", self.root)
        self.meta = json.loads((self.root / "meta.json").read_text())
        self.dtype = np.dtype(self.meta["dtype"])
        self._index: dict[str, tuple[str, int, tuple[int, ...]]] = {}
        for idx in sorted(self.root.glob("shard-*.index.tsv")):
            shard = idx.name[: -len(".index.tsv")]
            for line in idx.read_text().splitlines():
                key, offset, shape = line.split("\t")
                dims = tuple(int(s) for s in shape.split(",")) if shape else ()
                self._index[key] = (shard, int(offset), dims)
        self._maps: dict[str, np.memmap] = {}

    def keys(self) -> list[str]:
        """All stored keys in shard order."""
        return list(self._index)

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, key: str) -> bool:
        return key in self._index

    def shape(self, key: str) -> tuple[int, ...]:
        """Shape of the array under `key` without reading it."""
        return self._index[key][2]

    def __getitem__(self, key: str) -> np.ndarray:
        if key not in self._index:
            raise BadShardError(f"key '{key}' is not in the store", self.root)
        shard, offset, shape = self._index[key]
        if shard not in self._maps:
            if len(self._maps) > 8:  # keep few files open when reading randomly
                self._maps.clear()
            self._maps[shard] = np.memmap(self.root / f"{shard}.bin", dtype=self.dtype, mode="r")
        count = int(np.prod(shape)) if shape else 1
        start = offset // self.dtype.itemsize
        return np.array(self._maps[shard][start:start + count]).reshape(shape)

    def items(self) -> Iterator[tuple[str, np.ndarray]]:
        """Stream (key, array) in shard order."""
        for key in self._index:
            yield key, self[key]
