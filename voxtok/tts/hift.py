"""HiFT vocoder (CosyVoice's): log-mel [B, n_mels, T'] -> waveform [B, 1, T' * hop], NSF + iSTFTNet.

HiFTNet (Li et al. 2023) as CosyVoice v1 ships it: an F0 predictor and a harmonic-plus-noise
source (`voxtok.tts.nsf`) give a sample-rate excitation; a HiFi-GAN generator upsamples the mel
(conv_pre, leaky-ReLU + transposed conv per stage, Snake residual blocks) and adds, at every stage,
the excitation's STFT brought to that stage's rate (source_downs + source_resblocks); conv_post
predicts a small STFT (log-magnitude and phase, n_fft 16, hop 4) that an inverse STFT turns into
samples. The product of the upsample rates times the iSTFT hop is the mel hop (8 x 8 x 4 = 256).

Same call contract as `voxtok.tts.vocoder.MelVocoder`, so the pipelines take either:
`sample_rate`, `hop_length`, `n_mels`, `mel_config`, `mel(wav)`, `num_samples(frames)`,
`vocoder(mel) -> [B, 1, T' * hop]`. The mel front end is a `MelConfig` preset (default "cosyvoice":
22.05 kHz, 80 Slaney mels up to 8 kHz, n_fft / win 1024, hop 256, uncentred), CosyVoice's
matcha `mel_spectrogram` settings.

Randomness: the source draws initial phases and noise (see voxtok/tts/nsf.py). `vocoder(mel)`
draws them from a generator seeded with the config's `noise_seed`, so the same mel gives the same
audio; `vocoder(mel, seed=s)` or `generator=g` choose others. With seed s the audio is the
reference's `HiFTGenerator.inference(mel)` after `torch.manual_seed(s)`. `synthesize(mel,
cache_source=...)` also returns the excitation, which CosyVoice's streaming carries from one chunk
to the next (the cached samples overwrite the start of the new excitation, so chunk joins keep
their phase).

Config (the `model:` block of configs/tts/hift_*.yaml; unknown keys are errors; defaults are the
CosyVoice-300M sizes):
    mel: cosyvoice                      preset name or {preset, <MelConfig field>: value}
    base_channels: 512                  conv_pre width; halved by every upsample stage
    f0_channels: 512                    F0 predictor width
    harmonics: 8                        overtones above F0 in the source
    sine_amp: 0.1, noise_std: 0.003, voiced_threshold: 10.0 (Hz)
    upsample_rates: [8, 8], upsample_kernel_sizes: [16, 16]
    istft_n_fft: 16, istft_hop_length: 4
    resblock_kernel_sizes: [3, 7, 11], resblock_dilation_sizes: [[1, 3, 5], [1, 3, 5], [1, 3, 5]]
    source_resblock_kernel_sizes: [7, 11], source_resblock_dilation_sizes: [[1, 3, 5], [1, 3, 5]]
                                        (one source block per upsample stage)
    lrelu_slope: 0.1, audio_limit: 0.99 (output clamp), noise_seed: 0

Inference only for now; training (the GAN loop's `training_forward`, plus HiFT's F0 loss) is not
implemented.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from voxtok.audio import MelConfig, MelSpectrogram
from voxtok.codecs.modules.vocos import InverseSTFT, polar_spectrum
from voxtok.config import dataclass_from_dict, plain_data
from voxtok.errors import BadConfigError
from voxtok.nn.snake import Snake
from voxtok.registry import SavesPretrained, register
from voxtok.tts.nsf import F0Predictor, HarmonicNoiseSource

DEFAULT_MEL = "cosyvoice"


@dataclass
class HiFTConfig:
    """HiFT sizes (see the module docstring); defaults are CosyVoice-300M's hift."""

    mel: Any = DEFAULT_MEL
    base_channels: int = 512
    f0_channels: int = 512
    harmonics: int = 8
    sine_amp: float = 0.1
    noise_std: float = 0.003
    voiced_threshold: float = 10.0
    upsample_rates: list[int] = field(default_factory=lambda: [8, 8])
    upsample_kernel_sizes: list[int] = field(default_factory=lambda: [16, 16])
    istft_n_fft: int = 16
    istft_hop_length: int = 4
    resblock_kernel_sizes: list[int] = field(default_factory=lambda: [3, 7, 11])
    resblock_dilation_sizes: list[list[int]] = field(default_factory=lambda: [[1, 3, 5]] * 3)
    source_resblock_kernel_sizes: list[int] = field(default_factory=lambda: [7, 11])
    source_resblock_dilation_sizes: list[list[int]] = field(default_factory=lambda: [[1, 3, 5]] * 2)
    lrelu_slope: float = 0.1
    audio_limit: float = 0.99
    noise_seed: int = 0

    def check(self, hop_length: int, where: str) -> None:
        """One-line BadConfigError for sizes that cannot fit together."""
        stages = len(self.upsample_rates)
        if stages == 0 or len(self.upsample_kernel_sizes) != stages:
            raise BadConfigError(f"{where}: upsample_rates and upsample_kernel_sizes need the same, non-zero length")
        if len(self.source_resblock_kernel_sizes) != stages or len(self.source_resblock_dilation_sizes) != stages:
            raise BadConfigError(f"{where}: one source resblock per upsample stage: source_resblock_kernel_sizes and "
                                 f"source_resblock_dilation_sizes need {stages} entries")
        if not self.resblock_kernel_sizes or len(self.resblock_dilation_sizes) != len(self.resblock_kernel_sizes):
            raise BadConfigError(f"{where}: resblock_kernel_sizes and resblock_dilation_sizes need the same, "
                                 "non-zero length")
        for rate, kernel in zip(self.upsample_rates, self.upsample_kernel_sizes):
            # ConvTranspose1d padding (k - u) // 2 gives exactly T * u samples only when k - u is even.
            if rate < 1 or kernel < rate or (kernel - rate) % 2:
                raise BadConfigError(f"{where}: upsample kernel {kernel} with rate {rate}: need kernel >= rate, "
                                     "kernel - rate even")
        if self.base_channels % 2 ** stages:
            raise BadConfigError(f"{where}: base_channels {self.base_channels} must halve {stages} times")
        if math.prod(self.upsample_rates) * self.istft_hop_length != hop_length:
            raise BadConfigError(f"{where}: upsample_rates {self.upsample_rates} x istft_hop_length "
                                 f"{self.istft_hop_length} must equal the mel hop {hop_length}")
        if not 0 < self.istft_hop_length < self.istft_n_fft:
            raise BadConfigError(f"{where}: need 0 < istft_hop_length < istft_n_fft")


