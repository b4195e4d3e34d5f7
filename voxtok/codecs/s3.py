"""Supervised semantic speech tokenizer (S3, CosyVoice): a CTC speech recognizer with a
quantizer in the middle of its encoder; the quantizer's codes are the speech tokens.

    wav [B, 1, T] @ 16 kHz -> log-mel (Whisper front end, 100 frames/s)
      -> conv stem (two k=3 convs, GELU; strides [1, 2] = 50 Hz (v1) or [2, 2] = 25 Hz (v2))
      -> + positions -> Encoder-1 (pre-LN transformer blocks)
      -> quantizer (v1: VQ 4096 on L2-normalised frames; v2: FSQ 3^8 = 6561 codes)   <- tokens
      -> + positions -> Encoder-2 -> LayerNorm -> CTC head over characters (blank = 0)

The tokenizer is Encoder-1 + quantizer: its size matches the public CosyVoice tokenizers
(speech_tokenizer_v1: Whisper-style blocks, 1280 dims, 20 heads, 6 layers; v2 adds FSMN memory
and rotary positions). CosyVoice trains it with an attention decoder on SenseVoice-Large;
Encoder-2's depth is not published, and we replace the decoder by a CTC head over characters.

Config (the `model:` block of configs/codec/s3_*.yaml):
    sample_rate: 16000
    mel: {preset: whisper, n_mels: 128}       MelConfig preset + overrides
    strides: [1, 2]                           conv stem strides (hop = mel hop x product)
    dim, heads, encoder1_blocks, encoder2_blocks
    position: sinusoidal | rope               added before each encoder, or rotary in attention
    block: {ffn_mult: 4, fsmn_kernel: 0, dropout: 0.0}
    quantizer: {kind: vq | fsq, normalize, warmup_steps, ...build_quantizer options}
    vocab: {symbols: " 'abcdefghijklmnopqrstuvwxyz"}
    spec_augment: {freq_masks, freq_width, time_masks, time_width}   (optional, training only)
"""

from __future__ import annotations

import copy
import math
import string
import unicodedata
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from voxtok.audio import MelConfig, MelSpectrogram
from voxtok.codecs.base import Codec
from voxtok.codecs.model_config import MODEL, quantizer_from_config
from voxtok.codecs.modules.outputs import quantizer_stats
from voxtok.codecs.modules.quantize import QuantizerOutput
from voxtok.config import check_keys, kwargs_for, require_keys, require_mapping
from voxtok.errors import BadConfigError, BadTextError, VoxTokError
from voxtok.nn.attention import MultiHeadAttention
from voxtok.nn.masks import length_mask
from voxtok.nn.positions import rotary_tables, sinusoids
from voxtok.registry import register

# ----------------------------------------------------------------------------- characters

DEFAULT_SYMBOLS = " '" + string.ascii_lowercase
_APOSTROPHES = str.maketrans({c: "'" for c in "\u2019\u2018\u02bc`\u00b4"})
# Joiners read as word breaks ("twenty-one" -> "twenty one"), as in LibriSpeech transcripts.
_WORD_BREAKS = str.maketrans({c: " " for c in "-\u2010\u2011\u2012\u2013\u2014/_\t\n\r"})
_PUNCTUATION = set(".,?!;:\"()[]{}<>\u00ab\u00bb\u201c\u201d\u201e\u2026*~")


