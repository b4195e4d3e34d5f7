"""Writing checkpoint folders so that a crash never leaves a half-written one.

Every `save_pretrained`-style folder (codecs, TTS models) is written into a temporary sibling and
renamed into place at the end: readers see the old folder or the new one, never a mix.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch


@contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder that replaces `path` when the block ends without an error."""
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


def write_weights(module: torch.nn.Module, folder: str | os.PathLike) -> Path:
    """The module's state dict as folder/model.safetensors (CPU, contiguous tensors)."""
    from safetensors.torch import save_file

    target = Path(folder) / "model.safetensors"
    save_file({k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}, str(target))
    return target