class SnakeResBlock(nn.Module):
    """HiFi-GAN residual block ("ResBlock1") with Snake activations, as in BigVGAN and HiFT.

    For each dilation d: x = x + conv_1(snake(conv_d(snake(x)))), weight-normed convs of kernel k
    with "same" zero padding. Shapes: x [B, channels, T] -> [B, channels, T].
    """

    def __init__(self, channels: int, kernel_size: int, dilations: list[int]):
        super().__init__()
        self.convs1 = nn.ModuleList(_same_conv(channels, kernel_size, d) for d in dilations)
        self.convs2 = nn.ModuleList(_same_conv(channels, kernel_size, 1) for _ in dilations)
        self.activations1 = nn.ModuleList(Snake(channels) for _ in dilations)
        self.activations2 = nn.ModuleList(Snake(channels) for _ in dilations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, channels, T] -> [B, channels, T]."""
        for conv1, conv2, act1, act2 in zip(self.convs1, self.convs2, self.activations1, self.activations2):
            x = x + conv2(act2(conv1(act1(x))))
        return x


def _same_conv(channels: int, kernel_size: int, dilation: int) -> nn.Module:
    return weight_norm(nn.Conv1d(channels, channels, kernel_size, dilation=dilation,
                                 padding=(kernel_size - 1) * dilation // 2))


@register("tts", "hift")
class HiFT(SavesPretrained, nn.Module):
    """HiFT vocoder. Build with `HiFT(config)` (see the module docstring for the config)."""

    def __init__(self, config: dict[str, Any] | None = None, where: str = "hift"):
        super().__init__()
        self.config = dataclass_from_dict(HiFTConfig, plain_data(config or {}), where)
        cfg = self.config
        self.mel_config = MelConfig.from_spec(cfg.mel, default=DEFAULT_MEL)
        self.sample_rate = int(self.mel_config.sample_rate)
        self.hop_length = int(self.mel_config.hop_length)
        self.n_mels = int(self.mel_config.n_mels)
        cfg.check(self.hop_length, where)
        self.features = MelSpectrogram(self.mel_config)
        self.f0_predictor = F0Predictor(self.n_mels, cfg.f0_channels)
        self.source = HarmonicNoiseSource(self.sample_rate, cfg.harmonics, cfg.sine_amp, cfg.noise_std,
                                          cfg.voiced_threshold)
        stages = len(cfg.upsample_rates)
        widths = [cfg.base_channels // 2 ** i for i in range(stages + 1)]
        spectrum = cfg.istft_n_fft + 2  # real and imaginary parts of n_fft // 2 + 1 bins
        self.conv_pre = weight_norm(nn.Conv1d(self.n_mels, widths[0], 7, padding=3))
        self.ups = nn.ModuleList(
            weight_norm(nn.ConvTranspose1d(widths[i], widths[i + 1], k, u, padding=(k - u) // 2))
            for i, (u, k) in enumerate(zip(cfg.upsample_rates, cfg.upsample_kernel_sizes)))
        # Stage i runs at prod(rates[:i + 1]) x the mel rate: the excitation's STFT (at
        # prod(rates) x, plus one frame) comes down by the remaining factor prod(rates[i + 1:]).
        self.source_downs = nn.ModuleList()
        self.source_resblocks = nn.ModuleList()
        for i, (k, d) in enumerate(zip(cfg.source_resblock_kernel_sizes, cfg.source_resblock_dilation_sizes)):
            factor = math.prod(cfg.upsample_rates[i + 1:])
            self.source_downs.append(nn.Conv1d(spectrum, widths[i + 1], 1) if factor == 1 else
                                     nn.Conv1d(spectrum, widths[i + 1], 2 * factor, factor, padding=factor // 2))
            self.source_resblocks.append(SnakeResBlock(widths[i + 1], k, d))
        self.resblocks = nn.ModuleList(
            SnakeResBlock(widths[i + 1], k, d) for i in range(stages)
            for k, d in zip(cfg.resblock_kernel_sizes, cfg.resblock_dilation_sizes))
        self.conv_post = weight_norm(nn.Conv1d(widths[-1], spectrum, 7, padding=3))
        self.istft = InverseSTFT(cfg.istft_n_fft, cfg.istft_hop_length, padding="center")

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "HiFT":
        """Build from the `model:` block of a HiFT config (random weights)."""
        return cls(config)

    def to_config(self) -> dict[str, Any]:
        """The config this vocoder was built from (stored in config.yaml by `save_pretrained`)."""
        return plain_data(copy.deepcopy(dataclasses.asdict(self.config)))

    # -- features and synthesis
    def mel(self, wav: torch.Tensor) -> torch.Tensor:
        """Audio [B, 1, T] at `sample_rate` -> log mel [B, n_mels, T'] (T' = T // hop, uncentred)."""
        return self.features(wav)

    def num_samples(self, frames: int) -> int:
        """Samples `forward` makes from `frames` mel frames."""
        return frames * self.hop_length

    def noise_generator(self, seed: int | None = None) -> torch.Generator:
        """A CPU generator seeded with `seed` (default: the config's noise_seed) for the source's draws."""
        return torch.Generator().manual_seed(int(self.config.noise_seed if seed is None else seed))

    def forward(self, mel: torch.Tensor, seed: int | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """Log mel [B, n_mels, T'] -> waveform [B, 1, T' * hop] in [-audio_limit, audio_limit]."""
        return self.synthesize(mel, seed=seed, generator=generator)[0]

    def synthesize(self, mel: torch.Tensor, cache_source: torch.Tensor | None = None, seed: int | None = None,
                   generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Log mel [B, n_mels, T'] -> (waveform [B, 1, T' * hop], excitation [B, 1, T' * hop]).

        `cache_source` [B, 1, N] (N <= T' * hop), the excitation of an earlier chunk, replaces the
        first N samples of this one's. Random numbers come from `generator`, else from
        `noise_generator(seed)`.
        """
        if mel.dim() != 3 or mel.shape[1] != self.n_mels:
            raise BadConfigError(f"HiFT expects a log mel [B, {self.n_mels}, T'], got {tuple(mel.shape)}")
        generator = generator if generator is not None else self.noise_generator(seed)
        f0 = self.f0_predictor(mel)  # [B, T']
        f0 = F.interpolate(f0[:, None], scale_factor=float(self.hop_length), mode="nearest")  # [B, 1, T]
        source = self.source(f0, generator)
        if cache_source is not None and cache_source.shape[-1]:
            if cache_source.shape[-1] > source.shape[-1] or cache_source.shape[:2] != source.shape[:2]:
                raise BadConfigError(f"cache_source {tuple(cache_source.shape)} does not fit the excitation "
                                     f"{tuple(source.shape)}")
            source = torch.cat([cache_source.to(source), source[..., cache_source.shape[-1]:]], dim=-1)
        return self.decode(mel, source), source

    def decode(self, mel: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        """Log mel [B, n_mels, T'] + excitation [B, 1, T' * hop] -> waveform [B, 1, T' * hop]."""
        cfg = self.config
        spec = torch.stft(source.squeeze(1), cfg.istft_n_fft, cfg.istft_hop_length, cfg.istft_n_fft,
                          window=self.istft.window, center=True, return_complex=True)
        source_spec = torch.cat([spec.real, spec.imag], dim=1)  # [B, n_fft + 2, T' * prod(rates) + 1]
        x = self.conv_pre(mel)
        per_stage = len(cfg.resblock_kernel_sizes)
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, cfg.lrelu_slope))
            if i == len(self.ups) - 1:
                x = F.pad(x, (1, 0), mode="reflect")  # one more frame: the centred STFT's T' * prod(rates) + 1
            x = x + self.source_resblocks[i](self.source_downs[i](source_spec))
            x = sum(block(x) for block in self.resblocks[i * per_stage:(i + 1) * per_stage]) / per_stage
        # Upstream uses leaky_relu's default slope (0.01) here, not lrelu_slope.
        x = self.conv_post(F.leaky_relu(x))
        log_mag, phase = x.float().split(cfg.istft_n_fft // 2 + 1, dim=1)
        # sin() of the predicted phase is redundant (cos / sin follow) but is what HiFT was trained with.
        audio = self.istft(polar_spectrum(log_mag, torch.sin(phase)))
        return audio.clamp(-cfg.audio_limit, cfg.audio_limit).unsqueeze(1)

    # -- checkpoints
    def checkpoint_info(self) -> dict[str, Any]:
        """The audio layout, stored in metadata.json `info`."""
        return {"sample_rate": self.sample_rate, "hop_length": self.hop_length, "n_mels": self.n_mels,
                "mel_center": bool(self.mel_config.center)}
