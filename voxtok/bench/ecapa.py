"""An ECAPA-TDNN speaker network (Desplanques et al. 2020) over probe frame features, with an
additive-angular-margin (AAM) softmax head: the speaker probe of DASB's preset.

Layout (DASB's VoxCeleb1 probe sizes by default): a Conv1d + ReLU + BatchNorm block (kernel 5),
three SE-Res2Net blocks (kernel 3, dilations 2, 3, 4, scale 8, residual), their outputs
concatenated and mixed by a 1x1 conv (3 x channels), attentive statistics pooling (context-aware
attention over frames, weighted mean and std), BatchNorm, a linear embedding (192-d) and a cosine
classifier trained with AAM softmax (margin 0.2, scale 30).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from voxtok.nn.masks import length_mask


class TDNNBlock(nn.Sequential):
    """Conv1d (same length) -> ReLU -> BatchNorm: [B, C_in, T] -> [B, C_out, T]."""

    def __init__(self, c_in: int, c_out: int, kernel: int, dilation: int = 1):
        super().__init__(nn.Conv1d(c_in, c_out, kernel, dilation=dilation, padding=dilation * (kernel - 1) // 2),
                         nn.ReLU(), nn.BatchNorm1d(c_out))


class SERes2NetBlock(nn.Module):
    """1x1 TDNN -> Res2Net (the channels split in `scale` groups, each convolved after adding the
    previous group's output) -> 1x1 TDNN -> squeeze-excitation, plus the input: [B, C, T] -> [B, C, T]."""

    def __init__(self, channels: int, kernel: int, dilation: int, scale: int = 8, se_channels: int = 128):
        super().__init__()
        if channels % scale:
            raise ValueError(f"ECAPA channels ({channels}) must be a multiple of the Res2Net scale ({scale})")
        width = channels // scale
        self.scale = scale
        self.inp = TDNNBlock(channels, channels, 1)
        self.res2 = nn.ModuleList(TDNNBlock(width, width, kernel, dilation) for _ in range(scale - 1))
        self.out = TDNNBlock(channels, channels, 1)
        self.se = nn.Sequential(nn.Conv1d(channels, se_channels, 1), nn.ReLU(), nn.Conv1d(se_channels, channels, 1),
                                nn.Sigmoid())

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        parts = list(self.inp(x).chunk(self.scale, dim=1))
        mixed, previous = [parts[0]], None
        for conv, part in zip(self.res2, parts[1:]):
            previous = conv(part if previous is None else part + previous)
            mixed.append(previous)
        h = self.out(torch.cat(mixed, dim=1))
        mean = (h * mask).sum(-1, keepdim=True) / mask.sum(-1, keepdim=True).clamp(min=1)
        return x + h * self.se(mean)


class AttentiveStatsPool(nn.Module):
    """Attention over valid frames, conditioned on the utterance's mean and std:
    [B, C, T] + mask [B, 1, T] -> [B, 2C] (weighted mean and std)."""

    def __init__(self, channels: int, attention: int):
        super().__init__()
        self.attend = nn.Sequential(TDNNBlock(3 * channels, attention, 1), nn.Tanh(), nn.Conv1d(attention, channels, 1))

    @staticmethod
    def _stats(x: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = (x * weights).sum(-1)
        std = ((x - mean[..., None]).pow(2) * weights).sum(-1).clamp(min=1e-6).sqrt()
        return mean, std

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        uniform = mask / mask.sum(-1, keepdim=True).clamp(min=1)
        mean, std = self._stats(x, uniform)
        context = torch.cat([x, mean[..., None].expand_as(x), std[..., None].expand_as(x)], dim=1)
        scores = self.attend(context).masked_fill(mask == 0, float("-inf"))
        mean, std = self._stats(x, torch.softmax(scores, dim=-1))
        return torch.cat([mean, std], dim=1)


class ECAPATDNN(nn.Module):
    """Frame features [B, T, D] + lengths [B] -> speaker embeddings [B, embedding]."""

    def __init__(self, dim: int, channels: int = 1024, embedding: int = 192, attention: int = 128):
        super().__init__()
        self.first = TDNNBlock(dim, channels, 5)
        self.blocks = nn.ModuleList(SERes2NetBlock(channels, 3, dilation) for dilation in (2, 3, 4))
        self.mix = TDNNBlock(3 * channels, 3 * channels, 1)
        self.pool = AttentiveStatsPool(3 * channels, attention)
        self.norm = nn.BatchNorm1d(6 * channels)
        self.embed = nn.Linear(6 * channels, embedding)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        mask = length_mask(lengths.to(features.device), features.shape[1]).unsqueeze(1).float()  # [B, 1, T]
        h = self.first(features.transpose(1, 2))
        outputs = []
        for block in self.blocks:
            h = block(h, mask)
            outputs.append(h)
        h = self.mix(torch.cat(outputs, dim=1))
        return self.embed(self.norm(self.pool(h, mask)))


class AAMSoftmax(nn.Module):
    """Cosine classifier: embeddings [B, E] -> logits [B, N] = scale * cos(theta (+ margin on the target))."""

    def __init__(self, embedding: int, num_classes: int, margin: float = 0.2, scale: float = 30.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(num_classes, embedding) * embedding ** -0.5)
        self.margin, self.scale = margin, scale

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        cosine = F.linear(F.normalize(embeddings), F.normalize(self.weight)).clamp(-1 + 1e-7, 1 - 1e-7)
        if labels is None:  # inference: plain cosine scores
            return self.scale * cosine
        target = torch.cos(torch.acos(cosine) + self.margin)
        one_hot = F.one_hot(labels, cosine.shape[1]).bool()
        return self.scale * torch.where(one_hot, target, cosine)
