"""SEANet convolutional encoder / decoder (the EnCodec family backbone).

WavTokenizer uses it as its encoder (n_filters 32, dimension 512, 2-layer LSTM), SpeechTokenizer,
DM-Codec and FuseCodec as encoder and decoder (n_filters 64, dimension 1024, a bidirectional LSTM in
the encoder). Layout of the encoder, for ratios given in the decoder's order (e.g. [8, 5, 4, 2]):

    conv k7 (channels -> n_filters)
    for each stride r in reversed(ratios), width C = n_filters * 2**i:
        residual block(C) x n_residual_layers  ->  ELU  ->  strided conv C -> 2C (kernel 2r, stride r)
    LSTM over time with a skip connection (bidirectional: output 2 * C_last)
    ELU -> conv k7 -> dimension

The decoder runs the same stages backwards with transposed convolutions and a one-directional
LSTM. All convolutions pad themselves (see conv.py) so lengths are exact: the encoder maps T
samples to ceil(T / hop) frames and the decoder maps T' frames to T' * hop samples.

At 32-64 channels and the full sample rate, allocating and filling an activation costs as much as
the convolution that reads it, so the activations work in place wherever the tensor is the previous
layer's own output, read by nothing else (a convolution's backward never reads its output): the ELU
inside a residual block, the ELU of each stage and the residual sum. The numbers are the same, but
for the last bit of a few samples where ELU's vectorised and scalar code paths meet (~1e-7).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from voxtok.codecs.modules.conv import NormConv1d, NormConvTranspose1d


class SEANetResidualBlock(nn.Module):
    """ELU -> conv(k, dilation) C -> C/compress -> ELU -> conv 1x1 back to C, plus a skip.

    The skip is the identity when `true_skip`, else a 1x1 conv (the published EnCodec,
    WavTokenizer and SpeechTokenizer models all use the 1x1 conv).
    Shapes: [B, dim, T] -> [B, dim, T].
    """

    def __init__(
        self,
        dim: int,
        kernel_size: int = 3,
        dilation: int = 1,
        compress: int = 2,
        true_skip: bool = False,
        causal: bool = False,
        norm: str = "weight_norm",
        pad_mode: str = "reflect",
    ):
        super().__init__()
        hidden = dim // compress
        conv = dict(causal=causal, norm=norm, pad_mode=pad_mode)
        self.block = nn.Sequential(
            nn.ELU(),  # not in place: x also feeds the shortcut
            NormConv1d(dim, hidden, kernel_size, dilation=dilation, **conv),
            nn.ELU(inplace=True),
            NormConv1d(hidden, dim, 1, **conv),
        )
        self.shortcut = nn.Identity() if true_skip else NormConv1d(dim, dim, 1, **conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, dim, T] -> [B, dim, T]."""
        act, conv, inner_act, project = self.block
        padded = conv.pad(x)
        # ELU commutes with the padding (reflected or replicated samples, or zeros, which ELU keeps),
        # so it runs in place on the padded copy: one full-rate tensor fewer. Never on x itself.
        h = act(padded) if padded is x else F.elu_(padded, act.alpha)
        h = project(inner_act(conv.conv(h)))
        if isinstance(self.shortcut, nn.Identity):
            return x + h
        return self.shortcut(x).add_(h)  # the shortcut conv's own output