class CharVocab:
    """Character vocabulary for CTC: id 0 is the blank, ids 1..len(symbols) the symbols.

    `normalize` lowercases, strips accents and punctuation, maps typographic apostrophes to "'"
    and hyphens to spaces; `encode` refuses what is still outside the symbols (digits, other
    scripts) with a one-line BadTextError, since silently dropping them would train on wrong
    targets.
    """

    blank = 0

    def __init__(self, symbols: str = DEFAULT_SYMBOLS):
        if not isinstance(symbols, str) or not symbols:
            raise BadConfigError(f"vocab symbols must be a non-empty string of characters, got {symbols!r}")
        if len(set(symbols)) != len(symbols):
            raise BadConfigError(f"vocab symbols repeat a character: {symbols!r}")
        self.symbols = symbols
        self._ids = {c: i + 1 for i, c in enumerate(symbols)}

    @classmethod
    def from_config(cls, config: dict[str, Any] | None, where: str = "vocab") -> "CharVocab":
        """Build from a model config's `vocab:` block (None = the default English set); `where`
        names the block in errors."""
        config = require_mapping(config, where)
        check_keys(config, ("symbols",), where)
        return cls(config.get("symbols", DEFAULT_SYMBOLS))

    def to_config(self) -> dict[str, str]:
        """The `vocab:` block that rebuilds this vocabulary."""
        return {"symbols": self.symbols}

    def __len__(self) -> int:
        return len(self.symbols) + 1

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CharVocab) and other.symbols == self.symbols

    def __hash__(self) -> int:
        return hash(self.symbols)

    def normalize(self, text: str) -> str:
        """Lowercase, accents and punctuation removed, single spaces; never raises."""
        text = unicodedata.normalize("NFKD", text)
        text = "".join(c for c in text if not unicodedata.combining(c)).lower()
        text = text.translate(_APOSTROPHES).translate(_WORD_BREAKS)
        text = "".join(c for c in text if c in self._ids or c not in _PUNCTUATION)
        # Quotes around a word are punctuation; an apostrophe inside one ("don't") is spelling.
        words = [w.strip("'") for w in text.split()]
        return " ".join(w for w in words if w)

    def encode(self, text: str, name: object | None = None) -> list[int]:
        """Text -> ids [N] (no blanks). `name` (e.g. the utterance) is named in errors."""
        norm = self.normalize(text)
        unknown = sorted({c for c in norm if c not in self._ids})
        if unknown:
            shown = " ".join(repr(c) for c in unknown[:8])
            raise BadTextError(f"characters outside the vocabulary {self.describe()}: {shown} "
                               f"in {text[:60]!r} (spell out digits and symbols)", name)
        if not norm:
            raise BadTextError(f"text {text[:60]!r} has no characters left after normalisation", name)
        return [self._ids[c] for c in norm]

    def decode(self, ids: Sequence[int]) -> str:
        """Ids -> text; blanks are skipped (CTC collapsing is the caller's job)."""
        chars = []
        for i in ids:
            i = int(i)
            if not 0 <= i < len(self):
                raise VoxTokError(f"character id {i} outside the vocabulary 0..{len(self) - 1}")
            if i != self.blank:
                chars.append(self.symbols[i - 1])
        return " ".join("".join(chars).split())

    def describe(self) -> str:
        """Short human description of the symbols, e.g. "[space ' a-z]"."""
        marked = self.symbols.replace(string.ascii_lowercase, "\0")
        return "[" + " ".join({"\0": "a-z", " ": "space"}.get(c, c) for c in marked) + "]"


# ----------------------------------------------------------------------------- building blocks


# Keys of EncoderBlock weights saved before the attention moved into voxtok.nn (block-level names).
_PRE_NN_ATTENTION_KEYS = ("query.weight", "query.bias", "key.weight", "value.weight", "value.bias",
                          "out.weight", "out.bias", "fsmn.weight")


def _nest_attention_keys(module, state_dict, prefix, *args) -> None:
    """Load-state-dict pre-hook: move old block-level attention keys under `attn.`, so
    checkpoints written before the shared attention module keep loading."""
    for name in _PRE_NN_ATTENTION_KEYS:
        if prefix + name in state_dict:
            state_dict[prefix + "attn." + name] = state_dict.pop(prefix + name)


class EncoderBlock(nn.Module):
    """Pre-LN transformer block, Whisper layout (no key bias), with optional FSMN memory
    (CosyVoice 2: a depthwise conv over the values, added to the attention output) and
    optional rotary positions: x [B, T, D], mask [B, T] (True = real frame) -> [B, T, D].
    """

    def __init__(self, dim: int, heads: int, ffn_mult: int = 4, fsmn_kernel: int = 0, dropout: float = 0.0):
        super().__init__()
        self.attn_norm = nn.LayerNorm(dim)
        self.attn = MultiHeadAttention(dim, heads, layout="whisper", fsmn_kernel=fsmn_kernel)
        self.mlp_norm = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, ffn_mult * dim), nn.GELU(), nn.Linear(ffn_mult * dim, dim))
        self.dropout = nn.Dropout(dropout)
        self.register_load_state_dict_pre_hook(_nest_attention_keys)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, rotary: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        # Padded keys are excluded, so a frame's output never depends on how much padding follows.
        x = x + self.dropout(self.attn(self.attn_norm(x), mask, rotary=rotary))
        return x + self.dropout(self.mlp(self.mlp_norm(x)))


