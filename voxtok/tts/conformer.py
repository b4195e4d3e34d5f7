"""Conformer / Transformer encoder over token sequences (ESPnet/WeNet layout).

This is the encoder of CosyVoice's flow model, and (causal) the text encoder and the LM of its
v1 LLM: an input layer (Linear -> LayerNorm [-> ReLU] -> dropout, then x * sqrt(dim)), N pre-norm
blocks and a final LayerNorm.
With `pos: rel` each block's self-attention carries Transformer-XL relative-position terms
(a position projection without bias and two learned per-head biases u, v), which is what the
published `rel_selfattn` + `rel_pos_espnet` configuration uses; `pos: abs` adds absolute
sinusoids to the input instead and uses plain multi-head attention. `conv_kernel > 0` adds the
Conformer convolution module (CosyVoice's flow turns it off: `use_cnn_module: False`).
`causal` lets a frame attend only to itself and the past (WeNet's static chunk size 1); `encode`
then also runs incrementally, a few new frames at a time against cached keys and values, which is
how CosyVoice v1's LM decodes (`voxtok.tts.cosyvoice_lm`).

Padding never leaks into valid positions: attention masks padded keys and the convolution module
zeroes padded frames, so a padded batch gives the same valid outputs as one item at a time.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from voxtok.errors import BadConfigError
from voxtok.nn.attention import KeyValueCache, MultiHeadAttention
from voxtok.nn.masks import length_mask
from voxtok.nn.positions import sinusoids


# FFN activations by their WeNet / CosyVoice names (Conformers use swish, the v1 LM's transformer relu).
ACTIVATIONS = {"silu": F.silu, "relu": F.relu}


class FeedForward(nn.Module):
    """Position-wise MLP: Linear(dim, hidden) -> activation (SiLU, or ReLU) -> dropout -> Linear(hidden, dim).
    [B, T, dim] -> same."""

    def __init__(self, dim: int, hidden: int, dropout: float = 0.0, activation: str = "silu"):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise BadConfigError(f"feed-forward activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        self.w_1 = nn.Linear(dim, hidden)
        self.w_2 = nn.Linear(hidden, dim)
        self.dropout = nn.Dropout(dropout)
        self.activation = ACTIVATIONS[activation]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w_2(self.dropout(self.activation(self.w_1(x))))


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
                 relative: bool, conv_kernel: int, layer_norm_eps: float = 1e-5, activation: str = "silu",
                 causal: bool = False):
        super().__init__()
        self.norm_mha = nn.LayerNorm(dim, eps=layer_norm_eps)
        self.self_attn = MultiHeadAttention(dim, heads, layout="espnet", dropout=attn_dropout, relative=relative,
                                            causal=causal)
        self.norm_ff = nn.LayerNorm(dim, eps=layer_norm_eps)
        self.feed_forward = FeedForward(dim, ff_dim, dropout, activation)
        self.dropout = nn.Dropout(dropout)
        self.conv = ConvModule(dim, conv_kernel) if conv_kernel > 0 else None
        if self.conv is not None:
            self.norm_conv = nn.LayerNorm(dim, eps=layer_norm_eps)
            self.norm_final = nn.LayerNorm(dim, eps=layer_norm_eps)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, rel_pe: torch.Tensor | None,
                cache: KeyValueCache | None = None) -> torch.Tensor:
        """x [B, T, dim]; mask bool [B, T] (or [B, T_past + T] with a cache); rel_pe as the attention
        takes it; cache: the attention's keys / values of earlier frames (no conv module then)."""
        x = x + self.dropout(self.self_attn(self.norm_mha(x), mask, rel_pe, cache=cache))
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
        layer_norm_eps: eps of the LayerNorms inside the blocks. WeNet / CosyVoice use 1e-12 there
            (their input and final norms keep 1e-5, as here); converted checkpoints need theirs.
        activation: the FFN's, "silu" (Conformer) or "relu" (CosyVoice v1's LM transformer).
        causal: each frame sees only itself and the past (CosyVoice v1's LLM: static chunk size 1).
        input_relu: a ReLU after the input LayerNorm (WeNet's "linear_legacy" input layer).
    """

    def __init__(self, input_dim: int, dim: int = 512, heads: int = 8, ff_dim: int = 2048, layers: int = 6,
                 dropout: float = 0.1, attn_dropout: float = 0.1, pos: str = "rel", conv_kernel: int = 0,
                 layer_norm_eps: float = 1e-5, activation: str = "silu", causal: bool = False,
                 input_relu: bool = False):
        super().__init__()
        if pos not in ("rel", "abs"):
            raise BadConfigError(f"encoder pos must be 'rel' or 'abs', got '{pos}'")
        self.dim, self.relative = dim, pos == "rel"
        self.causal, self.input_relu = bool(causal), bool(input_relu)
        self.input_linear = nn.Linear(input_dim, dim)
        self.input_norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList(
            ConformerLayer(dim, heads, ff_dim, dropout, attn_dropout, self.relative, conv_kernel, layer_norm_eps,
                           activation, self.causal)
            for _ in range(layers)
        )
        self.after_norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """x [B, T, input_dim], lengths [B] -> [B, T, dim], padded frames zeroed."""
        mask = length_mask(lengths.to(x.device), x.shape[1])
        h = self.encode(x, mask)
        return h * mask[..., None].to(h.dtype)

    def encode(self, x: torch.Tensor, key_mask: torch.Tensor,
               caches: Sequence[KeyValueCache] | None = None) -> torch.Tensor:
        """New frames x [B, T, input_dim] -> [B, T, dim] (padded frames not zeroed).

        key_mask: bool [B, T_past + T], True at real frames; the new frames are its last T.
        caches: one `KeyValueCache` per layer holding T_past earlier frames, extended in place
        (incremental decoding of a causal encoder without a conv module), or None (T_past = 0).
        """
        t = x.shape[1]
        past = 0
        if caches is not None:
            if len(caches) != len(self.layers) or any(layer.conv is not None for layer in self.layers):
                raise BadConfigError("incremental encoding needs one cache per layer and no conv module")
            past = len(caches[0])
        h = self.input_norm(self.input_linear(x))
        if self.input_relu:
            h = F.relu(h)
        h = h * math.sqrt(self.dim)
        rel_pe = None
        if self.relative:  # relative positions T_past+T-1 .. -(T-1): queries are the last T frames
            rel_pe = self.dropout(sinusoids(torch.arange(past + t - 1, -t, -1, device=x.device), self.dim))
        else:
            h = h + sinusoids(torch.arange(past, past + t, device=x.device), self.dim)[None]
        h = self.dropout(h)
        for i, layer in enumerate(self.layers):
            h = layer(h, key_mask, rel_pe, None if caches is None else caches[i])
        return self.after_norm(h)