class SkipLSTM(nn.Module):
    """Multi-layer LSTM over the time axis of a channel-first tensor, with a residual skip.

    Hidden size equals the input width. When bidirectional the output has 2 * dim channels and
    the skip adds the input to both halves, as SpeechTokenizer does; the layer after it must
    therefore take 2 * dim channels.
    Shapes: [B, dim, T] -> [B, dim * (2 if bidirectional else 1), T].
    """

    def __init__(self, dim: int, num_layers: int = 2, bidirectional: bool = False):
        super().__init__()
        self.bidirectional = bidirectional
        self.lstm = nn.LSTM(dim, dim, num_layers, batch_first=True, bidirectional=bidirectional)

    @property
    def out_channels(self) -> int:
        """Channels of the output: dim, or 2 * dim when bidirectional."""
        return self.lstm.hidden_size * (2 if self.bidirectional else 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, dim, T] -> [B, out_channels, T]."""
        seq = x.transpose(1, 2)
        y, _ = self.lstm(seq)
        if self.bidirectional:
            seq = torch.cat([seq, seq], dim=-1)
        return (y + seq).transpose(1, 2)


def _hop(ratios: Sequence[int]) -> int:
    return int(math.prod(ratios))


class SEANetEncoder(nn.Module):
    """Waveform -> latent frames.

    Args:
        channels: audio channels (1).
        dimension: latent width D.
        n_filters: width of the first stage; it doubles at every downsampling.
        n_residual_layers: residual blocks per stage (dilation dilation_base**j for block j).
        ratios: up-sampling ratios in the *decoder's* order; the encoder applies them reversed
            (so [8, 5, 4, 2] downsamples by 2, 4, 5 then 8) and the strided conv for ratio r has
            kernel 2r.
        kernel_size / last_kernel_size / residual_kernel_size: kernels of the first conv, the last
            conv and the residual blocks.
        dilation_base: dilation growth across residual blocks of a stage.
        causal: pad every conv on the left only (streaming); needs bidirectional=False.
        lstm_layers: LSTM layers before the last conv (0 disables the LSTM).
        bidirectional: bidirectional LSTM (SpeechTokenizer); the last conv then takes twice the width.
        compress: channel reduction inside residual blocks.
        true_skip: identity skips in residual blocks instead of 1x1 convs. Default False, as in
            the published EnCodec / WavTokenizer / SpeechTokenizer models (parameter counts rely on it).
        norm: "weight_norm" or "none".
        pad_mode: padding of non-causal convs ("reflect" or "constant").

    Shapes: [B, channels, T] -> [B, dimension, ceil(T / hop_length)].
    """

    # Frames to the right that reach one latent frame, rounded up: the convolutions before the
    # LSTM see ~2 frames and the last conv 3 more (measured ~4.75 for the published WavTokenizer
    # and SpeechTokenizer hops). Codecs append this many zero frames before encoding, so a valid
    # frame's code does not depend on how much padding follows it in a batch.
    right_context_frames = 6

    def __init__(
        self,
        channels: int = 1,
        dimension: int = 128,
        n_filters: int = 32,
        n_residual_layers: int = 1,
        ratios: Sequence[int] = (8, 5, 4, 2),
        kernel_size: int = 7,
        last_kernel_size: int = 7,
        residual_kernel_size: int = 3,
        dilation_base: int = 2,
        causal: bool = False,
        lstm_layers: int = 2,
        bidirectional: bool = False,
        compress: int = 2,
        true_skip: bool = False,
        norm: str = "weight_norm",
        pad_mode: str = "reflect",
    ):
        super().__init__()
        if causal and bidirectional and lstm_layers:
            raise ValueError("a causal encoder cannot use a bidirectional LSTM (it reads the future)")
        self.channels = channels
        self.dimension = dimension
        self.ratios = list(ratios)
        conv = dict(causal=causal, norm=norm, pad_mode=pad_mode)

        width = n_filters
        layers: list[nn.Module] = [NormConv1d(channels, width, kernel_size, **conv)]
        for ratio in reversed(self.ratios):
            for j in range(n_residual_layers):
                layers.append(
                    SEANetResidualBlock(
                        width,
                        kernel_size=residual_kernel_size,
                        dilation=dilation_base**j,
                        compress=compress,
                        true_skip=true_skip,
                        **conv,
                    )
                )
            layers += [nn.ELU(inplace=True), NormConv1d(width, 2 * width, 2 * ratio, stride=ratio, **conv)]
            width *= 2
        if lstm_layers:
            lstm = SkipLSTM(width, lstm_layers, bidirectional)
            layers.append(lstm)
            width = lstm.out_channels
        layers += [nn.ELU(inplace=True), NormConv1d(width, dimension, last_kernel_size, **conv)]
        self.model = nn.Sequential(*layers)

    @property
    def hop_length(self) -> int:
        """Samples per output frame: the product of the ratios."""
        return _hop(self.ratios)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """wav: [B, channels, T] -> latents [B, dimension, ceil(T / hop_length)]."""
        return self.model(wav)


class SEANetDecoder(nn.Module):
    """Latent frames -> waveform; the mirror image of SEANetEncoder.

    Args: as SEANetEncoder (ratios in up-sampling order, applied as given), except the LSTM is
    always one-directional (it comes right after the first conv, at the latent rate) and
        final_activation: optional module name applied last, e.g. "Tanh".

    Shapes: [B, dimension, T'] -> [B, channels, T' * hop_length].
    """

    def __init__(
        self,
        channels: int = 1,
        dimension: int = 128,
        n_filters: int = 32,
        n_residual_layers: int = 1,
        ratios: Sequence[int] = (8, 5, 4, 2),
        kernel_size: int = 7,
        last_kernel_size: int = 7,
        residual_kernel_size: int = 3,
        dilation_base: int = 2,
        causal: bool = False,
        lstm_layers: int = 2,
        compress: int = 2,
        true_skip: bool = False,
        norm: str = "weight_norm",
        pad_mode: str = "reflect",
        final_activation: str | None = None,
    ):
        super().__init__()
        self.channels = channels
        self.dimension = dimension
        self.ratios = list(ratios)
        conv = dict(causal=causal, norm=norm, pad_mode=pad_mode)

        width = n_filters * 2 ** len(self.ratios)
        layers: list[nn.Module] = [NormConv1d(dimension, width, kernel_size, **conv)]
        if lstm_layers:
            layers.append(SkipLSTM(width, lstm_layers))
        for ratio in self.ratios:
            layers += [
                nn.ELU(inplace=True),
                NormConvTranspose1d(width, width // 2, 2 * ratio, stride=ratio, causal=causal, norm=norm),
            ]
            width //= 2
            for j in range(n_residual_layers):
                layers.append(
                    SEANetResidualBlock(
                        width,
                        kernel_size=residual_kernel_size,
                        dilation=dilation_base**j,
                        compress=compress,
                        true_skip=true_skip,
                        **conv,
                    )
                )
        layers += [nn.ELU(inplace=True), NormConv1d(width, channels, last_kernel_size, **conv)]
        if final_activation is not None:
            layers.append(getattr(nn, final_activation)())
        self.model = nn.Sequential(*layers)

    @property
    def hop_length(self) -> int:
        """Samples per input frame: the product of the ratios."""
        return _hop(self.ratios)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        """latents: [B, dimension, T'] -> wav [B, channels, T' * hop_length]."""
        return self.model(latents)
