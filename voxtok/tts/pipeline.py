"""What every VoxTok TTS pipeline shares: capabilities, prompts, the vocoder and streaming cross-fades.

A pipeline is registered as `voxtok.registry.register("pipeline", name)` and loaded from a manifest
(voxtok/tts/manifest.py) by `voxtok.registry.load(manifest)`. Its class attributes say what it can
do (modes, streaming, classifier-free guidance, prompt length); the CLI and the demo read them, and
`TTSPipeline.check_options` is the one place a request is checked against them.

Manifest parts read here: a vocoder (`load_vocoder`: any registered tts vocoder, `mel_vocoder` or
`hift`), stored voices (`speakers`: a folder holding a spk2embedding store) and, for pipelines that
list it, the prompt speaker encoder (`speaker_encoder`: a campplus.onnx file or a folder holding one,
for models conditioned on CAM++ x-vectors; without it prompts get resemblyzer d-vectors).

Device and precision: `pipeline.to(device, dtype)` moves every model part once (weights stay
float32); synthesis then runs under autocast to `dtype` (`pipeline.precision()`), prompts are placed
on the device, and the audio handed back is float32 on the CPU, ready to save.
"""

from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, ContextManager, Iterator

import torch

from voxtok.audio import MelSpectrogram, MelConfig, resample, validate_waveform
from voxtok.config import check_keys
from voxtok.device import place, precision, resolve_device, resolve_dtype
from voxtok.errors import BadAudioError, BadConfigError, UnknownSpeakerError

# Mode -> how users see it (the demo's labels). CosyVoice defines the three.
MODE_LABELS = {"zero_shot": "zero-shot", "cross_lingual": "cross-lingual", "sft": "stored speaker"}


@dataclass
class Prompt:
    """A reference utterance prepared for cloning.

    wav [1, T] at `sample_rate`; mel [n_mels, F] at the flow's mel rate (None when unused);
    spk_emb [spk_dim] (256 resemblyzer, 192 CAM++); text: its transcript or None (cross-lingual);
    tokens [N] speech tokens or None.
    """

    wav: torch.Tensor
    sample_rate: int
    spk_emb: torch.Tensor
    text: str | None = None
    mel: torch.Tensor | None = None
    tokens: torch.Tensor | None = None


def check_prompt_audio(wav: torch.Tensor, sample_rate: int, name: object, min_seconds: float,
                       max_seconds: float) -> torch.Tensor:
    """Validate reference audio ([T] or [1, T]; finite, audible, min-max seconds) -> float32 [1, T]."""
    wav = torch.as_tensor(wav, dtype=torch.float32)
    if wav.dim() == 1:
        wav = wav[None]
    if wav.dim() != 2 or wav.shape[0] != 1:
        raise BadAudioError(f"reference audio must be mono [1, T], got shape {tuple(wav.shape)}", name)
    validate_waveform(wav, sample_rate, name, min_seconds=min_seconds, max_seconds=max_seconds)
    return wav


class SpeakerTable:
    """Stored voices for `sft` mode: speaker id -> embedding [dim] (a spk2embedding ShardStore)."""

    def __init__(self, store_dir: str | os.PathLike | None):
        self.store = None
        if store_dir:
            from voxtok.data.shards import ShardStore

            self.store = ShardStore(Path(store_dir) / "spk2embedding")

    @property
    def dim(self) -> int | None:
        """Size of the stored vectors as the store's meta.json records it (None: no store, or not recorded)."""
        dim = self.store.meta.get("dim") if self.store is not None else None
        return int(dim) if isinstance(dim, int) else None

    def ids(self) -> list[str]:
        """The stored speaker ids, sorted."""
        return sorted(self.store.keys()) if self.store is not None else []

    def embedding(self, speaker: str) -> torch.Tensor:
        """[dim] embedding of `speaker`, or UnknownSpeakerError listing a few known ids."""
        if self.store is None or speaker not in self.store:
            known = ", ".join(self.ids()[:8]) or "none stored"
            raise UnknownSpeakerError(f"unknown speaker '{speaker}' (known: {known})")
        return torch.from_numpy(self.store[speaker].astype("float32")).reshape(-1)


def load_vocoder(path: str | os.PathLike, map_location: str | torch.device = "cpu"):
    """The vocoder checkpoint at `path`: any registered tts model that turns a log mel into audio
    (`mel_vocoder`, `hift`: `sample_rate`, `hop_length`, `n_mels`, `mel_config`, `mel(wav)`,
    `num_samples(frames)`, `vocoder(mel [B, n_mels, T']) -> [B, 1, T]`); another model is a one-line error."""
    from voxtok.registry import load, registered

    model = load(path, map_location, kind="tts")
    if not is_vocoder(model):
        names = ", ".join(n for n, c in sorted(registered("tts").items()) if is_vocoder(c))
        raise BadConfigError(f"checkpoint holds tts '{model.registry_name}', not a vocoder ({names})", path)
    return model


