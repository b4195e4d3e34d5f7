"""The weights file of a checkpoint folder (model.safetensors).

Folders are written atomically with `voxtok.atomic.atomic_dir`; this module only turns a module's
state dict into the one weights file every checkpoint folder holds.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch


def write_weights(module: torch.nn.Module, folder: str | os.PathLike) -> Path:
    """The module's state dict as folder/model.safetensors (CPU, contiguous tensors)."""
    from safetensors.torch import save_file

    target = Path(folder) / "model.safetensors"
    save_file({k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}, str(target))
    return target
