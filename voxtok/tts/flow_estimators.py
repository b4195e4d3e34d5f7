"""Vector-field estimators for conditional flow matching over mel frames.

Both take the same inputs: the noisy mel x [B, n_mels, T], a frame mask [B, 1, T] (1 = valid),
the conditions mu [B, n_mels, T] (aligned token features), spk [B, n_mels] (speaker, broadcast
over time) and cond [B, n_mels, T] (prompt mel, zeros where not given), and the flow time t [B]
in [0, 1]; they return the velocity [B, n_mels, T], zero on padded frames.

- `UNet1DEstimator`: CosyVoice's / Matcha-TTS's 1-D U-Net: down / mid / up levels, each a
  ResNet block (time-embedding injected) followed by transformer blocks; skip connections;
  stride-2 convolutions between levels.
- `DiTEstimator`: a diffusion transformer (F5-TTS / CosyVoice 3 style): input projection,
  convolutional position embedding, AdaLN-Zero transformer blocks modulated by the time embedding.

Every normalisation here ignores padded frames (`MaskedGroupNorm`), attention masks padded keys
and convolutions see zeros beyond the valid length, so a padded batch gives each item exactly the
output it gets alone.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from voxtok.config import kwargs_for, require_mapping
from voxtok.errors import BadConfigError
from voxtok.nn.attention import MultiHeadAttention
from voxtok.nn.positions import sinusoids


class TimestepEmbedding(nn.Module):
    """Sinusoids(in_dim) -> Linear -> SiLU -> Linear: t [B] -> [B, out_dim]."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        if in_dim % 2:
            raise BadConfigError(f"time embedding size must be even, got {in_dim}")
        self.in_dim = in_dim
        self.linear_1 = nn.Linear(in_dim, out_dim)
        self.linear_2 = nn.Linear(out_dim, out_dim)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        # Matcha-TTS / CosyVoice time-step layout: [sin | cos], t scaled by 1000 (see voxtok.nn.positions).
        table = sinusoids(t, self.in_dim, layout="sin_cos", endpoint=True, scale=1000.0)
        return self.linear_2(F.silu(self.linear_1(table)))


