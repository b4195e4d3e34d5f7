"""Atomic writes: readers see the old file (or folder) or the new one, never a half-written one.

Every output of VoxTok (audio, token files, Kaldi data files, shard indexes, reports, checkpoint
folders) goes through one of the two context managers here. Both write into a hidden temporary
sibling in the same folder (so the final rename stays on one file system and is atomic) and remove
it on any failure, so a crash or an exception leaves neither a half-written target nor a stray temp.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

_MODES = ("w", "wb")


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", encoding: str = "utf-8",
                 newline: str | None = None) -> Iterator[IO]:
    """Yield a file object whose contents replace `path` when the block ends without an error.

    `mode` is "w" (text; `encoding` and `newline` as in `open`) or "wb" (bytes). The parent folder
    is created. On any exception the temp file is removed, the old `path` (if any) is untouched,
    and the exception propagates.
    """
    if mode not in _MODES:
        raise ValueError(f"atomic_write mode must be one of {_MODES}, got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A unique name per call: threads and processes may write the same target at once.
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        # open(..., "x") rather than mkstemp: the file gets the umask's permissions like any
        # ordinary write, not mkstemp's owner-only 0600.
        text_args = {} if "b" in mode else {"encoding": encoding, "newline": newline}
        with open(tmp, mode.replace("w", "x"), **text_args) as handle:
            yield handle
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder that replaces the folder `path` when the block ends without an error.

    On any exception the temporary folder is removed and the old `path` (if any) is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
