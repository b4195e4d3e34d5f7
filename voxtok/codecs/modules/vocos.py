"""Vocos-style decoder: a ConvNeXt backbone at the frame rate and an inverse-STFT head.

Instead of upsampling with transposed convolutions, the backbone keeps the token frame rate and
the head predicts one STFT frame per token frame; an inverse STFT turns those into samples. This
is WavTokenizer's decoder (with `pos_net=True`, its extra ResNet + self-attention block right after
the input conv) and Vocos's (without).

Layout conventions: the backbone takes channel-first features [B, C, T'] and returns time-major
[B, T', dim] (the final LayerNorm works on the last axis), which is what ISTFTHead takes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

PADDINGS = ("same", "center")


class _OneDnnLinear:
    """oneDNN's fused matmul (+ exact GELU), the kernel torch.compile's CPU backend calls; None where
    this PyTorch lacks it, and switched off for good if it ever fails (F.linear then serves)."""

    op = getattr(getattr(torch.ops, "mkldnn", None), "_linear_pointwise", None)


def inference_linear(x: torch.Tensor, layer: nn.Linear, gelu: bool = False) -> torch.Tensor:
    """layer(x), then the exact GELU when `gelu`: [..., in_features] -> [..., out_features].

    Without autograd, on CPU in float32, the matmul runs in oneDNN with the GELU fused: ~10% faster
    than F.linear's BLAS on the AMD EPYC of docs/codec_speed.md and equal to float rounding (~1e-6,
    the summation order differs). Everything else (training, GPU, autocast, other dtypes, a PyTorch
    without the kernel) takes F.linear (+ F.gelu).
    """
    if (_OneDnnLinear.op is not None and not torch.is_grad_enabled() and x.device.type == "cpu"
            and x.dtype == layer.weight.dtype == torch.float32 and not torch.is_autocast_enabled("cpu")
            and torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled):
        try:
            return _OneDnnLinear.op(x, layer.weight, layer.bias, "gelu" if gelu else "none", [],
                                    "none" if gelu else "")
        except RuntimeError:  # an unsupported CPU or build: use the portable path from now on
            _OneDnnLinear.op = None
    y = F.linear(x, layer.weight, layer.bias)
    return F.gelu(y) if gelu else y


class AdaLayerNorm(nn.Module):
    """LayerNorm whose scale and shift are looked up from a learned table by a class id.

    Used to condition the decoder on a discrete setting (Vocos: the bandwidth id). The scale
    table starts at ones and the shift table at zeros, so an untrained AdaLayerNorm is a plain
    LayerNorm without affine parameters.

    Shapes: x [B, T, dim], cond_id int64 [B] (or a single id, [] or [1]) -> [B, T, dim].
    """

    def __init__(self, num_embeddings: int, dim: int, eps: float = 1e-6):
        super().__init__()
        self.dim = dim
        self.eps = eps
        self.scale = nn.Embedding(num_embeddings, dim)
        self.shift = nn.Embedding(num_embeddings, dim)
        nn.init.ones_(self.scale.weight)
        nn.init.zeros_(self.shift.weight)

    def forward(self, x: torch.Tensor, cond_id: torch.Tensor) -> torch.Tensor:
        """x: [B, T, dim], cond_id: [B] / [] / [1] -> [B, T, dim]."""
        cond_id = torch.as_tensor(cond_id, device=x.device).long().reshape(-1, 1)  # [B or 1, 1]
        x = F.layer_norm(x, (self.dim,), eps=self.eps)
        # The shift is added in place to the product (the product's own memory; mul's backward does
        # not read it): one activation-sized tensor fewer, the same numbers.
        return (x * self.scale(cond_id)).add_(self.shift(cond_id))


class ConvNeXtBlock(nn.Module):
    """1-D ConvNeXt block: depthwise conv k7 -> (Ada)LayerNorm -> Linear -> GELU -> Linear,
    scaled by a learned per-channel gain (layer scale) and added to the input.

    Args:
        dim: channels.
        intermediate_dim: width of the pointwise MLP.
        layer_scale_init_value: initial gain; None or <= 0 disables layer scale.
        adanorm_num_embeddings: if set, the norm is an AdaLayerNorm with that many ids.

    Shapes: x [B, dim, T], cond_id [B] (only with AdaLayerNorm) -> [B, dim, T]; `time_major` takes
    and gives [B, T, dim], the layout VocosBackbone keeps through its stack.
    """

    def __init__(
        self,
        dim: int,
        intermediate_dim: int,
        layer_scale_init_value: float | None = None,
        adanorm_num_embeddings: int | None = None,
    ):
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = _make_norm(dim, adanorm_num_embeddings)
        self.pwconv1 = nn.Linear(dim, intermediate_dim)  # then the exact GELU
        self.pwconv2 = nn.Linear(intermediate_dim, dim)
        if layer_scale_init_value is not None and layer_scale_init_value > 0:
            self.gamma = nn.Parameter(torch.full((dim,), float(layer_scale_init_value)))
        else:
            self.gamma = None

    def forward(self, x: torch.Tensor, cond_id: torch.Tensor | None = None) -> torch.Tensor:
        """x: [B, dim, T] -> [B, dim, T]."""
        return self.time_major(x.transpose(1, 2), cond_id).transpose(1, 2)

    def time_major(self, x: torch.Tensor, cond_id: torch.Tensor | None = None) -> torch.Tensor:
        """x: [B, T, dim] -> [B, T, dim] (cond_id as in `forward`)."""
        # The depthwise conv runs as a conv2d over [B, dim, 1, T] in channels-last memory, which is
        # x's own [B, T, dim] memory when x is contiguous: its output comes out time-major, ready for
        # the norm and the Linears, with no transposed copies (on CPU also a faster kernel than conv1d's).
        conv = self.dwconv
        h = F.conv2d(x.transpose(1, 2).unsqueeze(2), conv.weight.unsqueeze(2), conv.bias,
                     padding=(0, conv.padding[0]), groups=conv.groups).squeeze(2).transpose(1, 2)
        h = _apply_norm(self.norm, h, cond_id)
        h = inference_linear(inference_linear(h, self.pwconv1, gelu=True), self.pwconv2)
        if self.gamma is not None:
            # In place on pwconv2's own output (its backward does not read it); under autocast the
            # output is narrower than the gain and the product is promoted, as out of place.
            h = h.mul_(self.gamma) if h.dtype == self.gamma.dtype else h * self.gamma
        return x + h


def _make_norm(dim: int, adanorm_num_embeddings: int | None) -> nn.Module:
    if adanorm_num_embeddings:
        return AdaLayerNorm(adanorm_num_embeddings, dim, eps=1e-6)
    return nn.LayerNorm(dim, eps=1e-6)


def _apply_norm(norm: nn.Module, x: torch.Tensor, cond_id: torch.Tensor | None) -> torch.Tensor:
    if isinstance(norm, AdaLayerNorm):
        if cond_id is None:
            raise ValueError("this block uses AdaLayerNorm: pass cond_id")
        return norm(x, cond_id)
    return norm(x)


def _group_norm(channels: int) -> nn.GroupNorm:
    # 32 groups, eps 1e-6: the normalisation of the diffusion-style blocks WavTokenizer borrowed.
    return nn.GroupNorm(num_groups=32, num_channels=channels, eps=1e-6, affine=True)


class PosNetResBlock(nn.Module):
    """GroupNorm -> swish -> conv k3 -> GroupNorm -> swish -> dropout -> conv k3, plus the input.

    Shapes: [B, dim, T] -> [B, dim, T].
    """

    def __init__(self, dim: int, dropout: float = 0.1):
        super().__init__()
        self.norm1 = _group_norm(dim)
        self.conv1 = nn.Conv1d(dim, dim, kernel_size=3, padding=1)
        self.norm2 = _group_norm(dim)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv1d(dim, dim, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, dim, T] -> [B, dim, T]."""
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return x + h


