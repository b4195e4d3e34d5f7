"""1-D convolutions that pad themselves, with optional weight normalisation.

The SEANet encoder and decoder need every strided convolution to map T samples to exactly
ceil(T / stride) frames and every transposed convolution to map T' frames to exactly
T' * stride samples, whatever the kernel size. Doing the padding inside the layer keeps those
length rules in one place, and lets the same layers run causally (all padding on the past side)
for streaming.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

NORMS = ("weight_norm", "none")


def _variance_preserving_init(module: nn.Module) -> nn.Module:
    # PyTorch's default conv init shrinks the signal about sqrt(3) x per layer; through a dozen
    # SEANet convs the frame-to-frame variation of the latent ends up ~1e-3 of its bias, and a
    # small model needs thousands of steps just to undo that. Unit-gain init keeps the
    # variation at the input's scale from the first step (published weights load over it).
    nn.init.kaiming_normal_(module.weight, nonlinearity="linear", mode="fan_in" if isinstance(module, nn.Conv1d) else "fan_out")
    if module.bias is not None:
        nn.init.zeros_(module.bias)
    return module


def _normalise(module: nn.Module, norm: str) -> nn.Module:
    _variance_preserving_init(module)
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    # dim=0 (the default) gives one gain per output channel for Conv1d and one per *input*
    # channel for ConvTranspose1d, as the published EnCodec-family checkpoints do.
    return weight_norm(module) if norm == "weight_norm" else module


def pad1d(x: torch.Tensor, left: int, right: int, mode: str = "reflect") -> torch.Tensor:
    """Pad the last axis of `x` [..., T] by `left` / `right` samples.

    mode is "reflect", "replicate" or "constant" (zeros). Reflect padding needs the signal to be
    longer than the padding; a shorter signal is first extended with zeros on the right so tiny
    inputs (one latent frame, a 10 ms clip) still go through, then the zeros are cut away again.
    Returns [..., T + left + right].
    """
    if left < 0 or right < 0:
        raise ValueError(f"negative padding ({left}, {right})")
    if mode != "reflect":
        return F.pad(x, (left, right), mode=mode)
    length = x.shape[-1]
    shortfall = max(left, right) - length + 1
    if shortfall <= 0:
        return F.pad(x, (left, right), mode="reflect")
    x = F.pad(x, (0, shortfall))
    out = F.pad(x, (left, right), mode="reflect")
    return out[..., : out.shape[-1] - shortfall]


class NormConv1d(nn.Module):
    """Conv1d that pads its input so the output has ceil(T / stride) frames.

    Args:
        in_channels, out_channels, kernel_size, stride, dilation, groups, bias: as nn.Conv1d.
        causal: put all fixed padding on the left, so output frame n only sees inputs up to
            (n + 1) * stride - 1. Causal layers pad with zeros, because reflecting at the start
            would copy future samples into the past.
        norm: "weight_norm" or "none".
        pad_mode: padding for the non-causal case ("reflect" as in EnCodec, or "constant").

    Shapes: [B, in_channels, T] -> [B, out_channels, ceil(T / stride)].
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        dilation: int = 1,
        groups: int = 1,
        bias: bool = True,
        causal: bool = False,
        norm: str = "weight_norm",
        pad_mode: str = "reflect",
    ):
        super().__init__()
        if (kernel_size - 1) * dilation + 1 < stride:
            raise ValueError(f"kernel_size {kernel_size} < stride {stride} would skip input samples")
        conv = nn.Conv1d(
            in_channels, out_channels, kernel_size, stride, dilation=dilation, groups=groups, bias=bias
        )
        self.conv = _normalise(conv, norm)
        self.causal = causal
        self.pad_mode = "constant" if causal else pad_mode
        self.stride = stride
        self.effective_kernel = (kernel_size - 1) * dilation + 1
        # Fixed padding that makes a stride-1 conv length preserving; the extra right padding
        # that completes the last window depends on T and is computed per call.
        self.padding_total = self.effective_kernel - stride

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, C_in, T] -> the padded input the convolution reads, [B, C_in, T + left + right];
        x itself when nothing is added (a 1x1 conv): copying a full-rate activation for nothing
        costs about as much as a small conv."""
        length = x.shape[-1]
        n_frames = -(-length // self.stride)  # ceil without float rounding
        # Samples needed so that exactly n_frames windows fit once fixed padding is added.
        needed = (n_frames - 1) * self.stride + self.effective_kernel
        extra = needed - length - self.padding_total
        if self.causal:
            left, right = self.padding_total, extra
        else:
            # Odd totals put the spare sample on the left, as EnCodec does.
            right = self.padding_total // 2
            left = self.padding_total - right
            right += extra
        return pad1d(x, left, right, self.pad_mode) if left or right else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, C_in, T] -> [B, C_out, ceil(T / stride)]."""
        return self.conv(self.pad(x))


class NormConvTranspose1d(nn.Module):
    """ConvTranspose1d that trims its output to exactly T' * stride samples.

    A transposed conv with kernel k and stride s produces (T' - 1) * s + k samples; the k - s
    surplus is cut from the right when causal (so no output depends on a later input frame) and
    split between both sides otherwise (the larger half on the left, mirroring NormConv1d).

    Args:
        in_channels, out_channels, kernel_size, stride, bias: as nn.ConvTranspose1d.
        causal: trim only on the right.
        norm: "weight_norm" or "none".

    Shapes: [B, in_channels, T'] -> [B, out_channels, T' * stride].
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        bias: bool = True,
        causal: bool = False,
        norm: str = "weight_norm",
    ):
        super().__init__()
        if kernel_size < stride:
            raise ValueError(f"kernel_size {kernel_size} < stride {stride} would leave gaps in the output")
        convtr = nn.ConvTranspose1d(in_channels, out_channels, kernel_size, stride, bias=bias)
        self.convtr = _normalise(convtr, norm)
        self.causal = causal
        surplus = kernel_size - stride
        if causal:
            self.trim_left, self.trim_right = 0, surplus
        else:
            self.trim_right = surplus // 2
            self.trim_left = surplus - self.trim_right

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, C_in, T'] -> [B, C_out, T' * stride]."""
        y = self.convtr(x)
        return y[..., self.trim_left : y.shape[-1] - self.trim_right]