class MaskedGroupNorm(nn.GroupNorm):
    """GroupNorm whose statistics cover valid frames only: x [B, C, T], mask [B, 1, T] -> [B, C, T].

    Plain GroupNorm averages over padded frames too, which makes an item's output depend on how
    much padding its batch has. Same parameters as nn.GroupNorm.
    """

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        if mask is None:
            return super().forward(x)
        b, c, t = x.shape
        g = self.num_groups
        xg = x.reshape(b, g, c // g, t)
        m = mask.reshape(b, 1, 1, t).to(x.dtype)
        count = (m.sum(dim=(2, 3), keepdim=True) * (c // g)).clamp_min(1.0)
        mean = (xg * m).sum(dim=(2, 3), keepdim=True) / count
        var = (((xg - mean) * m) ** 2).sum(dim=(2, 3), keepdim=True) / count
        y = ((xg - mean) / torch.sqrt(var + self.eps)).reshape(b, c, t)
        return y * self.weight[None, :, None] + self.bias[None, :, None]


class Block1D(nn.Module):
    """Conv1d k3 -> MaskedGroupNorm -> Mish, masked: x [B, C_in, T], mask [B, 1, T] -> [B, C_out, T]."""

    def __init__(self, dim: int, dim_out: int, groups: int = 8):
        super().__init__()
        if dim_out % groups:
            raise BadConfigError(f"U-Net channels {dim_out} must be divisible by {groups} norm groups")
        self.conv = nn.Conv1d(dim, dim_out, 3, padding=1)
        self.norm = MaskedGroupNorm(groups, dim_out)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return F.mish(self.norm(self.conv(x * mask), mask)) * mask


class ResnetBlock1D(nn.Module):
    """Two Block1D with the time embedding added in between, plus a 1x1 residual.

    Shapes: x [B, C_in, T], mask [B, 1, T], temb [B, time_dim] -> [B, C_out, T].
    """

    def __init__(self, dim: int, dim_out: int, time_dim: int, groups: int = 8):
        super().__init__()
        self.mlp = nn.Linear(time_dim, dim_out)
        self.block1 = Block1D(dim, dim_out, groups)
        self.block2 = Block1D(dim_out, dim_out, groups)
        self.res_conv = nn.Conv1d(dim, dim_out, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.block1(x, mask) + self.mlp(F.mish(temb))[:, :, None]
        return self.block2(h, mask) + self.res_conv(x * mask)


class GELUFeedForward(nn.Module):
    """Linear(dim, mult*dim) -> GELU -> dropout -> Linear(mult*dim, dim): [B, T, dim] -> same."""

    def __init__(self, dim: int, mult: float = 4, dropout: float = 0.0):
        super().__init__()
        hidden = int(dim * mult)
        self.proj_in = nn.Linear(dim, hidden)
        self.proj_out = nn.Linear(hidden, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj_out(self.dropout(F.gelu(self.proj_in(x))))


class TransformerBlock(nn.Module):
    """Pre-norm block x + Attn(LN(x)); x + FF(LN(x)) on channel-first input: [B, C, T], mask [B, 1, T] -> same."""

    def __init__(self, dim: int, heads: int, head_dim: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = MultiHeadAttention(dim, heads, head_dim, layout="diffusers", dropout=dropout)
        self.norm3 = nn.LayerNorm(dim)
        self.ff = GELUFeedForward(dim, 4, dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = x.transpose(1, 2)
        key_mask = mask[:, 0] > 0
        h = h + self.dropout(self.attn(self.norm1(h), key_mask))
        h = h + self.ff(self.norm3(h))
        return h.transpose(1, 2)


def _concat_inputs(x, mu, spk, cond) -> torch.Tensor:
    return torch.cat([x, mu, spk[:, :, None].expand(-1, -1, x.shape[-1]), cond], dim=1)


class UNet1DEstimator(nn.Module):
    """1-D U-Net with transformer blocks (CosyVoice `ConditionalDecoder`).

    Args:
        n_mels: mel bins; the input is concat[x, mu, spk, cond] = 4 * n_mels channels.
        channels: width per level (len(channels) - 1 stride-2 downsamplings).
        n_blocks: transformer blocks after every ResNet block.
        num_mid_blocks: (ResNet + transformer blocks) units at the bottom level.
        heads, head_dim: attention heads and per-head width; dropout inside the blocks.

    Shapes: forward(x, mask, mu, t, spk, cond) with x/mu/cond [B, n_mels, T], mask [B, 1, T],
    t [B], spk [B, n_mels] -> velocity [B, n_mels, T].
    """

    def __init__(self, n_mels: int, channels: list[int] = (256, 256), n_blocks: int = 4, num_mid_blocks: int = 12,
                 heads: int = 8, head_dim: int = 64, dropout: float = 0.0):
        super().__init__()
        channels = [int(c) for c in channels]
        if not channels:
            raise BadConfigError("U-Net estimator needs at least one level in 'channels'")
        in_channels = 4 * n_mels
        time_dim = channels[0] * 4
        self.time_embedding = TimestepEmbedding(in_channels, time_dim)

        def blocks(dim: int) -> nn.ModuleList:
            return nn.ModuleList(TransformerBlock(dim, heads, head_dim, dropout) for _ in range(n_blocks))

        self.down_blocks = nn.ModuleList()
        previous = in_channels
        for i, ch in enumerate(channels):
            last = i == len(channels) - 1
            resample = nn.Conv1d(ch, ch, 3, padding=1) if last else nn.Conv1d(ch, ch, 3, stride=2, padding=1)
            self.down_blocks.append(nn.ModuleList([ResnetBlock1D(previous, ch, time_dim), blocks(ch), resample]))
            previous = ch
        self.mid_blocks = nn.ModuleList(
            nn.ModuleList([ResnetBlock1D(channels[-1], channels[-1], time_dim), blocks(channels[-1])])
            for _ in range(num_mid_blocks)
        )
        self.up_blocks = nn.ModuleList()
        widths = channels[::-1] + [channels[0]]
        for i in range(len(channels)):
            last = i == len(channels) - 1
            ch_in, ch = widths[i], widths[i + 1]
            resample = nn.Conv1d(ch, ch, 3, padding=1) if last else nn.ConvTranspose1d(ch, ch, 4, stride=2, padding=1)
            self.up_blocks.append(nn.ModuleList([ResnetBlock1D(2 * ch_in, ch, time_dim), blocks(ch), resample]))
        self.final_block = Block1D(channels[0], channels[0])
        self.final_proj = nn.Conv1d(channels[0], n_mels, 1)

    def forward(self, x, mask, mu, t, spk, cond) -> torch.Tensor:
        temb = self.time_embedding(t)
        h = _concat_inputs(x, mu, spk, cond)
        skips, masks = [], [mask]
        for resnet, transformers, down in self.down_blocks:
            m = masks[-1]
            h = resnet(h, m, temb)
            for block in transformers:
                h = block(h, m)
            skips.append(h)
            h = down(h * m)
            masks.append(m[:, :, ::2])
        masks.pop()  # the last level does not downsample
        m = masks[-1]
        for resnet, transformers in self.mid_blocks:
            h = resnet(h, m, temb)
            for block in transformers:
                h = block(h, m)
        for resnet, transformers, up in self.up_blocks:
            m = masks.pop()
            skip = skips.pop()
            # The transposed conv doubles ceil(T/2) frames: drop the extra one for odd T.
            h = resnet(torch.cat([h[:, :, : skip.shape[-1]], skip], dim=1), m, temb)
            for block in transformers:
                h = block(h, m)
            h = up(h * m)
        h = self.final_block(h, mask)
        return self.final_proj(h * mask) * mask


class DiTBlock(nn.Module):
    """AdaLN-Zero transformer block: the time embedding sets shift/scale/gate of both sublayers.

    Shapes: x [B, T, dim], temb [B, dim], key_mask bool [B, T] -> [B, T, dim]. The modulation
    starts at zero, so an untrained block is the identity.
    """

    def __init__(self, dim: int, heads: int, head_dim: int, ff_mult: float, dropout: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = MultiHeadAttention(dim, heads, head_dim, layout="diffusers", dropout=dropout)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.ff = GELUFeedForward(dim, ff_mult, dropout)
        self.modulation = nn.Linear(dim, 6 * dim)
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)

    def forward(self, x: torch.Tensor, temb: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        shift_a, scale_a, gate_a, shift_f, scale_f, gate_f = self.modulation(F.silu(temb))[:, None].chunk(6, dim=-1)
        x = x + gate_a * self.attn(self.norm1(x) * (1 + scale_a) + shift_a, key_mask)
        return x + gate_f * self.ff(self.norm2(x) * (1 + scale_f) + shift_f)


class DiTEstimator(nn.Module):
    """Diffusion transformer over mel frames.

    Args:
        n_mels: mel bins (input concat[x, mu, spk, cond] = 4 * n_mels channels).
        dim, depth, heads, head_dim, ff_mult, dropout: transformer size.
        conv_pos_kernel: kernel of the two grouped convolutions that give the frames their positions.

    Shapes: as UNet1DEstimator.forward.
    """

    def __init__(self, n_mels: int, dim: int = 512, depth: int = 12, heads: int = 8, head_dim: int = 64,
                 ff_mult: float = 2, dropout: float = 0.0, conv_pos_kernel: int = 31, conv_pos_groups: int = 16):
        super().__init__()
        if conv_pos_kernel % 2 == 0 or dim % conv_pos_groups:
            raise BadConfigError(f"DiT conv_pos_kernel must be odd and dim divisible by {conv_pos_groups}")
        self.time_embedding = TimestepEmbedding(256, dim)
        self.proj_in = nn.Linear(4 * n_mels, dim)
        pad = conv_pos_kernel // 2
        self.conv_pos = nn.ModuleList(nn.Conv1d(dim, dim, conv_pos_kernel, padding=pad, groups=conv_pos_groups)
                                      for _ in range(2))
        self.blocks = nn.ModuleList(DiTBlock(dim, heads, head_dim, ff_mult, dropout) for _ in range(depth))
        self.norm_out = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.modulation_out = nn.Linear(dim, 2 * dim)
        nn.init.zeros_(self.modulation_out.weight)
        nn.init.zeros_(self.modulation_out.bias)
        self.proj_out = nn.Linear(dim, n_mels)

    def forward(self, x, mask, mu, t, spk, cond) -> torch.Tensor:
        temb = self.time_embedding(t)
        h = self.proj_in(_concat_inputs(x, mu, spk, cond).transpose(1, 2)).transpose(1, 2) * mask  # [B, dim, T]
        pos = h
        for conv in self.conv_pos:
            pos = F.mish(conv(pos * mask))
        h = (h + pos * mask).transpose(1, 2)
        key_mask = mask[:, 0] > 0
        for block in self.blocks:
            h = block(h, temb, key_mask)
        shift, scale = self.modulation_out(F.silu(temb))[:, None].chunk(2, dim=-1)
        out = self.proj_out(self.norm_out(h) * (1 + scale) + shift)
        return out.transpose(1, 2) * mask


ESTIMATORS = {"unet": UNet1DEstimator, "dit": DiTEstimator}


def estimator_kwargs(config: dict[str, Any] | None, where: str = "estimator") -> tuple[type[nn.Module], dict[str, Any]]:
    """The estimator class and constructor kwargs of a config block {kind: unet|dit, ...}; a key
    the kind's constructor does not take is a BadConfigError naming it under `where`."""
    cfg = dict(require_mapping(config, where))
    kind = cfg.pop("kind", "unet")
    if kind not in ESTIMATORS:
        raise BadConfigError(f"unknown flow estimator kind '{kind}' (choose from {sorted(ESTIMATORS)})")
    return ESTIMATORS[kind], kwargs_for(ESTIMATORS[kind], cfg, where, exclude=("n_mels",))


def build_estimator(config: dict[str, Any], n_mels: int, where: str = "estimator") -> nn.Module:
    """Estimator from its config block: {kind: unet|dit, ...constructor kwargs}."""
    cls, kwargs = estimator_kwargs(config, where)
    return cls(n_mels=n_mels, **kwargs)
