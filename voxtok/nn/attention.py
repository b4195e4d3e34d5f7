"""One multi-head self-attention module, with switches for the variants VoxTok's models use.

- `layout` names the projections and sets their biases as in the reference implementation a
  model reproduces, so its checkpoints (ours and converted published ones) load by name:
  "espnet" (WeNet/ESPnet/CosyVoice flow encoder: linear_q/k/v/out, all with bias),
  "diffusers" (Matcha/CosyVoice flow decoder: to_q/k/v without bias, to_out with bias),
  "whisper" (Whisper/S3 tokenizer: query/key/value/out, no key bias).
- `relative`: Transformer-XL relative-position terms (ESPnet `rel_selfattn`): a bias-free position
  projection and two learned per-head biases u, v; forward then takes the relative table rel_pe.
- rotary positions: forward takes (cos, sin) tables (`voxtok.nn.positions.rotary_tables`).
- `fsmn_kernel`: CosyVoice 2's FSMN memory (a depthwise conv over the values, added to the output).
- `causal`, `dropout` (on the attention weights) and a key mask (padded keys are never attended to,
  so a padded batch gives every item the output it gets alone; a query with no visible key gets
  zeros, as in ESPnet, instead of NaN).
- a `KeyValueCache` for incremental (KV-cached) decoding: the keys and values of earlier positions
  are kept, and a call with new positions attends to them too (relative positions included).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from voxtok.errors import BadConfigError
from voxtok.nn.masks import attention_mask
from voxtok.nn.positions import apply_rotary


@dataclass
class KeyValueCache:
    """Keys and values of the positions decoded so far: [B, H, T_past, Dh] each (None before the first
    call). `MultiHeadAttention.forward(..., cache=c)` attends to them and appends the new ones."""

    keys: torch.Tensor | None = None
    values: torch.Tensor | None = None

    def __len__(self) -> int:
        return 0 if self.keys is None else int(self.keys.shape[2])

    def extend(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append k, v [B, H, T_new, Dh]; returns all keys and values [B, H, T_past + T_new, Dh]."""
        if self.keys is not None:
            k, v = torch.cat([self.keys, k], dim=2), torch.cat([self.values, v], dim=2)
        self.keys, self.values = k, v
        return k, v

# layout -> (names of the q, k, v, output projections, whether each has a bias)
PROJECTION_LAYOUTS: dict[str, tuple[tuple[str, str, str, str], tuple[bool, bool, bool, bool]]] = {
    "espnet": (("linear_q", "linear_k", "linear_v", "linear_out"), (True, True, True, True)),
    "diffusers": (("to_q", "to_k", "to_v", "to_out"), (False, False, False, True)),
    "whisper": (("query", "key", "value", "out"), (True, False, True, True)),
}


