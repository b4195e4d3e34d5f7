"""Module-mode helpers."""

from __future__ import annotations

import contextlib
from typing import Iterator

from torch import nn


@contextlib.contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """`with eval_mode(model):` runs the block with `model` (and its children) in eval mode (no
    dropout, even when called from a training loop), then restores each submodule's own
    train/eval flag, also when the block raises. Gradients are untouched: add torch.no_grad()."""
    flags = {sub: sub.training for sub in module.modules()}
    module.eval()
    try:
        yield module
    finally:
        for sub, training in flags.items():
            sub.training = training
