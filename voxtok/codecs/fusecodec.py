"""FuseCodec: the DM-Codec backbone with semantic-contextual fusion and supervision.

Three parts, each switched in the config (`model:` block = DM-Codec's, plus the blocks below):

    fusion:              {enabled, heads, drop_prob}
        The encoder latent Z [B, D, T'] cross-attends to two global vectors, the utterance mean
        of the semantic features (S) and the LM's [CLS] state (C), each first mapped to D
        (W_S, W_C). The attention output is split by source into S' and C', which are added
        before the RVQ with per-utterance dropout masks: Z' = Z + S' * D_S + C' * D_C.
    global_supervision:  {enabled, loss: d_axis | t_axis}
        Losses global_sm / global_lm: the RVQ-1 projections (the distill heads) against the
        global S and C broadcast over time.
    context_alignment:   {enabled, window, match: max | mean}
        Loss context_window: every LM word piece against the RVQ-1 frames inside `window`
        frames around its aligned span (codecs/distill.py: windowed_token_loss).
    context: cls | mean  which vector is C: the [CLS] state or the mean of the word pieces.

`distill:` must name both teachers (lm, sm) with their widths; their frame_loss may be null when
only the FuseCodec losses should use the heads.

Encoding without teachers. The published model feeds HuBERT and BERT-on-ASR vectors into the
encoder at inference too. Here `encode()` takes audio alone and runs the fusion-free path,
Z' = Z (D_S = D_C = 0). Training sees that path too: each stream is dropped for an utterance
with probability `drop_prob`, so the codes of audio-only encoding are ones the quantizer and
decoder were trained on. `encode_with_teachers(wav, lengths, n_q, sm_global=..., lm_cls=...)`
encodes with the teacher vectors, for analyses that have them.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from voxtok.codecs.distill import global_loss, windowed_token_loss
from voxtok.codecs.dmcodec import DMCodec
from voxtok.codecs.model_config import MODEL
from voxtok.codecs.modules.quantize import QuantizerOutput
from voxtok.config import merge_strict
from voxtok.errors import BadConfigError
from voxtok.registry import register


class GlobalFusion(nn.Module):
    """Cross-attention of latent frames to a global semantic and a global contextual vector.

    Each frame (query) attends over two keys, W_S s and W_C c; the output projection is linear,
    so the result splits exactly into the part carried by each source (S', C'). A dropped source
    is masked out of the softmax, so the other one takes all the weight. The output projection
    starts at zero, so fusion begins as the identity and cannot disturb the codec at the start.

    Args: dim (latent width D), semantic_dim, context_dim (teacher widths), heads (divides D).
    forward(latent [B, D, T], semantic [B, D_sm], context [B, D_lm], keep [B, 2] bool)
        -> (S' [B, D, T], C' [B, D, T]), zero where a source is not kept.
    """

    def __init__(self, dim: int, semantic_dim: int, context_dim: int, heads: int = 4):
        super().__init__()
        if dim % heads:
            raise BadConfigError(f"fusion.heads={heads} must divide the latent width {dim}")
        self.heads = heads
        self.to_semantic = nn.Linear(semantic_dim, dim)  # W_S
        self.to_context = nn.Linear(context_dim, dim)  # W_C
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim, bias=False)  # no bias: a dropped source must add exactly 0
        nn.init.zeros_(self.out.weight)

    def forward(self, latent: torch.Tensor, semantic: torch.Tensor, context: torch.Tensor,
                keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch, dim, frames = latent.shape
        h, dh = self.heads, dim // self.heads
        sources = torch.stack([self.to_semantic(semantic), self.to_context(context)], dim=1)  # [B, 2, D]
        q = self.query(latent.transpose(1, 2)).reshape(batch, frames, h, dh)
        k = self.key(sources).reshape(batch, 2, h, dh)
        v = self.value(sources).reshape(batch, 2, h, dh)
        scores = torch.einsum("bthe,bshe->bhts", q, k) / math.sqrt(dh)  # [B, H, T, 2]
        scores = scores.masked_fill(~keep[:, None, None, :], float("-inf"))
        # Both sources dropped gives an all -inf row: its NaNs are replaced by zero weight.
        weights = torch.nan_to_num(scores.softmax(-1), nan=0.0) * keep[:, None, None, :].to(scores.dtype)
        parts = torch.einsum("bhts,bshe->bsthe", weights, v).reshape(batch, 2, frames, dim)
        fused = self.out(parts).transpose(2, 3)  # [B, 2, D, T]
        return fused[:, 0], fused[:, 1]


# FuseCodec's keys of the `model:` block (besides DM-Codec's) with their defaults: all parts off.
FUSECODEC_DEFAULTS = {
    "context": "cls",
    "fusion": {"enabled": False, "heads": 4, "drop_prob": 0.5},
    "global_supervision": {"enabled": False, "loss": "d_axis"},
    "context_alignment": {"enabled": False, "window": 2, "match": "max"},
}


@register("codec", "fusecodec")
class FuseCodec(DMCodec):
    """DM-Codec backbone + latent fusion, global supervision and windowed contextual supervision."""

    model_keys = (*DMCodec.model_keys, *FUSECODEC_DEFAULTS)

    def __init__(self, config: dict[str, Any]):
        super().__init__(config)
        missing = [t for t in ("lm", "sm") if t not in self.targets]
        if missing:
            raise BadConfigError(f"fusecodec needs distill.lm and distill.sm (teacher widths); missing {missing}")
        cfg = merge_strict(FUSECODEC_DEFAULTS, {k: v for k, v in config.items() if k in FUSECODEC_DEFAULTS}, MODEL)
        self.context = cfg["context"]
        if self.context not in ("cls", "mean"):
            raise BadConfigError(f"fusecodec context must be 'cls' or 'mean', got {self.context!r}")
        fusion = cfg["fusion"]
        self.fusion_enabled = bool(fusion["enabled"])
        self.drop_prob = float(fusion["drop_prob"])
        if not 0.0 <= self.drop_prob <= 1.0:
            raise BadConfigError(f"fusion.drop_prob must be in [0, 1], got {self.drop_prob}")
        self.fusion = (GlobalFusion(self.encoder.dimension, self.targets["sm"].dim, self.targets["lm"].dim,
                                    int(fusion["heads"])) if self.fusion_enabled else None)
        self.global_enabled = bool(cfg["global_supervision"]["enabled"])
        self.global_kind = cfg["global_supervision"]["loss"]
        if self.global_kind not in ("d_axis", "t_axis"):
            raise BadConfigError(f"global_supervision.loss must be d_axis or t_axis, got {self.global_kind!r}")
        align = cfg["context_alignment"]
        self.align_enabled = bool(align["enabled"])
        self.window = int(align["window"])
        self.match = align["match"]
        if self.match not in ("max", "mean") or self.window < 0:
            raise BadConfigError(f"context_alignment needs window >= 0 and match max|mean, got "
                                 f"{self.window}, {self.match!r}")

    @property
    def context_key(self) -> str:
        """Batch key of the global contextual vector: lm_cls or lm_mean."""
        return "lm_cls" if self.context == "cls" else "lm_mean"

    @property
    def teacher_streams(self) -> set[str]:
        streams = set(super().teacher_streams)
        if self.fusion_enabled or self.global_enabled:
            streams |= {"sm_global", self.context_key}
        if self.align_enabled:
            streams.add("lm_tokens")
        return streams

    @property
    def loss_names(self) -> tuple[str, ...]:
        """DM-Codec's, plus global_sm / global_lm and context_window for the supervisions enabled."""
        extra = (("global_sm", "global_lm") if self.global_enabled else ()) + (
            ("context_window",) if self.align_enabled else ())
        return (*super().loss_names, *extra)

    # -- (i) latent fusion
    def fuse(self, latent: torch.Tensor, teachers: dict[str, torch.Tensor]) -> torch.Tensor:
        """Z' = Z + S' * D_S + C' * D_C; Z unchanged without fusion or without the vectors."""
        semantic, context = teachers.get("sm_global"), teachers.get(self.context_key)
        if self.fusion is None or semantic is None or context is None:
            return latent
        batch = latent.shape[0]
        for name, vec in (("sm_global", semantic), (self.context_key, context)):
            if vec.shape[0] != batch or vec.dim() != 2:
                raise BadConfigError(f"{name} must be [B={batch}, D], got {tuple(vec.shape)}")
        keep = torch.ones(batch, 2, dtype=torch.bool, device=latent.device)
        if self.training and self.drop_prob > 0:
            keep = torch.rand(batch, 2, device=latent.device) >= self.drop_prob
        s_part, c_part = self.fusion(latent, semantic.to(latent), context.to(latent), keep)
        return latent + s_part + c_part

    @torch.no_grad()
    def encode_with_teachers(self, wav: torch.Tensor, lengths: torch.Tensor | None = None, n_q: int | None = None,
                             **teachers: torch.Tensor) -> torch.Tensor:
        """Audio [B, 1, T] + the global vectors (sm_global and lm_cls / lm_mean, [B, D]) -> codes
        [B, n_q, ceil(T / hop)] with fusion, as the published model encodes; without the vectors
        the same codes as encode(). For analyses that have teacher features at test time."""
        latent = self.fuse(self.inference_latent(wav, lengths), teachers)
        return self.quantizer.encode(latent, n_q=n_q)

    # -- (ii) global and (iii) windowed supervision
    def teacher_losses(self, q: QuantizerOutput, teachers: dict[str, torch.Tensor],
                       frames: torch.Tensor) -> dict[str, torch.Tensor]:
        losses = super().teacher_losses(q, teachers, frames)
        if self.global_enabled:
            for name, key in (("sm", "sm_global"), ("lm", self.context_key)):
                student = self.project(q, name)
                if key in teachers and student is not None:
                    losses[f"global_{name}"] = global_loss(student, teachers[key].to(student), frames, self.global_kind)
        if self.align_enabled and "lm_tokens" in teachers:
            student = self.project(q, "lm")
            if student is not None:
                losses["context_window"] = windowed_token_loss(
                    student, teachers["lm_tokens"], teachers["lm_spans"], teachers["lm_tokens_lengths"],
                    frames, self.window, self.match)
        return losses
