"""Non-causal Conformer / Transformer encoder over token sequences (ESPnet/WeNet layout).

This is the encoder of CosyVoice's flow model (and the text encoder of its LLM): an input layer
(Linear -> LayerNorm -> dropout, then x * sqrt(dim)), N pre-norm blocks and a final LayerNorm.
With `pos: rel` each block's self-attention carries Transformer-XL relative-position terms
(a position projection without bias and two learned per-head biases u, v), which is what the
published `rel_selfattn` + `rel_pos_espnet` configuration uses; `pos: abs` adds absolute
sinusoids to the input instead and uses plain multi-head attention. `conv_kernel > 0` adds the
Conformer convolution module (CosyVoice's flow turns it off: `use_cnn_module: False`).

Padding never leaks into valid positions: attention masks padded keys and the convolution module
zeroes padded frames, so a padded batch gives the same valid outputs as one item at a time.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from voxtok.errors import BadConfigError
from voxtok.nn.attention import MultiHeadAttention
from voxtok.nn.masks import length_mask
from voxtok.nn.positions import sinusoids


class FeedForward(nn.Module):
    """Position-wise MLP: Linear(dim, hidden) -> SiLU -> dropout -> Linear(hidden, dim). [B, T, dim] -> same."""

    def __init__(self, dim: int, hidden: int, dropout: float = 0.0):
        super().__init__()
        self.w_1 = nn.Linear(dim, hidden)
        self.w_2 = nn.Linear(hidden, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w_2(self.dropout(F.silu(self.w_1(x))))


class ConvModule(nn.Module):
    """Conformer convolution: pointwise -> GLU -> depthwise (k) -> LayerNorm -> SiLU -> pointwise.

    LayerNorm replaces the original BatchNorm so that results do not depend on the batch.
    Shapes: x [B, T, dim], mask bool [B, T] -> [B, T, dim].
    """

    def __init__(self, dim: int, kernel_size: int):
        super().__init__()
        if kernel_size % 2 == 0:
            raise BadConfigError(f"conformer conv_kernel must be odd, got {kernel_size}")
        self.pointwise_in = nn.Conv1d(dim, 2 * dim, 1)
        self.depthwise = nn.Conv1d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.pointwise_out = nn.Conv1d(dim, dim, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask[:, None, :].to(x.dtype)
        h = F.glu(self.pointwise_in(x.transpose(1, 2) * m), dim=1)
        h = self.depthwise(h * m)
        h = F.silu(self.norm(h.transpose(1, 2))).transpose(1, 2)
        return (self.pointwise_out(h) * m).transpose(1, 2)


class ConformerLayer(nn.Module):
    """Pre-norm block: x + MHSA(LN(x)), [x + Conv(LN(x))], x + FFN(LN(x)) [, final LN]. [B, T, dim] -> same."""

    def __init__(self, dim: int, heads: int, ff_dim: int, dropout: float, attn_dropout: float,
                 relative: bool, conv_kernel: int):
        super().__init__()
        self.norm_mha = nn.LayerNorm(dim)
        self.self_attn = MultiHeadAttention(dim, heads, layout="espnet", dropout=attn_dropout, relative=relative)
        self.norm_ff = nn.LayerNorm(dim)
        self.feed_forward = FeedForward(dim, ff_dim, dropout)
        self.dropout = nn.Dropout(dropout)
        self.conv = ConvModule(dim, conv_kernel) if conv_kernel > 0 else None
        if self.conv is not None:
            self.norm_conv = nn.LayerNorm(dim)
            self.norm_final = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, rel_pe: torch.Tensor | None) -> torch.Tensor:
        x = x + self.dropout(self.self_attn(self.norm_mha(x), mask, rel_pe))
        if self.conv is not None:
            x = x + self.dropout(self.conv(self.norm_conv(x), mask))
        x = x + self.dropout(self.feed_forward(self.norm_ff(x)))
        return self.norm_final(x) if self.conv is not None else x


class ConformerEncoder(nn.Module):
    """Token-feature encoder: [B, T, input_dim] + lengths [B] -> [B, T, dim] (padded frames zeroed).

    Args:
        input_dim: feature size of the input (e.g. a token embedding).
        dim, heads, ff_dim, layers: model width, attention heads, FFN width, number of blocks.
        dropout: residual/FFN/positional dropout; attn_dropout: on attention weights.
        pos: "rel" (Conformer, relative-position attention) or "abs" (Transformer, sinusoids added).
        conv_kernel: depthwise kernel of the Conformer conv module; 0 disables it.
    """

    def __init__(self, input_dim: int, dim: int = 512, heads: int = 8, ff_dim: int = 2048, layers: int = 6,
                 dropout: float = 0.1, attn_dropout: float = 0.1, pos: str = "rel", conv_kernel: int = 0):
        super().__init__()
        if pos not in ("rel", "abs"):
            raise BadConfigError(f"encoder pos must be 'rel' or 'abs', got '{pos}'")
        self.dim, self.relative = dim, pos == "rel"
        self.input_linear = nn.Linear(input_dim, dim)
        self.input_norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList(
            ConformerLayer(dim, heads, ff_dim, dropout, attn_dropout, self.relative, conv_kernel) for _ in range(layers)
        )
        self.after_norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        t = x.shape[1]
        mask = length_mask(lengths.to(x.device), t)
        h = self.input_norm(self.input_linear(x)) * math.sqrt(self.dim)
        rel_pe = None
        if self.relative:
            rel_pe = self.dropout(sinusoids(torch.arange(t - 1, -t, -1, device=x.device), self.dim))
        else:
            h = h + sinusoids(torch.arange(t, device=x.device), self.dim)[None]
        h = self.dropout(h)
        for layer in self.layers:
            h = layer(h, mask, rel_pe)
        return self.after_norm(h) * mask[..., None].to(h.dtype)
