"""Padding and causal masks. Convention everywhere: bool, True = a real / visible position."""

from __future__ import annotations

import torch


def length_mask(lengths: torch.Tensor, size: int) -> torch.Tensor:
    """[B, size] bool mask, True at positions < lengths[b] (lengths [B], any unit: samples or frames)."""
    return torch.arange(size, device=lengths.device)[None, :] < lengths.reshape(-1)[:, None]


def causal_mask(size: int, device: torch.device | None = None) -> torch.Tensor:
    """[size, size] bool mask, True where key j <= query i (a position sees itself and the past)."""
    steps = torch.arange(size, device=device)
    return steps[None, :] <= steps[:, None]


def attention_mask(key_mask: torch.Tensor | None, queries: int, causal: bool = False,
                   device: torch.device | None = None) -> torch.Tensor | None:
    """Which keys each query may attend to: bool [B, 1, queries, keys] (or [1, 1, T, T] when only
    causal), None when everything is visible. key_mask: bool [B, keys] (True = real key)."""
    mask = None if key_mask is None else key_mask[:, None, None, :]
    if causal:
        future = causal_mask(queries, key_mask.device if key_mask is not None else device)[None, None]
        mask = future if mask is None else mask & future
    return mask
