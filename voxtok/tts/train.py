"""Training and checkpoints for TTS models (text-to-token LLM, flow decoder, ...).

Any nn.Module with `forward_loss(batch) -> (loss, stats dict of scalars)` trains with
`TTSModule`: AdamW, linear warmup + cosine decay (per update), gradient-norm clipping, and
train/val logging of every stat. The model registry and checkpoints live in
voxtok/registry.py.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

from voxtok.training.optim import build_optimizer, build_scheduler, read_optim_config

# The TTS recipes' AdamW (CosyVoice's betas) and clip.
OPTIM_DEFAULTS = {"betas": (0.9, 0.98), "weight_decay": 0.01, "warmup_steps": 0, "final_lr_ratio": 0.0,
                  "grad_clip": 5.0}


def _batch_size(batch: dict) -> int:
    for value in batch.values():
        if isinstance(value, torch.Tensor):
            return int(value.shape[0])
    return 1


class TTSModule(L.LightningModule):
    """Trains `model` (any module with `forward_loss(batch) -> (loss, stats)`).

    optim_cfg: the `optim:` block (`voxtok.training.optim.OptimConfig` keys; lr required, the rest
    default to OPTIM_DEFAULTS: betas (0.9, 0.98), weight_decay 0.01, no warm-up, cosine to 0, grad
    clip 5.0), read strictly; `where` names it in messages. `max_steps` updates span the schedule.
    Only parameters that require gradients are optimised (frozen submodules stay as they are).
    """

    def __init__(self, model: torch.nn.Module, optim_cfg: dict[str, Any], max_steps: int, where: str = "optim"):
        super().__init__()
        self.model = model
        self.optim = read_optim_config(optim_cfg, OPTIM_DEFAULTS, where)
        self.max_updates = int(max_steps)

    def configure_optimizers(self):
        # Frozen parameters (requires_grad False, e.g. `train_tts freeze=[...]`) stay out of the
        # optimiser: no Adam moments are kept (or checkpointed) for weights that never change.
        opt = build_optimizer([p for p in self.model.parameters() if p.requires_grad], self.optim)
        return [opt], [{"scheduler": build_scheduler(opt, self.optim, self.max_updates), "interval": "step"}]

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        # The clip value lives in the model's optim config, not in the shared trainer config.
        self.clip_gradients(optimizer, gradient_clip_val=self.optim.grad_clip, gradient_clip_algorithm="norm")

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
