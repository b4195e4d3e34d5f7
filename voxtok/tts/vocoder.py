"""Mel vocoder: log-mel [B, n_mels, T'] -> waveform [B, 1, T' * hop], Vocos-style.

Conv1d(n_mels -> dim, k7) -> ConvNeXt stack (`VocosBackbone`) -> `ISTFTHead` predicting one STFT
frame per mel frame. The mel front end is a `MelConfig` preset (default "cosyvoice": 22.05 kHz,
80 Slaney mels up to 8 kHz, n_fft 1024, hop 256, no centring), the features the flow decoder
generates; "vocos" is the front end of the published Vocos mel model (`voxtok convert vocos`).

Length rule (T samples in, hop = the mel hop):
    mel(wav)       T' = T // hop frames (uncentred mel), T // hop + 1 (centred, torch.stft center=True)
    vocoder(mel)   T' * hop samples with head padding "same"; (T' - 1) * hop with "center"
                   (torch.istft center=True: frame t sits at sample t * hop, as in Vocos's release)
So a copy-synthesis of T = k * hop samples gives back exactly T samples with (uncentred mel, "same")
or (centred mel, "center"), and T + hop with (centred mel, "same"), of which the first T are the
signal. An uncentred mel with a "center" head would lose the last hop, so it is refused.

Config (the `model:` block of configs/tts/vocoder_*.yaml; unknown keys are errors):
    mel: cosyvoice            preset name, or {preset: cosyvoice, <MelConfig field>: value, ...}
    backbone: VocosBackbone kwargs (dim, intermediate_dim, num_layers, ...), required
    head: {n_fft, padding}    hop = the mel hop; padding "same" (default) or "center" (centred mel only)

It trains with the codecs' GAN loop (`voxtok.codecs.gan_trainer.GANModule`) through
`training_forward`, and saves as a TTS model folder (config.yaml + model.safetensors).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from voxtok.audio import MelConfig, MelSpectrogram
from voxtok.config import check_keys, kwargs_for, require_mapping
from voxtok.codecs.modules.outputs import GeneratorOutput
from voxtok.codecs.modules.vocos import ISTFTHead, VocosBackbone
from voxtok.errors import BadConfigError
from voxtok.registry import SavesPretrained, register

DEFAULT_MEL = "cosyvoice"
MODEL_KEYS = ("mel", "backbone", "head")
HEAD_KEYS = ("n_fft", "padding")
HEAD_PADDINGS = ("same", "center")


@register("tts", "mel_vocoder")
class MelVocoder(SavesPretrained, nn.Module):
    """Log-mel -> waveform generator. Build with `MelVocoder(config)` (see the module docstring)."""

    # The GAN trainer's `loss.aux` may weight these: the vocoder returns no auxiliary losses.
    loss_names: tuple[str, ...] = ()

    def __init__(self, config: dict[str, Any], where: str = "vocoder"):
        super().__init__()
        self.config = copy.deepcopy(dict(require_mapping(config, where)))
        check_keys(self.config, MODEL_KEYS, where)
        if not self.config.get("backbone"):
            raise BadConfigError(f"{where}.backbone is required (VocosBackbone dim, intermediate_dim, num_layers)")
        self.mel_config = MelConfig.from_spec(self.config.get("mel"), default=DEFAULT_MEL)
        self.sample_rate = int(self.mel_config.sample_rate)
        self.hop_length = int(self.mel_config.hop_length)
        self.n_mels = int(self.mel_config.n_mels)
        self.features = MelSpectrogram(self.mel_config)
        backbone = kwargs_for(VocosBackbone, self.config["backbone"], f"{where}.backbone", exclude=("input_channels",))
        self.backbone = VocosBackbone(input_channels=self.n_mels, **backbone)
        head = dict(require_mapping(self.config.get("head"), f"{where}.head"))
        check_keys(head, HEAD_KEYS, f"{where}.head")
        self.head_padding = head.get("padding", "same")
        if self.head_padding not in HEAD_PADDINGS:
            raise BadConfigError(f"{where}.head.padding must be one of {HEAD_PADDINGS}, got {self.head_padding!r}")
        if self.head_padding == "center" and not self.mel_config.center:
            raise BadConfigError(f"{where}.head.padding 'center' needs a centred mel (mel center: true): "
                                 "with an uncentred one T' frames would give only (T' - 1) * hop samples")
        n_fft = int(head.get("n_fft", self.mel_config.n_fft))
        if not self.hop_length < n_fft:
            raise BadConfigError(f"vocoder head n_fft {n_fft} must exceed the mel hop {self.hop_length}")
        self.head = ISTFTHead(dim=int(backbone["dim"]), n_fft=n_fft, hop_length=self.hop_length,
                              padding=self.head_padding)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "MelVocoder":
        """Build from the `model:` block of a vocoder config (random weights)."""
        return cls(config)

    def to_config(self) -> dict[str, Any]:
        """The config this vocoder was built from (stored in config.yaml by `save_pretrained`)."""
        return copy.deepcopy(self.config)

    # -- features and synthesis
    def mel(self, wav: torch.Tensor) -> torch.Tensor:
        """Audio [B, 1, T] at `sample_rate` -> log mel [B, n_mels, T'] (the vocoder's input);
        T' = T // hop, or T // hop + 1 for a centred mel."""
        return self.features(wav)

    def num_samples(self, frames: int) -> int:
        """Samples `forward` makes from `frames` mel frames: frames * hop ("same" head) or
        (frames - 1) * hop ("center" head)."""
        return (frames - (self.head_padding == "center")) * self.hop_length

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """Log mel [B, n_mels, T'] -> waveform [B, 1, num_samples(T')] (T' * hop with a "same" head)."""
        if mel.dim() != 3 or mel.shape[1] != self.n_mels:
            raise BadConfigError(f"vocoder expects a log mel [B, {self.n_mels}, T'], got {tuple(mel.shape)}")
        return self.head(self.backbone(mel))

    def training_forward(self, wav: torch.Tensor, lengths: torch.Tensor | None = None,
                         step: int = 0) -> GeneratorOutput:
        """Audio [B, 1, T] -> mel -> resynthesis [B, 1, T] (the GAN loop's generator call).

        The signal is zero-padded to whole hops first so every sample is covered by a frame (the
        resynthesis is then at least as long as the input, see the length rule above);
        `lengths` and `step` are unused (the loss masks padding itself) but part of the API.
        """
        total = wav.shape[-1]
        padded = F.pad(wav, (0, (-total) % self.hop_length))
        with torch.no_grad():
            mel = self.mel(padded)
        return GeneratorOutput(self(mel)[..., :total])

    # -- checkpoints
    def checkpoint_info(self) -> dict[str, Any]:
        """The audio layout, stored in metadata.json `info`."""
        return {"sample_rate": self.sample_rate, "hop_length": self.hop_length, "n_mels": self.n_mels,
                "mel_center": bool(self.mel_config.center), "head_padding": self.head_padding}
