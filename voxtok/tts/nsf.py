"""Neural source-filter (NSF) excitation for HiFT: F0 from the mel, then a harmonic-plus-noise source.

HiFT (CosyVoice's vocoder) does not leave pitch to its upsampling convolutions: a small conv net
predicts F0 per mel frame, and the generator is fed a sample-rate excitation built from it (sines at
F0 and its overtones where voiced, noise where not), so periodicity comes from an oscillator.

Randomness: the sine overtones start at random phases (the fundamental at 0) and the excitation
carries Gaussian noise. Every draw goes through an explicit torch.Generator, in the order and with
the shapes CosyVoice's SineGen / SourceModuleHnNSF (its 22.05 kHz v1 path) draw them from torch's
global RNG: a generator seeded with s reproduces the reference run after torch.manual_seed(s).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

F0_PREDICTOR_LAYERS = 5  # conv k3 + ELU layers of CosyVoice's ConvRNNF0Predictor


class F0Predictor(nn.Module):
    """Mel -> F0 in Hz per frame: 5 x (weight-normed Conv1d k3 + ELU), Linear(channels -> 1), |.|.

    Shapes: mel [B, n_mels, T'] -> f0 [B, T'] (>= 0).
    """

    def __init__(self, n_mels: int, channels: int):
        super().__init__()
        widths = [n_mels] + [channels] * F0_PREDICTOR_LAYERS
        self.convs = nn.ModuleList(weight_norm(nn.Conv1d(c_in, c_out, kernel_size=3, padding=1))
                                   for c_in, c_out in zip(widths[:-1], widths[1:]))
        self.classifier = nn.Linear(channels, 1)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """mel: [B, n_mels, T'] -> f0 [B, T'] in Hz."""
        x = mel
        for conv in self.convs:
            x = F.elu(conv(x))
        return self.classifier(x.transpose(1, 2)).squeeze(-1).abs()


class HarmonicNoiseSource(nn.Module):
    """F0 at the sample rate -> one excitation channel (hn-NSF source).

    Sines at F0 x 1 .. (harmonics + 1), amplitude `sine_amp`, kept where F0 > `voiced_threshold`;
    Gaussian noise of std `noise_std` where voiced and sine_amp / 3 where unvoiced (so unvoiced
    frames get a noise source of about the sines' level); Linear(harmonics + 1 -> 1) and tanh merge
    the channels (the only learned part).

    Shapes: f0 [B, 1, T] (Hz, per sample) -> source [B, 1, T].
    """

    def __init__(self, sample_rate: int, harmonics: int, sine_amp: float, noise_std: float, voiced_threshold: float):
        super().__init__()
        self.sample_rate = int(sample_rate)
        self.harmonics = int(harmonics)
        self.sine_amp = float(sine_amp)
        self.noise_std = float(noise_std)
        self.voiced_threshold = float(voiced_threshold)
        self.harmonic_merge = nn.Linear(self.harmonics + 1, 1)

    @torch.no_grad()
    def sines(self, f0: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """f0 [B, 1, T] -> the noisy harmonic channels [B, harmonics + 1, T] (not differentiable, as upstream)."""
        batch, _, length = f0.shape
        multiples = torch.arange(1, self.harmonics + 2, dtype=f0.dtype, device=f0.device)[None, :, None]
        cycles = f0 * multiples / self.sample_rate  # [B, H + 1, T]: cycles per sample of each harmonic
        # The running phase is wrapped to [0, 1) cycles before the 2 pi, as upstream does: float32
        # phases of long signals would otherwise lose their fractional part.
        theta = 2 * math.pi * (torch.cumsum(cycles, dim=-1) % 1)
        low = torch.tensor(-math.pi, dtype=torch.float32)  # upstream's Uniform(-pi, pi): low + u (high - low)
        start = (low + self._draw(torch.rand, (batch, self.harmonics + 1, 1), generator) * (-2 * low)).to(f0)
        start[:, 0] = 0  # the fundamental starts at phase 0
        waves = self.sine_amp * torch.sin(theta + start)
        voiced = (f0 > self.voiced_threshold).to(f0.dtype)  # [B, 1, T]
        noise_amp = voiced * self.noise_std + (1 - voiced) * self.sine_amp / 3
        noise = noise_amp * self._draw(torch.randn, tuple(waves.shape), generator).to(f0)
        return waves * voiced + noise

    def forward(self, f0: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """f0 [B, 1, T] in Hz -> source [B, 1, T] in (-1, 1); random numbers come from `generator`."""
        channels = self.sines(f0, generator)
        # Upstream also draws its noise-branch signal [B, T, 1] here, which HiFT never uses; drawing it
        # keeps a generator shared across calls in step with the reference's global RNG.
        self._draw(torch.randn, (f0.shape[0], f0.shape[-1], 1), generator)
        return torch.tanh(self.harmonic_merge(channels.transpose(1, 2))).transpose(1, 2)

    @staticmethod
    def _draw(sampler, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
        # Drawn on the generator's device: a CPU generator gives the same numbers whatever device runs the model.
        return sampler(shape, generator=generator, device=generator.device)