class MultiHeadAttention(nn.Module):
    """Multi-head self-attention: x [B, T, dim], key_mask bool [B, T] (True = real) -> [B, T, dim].

    Args:
        dim: model width; heads: number of heads; head_dim: per-head width (default dim // heads,
            which must then divide evenly), the inner width is heads * head_dim.
        layout: projection names and biases (see the module docstring).
        dropout: on the attention weights, training only.
        relative: Transformer-XL relative positions; forward needs rel_pe [T_k + T_q - 1, dim]
            holding the encodings of relative positions T_k-1 .. -(T_q-1) for T_q queries and T_k
            keys ([2T-1, dim], positions T-1 .. -(T-1), without a cache). Inner width must equal dim.
        causal: a query sees only keys at or before its position.
        fsmn_kernel: > 0 adds the FSMN memory over the values (depthwise conv, 'same' padding).
    """

    def __init__(self, dim: int, heads: int, head_dim: int | None = None, *, layout: str = "espnet",
                 dropout: float = 0.0, relative: bool = False, causal: bool = False, fsmn_kernel: int = 0):
        super().__init__()
        if layout not in PROJECTION_LAYOUTS:
            raise BadConfigError(f"attention layout must be one of {sorted(PROJECTION_LAYOUTS)}, got {layout!r}")
        if head_dim is None:
            if dim % heads:
                raise BadConfigError(f"attention width {dim} is not divisible by {heads} heads")
            head_dim = dim // heads
        inner = heads * head_dim
        if relative and inner != dim:
            raise BadConfigError(f"relative attention needs heads * head_dim == dim, got {inner} != {dim}")
        self.heads, self.head_dim, self.dropout = heads, head_dim, float(dropout)
        self.relative, self.causal = relative, causal
        self._names, biases = PROJECTION_LAYOUTS[layout]
        q_name, k_name, v_name, out_name = self._names
        q_bias, k_bias, v_bias, out_bias = biases
        # Created in q, k, v, out order so that seeded initialisation matches the models' history.
        self.add_module(q_name, nn.Linear(dim, inner, bias=q_bias))
        self.add_module(k_name, nn.Linear(dim, inner, bias=k_bias))
        self.add_module(v_name, nn.Linear(dim, inner, bias=v_bias))
        self.add_module(out_name, nn.Linear(inner, dim, bias=out_bias))
        if relative:
            self.linear_pos = nn.Linear(dim, dim, bias=False)
            self.pos_bias_u = nn.Parameter(torch.zeros(heads, head_dim))
            self.pos_bias_v = nn.Parameter(torch.zeros(heads, head_dim))
            nn.init.xavier_uniform_(self.pos_bias_u)
            nn.init.xavier_uniform_(self.pos_bias_v)
        self.fsmn = nn.Conv1d(inner, inner, fsmn_kernel, groups=inner, bias=False) if fsmn_kernel else None

    def _projection(self, index: int) -> nn.Linear:
        return getattr(self, self._names[index])

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        return x.reshape(b, t, self.heads, self.head_dim)  # [B, T, H, Dh]

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None = None, rel_pe: torch.Tensor | None = None,
                rotary: tuple[torch.Tensor, torch.Tensor] | None = None,
                cache: KeyValueCache | None = None) -> torch.Tensor:
        """x [B, T, dim], key_mask bool [B, T_k] or None, rel_pe [T_k + T - 1, dim] (relative only),
        rotary (cos, sin) [T, head_dim] (the new positions') or None, cache: keys and values of
        T_past earlier positions, extended in place (T_k = T_past + T, else T_k = T) -> [B, T, dim]."""
        b, t, _ = x.shape
        values = self._projection(2)(x)
        q, k, v = self._split(self._projection(0)(x)), self._split(self._projection(1)(x)), self._split(values)
        if rotary is not None:
            q, k = apply_rotary(q, *rotary), apply_rotary(k, *rotary)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # [B, H, T, Dh]
        if cache is not None:
            if self.fsmn is not None:
                raise BadConfigError("the FSMN memory does not support incremental decoding")
            k, v = cache.extend(k, v)
        mask = attention_mask(key_mask, t, self.causal, x.device, keys=k.shape[2])
        if self.relative:
            out = self._relative_attention(q, k, v, mask, rel_pe)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                                 dropout_p=self.dropout if self.training else 0.0)
        out = self._projection(3)(out.transpose(1, 2).reshape(b, t, -1))
        if self.fsmn is not None:
            out = out + self._memory(values, key_mask)
        return out

    def _relative_attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
                            rel_pe: torch.Tensor | None) -> torch.Tensor:
        """Transformer-XL scores (content + u, content + v against positions): q [B, H, T_q, Dh],
        k, v [B, H, T_k, Dh] (the queries are the last T_q of the T_k positions) -> [B, H, T_q, Dh]."""
        b, _, t_q, _ = q.shape
        t_k = k.shape[2]
        span = t_k + t_q - 1
        if rel_pe is None or rel_pe.shape[0] != span:
            raise ValueError(f"relative attention needs rel_pe of shape [T_k + T_q - 1, dim] = [{span}, dim]")
        scores = (q + self.pos_bias_u[None, :, None]) @ k.transpose(-1, -2)
        q_v = q + self.pos_bias_v[None, :, None]
        if t_q < t_k and b * self.heads * t_q < rel_pe.shape[1]:
            # A decoding step (few queries against a cache): project the queries onto the position
            # table instead of projecting the table, which grows with the cache (the same product,
            # associated the other way; whole sequences keep the table projection).
            weight = self.linear_pos.weight.view(self.heads, self.head_dim, -1)  # [H, Dh, dim]
            by_distance = torch.einsum("bhid,hdc->bhic", q_v, weight) @ rel_pe.t().to(q.dtype)
        else:
            p = self.linear_pos(rel_pe).view(span, self.heads, self.head_dim).transpose(0, 1)  # [H, span, Dh]
            by_distance = q_v @ p.transpose(-1, -2)[None]  # [B, H, T_q, span]
        # Column c holds relative position (T_k-1) - c; query i sits at T_k - T_q + i, key j at j.
        idx = (t_q - 1) - torch.arange(t_q, device=q.device)[:, None] + torch.arange(t_k, device=q.device)[None, :]
        scores = (scores + by_distance.gather(-1, idx.expand(b, self.heads, t_q, t_k))) / math.sqrt(self.head_dim)
        weights = torch.softmax(scores if mask is None else scores.masked_fill(~mask, float("-inf")), dim=-1)
        if mask is not None:  # a query that sees no key (a left pad) gets zeros, not NaN that would spread
            weights = weights.masked_fill(~mask, 0.0)
        return F.dropout(weights, self.dropout, self.training) @ v

    def _memory(self, values: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        """FSMN: values [B, T, inner] masked, depthwise conv ('same' padding) plus values, masked again."""
        keep = torch.ones_like(values) if key_mask is None else key_mask[..., None].to(values.dtype)
        values = values * keep
        k = self.fsmn.kernel_size[0]
        padded = F.pad(values.transpose(1, 2), ((k - 1) // 2, k - 1 - (k - 1) // 2))
        return (self.fsmn(padded).transpose(1, 2) + values) * keep
