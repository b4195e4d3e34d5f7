"""Mel vocoder: log-mel [B, n_mels, T'] -> waveform [B, 1, T' * hop], Vocos-style.

Conv1d(n_mels -> dim, k7) -> ConvNeXt stack (`VocosBackbone`) -> `ISTFTHead` predicting one STFT
frame per mel frame, so T' mel frames become exactly T' * hop samples. The mel front end is a
`MelConfig` preset (default "cosyvoice": 22.05 kHz, 80 Slaney mels up to 8 kHz, n_fft 1024,
hop 256, no centring), the features the flow decoder generates.

Config (the `model:` block of configs/tts/vocoder_*.yaml):
    mel: cosyvoice            preset name, or {preset: cosyvoice, <MelConfig field>: value, ...}
    backbone: VocosBackbone kwargs (dim, intermediate_dim, num_layers, ...)
    head: {n_fft}             hop = the mel hop; "same" padding (the mel is not centred either)

It trains with the codecs' GAN loop (`voxtok.codecs.gan_trainer.GANModule`) through
`training_forward`, and saves as a TTS model folder (config.yaml + model.safetensors).
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from voxtok.audio import MelConfig, MelSpectrogram
from voxtok.codecs.modules.vocos import ISTFTHead, VocosBackbone
from voxtok.codecs.wavtokenizer import GeneratorOutput
from voxtok.errors import BadConfigError
from voxtok.tts.registry import load_tts_model, register_tts_model, save_tts_model

DEFAULT_MEL = "cosyvoice"


@register_tts_model("mel_vocoder")
class MelVocoder(nn.Module):
    """Log-mel -> waveform generator. Build with `MelVocoder(config)` (see the module docstring)."""

    def __init__(self, config: dict[str, Any]):
        super().__init__()
        self.config = copy.deepcopy(dict(config))
        self.mel_config = MelConfig.from_spec(self.config.get("mel"), default=DEFAULT_MEL)
        if self.mel_config.center:
            raise BadConfigError("the mel vocoder needs an uncentred mel (center: false), so T' frames "
                                 "map to T' * hop samples")
        self.sample_rate = int(self.mel_config.sample_rate)
        self.hop_length = int(self.mel_config.hop_length)
        self.n_mels = int(self.mel_config.n_mels)
        self.features = MelSpectrogram(self.mel_config)
        backbone = dict(self.config["backbone"])
        self.backbone = VocosBackbone(input_channels=self.n_mels, **backbone)
        head = dict(self.config.get("head") or {})
        if head.get("padding", "same") != "same":
            raise BadConfigError(f"vocoder head padding must be 'same', got {head['padding']!r}")
        n_fft = int(head.get("n_fft", self.mel_config.n_fft))
        if not self.hop_length < n_fft:
            raise BadConfigError(f"vocoder head n_fft {n_fft} must exceed the mel hop {self.hop_length}")
        self.head = ISTFTHead(dim=int(backbone["dim"]), n_fft=n_fft, hop_length=self.hop_length, padding="same")

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "MelVocoder":
        """Build from the `model:` block of a vocoder config (random weights)."""
        return cls(config)

    def to_config(self) -> dict[str, Any]:
        """The config this vocoder was built from (stored in config.yaml by `save_pretrained`)."""
        return copy.deepcopy(self.config)

    # -- features and synthesis
    def mel(self, wav: torch.Tensor) -> torch.Tensor:
        """Audio [B, 1, T] at `sample_rate` -> log mel [B, n_mels, T // hop] (the vocoder's input)."""
        return self.features(wav)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """Log mel [B, n_mels, T'] -> waveform [B, 1, T' * hop]."""
        if mel.dim() != 3 or mel.shape[1] != self.n_mels:
            raise BadConfigError(f"vocoder expects a log mel [B, {self.n_mels}, T'], got {tuple(mel.shape)}")
        return self.head(self.backbone(mel))

    def training_forward(self, wav: torch.Tensor, lengths: torch.Tensor | None = None,
                         step: int = 0) -> GeneratorOutput:
        """Audio [B, 1, T] -> mel -> resynthesis [B, 1, T] (the GAN loop's generator call).

        The signal is zero-padded to whole hops first so every sample is covered by a frame;
        `lengths` and `step` are unused (the loss masks padding itself) but part of the API.
        """
        total = wav.shape[-1]
        padded = F.pad(wav, (0, (-total) % self.hop_length))
        with torch.no_grad():
            mel = self.mel(padded)
        return GeneratorOutput(self(mel)[..., :total])

    # -- checkpoints
    def save_pretrained(self, path: str | os.PathLike) -> Path:
        """Write config.yaml + model.safetensors into `path` atomically."""
        return save_tts_model(path, self, {"sample_rate": self.sample_rate, "hop_length": self.hop_length,
                                           "n_mels": self.n_mels})

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, map_location: str = "cpu") -> "MelVocoder":
        """Load a `save_pretrained` folder (local paths only), in eval mode."""
        model, config = load_tts_model(path, map_location=map_location)
        if not isinstance(model, cls):
            raise BadConfigError(f"checkpoint holds TTS model '{config.get('name')}', not a mel vocoder", path)
        return model
