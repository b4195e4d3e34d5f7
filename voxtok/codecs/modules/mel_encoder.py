"""Log-mel codec encoder: a fixed mel front end and a ConvNeXt stack at the token frame rate.

The mirror image of the Vocos decoder. SEANet learns its filterbank from raw samples with
convolutions that run at the full sample rate; on 2 CPU cores that costs ~2/3 of a training step
and, within a 20-minute budget, the learnt encoder stays the bottleneck of the whole codec (see
the README's tiny-WavTokenizer section). A mel front end hands the encoder a ready-made
time-frequency picture on the token grid, so every learnt layer runs at the frame rate.

Framing is "same" (MelConfig.center=False: (n_fft - hop) / 2 reflect padding each side), so a
signal of T' * hop samples gives exactly T' frames, aligned with the ISTFT head's frames.
"""

from __future__ import annotations

import torch
from torch import nn

from voxtok.audio import MelConfig, MelSpectrogram
from voxtok.codecs.modules.vocos import VocosBackbone
from voxtok.errors import BadConfigError


class MelEncoder(nn.Module):
    """Waveform -> log-mel (frame hop = token hop) -> ConvNeXt stack -> latent.

    Args:
        dimension: latent width (what the quantizer sees).
        hop_length: samples per token frame (320 = 75 tokens/s at 24 kHz).
        sample_rate: audio rate in Hz.
        n_mels: mel bands of the front end.
        n_fft: analysis window; default 4 * hop_length.
        dim, intermediate_dim, num_layers: the ConvNeXt stack (a `VocosBackbone`).
        log_floor: floor of the mel magnitudes before the log (silence reads as log(floor)).

    Shapes: wav [B, 1, T] with T a multiple of hop_length -> [B, dimension, T / hop_length].
    """

    def __init__(self, dimension: int = 128, hop_length: int = 320, sample_rate: int = 24000, n_mels: int = 100,
                 n_fft: int | None = None, dim: int = 192, intermediate_dim: int = 576, num_layers: int = 4,
                 log_floor: float = 1e-5):
        super().__init__()
        self.dimension = dimension
        self.hop_length = hop_length
        n_fft = n_fft or 4 * hop_length
        if n_fft <= hop_length or (n_fft - hop_length) % 2:
            # "same" framing pads (n_fft - hop) / 2 each side; an odd difference loses a frame.
            raise BadConfigError(f"MelEncoder needs n_fft > hop_length with an even difference, "
                                 f"got n_fft {n_fft}, hop {hop_length}")
        self.mel = MelSpectrogram(MelConfig.preset("vocos").with_(
            sample_rate=sample_rate, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels, center=False,
            log_floor=log_floor))
        self.backbone = VocosBackbone(input_channels=n_mels, dim=dim, intermediate_dim=intermediate_dim,
                                      num_layers=num_layers)
        self.proj = nn.Linear(dim, dimension)
        # Frames to the right that reach one output frame: half the analysis window, the k7
        # embedding conv and one k7 depthwise conv per ConvNeXt block.
        self.right_context_frames = -(-(n_fft - hop_length) // (2 * hop_length)) + 3 * (1 + num_layers)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """wav [B, 1, T] (T a multiple of hop_length) -> latent [B, dimension, T / hop_length]."""
        mel = self.mel(wav.squeeze(1))  # [B, n_mels, T / hop]
        return self.proj(self.backbone(mel)).transpose(1, 2)