def is_vocoder(model: Any) -> bool:
    """Whether a model has the vocoder contract of `load_vocoder` (a class: its methods)."""
    methods = all(callable(getattr(model, name, None)) for name in ("mel", "num_samples"))
    return methods and (isinstance(model, type) or
                        all(hasattr(model, name) for name in ("sample_rate", "hop_length", "n_mels", "mel_config")))


def open_prompt_speaker_encoder(path: str | os.PathLike | None, device: str | torch.device = "cpu"):
    """The manifest's `speaker_encoder` part: CAM++ from a campplus.onnx file (or a folder holding one),
    run on `device` where onnxruntime can; None (no such part): None, and prompts take resemblyzer d-vectors."""
    if path is None:
        return None
    from voxtok.tts.speaker import open_speaker_encoder

    return open_speaker_encoder(f"campplus:{path}", str(device))


def log_mel(wav: torch.Tensor, sample_rate: int, config: MelConfig) -> torch.Tensor:
    """Audio [1, T] at `sample_rate` -> log mel [n_mels, F] with `config` (resampled as needed)."""
    x = resample(wav, sample_rate, config.sample_rate) if sample_rate != config.sample_rate else wav
    with torch.no_grad():
        return MelSpectrogram(config)(x[None].float())[0]


class _class_or_instance:
    """A method that gets the instance when called on one, else the class (capability checks work
    before loading, from the class attributes, and after, from what the loaded models can do)."""

    def __init__(self, method):
        self.method = method
        self.__doc__ = method.__doc__

    def __get__(self, obj, owner):
        return functools.partial(self.method, owner if obj is None else obj)


def crossfade(tail: torch.Tensor, head: torch.Tensor) -> torch.Tensor:
    """Blend the end of one audio chunk into the start of the next (equal-gain, same length [..., N]).

    The gains sum to 1 (sin^2 + cos^2): both sides are the same speech vocoded twice (correlated), so
    an equal-power fade (sin + cos, up to 1.41) would swell the seam; equal gain keeps its level.
    """
    n = tail.shape[-1]
    if head.shape[-1] != n:
        raise ValueError(f"cross-fade needs equal lengths, got {n} and {head.shape[-1]}")
    ramp = torch.linspace(0.0, 1.0, n + 2, device=tail.device)[1:-1] if n else torch.zeros(0, device=tail.device)
    fade_in = torch.sin(0.5 * torch.pi * ramp).square()
    return tail * (1.0 - fade_in) + head * fade_in


class StreamingVocoder:
    """Turns mel chunks into audio chunks that concatenate to the same length as one-shot vocoding.

    Each `push(mel, keep_frames)` takes the new frames [n_mels, F] (the first `keep_frames` are
    final, the rest a look-ahead tail the next chunk will redo); the vocoder also sees
    `context_frames` of already-final mel on the left so chunk edges have no onset artefact.
    The look-ahead tail's audio is held back and cross-faded with the next chunk's start.
    A vocoder with an excitation signal (HiFT: `synthesize(mel, cache_source=...)`) gets the
    excitation it made for the context frames back, as CosyVoice's streaming carries it, so the source
    keeps its phase across chunk joins.
    """

    def __init__(self, vocoder, context_frames: int = 8):
        self.vocoder = vocoder
        self.hop = int(vocoder.hop_length)
        self.context_frames = int(context_frames)
        self.history = None  # final mel frames so far [n_mels, H]
        self.pending = None  # audio of the previous look-ahead tail
        self.carries_source = callable(getattr(vocoder, "synthesize", None))
        self.source = None  # excitation of the last `context_frames` final frames [1, 1, n * hop]

    @torch.no_grad()
    def push(self, mel: torch.Tensor, keep_frames: int) -> torch.Tensor:
        """mel [n_mels, F] (F >= keep_frames) -> audio [keep_frames * hop] ready to play."""
        ctx = self.history[:, -self.context_frames:] if self.history is not None and self.context_frames else None
        n_ctx = 0 if ctx is None else ctx.shape[-1]
        full = mel if ctx is None else torch.cat([ctx, mel], dim=-1)
        if self.carries_source:
            audio, source = self.vocoder.synthesize(full[None].float(), cache_source=self.source)
            # The context frames and the kept ones are final: their excitation is the next chunk's cache.
            final = source[..., : (n_ctx + keep_frames) * self.hop]
            self.source = final[..., max(0, final.shape[-1] - self.context_frames * self.hop):]
            audio = audio[0, 0, n_ctx * self.hop:].float()  # autocast may hand back bfloat16
        else:
            audio = self.vocoder(full[None].float())[0, 0, n_ctx * self.hop:].float()
        head, tail = audio[: keep_frames * self.hop], audio[keep_frames * self.hop:]
        if self.pending is not None and self.pending.numel():
            n = min(self.pending.numel(), head.numel())
            head = torch.cat([crossfade(self.pending[:n], head[:n]), head[n:]])
        self.pending = tail
        kept = mel[:, :keep_frames]
        self.history = kept if self.history is None else torch.cat([self.history, kept], dim=-1)
        return head.clamp(-1, 1)


