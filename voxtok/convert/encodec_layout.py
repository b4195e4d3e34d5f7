"""Rename rules for checkpoints built from EnCodec's modules (SEANet and the EMA residual VQ).

EnCodec (PyPI `encodec`), SpeechTokenizer, DM-Codec and WavTokenizer's encoder all use EnCodec's
SEANet and quantizer code, so their checkpoints name the same parts the same way:

    SConv1d / SConvTranspose1d   <p>model.N.conv.conv.{weight_g, weight_v, bias} / <p>model.N.convtr.convtr.*
    residual block               <p>model.N.block.J.conv.conv.*, <p>model.N.shortcut.conv.conv.*
    SLSTM                        <p>model.N.lstm.*
    EuclideanCodebook (EMA)      <p>vq.layers.I._codebook.{embed, embed_avg, cluster_size, inited}

VoxTok's SEANetEncoder / SEANetDecoder keep EnCodec's module indices (with one wrapper less per
conv), and its VectorQuantizer holds the same EMA state under its own names (codebook = embed,
ema_embed_sum = embed_avg, ema_cluster_size = cluster_size, initialized = inited), so these
renames plus keymap's weight-norm translation map one onto the other.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Mapping

from voxtok.errors import BadConfigError

if TYPE_CHECKING:  # torch stays unimported until a converter runs (`voxtok --help` stays fast)
    import torch

    from voxtok.convert.keymap import Rules

_CODEBOOK_BUFFERS = {"embed": "codebook", "embed_avg": "ema_embed_sum", "cluster_size": "ema_cluster_size",
                     "inited": "initialized"}


# EnCodec's EuclideanCodebook training settings, which SpeechTokenizer and WavTokenizer keep (not in
# their configs): converted codecs carry them so fine-tuning continues with the reference's codebook rules.
REFERENCE_QUANTIZER = {"decay": 0.99, "kmeans_init": True, "kmeans_iters": 50, "dead_code_threshold": 2.0,
                       "epsilon": 1e-5}


def seanet_rules(source: str, target: str) -> Rules:
    """Rules mapping an EnCodec-layout SEANet encoder or decoder whose keys start with `source`
    (e.g. "encoder.") onto VoxTok's SEANetEncoder / SEANetDecoder keys under `target`."""
    s = re.escape(source)
    return [
        (rf"{s}(model\.\d+(?:\.block\.\d+|\.shortcut)?)\.conv\.conv\.(\w+)", rf"{target}\1.conv.\2"),
        (rf"{s}(model\.\d+)\.convtr\.convtr\.(\w+)", rf"{target}\1.convtr.\2"),
        (rf"{s}(model\.\d+\.lstm\.\w+)", rf"{target}\1"),
    ]


def rvq_rules(source: str, target: str) -> Rules:
    """Rules mapping EnCodec's ResidualVectorQuantizer state under `source` (e.g. "quantizer.")
    onto VoxTok's ResidualVQ under `target`: each layer's EMA codebook buffers, renamed."""
    s = re.escape(source)
    return [(rf"{s}vq\.layers\.(\d+)\._codebook\.{name}", rf"{target}layers.\1.{new}")
            for name, new in _CODEBOOK_BUFFERS.items()]


def vq_layer_rules(source: str, layer: int, target: str) -> Rules:
    """Rules mapping layer `layer` of EnCodec's quantizer under `source` onto one VoxTok
    VectorQuantizer under `target` (a single-codebook codec such as WavTokenizer)."""
    s = re.escape(source)
    return [(rf"{s}vq\.layers\.{layer}\._codebook\.{name}", f"{target}{new}") for name, new in _CODEBOOK_BUFFERS.items()]


def check_codebooks_trained(state: Mapping[str, torch.Tensor], source: str, path: str | os.PathLike) -> None:
    """Refuse a checkpoint whose codebooks under `source` were never initialised (`inited` 0).

    EnCodec-style codebooks with k-means init start as zeros and are filled by k-means on the
    first training batch; a checkpoint saved before that holds no codebook to convert (the
    reference would run k-means on whatever it encodes first, VoxTok would code everything as 0).
    """
    pattern = re.compile(rf"{re.escape(source)}vq\.layers\.(\d+)\._codebook\.inited")
    unset = sorted(int(m.group(1)) for k, v in state.items() if (m := pattern.fullmatch(k)) and not bool(v.all()))
    if unset:
        raise BadConfigError(f"codebook(s) {unset} of {source}vq were never initialised (inited = 0): "
                             "the checkpoint was saved before training started", path)


def as_voxtok_flags(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """EnCodec's `inited` is a float [1]; VoxTok's `initialized` a bool scalar: reshape the renamed
    flags in `state` (in place, returned)."""
    for key in [k for k in state if k.endswith(".initialized")]:
        state[key] = state[key].reshape(()).bool()
    return state
