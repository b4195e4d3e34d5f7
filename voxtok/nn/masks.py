"""Padding and causal masks. Convention everywhere: bool, True = a real / visible position."""

from __future__ import annotations

import torch


def length_mask(lengths: torch.Tensor, size: int) -> torch.Tensor:
    """[B, size] bool mask, True at positions < lengths[b] (lengths [B], any unit: samples or frames)."""
    return torch.arange(size, device=lengths.device)[None, :] < lengths.reshape(-1)[:, None]


def causal_mask(size: int, device: torch.device | None = None, keys: int | None = None) -> torch.Tensor:
    """[size, keys] bool mask, True where a query may see the key: itself and the past.

    `keys` (default `size`) >= size: the queries are the last `size` of the `keys` positions (a
    step of incremental decoding with `keys - size` cached positions before it).
    """
    keys = size if keys is None else keys
    queries = torch.arange(keys - size, keys, device=device)
    return torch.arange(keys, device=device)[None, :] <= queries[:, None]


def attention_mask(key_mask: torch.Tensor | None, queries: int, causal: bool = False,
                   device: torch.device | None = None, keys: int | None = None) -> torch.Tensor | None:
    """Which keys each query may attend to: bool [B, 1, queries, keys] (or [1, 1, queries, keys] when
    only causal), None when everything is visible. key_mask: bool [B, keys] (True = real key).

    `keys` (default: key_mask's length, else `queries`) may exceed `queries`: the queries are then
    the last positions (incremental decoding), which matters for the causal part.
    """
    mask = None if key_mask is None else key_mask[:, None, None, :]
    if causal:
        keys = keys if keys is not None else key_mask.shape[1] if key_mask is not None else queries
        future = causal_mask(queries, key_mask.device if key_mask is not None else device, keys)[None, None]
        mask = future if mask is None else mask & future
    return mask
