"""VoxTok: speech tokenizers, token TTS and a DASB-style tokenizer benchmark.

`voxtok.load(path)` loads any VoxTok checkpoint folder (or a TTS pipeline manifest) and returns the
model, like transformers' AutoModel; every model has `save_pretrained(dir)`. See voxtok/registry.py.
"""

from __future__ import annotations

from typing import Any

__all__ = ["load"]


def load(path, map_location="cpu", kind: str | None = None) -> Any:
    """Any VoxTok checkpoint folder or pipeline manifest -> the model, in eval mode.

    Imported lazily so `import voxtok` (the CLI's start-up) does not pull in torch.
    """
    from voxtok.registry import load as load_checkpoint

    return load_checkpoint(path, map_location=map_location, kind=kind)
