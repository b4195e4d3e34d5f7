"""Registry and checkpoints of TTS models: build any of them by name, save and load them.

Models register a name with `@register_tts_model(name)` and provide `from_config(dict)` /
`to_config() -> dict`, so recipes build them from YAML and `save_tts_model` / `load_tts_model`
round-trip them. This module does not import Lightning, so loading a model for synthesis is quick.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import yaml

from voxtok.checkpoint import atomic_dir, write_weights
from voxtok.errors import BadConfigError

TTS_REGISTRY: dict[str, type[torch.nn.Module]] = {}
_BUILTIN_MODULES = ("llm", "flow", "flowomni", "vocoder")


def register_tts_model(name: str):
    """Class decorator: make a model buildable by `build_tts_model(name, cfg)`."""

    def add(cls):
        if name in TTS_REGISTRY and TTS_REGISTRY[name].__qualname__ != cls.__qualname__:
            raise BadConfigError(f"TTS model name '{name}' is registered twice")
        cls.tts_model_name = name
        TTS_REGISTRY[name] = cls
        return cls

    return add


def _import_builtin_tts_models() -> None:
    import importlib

    for module in _BUILTIN_MODULES:
        try:
            importlib.import_module(f"voxtok.tts.{module}")
        except ModuleNotFoundError as err:
            if err.name != f"voxtok.tts.{module}":
                raise


def build_tts_model(name: str, cfg: dict[str, Any]) -> torch.nn.Module:
    """Build a registered TTS model from its config dict (random weights)."""
    _import_builtin_tts_models()
    if name not in TTS_REGISTRY:
        raise BadConfigError(f"unknown TTS model '{name}' (registered: {sorted(TTS_REGISTRY)})")
    return TTS_REGISTRY[name].from_config(dict(cfg))


def save_tts_model(path: str | os.PathLike, model: torch.nn.Module, extra: dict[str, Any] | None = None) -> Path:
    """Write config.yaml ({name, model: to_config(), **extra}) and model.safetensors atomically.

    `extra` holds what synthesis needs besides the weights (the frontend dict, the tokenizer
    that made the speech tokens, ...).
    """
    name = getattr(model, "tts_model_name", None)
    if name is None or not hasattr(model, "to_config"):
        raise BadConfigError(f"{type(model).__name__} is not a registered TTS model with to_config()")
    with atomic_dir(path) as tmp:
        write_weights(model, tmp)
        config = {"name": name, "model": model.to_config(), **(extra or {})}
        (tmp / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return Path(path)


def load_tts_model(path: str | os.PathLike, map_location: str = "cpu") -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild a model saved by `save_tts_model`: (model in eval mode, the full config dict)."""
    path = Path(path)
    for file in ("config.yaml", "model.safetensors"):
        if not (path / file).is_file():
            raise BadConfigError(f"TTS checkpoint lacks {file}", path)
    config = yaml.safe_load((path / "config.yaml").read_text())
    model = build_tts_model(config["name"], config["model"])
    from safetensors.torch import load_file

    state = load_file(str(path / "model.safetensors"), device=map_location)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise BadConfigError(f"checkpoint does not fit its config (missing {missing[:3]}, "
                             f"unexpected {unexpected[:3]})", path)
    return model.eval(), config