class PosNetAttention(nn.Module):
    """Single-head self-attention over time with 1x1-conv projections, plus the input.

    Gives the frame-rate decoder a global view of the utterance (WavTokenizer's "attention module").
    Shapes: [B, dim, T] -> [B, dim, T].
    """

    def __init__(self, dim: int):
        super().__init__()
        self.norm = _group_norm(dim)
        self.q = nn.Conv1d(dim, dim, kernel_size=1)
        self.k = nn.Conv1d(dim, dim, kernel_size=1)
        self.v = nn.Conv1d(dim, dim, kernel_size=1)
        self.proj_out = nn.Conv1d(dim, dim, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, dim, T] -> [B, dim, T]."""
        h = self.norm(x)
        # [B, 1 head, T, dim] so the fused kernel computes softmax(q k^T / sqrt(dim)) v.
        q, k, v = (proj(h).transpose(1, 2).unsqueeze(1) for proj in (self.q, self.k, self.v))
        h = F.scaled_dot_product_attention(q, k, v).squeeze(1).transpose(1, 2)
        return x + self.proj_out(h)


class VocosBackbone(nn.Module):
    """Frame-rate decoder trunk: conv k7 embedding, optional pos_net, ConvNeXt stack, LayerNorm.

    Args:
        input_channels: channels of the input features (e.g. the codec latent width).
        dim: model width.
        intermediate_dim: ConvNeXt MLP width.
        num_layers: ConvNeXt blocks.
        layer_scale_init_value: initial layer-scale gain; default 1 / num_layers.
        adanorm_num_embeddings: if set, the first norm and every block norm are AdaLayerNorms
            conditioned on `cond_id` (WavTokenizer's published config uses 4).
        pos_net: add WavTokenizer's block after the embedding: 2 ResNet blocks, single-head
            self-attention, 2 ResNet blocks, GroupNorm.
        pos_net_dropout: dropout inside the pos_net ResNet blocks.

    Shapes: x [B, input_channels, T'], cond_id [B] -> [B, T', dim] (time-major).
    """

    def __init__(
        self,
        input_channels: int,
        dim: int,
        intermediate_dim: int,
        num_layers: int,
        layer_scale_init_value: float | None = None,
        adanorm_num_embeddings: int | None = None,
        pos_net: bool = False,
        pos_net_dropout: float = 0.1,
    ):
        super().__init__()
        self.input_channels = input_channels
        self.dim = dim
        self.embed = nn.Conv1d(input_channels, dim, kernel_size=7, padding=3)
        self.norm = _make_norm(dim, adanorm_num_embeddings)
        scale = layer_scale_init_value if layer_scale_init_value is not None else 1.0 / num_layers
        self.convnext = nn.ModuleList(
            ConvNeXtBlock(dim, intermediate_dim, scale, adanorm_num_embeddings) for _ in range(num_layers)
        )
        self.final_layer_norm = nn.LayerNorm(dim, eps=1e-6)
        self.apply(_init_trunc_normal)
        # Created after the init above: WavTokenizer trains pos_net from PyTorch's default init.
        self.pos_net = (
            nn.Sequential(
                PosNetResBlock(dim, pos_net_dropout),
                PosNetResBlock(dim, pos_net_dropout),
                PosNetAttention(dim),
                PosNetResBlock(dim, pos_net_dropout),
                PosNetResBlock(dim, pos_net_dropout),
                _group_norm(dim),
            )
            if pos_net
            else None
        )

    def forward(self, x: torch.Tensor, cond_id: torch.Tensor | None = None) -> torch.Tensor:
        """x: [B, input_channels, T'], cond_id: [B] (AdaLayerNorm only) -> [B, T', dim]."""
        x = self.embed(x)
        if self.pos_net is not None:
            x = self.pos_net(x)
        x = _apply_norm(self.norm, x.transpose(1, 2), cond_id)  # [B, T', dim] from here on
        for block in self.convnext:
            x = block.time_major(x, cond_id)
        return self.final_layer_norm(x)


def _init_trunc_normal(module: nn.Module) -> None:
    if isinstance(module, (nn.Conv1d, nn.Linear)):
        nn.init.trunc_normal_(module.weight, std=0.02)
        nn.init.zeros_(module.bias)


class InverseSTFT(nn.Module):
    """Inverse STFT with a periodic Hann window of length n_fft.

    padding="same": the inverse of an STFT taken without centring on a signal reflect-padded by
    left = (n_fft - hop) // 2 and right = n_fft - hop - left samples (so T' frames <-> T' * hop
    samples, like a "same" convolution). It is implemented directly (irfft, window, overlap-add,
    division by the summed squared window, trim) because torch.istft only supports centred frames:
    its window-envelope check fails at the uncentred edges that "same" trims away anyway.
    padding="center": torch.istft with center=True, giving (T' - 1) * hop samples.

    Shapes: spec complex [B, n_fft // 2 + 1, T'] -> [B, T' * hop] ("same").
    """

    def __init__(self, n_fft: int, hop_length: int, padding: str = "same"):
        super().__init__()
        if padding not in PADDINGS:
            raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")
        if not 0 < hop_length < n_fft:
            raise ValueError(f"need 0 < hop_length < n_fft, got hop {hop_length}, n_fft {n_fft}")
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.padding = padding
        self.trim_left = (n_fft - hop_length) // 2
        self.trim_right = n_fft - hop_length - self.trim_left
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def _overlap_add(self, frames: torch.Tensor) -> torch.Tensor:
        # frames [B, n_fft, T'] -> [B, (T' - 1) * hop + n_fft]: frame t lands at t * hop.
        n_frames = frames.shape[-1]
        length = (n_frames - 1) * self.hop_length + self.n_fft
        out = F.fold(
            frames, output_size=(1, length), kernel_size=(1, self.n_fft), stride=(1, self.hop_length)
        )
        return out.reshape(frames.shape[0], length)

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        """spec: complex [B, n_fft // 2 + 1, T'] -> waveform [B, T' * hop] ("same")."""
        if spec.dim() != 3:
            raise ValueError(f"expected a complex spectrogram [B, F, T'], got shape {tuple(spec.shape)}")
        if self.padding == "center":
            return torch.istft(spec, self.n_fft, self.hop_length, self.n_fft, self.window, center=True)
        n_frames = spec.shape[-1]
        frames = torch.fft.irfft(spec, n=self.n_fft, dim=1) * self.window[None, :, None]
        audio = self._overlap_add(frames)
        envelope = self._overlap_add(self.window.square()[None, :, None].expand(1, -1, n_frames))
        end = audio.shape[-1] - self.trim_right
        audio = audio[:, self.trim_left : end]
        envelope = envelope[:, self.trim_left : end]
        # hop < n_fft keeps the trimmed envelope strictly positive; the clamp only guards rounding.
        return audio / envelope.clamp_min(1e-11)


class ISTFTHead(nn.Module):
    """Predict an STFT frame per input frame and invert it to a waveform.

    Linear(dim -> n_fft + 2) gives log-magnitudes and phases for n_fft // 2 + 1 bins; the
    magnitude is exp() clipped at 1e2 (an early-training blow-up guard) and the complex value is
    built from cos/sin of the phase, so phase wrapping never needs handling.

    Args:
        dim: backbone width.
        n_fft: FFT size (and window length).
        hop_length: samples per frame; must equal the backbone's frame hop.
        padding: "same" (T' frames -> T' * hop samples) or "center" ((T' - 1) * hop).

    Shapes: x [B, T', dim] -> waveform [B, 1, T' * hop_length] ("same").
    """

    def __init__(self, dim: int, n_fft: int, hop_length: int, padding: str = "same"):
        super().__init__()
        self.out = nn.Linear(dim, n_fft + 2)
        self.istft = InverseSTFT(n_fft, hop_length, padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, T', dim] -> [B, 1, T' * hop_length]."""
        # float32 for exp / irfft: under mixed precision these overflow or lose the phase.
        log_mag, phase = inference_linear(x, self.out).float().transpose(1, 2).chunk(2, dim=1)  # [B, F, T'] each
        return self.synthesize(log_mag, phase)

    def synthesize(self, log_mag: torch.Tensor, phase: torch.Tensor) -> torch.Tensor:
        """Waveform from predicted log-magnitudes and phases, both [B, n_fft // 2 + 1, T'].

        Returns [B, 1, T' * hop_length] ("same"). Magnitudes above 1e2 are clipped.
        """
        return self.istft(polar_spectrum(log_mag, phase)).unsqueeze(1)


def polar_spectrum(log_mag: torch.Tensor, phase: torch.Tensor) -> torch.Tensor:
    """Complex STFT frames from log-magnitudes and phases, both [B, F, T'] -> complex [B, F, T'].

    The magnitude exp() is clipped at 1e2 (an early-training blow-up guard) and the value is built
    from cos/sin of the phase, as the iSTFT heads of Vocos, WavTokenizer and HiFT do.
    """
    mag = log_mag.exp().clamp(max=1e2)
    return torch.complex(mag * torch.cos(phase), mag * torch.sin(phase))
