"""What every VoxTok TTS pipeline shares: the manifest, prompts, the vocoder and streaming cross-fades.

A pipeline manifest (YAML, written by the recipe's training stages) names the trained parts:

    model: cosyvoice            # or flowomni
    llm: exp/mini/tts_llm/model
    flow: exp/mini/tts_flow/model
    vocoder: exp/mini/vocoder/model
    tokenizer: exp/mini/s3/model        # the speech tokenizer the LLM/flow were trained on
    speakers: dump/mini/spk/train       # optional: spk2embedding store for `sft` mode

Relative paths are resolved against the manifest's folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from voxtok.audio import MelSpectrogram, MelConfig, resample, validate_waveform
from voxtok.errors import BadAudioError, BadConfigError, UnknownSpeakerError

MAX_PROMPT_SECONDS = 30.0
MODES = ("zero_shot", "cross_lingual", "sft")


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """Load a pipeline manifest; relative part paths become absolute (relative to the manifest)."""
    path = Path(path)
    if not path.is_file():
        raise BadConfigError("pipeline manifest not found (train the TTS stages first)", path)
    spec = yaml.safe_load(path.read_text()) or {}
    if "model" not in spec:
        raise BadConfigError("pipeline manifest lacks `model:` (cosyvoice or flowomni)", path)
    for key, value in list(spec.items()):
        if key != "model" and isinstance(value, str):
            spec[key] = str((path.parent / value).resolve()) if not os.path.isabs(value) else value
    return spec


def write_manifest(path: str | os.PathLike, spec: dict[str, Any]) -> Path:
    """Write a manifest with part paths relative to its folder (the exp dir stays movable)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rel = {k: (os.path.relpath(v, path.parent) if k != "model" and isinstance(v, str) else v)
           for k, v in spec.items()}
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(yaml.safe_dump(rel, sort_keys=False))
    os.replace(tmp, path)
    return path


@dataclass
class Prompt:
    """A reference utterance prepared for cloning.

    wav [1, T] at `sample_rate`; mel [n_mels, F] at the flow's mel rate (None when unused);
    spk_emb [256]; text: its transcript or None (cross-lingual); tokens [N] speech tokens or None.
    """

    wav: torch.Tensor
    sample_rate: int
    spk_emb: torch.Tensor
    text: str | None = None
    mel: torch.Tensor | None = None
    tokens: torch.Tensor | None = None


def check_prompt_audio(wav: torch.Tensor, sample_rate: int, name: object = "<prompt>") -> torch.Tensor:
    """Validate reference audio ([T] or [1, T]; finite, audible, 0.5-30 s) -> float32 [1, T]."""
    wav = torch.as_tensor(wav, dtype=torch.float32)
    if wav.dim() == 1:
        wav = wav[None]
    if wav.dim() != 2 or wav.shape[0] != 1:
        raise BadAudioError(f"reference audio must be mono [1, T], got shape {tuple(wav.shape)}", name)
    validate_waveform(wav, sample_rate, name, min_seconds=0.5, max_seconds=MAX_PROMPT_SECONDS)
    return wav


class SpeakerTable:
    """Stored voices for `sft` mode: speaker id -> embedding [256] (a spk2embedding ShardStore)."""

    def __init__(self, store_dir: str | os.PathLike | None):
        self.store = None
        if store_dir:
            from voxtok.data.shards import ShardStore

            self.store = ShardStore(Path(store_dir) / "spk2embedding")

    def ids(self) -> list[str]:
        """The stored speaker ids, sorted."""
        return sorted(self.store.keys()) if self.store is not None else []

    def embedding(self, speaker: str) -> torch.Tensor:
        """[256] embedding of `speaker`, or UnknownSpeakerError listing a few known ids."""
        if self.store is None or speaker not in self.store:
            known = ", ".join(self.ids()[:8]) or "none stored"
            raise UnknownSpeakerError(f"unknown speaker '{speaker}' (known: {known})")
        return torch.from_numpy(self.store[speaker].astype("float32")).reshape(-1)


def log_mel(wav: torch.Tensor, sample_rate: int, config: MelConfig) -> torch.Tensor:
    """Audio [1, T] at `sample_rate` -> log mel [n_mels, F] with `config` (resampled as needed)."""
    x = resample(wav, sample_rate, config.sample_rate) if sample_rate != config.sample_rate else wav
    with torch.no_grad():
        return MelSpectrogram(config)(x[None].float())[0]


def crossfade(tail: torch.Tensor, head: torch.Tensor) -> torch.Tensor:
    """Blend the end of one audio chunk into the start of the next (equal-power, same length [..., N])."""
    n = tail.shape[-1]
    if head.shape[-1] != n:
        raise ValueError(f"cross-fade needs equal lengths, got {n} and {head.shape[-1]}")
    ramp = torch.linspace(0.0, 1.0, n + 2)[1:-1] if n else torch.zeros(0)
    fade_in = torch.sin(0.5 * torch.pi * ramp)
    fade_out = torch.cos(0.5 * torch.pi * ramp)
    return tail * fade_out + head * fade_in


