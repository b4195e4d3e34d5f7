"""Snake activation (Ziyin et al. 2020): x + sin^2(alpha x) / alpha, one learned alpha per channel.

A periodic activation gives a waveform generator an inductive bias for periodic signals, which
ReLU-family activations lack; BigVGAN, DAC and CosyVoice's HiFT use it in their residual blocks.
"""

from __future__ import annotations

import torch
from torch import nn

# Guards 1 / alpha when training drives an alpha to zero (the value the published models used).
ALPHA_EPS = 1e-9


class Snake(nn.Module):
    """Snake with a linear-scale alpha per channel (initialised to `alpha`).

    Parameter `alpha` [channels] (checkpoint key `<name>.alpha`, as in BigVGAN / HiFT).
    Shapes: x [B, channels, T] -> [B, channels, T].
    """

    def __init__(self, channels: int, alpha: float = 1.0):
        super().__init__()
        self.alpha = nn.Parameter(torch.full((channels,), float(alpha)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, channels, T] -> [B, channels, T]."""
        alpha = self.alpha[None, :, None]
        return x + (1.0 / (alpha + ALPHA_EPS)) * torch.sin(x * alpha).pow(2)
