"""CosyVoice-style text-to-speech-token language model.

Sequence layout (one item; CosyVoice v1):

    [sos] [spk] TextEnc(prompt_text + text) [task] [prompt speech tokens] -> speech tokens ... EOS

`sos` and `task` are two learned vectors, `spk` is the L2-normalised speaker x-vector (spk_dim:
192 for CAM++, 256 for resemblyzer) through a Linear layer, the text goes through a text encoder,
speech tokens through an embedding table of the V codes; a causal decoder-only backbone (fed with
`inputs_embeds`) predicts the next speech token or EOS (id V). This is CosyVoice v1's layout.
Two builds of the stacks:
- from-scratch configs: a non-causal pre-norm transformer text encoder (`text_encoder.kind:
  transformer`) and a Qwen2 or Llama backbone from transformers;
- CosyVoice-300M's own (`text_encoder.kind: conformer`, `backbone.kind: espnet`): its causal
  relative-position Conformer and ESPnet relative-position transformer (`voxtok.tts.cosyvoice_lm`),
  so its released llm.pt loads key for key (`voxtok.convert.cosyvoice_llm`).
Training uses an empty prompt: the whole utterance's tokens are the target; the loss is cross
entropy on the speech-token positions and EOS only.

The LLM only needs the speech vocabulary size: tokens may come from any registered tokenizer
(S3, WavTokenizer, DM-Codec RVQ-1); `config.tokenizer` records which (name, frame rate).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from voxtok.config import check_keys, require_mapping
from voxtok.errors import BadConfigError, BadTextError, BadTokenFileError
from voxtok.nn.decoding import StepOutput, decode_with_kv_cache
from voxtok.nn.masks import length_mask
from voxtok.nn.modes import eval_mode
from voxtok.nn.positions import sinusoids
from voxtok.nn.sampling import item_generators
from voxtok.registry import SavesPretrained, register
from voxtok.tts.cosyvoice_lm import CONFORMER_TEXT_KEYS, ESPNET_BACKBONE_KEYS, conformer_text_encoder, espnet_backbone

IGNORE_INDEX = -100
SOS, TASK = 0, 1  # rows of the special-embedding table

TRANSFORMERS_BACKBONE_KEYS = ("kind", "hidden_size", "num_layers", "num_heads", "num_kv_heads", "intermediate_size",
                              "max_positions", "rope_theta", "attention_dropout", "rms_norm_eps", "attn_implementation")
# Every key some backbone kind takes; each kind's builder checks its own.
BACKBONE_KEYS = tuple(dict.fromkeys(TRANSFORMERS_BACKBONE_KEYS + ESPNET_BACKBONE_KEYS))
BACKBONE_KINDS = ("qwen2", "llama", "espnet")


def build_causal_backbone(cfg: dict[str, Any], where: str = "backbone"):
    """A randomly initialised causal decoder without token table or LM head.

    `cfg`: kind ("qwen2" | "llama" from transformers, or "espnet": CosyVoice v1's relative-position
    transformer, options in `voxtok.tts.cosyvoice_lm.espnet_backbone`), hidden_size, num_layers,
    num_heads, intermediate_size; for qwen2 / llama optional num_kv_heads (default num_heads),
    max_positions (4096), rope_theta (10000), attention_dropout (0), rms_norm_eps (1e-6),
    attn_implementation ("sdpa").
    Call it with `inputs_embeds` [B, T, hidden_size] (+ attention_mask [B, T], position_ids,
    past_key_values, use_cache); callers embed their own inputs. `where` names the block in messages.
    """
    kind = require_mapping(cfg, where).get("kind", "qwen2")
    if kind not in BACKBONE_KINDS:
        raise BadConfigError(f"unknown backbone kind '{kind}' (choose from {sorted(BACKBONE_KINDS)})")
    if kind == "espnet":
        return espnet_backbone(cfg, where)
    from transformers import LlamaConfig, LlamaModel, Qwen2Config, Qwen2Model

    kinds = {"qwen2": (Qwen2Config, Qwen2Model), "llama": (LlamaConfig, LlamaModel)}
    check_keys(cfg, TRANSFORMERS_BACKBONE_KEYS, where)
    for key in ("hidden_size", "num_layers", "num_heads", "intermediate_size"):
        if int(cfg.get(key, 0)) < 1:
            raise BadConfigError(f"backbone.{key} must be >= 1, got {cfg.get(key)}")
    hidden, heads = int(cfg["hidden_size"]), int(cfg["num_heads"])
    kv_heads = int(cfg.get("num_kv_heads") or heads)
    if hidden % heads or heads % kv_heads:
        raise BadConfigError(f"backbone: hidden_size {hidden} must divide by num_heads {heads}, "
                             f"and num_heads by num_kv_heads {kv_heads}")
    config_cls, model_cls = kinds[kind]
    config = config_cls(
        vocab_size=1, hidden_size=hidden, intermediate_size=int(cfg["intermediate_size"]),
        num_hidden_layers=int(cfg["num_layers"]), num_attention_heads=heads, num_key_value_heads=kv_heads,
        max_position_embeddings=int(cfg.get("max_positions", 4096)), rope_theta=float(cfg.get("rope_theta", 10000.0)),
        attention_dropout=float(cfg.get("attention_dropout", 0.0)), rms_norm_eps=float(cfg.get("rms_norm_eps", 1e-6)),
        pad_token_id=None, bos_token_id=None, eos_token_id=None, tie_word_embeddings=False,
    )
    config._attn_implementation = cfg.get("attn_implementation", "sdpa")
    model = model_cls(config)
    # Inputs always arrive as embeddings: drop transformers' token table so no parameter goes
    # unused (DDP would otherwise need find_unused_parameters, and counts would be off).
    model.embed_tokens = None
    return model


# ----------------------------------------------------------------------------- configuration


@dataclass
class SamplingConfig:
    """Repetition-aware top-p/top-k sampling (CosyVoice RAS).

    A token is drawn from the smallest set of most likely tokens whose probability reaches
    `top_p` (at most `top_k`); if it already occurs >= `win_size * tau_r` times in the last
    `win_size` generated tokens, it is redrawn from the full distribution without it (CosyVoice's
    `ras_sampling` since upstream commit f2ddcbe, 2026-02). `win_size=0` turns RAS off;
    `top_k=1, win_size=0` is greedy decoding. The defaults are CosyVoice-300M's.
    """

    top_p: float = 0.8
    top_k: int = 25
    win_size: int = 10
    tau_r: float = 0.1
    temperature: float = 1.0

    @classmethod
    def greedy(cls) -> "SamplingConfig":
        """Argmax decoding (deterministic)."""
        return cls(top_p=1.0, top_k=1, win_size=0)

    @classmethod
    def from_any(cls, value: "SamplingConfig | dict | None", default: "SamplingConfig") -> "SamplingConfig":
        """Accept a SamplingConfig, a dict of overrides on `default`, or None (= `default`)."""
        if value is None:
            return default
        if isinstance(value, SamplingConfig):
            return value
        check_keys(require_mapping(value, "sampling"), (f.name for f in fields(cls)), "sampling")
        return cls(**{**asdict(default), **value})


@dataclass
class TextToTokenLMConfig:
    """Sizes of the text-to-speech-token LM (defaults: CosyVoice-300M's LLM on a Qwen2 backbone).

    text_encoder: kind "transformer" (default: non-causal pre-norm transformer; dim, layers, heads,
    ffn_dim, dropout) or "conformer" (CosyVoice v1's causal relative-position Conformer; also
    attn_dropout, causal, layer_norm_eps: `voxtok.tts.cosyvoice_lm.conformer_text_encoder`).
    backbone: options of `build_causal_backbone`; its hidden_size is the LM width.
    spk_dim: the speaker vector's size (192: CAM++ x-vectors, as CosyVoice; 256: resemblyzer).
    min/max_token_text_ratio: generated tokens per target-text id (EOS is suppressed before the
    minimum; decoding stops at the maximum).
    tokenizer: what made the speech tokens (name, frame_rate, ...), recorded for synthesis.
    """

    text_vocab_size: int = 256
    speech_vocab_size: int = 4096
    text_embed_dim: int = 512
    text_encoder: dict = field(default_factory=lambda: {"dim": 1024, "layers": 6, "heads": 16, "ffn_dim": 4096,
                                                        "dropout": 0.1})
    backbone: dict = field(default_factory=lambda: {"kind": "qwen2", "hidden_size": 1024, "num_layers": 14,
                                                    "num_heads": 16, "intermediate_size": 2730})
    spk_dim: int = 256
    label_smoothing: float = 0.0
    min_token_text_ratio: float = 2.0
    max_token_text_ratio: float = 20.0
    sampling: dict = field(default_factory=lambda: asdict(SamplingConfig()))
    tokenizer: dict = field(default_factory=lambda: {"name": "s3", "frame_rate": 50.0})

    @classmethod
    def from_dict(cls, cfg: dict[str, Any], where: str = "llm") -> "TextToTokenLMConfig":
        """Build from a plain dict; unknown keys at any level are an error naming the key under
        `where` (typos must not pass silently). A null value means the default."""
        cfg = require_mapping(cfg, where)
        check_keys(cfg, (f.name for f in fields(cls)), where)
        given = {k: v for k, v in cfg.items() if v is not None}
        defaults = cls()
        for key, allowed in LLM_BLOCK_KEYS.items():
            if key in given:  # partial blocks override the defaults key by key
                block = require_mapping(given[key], f"{where}.{key}")
                check_keys(block, allowed, f"{where}.{key}")
                given[key] = {**getattr(defaults, key), **dict(block)}
        out = cls(**given)
        for key in ("text_vocab_size", "speech_vocab_size", "text_embed_dim", "spk_dim"):
            if int(getattr(out, key)) < 1:
                raise BadConfigError(f"{where}.{key} must be >= 1, got {getattr(out, key)}")
        if not 0 <= out.min_token_text_ratio <= out.max_token_text_ratio or out.max_token_text_ratio <= 0:
            raise BadConfigError(f"llm token/text ratios must satisfy 0 <= min <= max, max > 0 "
                                 f"(got {out.min_token_text_ratio}, {out.max_token_text_ratio})")
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# The keys each nested block of the LLM config may hold.
LLM_BLOCK_KEYS: dict[str, tuple[str, ...]] = {
    "text_encoder": tuple(dict.fromkeys(("kind", "dim", "layers", "heads", "ffn_dim", "dropout")
                                        + CONFORMER_TEXT_KEYS)),
    "backbone": BACKBONE_KEYS,
    "sampling": tuple(f.name for f in fields(SamplingConfig)),
    "tokenizer": ("name", "frame_rate", "checkpoint_hash"),  # what made the speech tokens
}


# ----------------------------------------------------------------------------- building blocks


class TextEncoder(nn.Module):
    """Non-causal text encoder: ids [B, L] (+ lengths [B]) -> features [B, L, out_dim].

    Embedding -> Linear + LayerNorm (ESPnet's "linear" input layer) -> x*sqrt(d) + sine positions
    -> pre-norm transformer layers (SiLU FFN, padding masked) -> LayerNorm -> Linear to out_dim.
    """

    def __init__(self, vocab_size: int, embed_dim: int, dim: int, layers: int, heads: int, ffn_dim: int,
                 out_dim: int, dropout: float = 0.1):
        super().__init__()
        if dim % heads or dim % 2:
            raise BadConfigError(f"text_encoder.dim {dim} must be even and divide by heads {heads}")
        self.dim = dim
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        self.input_proj = nn.Sequential(nn.Linear(embed_dim, dim), nn.LayerNorm(dim))
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(dim, heads, ffn_dim, dropout, activation=F.silu, batch_first=True,
                                       norm_first=True)
            for _ in range(layers))
        self.final_norm = nn.LayerNorm(dim)
        self.out_proj = nn.Linear(dim, out_dim)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        x = self.input_proj(self.embedding(ids))
        positions = sinusoids(torch.arange(ids.shape[1], device=ids.device), self.dim)  # Vaswani layout
        x = x * math.sqrt(self.dim) + positions.to(x.dtype)
        x = self.dropout(x)
        pad = ~length_mask(lengths, ids.shape[1])
        for layer in self.layers:
            x = layer(x, src_key_padding_mask=pad)
        return self.out_proj(self.final_norm(x))


def build_text_encoder(cfg: dict[str, Any], vocab_size: int, embed_dim: int, out_dim: int,
                       where: str = "llm.text_encoder") -> nn.Module:
    """The text encoder a `text_encoder` block names (see TextToTokenLMConfig): ids [B, L] +
    lengths [B] -> [B, L, out_dim]."""
    kind = cfg.get("kind") or "transformer"
    if kind == "conformer":
        return conformer_text_encoder({k: v for k, v in cfg.items() if v is not None}, vocab_size, embed_dim,
                                      out_dim, where)
    if kind != "transformer":
        raise BadConfigError(f"{where}.kind must be transformer or conformer, got {kind!r}")
    check_keys(cfg, ("kind", "dim", "layers", "heads", "ffn_dim", "dropout"), where)
    enc = {"dropout": 0.1, **cfg}
    return TextEncoder(vocab_size, embed_dim, int(enc["dim"]), int(enc["layers"]), int(enc["heads"]),
                       int(enc["ffn_dim"]), out_dim, float(enc["dropout"]))


@dataclass
class SequenceLayout:
    """Where each part of the LM input starts, per item ([B] each), and the total lengths [B]."""

    sos: torch.Tensor
    spk: torch.Tensor
    text: torch.Tensor
    task: torch.Tensor
    prompt: torch.Tensor
    speech: torch.Tensor
    lengths: torch.Tensor


def pack_segments(segments: Sequence[tuple[torch.Tensor, torch.Tensor]]
                  ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """Concatenate variable-length segments item by item, right-padded.

    segments: (x [B, L_k, D], lengths [B]) in order. Returns (packed [B, T, D] with zeros past
    each item's end, total lengths [B], start of every segment per item [B] each).
    """
    first = segments[0][0]
    batch, device = first.shape[0], first.device
    totals = torch.stack([lens.to(device) for _, lens in segments]).sum(0)
    out = first.new_zeros(batch, int(totals.max()), first.shape[-1])
    offset = torch.zeros(batch, dtype=torch.long, device=device)
    starts = []
    rows = torch.arange(batch, device=device)[:, None]
    for x, lens in segments:
        lens = lens.to(device)
        starts.append(offset.clone())
        if x.shape[1]:
            valid = length_mask(lens, x.shape[1])
            cols = offset[:, None] + torch.arange(x.shape[1], device=device)[None]
            # Under autocast some segments come out of linear layers in bfloat16/float16, others are
            # float32 embedding rows: they are packed at the first segment's dtype.
            out = out.index_put((rows.expand_as(cols)[valid], cols[valid]), x[valid].to(out.dtype))
        offset = offset + lens
    return out, totals, starts


def _as_items(x: torch.Tensor | Sequence[torch.Tensor] | None, batch: int | None, what: str) -> list[torch.Tensor] | None:
    """Per-item 1-D LongTensors from a 1-D tensor (one item), a [B, L] tensor or a list."""
    if x is None:
        return None
    if isinstance(x, torch.Tensor):
        items = [x] if x.dim() == 1 else list(x.unbind(0)) if x.dim() == 2 else None
        if items is None:
            raise BadConfigError(f"{what} must be 1-D or [B, L], got shape {tuple(x.shape)}")
    else:
        items = [torch.as_tensor(t) for t in x]
    items = [t.reshape(-1).long() for t in items]
    if batch is not None and len(items) != batch:
        raise BadConfigError(f"{what} has {len(items)} items for a batch of {batch}")
    return items


def _pad(items: list[torch.Tensor], device) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([len(t) for t in items], dtype=torch.long, device=device)
    out = torch.zeros(len(items), max(1, int(lengths.max())), dtype=torch.long, device=device)
    for i, t in enumerate(items):
        out[i, :len(t)] = t.to(device)
    return out, lengths


@dataclass
class DecodeStep:
    """One decoding step for a batch: `token` [B] (a speech id, or V = EOS), valid where `active` [B];
    `logits` [B, V+1] the scores the token was drawn from (float32, on the CPU)."""

    step: int
    token: torch.Tensor
    active: torch.Tensor
    logits: torch.Tensor


# ----------------------------------------------------------------------------- the model


@register("tts", "llm")
class TextToTokenLM(SavesPretrained, nn.Module):
    """Text (+ speaker x-vector, optional prompt) -> speech tokens, CosyVoice style.

    Training: `forward_loss(batch)` with batch text_ids [B, L], text_lengths [B],
    speech_tokens [B, N], token_lengths [B], spk_emb [B, spk_dim].
    Inference: `generate(...)` (batched, KV cache) or `stream_generate(...)` (token chunks).
    """

    def __init__(self, config: TextToTokenLMConfig):
        super().__init__()
        self.config = config
        width = int(config.backbone["hidden_size"])
        self.width = width
        self.vocab = int(config.speech_vocab_size)
        self.eos = self.vocab
        self.text_encoder = build_text_encoder(config.text_encoder, config.text_vocab_size, config.text_embed_dim,
                                               width)
        self.spk_proj = nn.Linear(config.spk_dim, width)
        self.special = nn.Embedding(2, width)  # sos, task id
        self.speech_embedding = nn.Embedding(self.vocab, width)
        self.backbone = build_causal_backbone(config.backbone)
        self.head = nn.Linear(width, self.vocab + 1)
        self.default_sampling = SamplingConfig.from_any(config.sampling, SamplingConfig())

    @classmethod
    def from_config(cls, cfg: dict[str, Any], where: str = "llm") -> "TextToTokenLM":
        """Build from a config dict (see TextToTokenLMConfig), random weights; `where` names the
        config in messages."""
        return cls(TextToTokenLMConfig.from_dict(cfg, where))

    def to_config(self) -> dict[str, Any]:
        """The config dict `from_config` rebuilds this model from."""
        return self.config.to_dict()

    @property
    def device(self) -> torch.device:
        return self.head.weight.device

    # -- inputs
    def embed_speaker(self, spk_emb: torch.Tensor) -> torch.Tensor:
        """x-vectors [B, spk_dim] -> [B, 1, width] (L2-normalised first, as CosyVoice)."""
        if spk_emb.dim() == 1:
            spk_emb = spk_emb[None]
        if spk_emb.dim() != 2 or spk_emb.shape[-1] != self.config.spk_dim:
            raise BadConfigError(f"speaker embedding has shape {tuple(spk_emb.shape)}, "
                                 f"the model expects [B, {self.config.spk_dim}]")
        return self.spk_proj(F.normalize(spk_emb.float(), dim=-1).to(self.spk_proj.weight.dtype))[:, None]

    def _check_text(self, ids: torch.Tensor, lengths: torch.Tensor) -> None:
        if int(lengths.min()) < 1:
            raise BadTextError("empty text: nothing to synthesize")
        valid = ids[length_mask(lengths, ids.shape[1])]
        if int(valid.min()) < 0 or int(valid.max()) >= self.config.text_vocab_size:
            raise BadTextError(f"text id outside the model's vocabulary of {self.config.text_vocab_size} "
                               f"(text encoded with another frontend?)")

    def _check_speech(self, ids: torch.Tensor, lengths: torch.Tensor, what: str) -> None:
        valid = ids[length_mask(lengths, ids.shape[1])]
        if valid.numel() and (int(valid.min()) < 0 or int(valid.max()) >= self.vocab):
            raise BadTokenFileError(f"{what} outside [0, {self.vocab}): made by another tokenizer than "
                                    f"'{self.config.tokenizer.get('name')}'?")

    def build_inputs(self, text_ids: torch.Tensor, text_lengths: torch.Tensor, spk_emb: torch.Tensor,
                     prompt_tokens: torch.Tensor | None = None, prompt_lengths: torch.Tensor | None = None,
                     speech_tokens: torch.Tensor | None = None,
                     token_lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, SequenceLayout]:
        """LM input embeddings [B, T, width] (right-padded) and the layout of every item.

        text_ids [B, L] already hold prompt_text + text; prompt_tokens [B, P] and speech_tokens
        [B, N] are optional (with their lengths [B]).
        """
        self._check_text(text_ids, text_lengths)
        batch, device = text_ids.shape[0], text_ids.device
        ones = torch.ones(batch, dtype=torch.long, device=device)
        special = self.special.weight
        text = self.text_encoder(text_ids, text_lengths)
        segments = [(special[SOS].expand(batch, 1, -1), ones), (self.embed_speaker(spk_emb), ones),
                    (text, text_lengths), (special[TASK].expand(batch, 1, -1), ones)]
        for tokens, lengths, what in ((prompt_tokens, prompt_lengths, "prompt speech tokens"),
                                      (speech_tokens, token_lengths, "speech tokens")):
            if tokens is None:
                segments.append((text.new_zeros(batch, 0, self.width), ones * 0))
            else:
                self._check_speech(tokens, lengths, what)
                safe = tokens.clamp(0, self.vocab - 1)  # pads may hold anything
                segments.append((self.speech_embedding(safe), lengths))
        embeds, totals, starts = pack_segments(segments)
        return embeds, SequenceLayout(*starts, lengths=totals)

    # -- training
    def forward_logits(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, SequenceLayout]:
        """Teacher-forced logits [B, T, V+1], targets [B, T] (IGNORE_INDEX off target) and layout."""
        tokens, token_lengths = batch["speech_tokens"], batch["token_lengths"]
        embeds, layout = self.build_inputs(batch["text_ids"], batch["text_lengths"], batch["spk_emb"],
                                           speech_tokens=tokens, token_lengths=token_lengths)
        mask = length_mask(layout.lengths, embeds.shape[1])
        hidden = self.backbone(inputs_embeds=embeds, attention_mask=mask.long(), use_cache=False).last_hidden_state
        logits = self.head(hidden)
        # The output at [task] predicts token 0, at token j token j+1, at the last token EOS.
        n = tokens.shape[1]
        j = torch.arange(n + 1, device=tokens.device)[None]
        goal = torch.cat([tokens, tokens.new_zeros(tokens.shape[0], 1)], 1)
        goal = torch.where(j == token_lengths[:, None], torch.full_like(goal, self.eos), goal)
        keep = length_mask(token_lengths + 1, n + 1)  # the speech tokens and the EOS after them
        targets = torch.full(mask.shape, IGNORE_INDEX, dtype=torch.long, device=tokens.device)
        cols = (layout.task[:, None] + j).clamp(max=mask.shape[1] - 1)
        rows = torch.arange(tokens.shape[0], device=tokens.device)[:, None].expand_as(cols)
        targets[rows[keep], cols[keep]] = goal[keep]
        return logits, targets, layout

    def loss_from_logits(self, logits: torch.Tensor,
                         targets: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Token-averaged CE over target positions (speech tokens + EOS) and top-1 accuracy."""
        flat_logits = logits.float().reshape(-1, logits.shape[-1])
        flat_targets = targets.reshape(-1)
        loss = F.cross_entropy(flat_logits, flat_targets, ignore_index=IGNORE_INDEX,
                               label_smoothing=float(self.config.label_smoothing))
        keep = flat_targets != IGNORE_INDEX
        with torch.no_grad():
            acc = (flat_logits[keep].argmax(-1) == flat_targets[keep]).float().mean()
            eos = flat_targets[keep] == self.eos
            eos_acc = (flat_logits[keep][eos].argmax(-1) == self.eos).float().mean()
        return loss, {"loss": loss.detach(), "acc": acc, "eos_acc": eos_acc}

    def forward_loss(self, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """CE loss on speech tokens + EOS (text, prompt and pads masked); stats: loss, acc, eos_acc."""
        logits, targets, _ = self.forward_logits(batch)
        return self.loss_from_logits(logits, targets)

    # -- decoding
    def sample(self, logits: torch.Tensor, history: Sequence[int], sampling: SamplingConfig,
               generator: torch.Generator | None = None) -> int:
        """Draw one id from logits [V+1] with repetition-aware top-p/top-k sampling."""
        if sampling.temperature != 1.0:
            logits = logits / max(float(sampling.temperature), 1e-5)
        probs = logits.detach().float().cpu().softmax(-1)
        sorted_probs, order = probs.sort(descending=True, stable=True)
        before = sorted_probs.cumsum(-1) - sorted_probs
        rank = torch.arange(len(order))
        keep = (before < sampling.top_p) & (rank < max(1, int(sampling.top_k)))
        keep[0] = True
        choice = int(order[keep][torch.multinomial(sorted_probs[keep], 1, generator=generator)])
        if sampling.win_size > 0 and history:
            window = history[-int(sampling.win_size):]
            if sum(1 for t in window if t == choice) >= sampling.win_size * sampling.tau_r:
                # Redraw without the repeated token, from the full distribution (one draw over all
                # V+1 ids, as the reference, so a seed gives the reference's tokens).
                others = logits.detach().float().cpu().clone()
                others[choice] = -float("inf")
                if bool(torch.isfinite(others).any()):  # else nothing else is possible: keep it
                    choice = int(torch.multinomial(others.softmax(-1), 1, generator=generator))
        return choice

    def _prepare(self, text_ids, spk_emb, prompt_text_ids, prompt_tokens):
        texts = _as_items(text_ids, None, "text_ids")
        batch = len(texts)
        spk = spk_emb if spk_emb.dim() == 2 else spk_emb[None]
        if spk.shape[0] == 1 and batch > 1:
            spk = spk.expand(batch, -1)
        if spk.shape[0] != batch:
            raise BadConfigError(f"{spk.shape[0]} speaker embeddings for a batch of {batch}")
        prompts_text = _as_items(prompt_text_ids, batch, "prompt_text_ids") or [texts[0][:0]] * batch
        prompts = _as_items(prompt_tokens, batch, "prompt_tokens")
        for t in texts:
            if len(t) == 0:
                raise BadTextError("empty text: nothing to synthesize")
        return texts, spk, prompts_text, prompts

    @torch.inference_mode()
    def decode_steps(self, text_ids: torch.Tensor | Sequence[torch.Tensor], spk_emb: torch.Tensor,
                     prompt_text_ids: torch.Tensor | Sequence[torch.Tensor] | None = None,
                     prompt_tokens: torch.Tensor | Sequence[torch.Tensor] | None = None,
                     sampling: SamplingConfig | dict | None = None, seed: int | Sequence[int] | None = None,
                     max_tokens: int | None = None) -> Iterator[DecodeStep]:
        """Autoregressive decoding with a KV cache, one `DecodeStep` per generated position.

        text_ids: one 1-D tensor, [B, L] or a list of 1-D tensors; spk_emb [B or 1, spk_dim];
        prompt_text_ids / prompt_tokens: the same forms (zero-shot cloning) or None.
        Items are left-padded so their last prefix positions line up; per-item positions and
        masks make every item's result independent of the others. `seed`: int (item i uses
        seed + i, so a batch reproduces decoding item i alone with seed + i), one seed per item,
        or None (fresh seeds); each item draws from its own generator.
        """
        sampling = SamplingConfig.from_any(sampling, self.default_sampling)
        texts, spk, prompts_text, prompts = self._prepare(text_ids, spk_emb, prompt_text_ids, prompt_tokens)
        batch, device = len(texts), self.device
        generators = item_generators(seed, batch)
        text_len = torch.tensor([len(t) for t in texts])
        min_len = (text_len * self.config.min_token_text_ratio).long()
        max_len = (text_len * self.config.max_token_text_ratio).long().clamp(min=1)
        if max_tokens is not None:
            max_len = max_len.clamp(max=int(max_tokens))
            min_len = torch.minimum(min_len, max_len)
        history: list[list[int]] = [[] for _ in range(batch)]

        def sample_tokens(step: int, hidden: torch.Tensor, active: torch.Tensor, may_stop: torch.Tensor) -> StepOutput:
            # Sampling runs on the CPU: one device sync per step instead of several per item.
            logits = self.head(hidden).float().cpu()
            token = torch.full((batch,), self.eos, dtype=torch.long)
            for b in torch.nonzero(active).flatten().tolist():
                scores = logits[b].clone()
                if not may_stop[b]:
                    scores[self.eos] = -float("inf")
                token[b] = self.sample(scores, history[b], sampling, generators[b])
                if int(token[b]) != self.eos:
                    history[b].append(int(token[b]))
            fed = self.speech_embedding(token.clamp(max=self.vocab - 1).to(device))
            return StepOutput(emitted=active, ended=active & (token == self.eos), feed=fed,
                              value=DecodeStep(step, token, active, logits))

        with eval_mode(self):  # no dropout while decoding, even when called from a training loop
            full_text, full_lengths = _pad([torch.cat([p, t]) for p, t in zip(prompts_text, texts)], device)
            prompt_pad, prompt_lengths = _pad(prompts, device) if prompts is not None else (None, None)
            embeds, layout = self.build_inputs(full_text, full_lengths, spk.to(device), prompt_pad, prompt_lengths)
            for out in decode_with_kv_cache(self.backbone, embeds, layout.lengths, sample_tokens, min_len, max_len):
                yield out.value

    def generate(self, text_ids: torch.Tensor | Sequence[torch.Tensor], spk_emb: torch.Tensor,
                 prompt_text_ids: torch.Tensor | Sequence[torch.Tensor] | None = None,
                 prompt_tokens: torch.Tensor | Sequence[torch.Tensor] | None = None,
                 sampling: SamplingConfig | dict | None = None, seed: int | Sequence[int] | None = None,
                 max_tokens: int | None = None) -> list[torch.Tensor]:
        """Speech tokens for each item: a list of B LongTensors [N_i] (EOS and prompt excluded).

        Arguments as in `decode_steps`. A batch gives the same tokens as decoding each item alone
        with that item's seed.
        """
        texts = _as_items(text_ids, None, "text_ids")
        out: list[list[int]] = [[] for _ in texts]
        for step in self.decode_steps(texts, spk_emb, prompt_text_ids, prompt_tokens, sampling, seed, max_tokens):
            for b in torch.nonzero(step.active & (step.token != self.eos)).flatten().tolist():
                out[b].append(int(step.token[b]))
        return [torch.tensor(t, dtype=torch.long) for t in out]

    def stream_generate(self, text_ids: torch.Tensor, spk_emb: torch.Tensor,
                        prompt_text_ids: torch.Tensor | None = None, prompt_tokens: torch.Tensor | None = None,
                        sampling: SamplingConfig | dict | None = None, seed: int | None = None,
                        chunk_size: int = 25, first_chunk_size: int | None = None,
                        max_tokens: int | None = None) -> Iterator[torch.Tensor]:
        """Speech tokens of one utterance as LongTensor chunks [<= chunk_size] while decoding.

        `first_chunk_size` (smaller) lowers the latency to the first audio packet. The chunks
        concatenated equal `generate(...)[0]` with the same seed.
        """
        if chunk_size < 1 or (first_chunk_size is not None and first_chunk_size < 1):
            raise BadConfigError("chunk sizes must be >= 1")
        text = _as_items(text_ids, None, "text_ids")
        if len(text) != 1:
            raise BadConfigError(f"stream_generate takes one utterance, got {len(text)}")
        pending: list[int] = []
        size = first_chunk_size or chunk_size
        for step in self.decode_steps(text, spk_emb, prompt_text_ids, prompt_tokens, sampling, seed, max_tokens):
            if int(step.token[0]) != self.eos:
                pending.append(int(step.token[0]))
            if len(pending) >= size:
                yield torch.tensor(pending, dtype=torch.long)
                pending, size = [], chunk_size
        if pending:
            yield torch.tensor(pending, dtype=torch.long)
