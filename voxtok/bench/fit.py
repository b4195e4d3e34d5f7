"""The training loop the benchmark's small models share (DASB probes, token LM): same budget for every system."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from voxtok.training.optim import OptimConfig, build_optimizer, build_scheduler


def fit_steps(model: nn.Module, batch_loss: Callable[[], torch.Tensor], steps: int, lr: float, clip: float,
              desc: str, progress: bool = False, betas: tuple[float, float] = (0.9, 0.999)) -> list[float]:
    """Train `model` for `steps` AdamW updates on `batch_loss()` (a fresh batch's scalar loss each call).

    LR: a cosine to zero over all the steps, scaled by a short linear warm-up (5 % of the steps),
    which is stable both for a few hundred steps and for thousands; gradient norm clipped at `clip`. Returns the loss of every
    step; leaves the model in eval mode.
    """
    from tqdm import tqdm

    cfg = OptimConfig(lr=lr, betas=betas, weight_decay=0.01, warmup_steps=max(1, steps // 20), grad_clip=clip,
                      decay_during_warmup=True)
    opt = build_optimizer(model.parameters(), cfg)
    sched = build_scheduler(opt, cfg, steps)
    losses = []
    model.train()
    for _ in tqdm(range(steps), desc=desc, leave=False, disable=not progress, mininterval=2.0):
        loss = batch_loss()
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        sched.step()
        losses.append(loss.item())
    model.eval()
    return losses
