"""The two stacks of CosyVoice v1's TransformerLM, built from VoxTok's Conformer encoder.

CosyVoice-300M's LLM (FunAudioLLM/CosyVoice cosyvoice/llm/llm.py `TransformerLM`) encodes the text
with a causal (WeNet static chunk size 1) relative-position Conformer without conv module or
macaron FFN, and predicts speech tokens with an ESPnet relative-position transformer (ReLU FFN, a
"linear_legacy" input layer: Linear -> LayerNorm -> ReLU) under a causal mask. Both are VoxTok's
`ConformerEncoder` with switches (causal, activation, input_relu, layer_norm_eps 1e-12), so:

- `ConformerTextEncoder`: text ids -> embedding -> causal Conformer -> Linear to the LM width
  (the reference's text_embedding, text_encoder and text_encoder_affine_layer);
- `RelPositionLM`: the LM backbone, called like a transformers decoder (inputs_embeds,
  attention_mask, past_key_values, use_cache), so `TextToTokenLM` trains and decodes it with the
  same code as its Qwen2 / Llama backbones (`voxtok.nn.decoding.decode_with_kv_cache`). Relative
  positions depend on distances only, so the left padding of batched decoding changes nothing.

`voxtok.tts.llm` chooses them with `text_encoder.kind: conformer` and `backbone.kind: espnet`;
`voxtok.convert.cosyvoice_llm` maps a released llm.pt onto them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from voxtok.config import check_keys, require_mapping
from voxtok.errors import BadConfigError
from voxtok.nn.attention import KeyValueCache
from voxtok.tts.conformer import ACTIVATIONS, ConformerEncoder

# Options of the `espnet` backbone (`voxtok.tts.llm.build_causal_backbone`), CosyVoice v1's values
# as defaults where they differ from a plain transformer.
ESPNET_BACKBONE_KEYS = ("kind", "hidden_size", "num_layers", "num_heads", "intermediate_size", "dropout",
                        "attention_dropout", "activation", "input_relu", "layer_norm_eps")
# Options of the `conformer` text encoder (`voxtok.tts.llm.TextToTokenLMConfig.text_encoder`).
CONFORMER_TEXT_KEYS = ("kind", "dim", "layers", "heads", "ffn_dim", "dropout", "attn_dropout", "causal",
                       "layer_norm_eps")


class ConformerTextEncoder(nn.Module):
    """Text ids [B, L] + lengths [B] -> features [B, L, out_dim] (padded positions zeroed).

    Embedding(vocab_size, embed_dim) -> `ConformerEncoder` (relative positions, no conv module;
    causal: each text position sees itself and the earlier ones, as CosyVoice v1 runs it) ->
    Linear(dim, out_dim).
    """

    def __init__(self, vocab_size: int, embed_dim: int, dim: int, layers: int, heads: int, ffn_dim: int,
                 out_dim: int, dropout: float = 0.1, attn_dropout: float = 0.0, causal: bool = True,
                 layer_norm_eps: float = 1e-12):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        self.encoder = ConformerEncoder(embed_dim, dim, heads, ffn_dim, layers, dropout, attn_dropout, pos="rel",
                                        conv_kernel=0, layer_norm_eps=layer_norm_eps, activation="silu",
                                        causal=causal)
        self.out_proj = nn.Linear(dim, out_dim)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.out_proj(self.encoder(self.embedding(ids), lengths))


def conformer_text_encoder(cfg: Mapping[str, Any], vocab_size: int, embed_dim: int, out_dim: int,
                           where: str = "text_encoder") -> ConformerTextEncoder:
    """Build a `ConformerTextEncoder` from a `text_encoder` block (CONFORMER_TEXT_KEYS; defaults:
    dropout 0.1, attn_dropout 0, causal true, layer_norm_eps 1e-12)."""
    check_keys(require_mapping(cfg, where), CONFORMER_TEXT_KEYS, where)
    return ConformerTextEncoder(vocab_size, embed_dim, int(cfg["dim"]), int(cfg["layers"]), int(cfg["heads"]),
                                int(cfg["ffn_dim"]), out_dim, float(cfg.get("dropout", 0.1)),
                                float(cfg.get("attn_dropout", 0.0)), bool(cfg.get("causal", True)),
                                float(cfg.get("layer_norm_eps", 1e-12)))


@dataclass
class BackboneOutput:
    """What a backbone call returns (the two fields of transformers' output that VoxTok reads):
    last_hidden_state [B, T, hidden]; past_key_values: one KeyValueCache per layer, or None."""

    last_hidden_state: torch.Tensor
    past_key_values: list[KeyValueCache] | None = None


class RelPositionLM(nn.Module):
    """Causal ESPnet relative-position transformer called like a transformers decoder.

    `forward(inputs_embeds [B, T, hidden], attention_mask [B, T_past + T] (1 = real), position_ids
    (ignored: positions are relative), past_key_values (from the previous call) or None,
    use_cache)` -> `BackboneOutput`; with use_cache the caches hold the keys and values of every
    position so far and the next call feeds only the new positions.
    """

    def __init__(self, hidden_size: int, num_layers: int, num_heads: int, intermediate_size: int,
                 dropout: float = 0.1, attention_dropout: float = 0.0, activation: str = "relu",
                 input_relu: bool = True, layer_norm_eps: float = 1e-12):
        super().__init__()
        self.encoder = ConformerEncoder(hidden_size, hidden_size, num_heads, intermediate_size, num_layers, dropout,
                                        attention_dropout, pos="rel", conv_kernel=0, layer_norm_eps=layer_norm_eps,
                                        activation=activation, causal=True, input_relu=input_relu)

    def forward(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, past_key_values: Sequence[KeyValueCache] | None = None,
                use_cache: bool = False) -> BackboneOutput:
        batch, t = inputs_embeds.shape[:2]
        caches = list(past_key_values) if past_key_values is not None else [
            KeyValueCache() for _ in self.encoder.layers]
        past = len(caches[0]) if caches else 0
        if attention_mask is None:
            key_mask = torch.ones(batch, past + t, dtype=torch.bool, device=inputs_embeds.device)
        else:
            key_mask = attention_mask.to(device=inputs_embeds.device, dtype=torch.bool)
        if key_mask.shape != (batch, past + t):
            raise ValueError(f"attention_mask must cover the {past} cached and {t} new positions, "
                             f"got shape {tuple(key_mask.shape)}")
        hidden = self.encoder.encode(inputs_embeds, key_mask, caches)
        return BackboneOutput(hidden, caches if use_cache else None)


def espnet_backbone(cfg: Mapping[str, Any], where: str = "backbone") -> RelPositionLM:
    """Build a `RelPositionLM` from a backbone block (ESPNET_BACKBONE_KEYS; defaults: CosyVoice v1's
    dropout 0.1, attention_dropout 0, activation relu, input_relu true, layer_norm_eps 1e-12)."""
    check_keys(require_mapping(cfg, where), ESPNET_BACKBONE_KEYS, where)
    for key in ("hidden_size", "num_layers", "num_heads", "intermediate_size"):
        if int(cfg.get(key, 0)) < 1:
            raise BadConfigError(f"{where}.{key} must be >= 1, got {cfg.get(key)}")
    hidden, heads = int(cfg["hidden_size"]), int(cfg["num_heads"])
    if hidden % heads:
        raise BadConfigError(f"{where}: hidden_size {hidden} must divide by num_heads {heads}")
    activation = cfg.get("activation", "relu")
    if activation not in ACTIVATIONS:
        raise BadConfigError(f"{where}.activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    return RelPositionLM(hidden, int(cfg["num_layers"]), heads, int(cfg["intermediate_size"]),
                         float(cfg.get("dropout", 0.1)), float(cfg.get("attention_dropout", 0.0)), activation,
                         bool(cfg.get("input_relu", True)), float(cfg.get("layer_norm_eps", 1e-12)))