class ConvStem(nn.Module):
    """Whisper's conv stem: log-mel [B, M, N] -> frames [B, N', D], one k=3 conv (GELU) per
    stride; N' = ceil(N / prod(strides)). Padded input frames are zeroed before every conv, so
    the last real frames see the same zeros batched or alone.
    """

    def __init__(self, n_mels: int, dim: int, strides: Sequence[int]):
        super().__init__()
        if not strides or any(int(s) < 1 for s in strides):
            raise BadConfigError(f"conv stem strides must be >= 1, got {list(strides)}")
        self.strides = [int(s) for s in strides]
        self.convs = nn.ModuleList(
            nn.Conv1d(n_mels if i == 0 else dim, dim, 3, stride=s, padding=1) for i, s in enumerate(self.strides))

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = feats
        for conv, stride in zip(self.convs, self.strides):
            x = x * length_mask(lengths, x.shape[-1])[:, None, :].to(x.dtype)
            x = F.gelu(conv(x))
            lengths = torch.div(lengths + stride - 1, stride, rounding_mode="floor")
        return x.transpose(1, 2), lengths


class BlockStack(nn.Module):
    """`count` EncoderBlocks: x [B, T, D] -> (x, [each block's output [B, T, D]])."""

    def __init__(self, count: int, dim: int, heads: int, **block):
        super().__init__()
        try:
            self.blocks = nn.ModuleList(EncoderBlock(dim, heads, **block) for _ in range(count))
        except TypeError as err:
            raise BadConfigError(f"bad encoder block options {block}: {err}") from None

    def forward(self, x: torch.Tensor, mask: torch.Tensor, rotary=None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        outputs = []
        for block in self.blocks:
            x = block(x, mask, rotary)
            outputs.append(x)
        return x, outputs


def spec_augment(feats: torch.Tensor, lengths: torch.Tensor, freq_masks: int = 2, freq_width: int = 10,
                 time_masks: int = 2, time_width: float = 0.05) -> torch.Tensor:
    """SpecAugment (no warping): zero `freq_masks` bands of up to `freq_width` mel bins and
    `time_masks` spans of up to `time_width` x each item's valid frames. feats [B, M, N] -> same.
    """
    feats = feats.clone()
    batch, bins, _ = feats.shape
    for b in range(batch):
        valid = int(lengths[b])
        for _ in range(freq_masks):
            width = int(torch.randint(0, freq_width + 1, ()))
            start = int(torch.randint(0, max(1, bins - width), ()))
            feats[b, start:start + width, :] = 0
        for _ in range(time_masks):
            width = int(torch.randint(0, int(time_width * valid) + 1, ()))
            start = int(torch.randint(0, max(1, valid - width), ()))
            feats[b, :, start:start + width] = 0
    return feats


# ----------------------------------------------------------------------------- the tokenizer

_REQUIRED_KEYS = ("dim", "heads", "encoder1_blocks", "encoder2_blocks", "quantizer")
_CONFIG_KEYS = {*_REQUIRED_KEYS, "sample_rate", "mel", "strides", "position", "block", "vocab", "spec_augment"}


@register("codec", "s3")
class S3Tokenizer(Codec):
    """CosyVoice-style supervised semantic tokenizer: one codebook of semantic tokens at 50 Hz
    (VQ) or 25 Hz (FSQ), trained through a character CTC recognizer. Tokens cannot be decoded to
    audio by this model (see `decode`).
    """

    def __init__(self, config: dict[str, Any]):
        super().__init__(config)
        cfg = copy.deepcopy(config)
        check_keys(require_mapping(cfg, MODEL), _CONFIG_KEYS, MODEL)
        require_keys(cfg, _REQUIRED_KEYS, MODEL)
        self.vocab = CharVocab.from_config(cfg.get("vocab"), f"{MODEL}.vocab")
        self.config["vocab"] = self.vocab.to_config()  # save_pretrained then always stores it
        self.sample_rate = int(cfg.get("sample_rate", 16000))
        mel = dict(require_mapping(cfg.get("mel"), f"{MODEL}.mel"))
        mel_cfg = MelConfig.preset(mel.pop("preset", "whisper"))  # the other keys override the preset's
        mel_cfg = mel_cfg.with_(**kwargs_for(MelConfig, mel, f"{MODEL}.mel"))
        if mel_cfg.sample_rate != self.sample_rate:
            raise BadConfigError(f"mel sample_rate {mel_cfg.sample_rate} differs from the model's {self.sample_rate}")
        self.mel = MelSpectrogram(mel_cfg)
        dim, heads = int(cfg["dim"]), int(cfg["heads"])
        self.dim = dim
        self.stem = ConvStem(mel_cfg.n_mels, dim, cfg.get("strides", [1, 2]))
        self.hop_length = mel_cfg.hop_length * math.prod(self.stem.strides)
        self.position = cfg.get("position", "sinusoidal")
        if self.position not in ("sinusoidal", "rope"):
            raise BadConfigError(f"position must be 'sinusoidal' or 'rope', got {self.position!r}")
        block = kwargs_for(EncoderBlock, cfg.get("block"), f"{MODEL}.block", exclude=("dim", "heads"))
        self.encoder1 = BlockStack(int(cfg["encoder1_blocks"]), dim, heads, **block)
        self.encoder2 = BlockStack(int(cfg["encoder2_blocks"]), dim, heads, **block)
        self.head_dim = dim // heads

        # Quantizer bypassed for the first `warmup_steps` updates: k-means on a random encoder's
        # frames would fit a codebook the encoder leaves behind at once (see
        # AutoencoderCodec.training_forward).
        self.quantizer, self.quantizer_warmup_steps, own = quantizer_from_config(
            cfg["quantizer"], dim, kinds=("vq", "fsq"), default_kind="vq", why=" (one codebook)",
            caller_keys=("normalize",))
        # CosyVoice v1 looks codes up for L2-normalised frames (cosine similarity). We scale the
        # unit vectors by sqrt(dim) so each channel has RMS 1, like the rest of the residual
        # stream: same nearest codes, commitment loss on a useful scale.
        self.normalize = bool(own.get("normalize", False))
        self.n_q = 1
        self.codebook_size = int(self.quantizer.codebook_size)

        self.final_norm = nn.LayerNorm(dim)
        self.ctc_head = nn.Linear(dim, len(self.vocab))
        self.spec_augment = (kwargs_for(spec_augment, cfg["spec_augment"], f"{MODEL}.spec_augment",
                                        exclude=("feats", "lengths")) if cfg.get("spec_augment") else None)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "S3Tokenizer":
        return cls(config)

    # -- front end
    def features(self, wav: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Audio [B, 1, T] -> Whisper-scaled log-mel [B, M, ceil(T / mel_hop)] and valid frames [B].

        Frames past each signal are zero. The signal is zero-padded on the right before the STFT,
        so the last real frames see zeros (not a reflection) whether or not the batch pads them.
        """
        if wav.dim() != 3 or wav.shape[1] != 1:
            raise BadConfigError(f"expected audio [B, 1, T], got {tuple(wav.shape)}")
        if lengths is None:
            lengths = torch.full((wav.shape[0],), wav.shape[-1], dtype=torch.long, device=wav.device)
        lengths = lengths.to(wav.device).long()
        cfg = self.mel.config
        with torch.autocast(device_type=wav.device.type, enabled=False):  # log of bf16 mels is too coarse
            log_mel = self.mel(F.pad(wav[:, 0].float(), (0, cfg.n_fft // 2)))
        frames = -(-wav.shape[-1] // cfg.hop_length)
        # Whisper's log10 scaling, without its per-utterance dynamic-range clamp (which would make
        # a frame's value depend on the rest of its utterance).
        feats = (log_mel[..., :frames] / math.log(10.0) + 4.0) / 4.0
        mel_lengths = torch.div(lengths + cfg.hop_length - 1, cfg.hop_length, rounding_mode="floor")
        return feats * length_mask(mel_lengths, frames)[:, None, :].to(feats.dtype), mel_lengths

    def _positions(self, x: torch.Tensor) -> torch.Tensor:
        if self.position != "sinusoidal":
            return x
        # Whisper layout: [sin | cos] (see voxtok.nn.positions).
        table = sinusoids(torch.arange(x.shape[1], device=x.device), x.shape[2], layout="sin_cos", endpoint=True,
                          log_first=True)
        return x + table.to(x.dtype)

    def _rotary(self, frames: int, device: torch.device):
        return rotary_tables(frames, self.head_dim, device=device) if self.position == "rope" else None

    def _encoder1(self, wav: torch.Tensor, lengths: torch.Tensor | None, augment: bool = False):
        """-> (Encoder-1 output [B, T', D], frame lengths [B], mask [B, T'], block outputs)."""
        feats, mel_lengths = self.features(wav, lengths)
        if augment:
            feats = spec_augment(feats, mel_lengths, **self.spec_augment)
        x, frame_lengths = self.stem(feats, mel_lengths)
        mask = length_mask(frame_lengths, x.shape[1])
        x, hidden = self.encoder1(self._positions(x), mask, self._rotary(x.shape[1], x.device))
        return x, frame_lengths, mask, hidden

    def _quantizer_input(self, h: torch.Tensor) -> torch.Tensor:
        """Encoder-1 frames [B, T', D] -> quantizer input [B, D, T']."""
        if self.normalize:
            h = F.normalize(h, dim=-1) * math.sqrt(h.shape[-1])
        return h.transpose(1, 2)

    def _encoder2(self, quantized: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Quantized frames [B, T', D] -> (CTC logits [B, T', V], Encoder-2 block outputs)."""
        x, hidden = self.encoder2(self._positions(quantized), mask, self._rotary(quantized.shape[1], quantized.device))
        return self.ctc_head(self.final_norm(x)), hidden

    def _infer(self, wav: torch.Tensor, lengths: torch.Tensor | None):
        """Inference pass that never touches codebook statistics:
        -> (codes [B, 1, T'], CTC logits [B, T', V], frame lengths [B], block outputs)."""
        h, frame_lengths, mask, hidden1 = self._encoder1(wav, lengths)
        codes = self.quantizer.encode(self._quantizer_input(h))
        quantized = self.quantizer.decode(codes).transpose(1, 2)
        logits, hidden2 = self._encoder2(quantized, mask)
        return codes, logits, frame_lengths, hidden1 + hidden2

    # -- the Codec API
    def _encode(self, wav: torch.Tensor, lengths: torch.Tensor | None, n_q: int) -> torch.Tensor:
        h, _, _, _ = self._encoder1(wav, lengths)
        return self.quantizer.encode(self._quantizer_input(h))

    def decode(self, codes: torch.Tensor, num_samples: int | None = None) -> torch.Tensor:
        """Not available: S3 tokens carry content, not sound."""
        raise BadConfigError("S3 tokens are semantic and the tokenizer has no audio decoder: "
                             "synthesize audio from them with the TTS flow decoder + vocoder (`voxtok tts synth`)")

    # -- recognition
    def ctc_log_probs(self, wav: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Audio [B, 1, T] -> (CTC log-probabilities [B, T', V] float32, valid frames [B])."""
        _, logits, frame_lengths, _ = self._infer(wav, lengths)
        return F.log_softmax(logits.float(), dim=-1), frame_lengths

    def hidden_states(self, wav: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Audio [B, 1, T] -> (one [B, T', D] output per encoder block, Encoder-1's then
        Encoder-2's (which reads the quantized frames), valid frames [B]): the semantic teacher."""
        _, _, frame_lengths, hidden = self._infer(wav, lengths)
        return hidden, frame_lengths

    def greedy_decode(self, log_probs: torch.Tensor, frame_lengths: torch.Tensor) -> list[str]:
        """Best path per frame [B, T', V], repeats merged, blanks dropped -> one text per item."""
        best = log_probs.argmax(dim=-1).cpu()
        texts = []
        for b in range(best.shape[0]):
            path = torch.unique_consecutive(best[b, : int(frame_lengths[b])])
            texts.append(self.vocab.decode(path[path != CharVocab.blank].tolist()))
        return texts

    def recognize(self, wav: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[list[str], torch.Tensor, torch.Tensor]:
        """One pass for both outputs: (greedy transcripts, codes [B, 1, T'], valid frames [B])."""
        codes, logits, frame_lengths, _ = self._infer(wav, lengths)
        return self.greedy_decode(logits, frame_lengths), codes, frame_lengths

    def transcribe(self, wav: torch.Tensor, lengths: torch.Tensor | None = None) -> list[str]:
        """Audio [B, 1, T] -> greedy CTC transcripts (normalised text)."""
        return self.recognize(wav, lengths)[0]

    # -- training
    # The unweighted losses `training_losses` returns: the CTC trainer's `loss` block weights these.
    loss_names = ("ctc", "commit", "codebook")

    def training_losses(self, wav: torch.Tensor, lengths: torch.Tensor | None, targets: torch.Tensor,
                        target_lengths: torch.Tensor, step: int | None = None) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        """Audio [B, 1, T] + character targets [B, N] (ids 1..V-1, padded) with lengths [B] ->
        (unweighted losses {"ctc", "commit", "codebook"}, stats for logging).

        In training mode SpecAugment (when configured) masks the features and the quantizer
        updates its codebook; before `quantizer.warmup_steps` (when `step` is given) the
        quantizer is bypassed. CTC is averaged over target lengths then over the batch;
        utterances too short for their text get zero loss and are counted in stats["infeasible"].
        """
        if targets.dim() != 2 or target_lengths.shape != (targets.shape[0],) or wav.shape[0] != targets.shape[0]:
            raise BadConfigError(f"targets must be [B, N] with target_lengths [B] for B={wav.shape[0]}, "
                                 f"got {tuple(targets.shape)} and {tuple(target_lengths.shape)}")
        augment = self.training and self.spec_augment is not None
        h, frame_lengths, mask, _ = self._encoder1(wav, lengths, augment)
        q: QuantizerOutput | None = None
        if step is not None and step < self.quantizer_warmup_steps:
            # Encoder-2 already sees frames on the quantizer's scale, so the switch is smooth.
            quantized = self._quantizer_input(h).transpose(1, 2)
        else:
            q = self.quantizer(self._quantizer_input(h), mask=mask)
            quantized = q.quantized.transpose(1, 2)
        logits, _ = self._encoder2(quantized, mask)
        log_probs = F.log_softmax(logits.float(), dim=-1)
        target_lengths = target_lengths.to(log_probs.device).long()
        ctc = F.ctc_loss(log_probs.transpose(0, 1), targets.to(log_probs.device), frame_lengths, target_lengths,
                         blank=CharVocab.blank, reduction="mean", zero_infinity=True)
        zero = ctc.new_zeros(())
        losses = {"ctc": ctc, "commit": q.commit_loss if q else zero, "codebook": q.codebook_loss if q else zero}
        stats = quantizer_stats(q) if q else {}
        stats["infeasible"] = float((_ctc_min_frames(targets, target_lengths) > frame_lengths.cpu()).float().mean())
        return losses, stats


def _ctc_min_frames(targets: torch.Tensor, target_lengths: torch.Tensor) -> torch.Tensor:
    """Fewest frames a CTC path needs for each target [B, N]: its length plus one blank between
    each pair of repeated symbols -> [B] (cpu)."""
    targets, target_lengths = targets.cpu(), target_lengths.cpu()
    inside = length_mask(target_lengths, targets.shape[1])
    repeats = (targets[:, 1:] == targets[:, :-1]) & inside[:, 1:]
    return target_lengths + repeats.sum(1)
