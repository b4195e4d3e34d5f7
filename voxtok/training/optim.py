"""One AdamW optimiser + warm-up/cosine LR schedule builder for every trainer.

Each trainer keeps its own defaults (they differ on purpose and are part of its recipes) and reads
its `optim:` block with `read_optim_config(block, defaults, where)`:

    trainer                       betas        weight_decay  fused  grad_clip
    GAN (codecs/gan_trainer.py)   (0.8, 0.9)   0.0           True   1000
    CTC (codecs/train_asr.py)     (0.9, 0.98)  0.0           -      5
    TTS (tts/train.py)            (0.9, 0.98)  0.01          -      5
    benchmark (bench/fit.py)      (0.9, 0.999) 0.01          -      per probe

The schedule multiplies the LR per update by `warmup_cosine`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

import torch

from voxtok.config import check_keys, require_mapping
from voxtok.errors import BadConfigError


@dataclass
class OptimConfig:
    """AdamW settings and the LR schedule of one trainer.

    lr: peak learning rate (required); betas, eps, weight_decay: AdamW's; fused: one kernel over
    all parameters (None = torch's choice); warmup_steps: linear ramp from lr / warmup_steps;
    final_lr_ratio: LR at the last update / lr; grad_clip: gradient L2-norm clip (None: none);
    decay_during_warmup: the cosine spans all updates and the warm-up ramp scales it (the
    benchmark's probes), instead of starting when the warm-up ends.
    """

    lr: float
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    fused: bool | None = None
    warmup_steps: int = 0
    final_lr_ratio: float = 0.0
    grad_clip: float | None = None
    decay_during_warmup: bool = False

    def __post_init__(self) -> None:
        # YAML and Hydra hand over lists and strings of numbers ("2.0e-3"): normalise them once here.
        try:
            self.lr, self.eps = float(self.lr), float(self.eps)
            self.betas = tuple(float(b) for b in self.betas)
            self.weight_decay, self.final_lr_ratio = float(self.weight_decay), float(self.final_lr_ratio)
            self.warmup_steps = int(self.warmup_steps)
            self.grad_clip = None if self.grad_clip is None else float(self.grad_clip)
        except (TypeError, ValueError) as err:
            raise BadConfigError(f"optim settings must be numbers ({err})") from None
        self.fused = None if self.fused is None else bool(self.fused)
        self.decay_during_warmup = bool(self.decay_during_warmup)
        if len(self.betas) != 2:
            raise BadConfigError(f"optim.betas must be two numbers, got {list(self.betas)}")


OPTIM_KEYS = tuple(f.name for f in dataclasses.fields(OptimConfig))


def read_optim_config(block: Mapping[str, Any] | None, defaults: Mapping[str, Any], where: str) -> OptimConfig:
    """`block` (an `optim:` config block) over the trainer's `defaults`; unknown keys are errors.

    `where` names the block in messages (e.g. "codec.optim"); `lr` must be given by one of the two.
    """
    block = require_mapping(block, where)
    check_keys(block, OPTIM_KEYS, where)
    merged = {**defaults, **block}
    if merged.get("lr") is None:
        raise BadConfigError(f"{where}.lr is required")
    return OptimConfig(**merged)


def build_optimizer(params: Iterable[torch.nn.Parameter], cfg: OptimConfig) -> torch.optim.AdamW:
    """AdamW over `params` with the settings of `cfg`."""
    return torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay,
                             fused=cfg.fused)


def build_scheduler(opt: torch.optim.Optimizer, cfg: OptimConfig, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-update LR multiplier `warmup_cosine` over `total_steps` updates (call `.step()` per update)."""
    schedule = warmup_cosine(cfg.warmup_steps, int(total_steps), cfg.final_lr_ratio, cfg.decay_during_warmup)
    return torch.optim.lr_scheduler.LambdaLR(opt, schedule)


def warmup_cosine(warmup_steps: int, total_steps: int, final_ratio: float = 0.0,
                  decay_during_warmup: bool = False) -> Callable[[int], float]:
    """LR multiplier of update `step`: linear warm-up, then cosine decay to `final_ratio` at `total_steps`.

    With `decay_during_warmup` the cosine runs from step 0 and the warm-up ramp multiplies it.
    """

    def ramp(step: int) -> float:
        return (step + 1) / warmup_steps if warmup_steps and step < warmup_steps else 1.0

    def cosine(step: int, start: int) -> float:
        progress = min(1.0, (step - start) / max(1, total_steps - start))
        return final_ratio + (1 - final_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    def factor(step: int) -> float:
        if decay_during_warmup:
            return ramp(step) * cosine(step, 0)
        if warmup_steps and step < warmup_steps:
            return ramp(step)
        return cosine(step, warmup_steps)

    return factor