class TTSPipeline:
    """Shared behaviour of the pipelines: capabilities, prompt preparation, one-text synthesis.

    Subclasses are registered (`@register("pipeline", name)`, which sets `registry_name`), set the
    capability attributes below, and on instances `sample_rate`, `mel_config` (the acoustic model's
    mel front end) and `speakers`; they implement `from_manifest`, `synthesize_batch` (and `stream`
    when `streaming`), running the models under `self.precision()` and returning float32 CPU audio.
    Their nn.Module attributes are the model parts `to` moves (`parts`).
    """

    registry_name: ClassVar[str]
    label: ClassVar[str] = ""  # how users see the model, e.g. "CosyVoice-style"
    modes: ClassVar[tuple[str, ...]] = tuple(MODE_LABELS)
    streaming: ClassVar[bool] = False  # `stream` yields audio while decoding
    cfg: ClassVar[bool] = False  # takes a classifier-free guidance strength
    min_prompt_seconds: ClassVar[float] = 0.5
    max_prompt_seconds: ClassVar[float] = 30.0
    required_parts: ClassVar[tuple[str, ...]] = ()  # manifest entries (checkpoint folders)
    optional_parts: ClassVar[tuple[str, ...]] = ("speakers",)
    _speaker_encoder = None
    spk_dim: int | None = None  # the speaker vector size the models take (None: not checked)
    dtype: torch.dtype = torch.float32  # synthesis precision (autocast); set by `to`

    # ------------------------------------------------------------------ device and precision
    def parts(self) -> dict[str, torch.nn.Module]:
        """The model parts (every nn.Module attribute), by attribute name."""
        return {name: value for name, value in vars(self).items() if isinstance(value, torch.nn.Module)}

    @property
    def device(self) -> torch.device:
        """Where the model parts are (read from their weights; the CPU when there are none)."""
        for part in self.parts().values():
            for tensor in part.parameters():
                return tensor.device
        return torch.device("cpu")

    def to(self, device: str | torch.device | None = None, dtype: str | torch.dtype | None = None) -> "TTSPipeline":
        """Place every model part (and the prompt speaker encoder) on `device` and synthesize in `dtype`.

        device: cpu | cuda | cuda:N | auto (None: stay); dtype: float32 | bfloat16 | float16 (None: keep),
        applied as autocast (weights stay float32). A device this machine lacks, or a dtype autocast
        cannot run there, is a one-line BadConfigError before anything moves. Parts already there
        are not copied again. Returns the pipeline.
        """
        device = resolve_device(self.device if device is None else device)
        dtype = resolve_dtype(self.dtype if dtype is None else dtype, device)
        for part in self.parts().values():
            place(part, device)
        encoder = self._speaker_encoder
        if encoder is not None and callable(getattr(encoder, "to", None)):
            self._speaker_encoder = encoder.to(device)
        self.dtype = dtype
        return self

    def precision(self) -> ContextManager[None]:
        """The autocast context synthesis runs in (nothing for float32)."""
        return precision(self.device, self.dtype)

    def precise_steps(self, steps: Iterator) -> Iterator:
        """Run each step of a generator (e.g. a stream's chunks) under `precision()`, leaving the
        consumer's code between steps outside autocast."""
        while True:
            with self.precision():
                try:
                    item = next(steps)
                except StopIteration:
                    return
            yield item

    @_class_or_instance
    def check_options(cls, mode: str, streaming: bool = False, cfg_strength: float | None = None) -> None:
        """Raise BadConfigError when a request asks for what this pipeline cannot do (on the class: what
        the kind of pipeline can do; on a loaded pipeline: what its models can, e.g. a Flow-Omni model
        trained without condition dropout has no CFG)."""
        if mode not in cls.modes:
            raise BadConfigError(f"unknown mode '{mode}' (choose from {', '.join(cls.modes)})")
        if streaming and not cls.streaming:
            from voxtok.registry import registered

            able = " or ".join(c.label for _, c in sorted(registered("pipeline").items()) if c.streaming)
            where = f"the {able} model only" if able else "no registered pipeline"
            raise BadConfigError(f"streaming is available with {where}; {cls.label} synthesizes whole utterances")
        if cfg_strength is not None and not cls.cfg:
            raise BadConfigError(getattr(cls, "cfg_refusal", None)
                                 or f"{cls.label} has no classifier-free guidance: leave the CFG strength unset")

    @classmethod
    def check_manifest(cls, spec: dict[str, Any]) -> None:
        """Raise BadConfigError unless `spec` names exactly this pipeline's parts (unknown keys included)."""
        where = getattr(spec, "path", None)
        if spec.get("model") != cls.registry_name:
            raise BadConfigError(f"manifest is for '{spec.get('model')}', not {cls.registry_name}", where)
        try:
            check_keys(spec, ("model", *cls.required_parts, *cls.optional_parts), "manifest")
        except BadConfigError as err:
            raise BadConfigError(str(err), where) from None
        missing = [k for k in cls.required_parts if not spec.get(k)]
        if missing:
            raise BadConfigError(f"{cls.registry_name} manifest lacks {', '.join(missing)}", where)

    @property
    def speaker_encoder(self):
        """The prompt speaker encoder: the manifest's (CAM++), else resemblyzer's d-vector model (loaded on first use)."""
        if self._speaker_encoder is None:
            from voxtok.tts.speaker import SpeakerEncoder

            self._speaker_encoder = SpeakerEncoder(str(self.device))
        return self._speaker_encoder

    def prepare_prompt(self, wav: torch.Tensor, sample_rate: int, text: str | None = None,
                       name: object = "<prompt>") -> Prompt:
        """Reference audio [1, T] (+ transcript) -> Prompt with speaker embedding and log mel.

        wav stays on the CPU; spk_emb and mel (float32) are placed on the pipeline's device.
        Silent, too short (< min_prompt_seconds) or too long (> max_prompt_seconds) audio raises BadAudioError.
        """
        wav = check_prompt_audio(wav, sample_rate, name, self.min_prompt_seconds, self.max_prompt_seconds)
        self.check_speaker_encoder()
        device = self.device
        spk = self.speaker_encoder.embed_utterance(wav, sample_rate, name).to(device)
        return Prompt(wav=wav, sample_rate=sample_rate, spk_emb=spk, text=text,
                      mel=log_mel(wav, sample_rate, self.mel_config).to(device))

    def check_speaker_encoder(self) -> None:
        """BadConfigError unless the prompt speaker encoder gives vectors of `spk_dim` (checked without
        loading resemblyzer: its d-vectors are 256-d)."""
        if self.spk_dim is None:
            return
        if self._speaker_encoder is not None:
            dim, what = int(self._speaker_encoder.dim), "the manifest's speaker_encoder"
        else:
            from voxtok.tts.speaker import EMBEDDING_DIM

            dim, what = EMBEDDING_DIM, "resemblyzer (the default prompt encoder)"
        if dim != self.spk_dim:
            raise BadConfigError(f"the model takes {self.spk_dim}-d speaker vectors but {what} gives {dim}-d: name "
                                 "the encoder the model was trained with in the manifest (speaker_encoder: "
                                 "campplus.onnx for CAM++ x-vectors)")

    def synthesize_batch(self, texts, prompts, mode="zero_shot", speakers=None, **kw) -> list[torch.Tensor]:
        raise NotImplementedError

    def synthesize(self, text: str, prompt: Prompt | None = None, mode: str = "zero_shot",
                   speaker: str | None = None, **kw) -> torch.Tensor:
        """One text -> audio [1, T] at `sample_rate` (options as in `synthesize_batch`)."""
        return self.synthesize_batch([text], [prompt], mode, [speaker], **kw)[0]

    def stream(self, text: str, prompt: Prompt | None = None, mode: str = "zero_shot", speaker: str | None = None,
               **kw):
        """Audio chunks [T_k] while decoding; pipelines without `streaming` raise BadConfigError."""
        self.check_options(mode, streaming=True)
        raise NotImplementedError


def check_mode_inputs(mode: str, prompt: Prompt | None, speaker: str | None) -> None:
    """Check that the inputs fit `mode` (zero_shot | cross_lingual | sft)."""
    if mode == "sft":
        if not speaker:
            raise BadConfigError("mode sft needs a stored speaker id (--speaker)")
    elif prompt is None:
        raise BadConfigError(f"mode {mode} needs reference audio (--prompt-wav)")
    if mode == "zero_shot" and not (prompt.text or "").strip():
        raise BadConfigError("mode zero_shot needs the reference transcript (--prompt-text); "
                             "without one use --mode cross_lingual")


def timed_stream(chunks: Iterator[torch.Tensor]) -> tuple[torch.Tensor, float]:
    """Consume a chunk iterator -> (all audio [1, T], seconds until the first chunk arrived)."""
    t0 = time.perf_counter()
    first = None
    parts = []
    for chunk in chunks:
        if first is None:
            first = time.perf_counter() - t0
        parts.append(chunk)
    audio = torch.cat(parts) if parts else torch.zeros(0)
    return audio[None], (first if first is not None else time.perf_counter() - t0)
