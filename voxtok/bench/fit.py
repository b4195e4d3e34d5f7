"""The training loop the benchmark's small models share (DASB probes, token LM): same budget for every system."""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn


def fit_steps(model: nn.Module, batch_loss: Callable[[], torch.Tensor], steps: int, lr: float, clip: float,
              desc: str, progress: bool = False, betas: tuple[float, float] = (0.9, 0.999)) -> list[float]:
    """Train `model` for `steps` AdamW updates on `batch_loss()` (a fresh batch's scalar loss each call).

    LR: short linear warm-up (5 % of the steps), then cosine to zero, which is stable both for a few
    hundred steps and for thousands; gradient norm clipped at `clip`. Returns the loss of every
    step; leaves the model in eval mode.
    """
    from tqdm import tqdm

    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=betas)
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / max(steps, 1))))
    losses = []
    model.train()
    for _ in tqdm(range(steps), desc=desc, leave=False, disable=not progress, mininterval=2.0):
        loss = batch_loss()
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        sched.step()
        losses.append(loss.item())
    model.eval()
    return losses
