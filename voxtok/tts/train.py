"""Training and checkpoints for TTS models (text-to-token LLM, flow decoder, ...).

Any nn.Module with `forward_loss(batch) -> (loss, stats dict of scalars)` trains with
`TTSModule`: AdamW, linear warmup + cosine decay (per update), gradient-norm clipping, and
train/val logging of every stat. Models register a name with `@register_tts_model(name)` and
provide `from_config(dict)` / `to_config() -> dict`, so recipes build them from YAML and
`save_tts_model` / `load_tts_model` round-trip them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml
from safetensors.torch import load_file, save_file

from voxtok.codecs.train import warmup_cosine
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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / "model.safetensors"))
        config = {"name": name, "model": model.to_config(), **(extra or {})}
        (tmp / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return path


def load_tts_model(path: str | os.PathLike, map_location: str = "cpu") -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild a model saved by `save_tts_model`: (model in eval mode, the full config dict)."""
    path = Path(path)
    for file in ("config.yaml", "model.safetensors"):
        if not (path / file).is_file():
            raise BadConfigError(f"TTS checkpoint lacks {file}", path)
    config = yaml.safe_load((path / "config.yaml").read_text())
    model = build_tts_model(config["name"], config["model"])
    state = load_file(str(path / "model.safetensors"), device=map_location)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise BadConfigError(f"checkpoint does not fit its config (missing {missing[:3]}, "
                             f"unexpected {unexpected[:3]})", path)
    return model.eval(), config


def _batch_size(batch: dict) -> int:
    for value in batch.values():
        if isinstance(value, torch.Tensor):
            return int(value.shape[0])
    return 1


class TTSModule(L.LightningModule):
    """Trains `model` (any module with `forward_loss(batch) -> (loss, stats)`).

    optim_cfg: lr, betas (0.9, 0.98), weight_decay (0.01), warmup_steps (0), final_lr_ratio (0),
    grad_clip (5.0, gradient L2 norm). `max_steps` updates span the cosine schedule.
    """

    def __init__(self, model: torch.nn.Module, optim_cfg: dict[str, Any], max_steps: int):
        super().__init__()
        if "lr" not in optim_cfg:
            raise BadConfigError("optim.lr is required")
        self.model = model
        self.optim_cfg = dict(optim_cfg)
        self.max_updates = int(max_steps)

    def configure_optimizers(self):
        o = self.optim_cfg
        opt = torch.optim.AdamW(self.model.parameters(), lr=float(o["lr"]), betas=tuple(o.get("betas", (0.9, 0.98))),
                                weight_decay=float(o.get("weight_decay", 0.01)))
        schedule = warmup_cosine(int(o.get("warmup_steps", 0)), self.max_updates, float(o.get("final_lr_ratio", 0.0)))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
        return [opt], [{"scheduler": sched, "interval": "step"}]

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        # The clip value lives in the model's optim config, not in the shared trainer config.
        self.clip_gradients(optimizer, gradient_clip_val=float(self.optim_cfg.get("grad_clip", 5.0)),
                            gradient_clip_algorithm="norm")

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss, stats = self.model.forward_loss(batch)
        size = _batch_size(batch)
        self.log_dict({f"train/{k}": float(v) for k, v in stats.items()}, batch_size=size)
        self.log("train/lr", self.lr_schedulers().get_last_lr()[0], batch_size=size)
        self.log("loss", float(loss.detach()), prog_bar=True, logger=False, batch_size=size)
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        loss, stats = self.model.forward_loss(batch)
        size = _batch_size(batch)
        for k, v in stats.items():
            self.log(f"val/{k}", torch.as_tensor(v, dtype=torch.float32, device=self.device), sync_dist=True,
                     batch_size=size, prog_bar=k == "loss")