class StreamingVocoder:
    """Turns mel chunks into audio chunks that concatenate to the same length as one-shot vocoding.

    Each `push(mel, keep_frames)` takes the new frames [n_mels, F] (the first `keep_frames` are
    final, the rest a look-ahead tail the next chunk will redo); the vocoder also sees
    `context_frames` of already-final mel on the left so chunk edges have no onset artefact.
    The look-ahead tail's audio is held back and cross-faded with the next chunk's start.
    """

    def __init__(self, vocoder, context_frames: int = 8):
        self.vocoder = vocoder
        self.hop = int(vocoder.hop_length)
        self.context_frames = int(context_frames)
        self.history = None  # final mel frames so far [n_mels, H]
        self.pending = None  # audio of the previous look-ahead tail

    @torch.no_grad()
    def push(self, mel: torch.Tensor, keep_frames: int) -> torch.Tensor:
        """mel [n_mels, F] (F >= keep_frames) -> audio [keep_frames * hop] ready to play."""
        ctx = self.history[:, -self.context_frames:] if self.history is not None and self.context_frames else None
        n_ctx = 0 if ctx is None else ctx.shape[-1]
        full = mel if ctx is None else torch.cat([ctx, mel], dim=-1)
        audio = self.vocoder(full[None].float())[0, 0, n_ctx * self.hop:]
        head, tail = audio[: keep_frames * self.hop], audio[keep_frames * self.hop:]
        if self.pending is not None and self.pending.numel():
            n = min(self.pending.numel(), head.numel())
            head = torch.cat([crossfade(self.pending[:n], head[:n]), head[n:]])
        self.pending = tail
        kept = mel[:, :keep_frames]
        self.history = kept if self.history is None else torch.cat([self.history, kept], dim=-1)
        return head.clamp(-1, 1)


class TTSPipeline:
    """Shared behaviour of the pipelines: prompt preparation, speaker table, one-text synthesis.

    Subclasses set `model_name`, `sample_rate`, `mel_config` (the acoustic model's mel front
    end), `speakers`, and implement `synthesize_batch` (and `stream`).
    """

    model_name = ""
    _speaker_encoder = None

    @property
    def speaker_encoder(self):
        """The resemblyzer d-vector model (loaded on first use)."""
        if self._speaker_encoder is None:
            from voxtok.tts.speaker import SpeakerEncoder

            self._speaker_encoder = SpeakerEncoder()
        return self._speaker_encoder

    def prepare_prompt(self, wav: torch.Tensor, sample_rate: int, text: str | None = None,
                       name: object = "<prompt>") -> Prompt:
        """Reference audio [1, T] (+ transcript) -> Prompt with speaker embedding and log mel.

        Silent, too short (< 0.5 s) or too long (> 30 s) audio raises BadAudioError.
        """
        wav = check_prompt_audio(wav, sample_rate, name)
        spk = self.speaker_encoder.embed_utterance(wav, sample_rate, name)
        return Prompt(wav=wav, sample_rate=sample_rate, spk_emb=spk, text=text,
                      mel=log_mel(wav, sample_rate, self.mel_config))

    def synthesize_batch(self, texts, prompts, mode="zero_shot", speakers=None, **kw) -> list[torch.Tensor]:
        raise NotImplementedError

    def synthesize(self, text: str, prompt: Prompt | None = None, mode: str = "zero_shot",
                   speaker: str | None = None, **kw) -> torch.Tensor:
        """One text -> audio [1, T] at `sample_rate` (options as in `synthesize_batch`)."""
        return self.synthesize_batch([text], [prompt], mode, [speaker], **kw)[0]


def pick_mode(mode: str, prompt_wav, prompt_text: str | None, speaker: str | None) -> str:
    """Check that the inputs fit `mode` (zero_shot | cross_lingual | sft); returns the mode."""
    if mode not in MODES:
        raise BadConfigError(f"unknown mode '{mode}' (choose from {', '.join(MODES)})")
    if mode == "sft":
        if not speaker:
            raise BadConfigError("mode sft needs a stored speaker id (--speaker)")
    elif prompt_wav is None:
        raise BadConfigError(f"mode {mode} needs reference audio (--prompt-wav)")
    if mode == "zero_shot" and not (prompt_text or "").strip():
        raise BadConfigError("mode zero_shot needs the reference transcript (--prompt-text); "
                             "without one use --mode cross_lingual")
    return mode


def load_pipeline(manifest: str | os.PathLike):
    """The pipeline a manifest describes (`model: cosyvoice` or `model: flowomni`), loaded."""
    model = read_manifest(manifest)["model"]
    if model == "cosyvoice":
        from voxtok.tts.cosyvoice import CosyVoicePipeline

        return CosyVoicePipeline.from_manifest(manifest)
    if model == "flowomni":
        from voxtok.tts.flowomni_pipeline import FlowOmniPipeline

        return FlowOmniPipeline.from_manifest(manifest)
    raise BadConfigError(f"unknown pipeline model '{model}' (cosyvoice or flowomni)", manifest)
