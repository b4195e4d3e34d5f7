"""GAN discriminators for waveform codecs and vocoders.

Every discriminator here maps a batch of waveforms [B, 1, T] to

    (logits, features)
    logits:   list[Tensor], one [B, N_k] score map per sub-discriminator k (flattened, so losses
              never depend on the sub-discriminator's layout);
    features: list[list[Tensor]], for each sub-discriminator the maps feature matching compares:
              the activations of its hidden layers (by default; the logits are not repeated), or
              the maps the reference implementation lists (`first_feature_layer`,
              `features_with_output`: Vocos / WavTokenizer also match the output map).

Families (the published sizes are the defaults):
- `MultiPeriodDiscriminator`  HiFi-GAN MPD: the waveform folded into [T/p, p] for several primes p.
- `MultiScaleDiscriminator`   HiFi-GAN / MelGAN MSD: grouped 1-D convs on average-pooled copies.
- `MultiResolutionSTFTDiscriminator`  UnivNet / Vocos MRD: 2-D convs on STFT magnitudes
  (`layers="univnet"`, the default, or `"vocos"`: Vocos' and WavTokenizer's stack).
- `MultiBandComplexSTFTDiscriminator` DAC: 2-D convs on the complex STFT (real/imag channels),
  one conv stack per frequency band, merged before the output layer.
- `DACDiscriminator`          DAC's whole discriminator as WavTokenizer trains it: MPD branches and
  the multi-band complex STFT branches on one normalised input, rectangular STFT window.

MPD and MRD take an optional `num_embeddings`: a projection-discriminator term conditioned on a
bandwidth id (Vocos / WavTokenizer), `forward(wav, bandwidth_id)`; `CombinedDiscriminator` hands
the id to the members that are conditioned.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm, weight_norm

from voxtok.errors import BadConfigError

# HiFi-GAN, UnivNet, Vocos and DAC all use this slope in their discriminators.
LRELU_SLOPE = 0.1

Output = tuple[list[torch.Tensor], list[list[torch.Tensor]]]


def _check_wav(wav: torch.Tensor) -> torch.Tensor:
    if wav.dim() != 3 or wav.shape[1] != 1:
        raise ValueError(f"discriminators take wav [B, 1, T], got shape {tuple(wav.shape)}")
    return wav


def _collect(subs: Sequence[nn.Module], wav: torch.Tensor, bandwidth_id: torch.Tensor | int | None = None) -> Output:
    logits, features = [], []
    for sub in subs:
        score, feats = sub(wav) if bandwidth_id is None else sub(wav, bandwidth_id)
        logits.append(score)
        features.append(feats)
    return logits, features


def _bandwidth_embedding(num_embeddings: int | None, channels: int) -> nn.Embedding | None:
    """The conditioning table of a projection discriminator, zero-initialised so that training
    starts from the unconditioned discriminator (as Vocos does)."""
    if num_embeddings is None:
        return None
    if num_embeddings < 1:
        raise BadConfigError(f"discriminator num_embeddings must be >= 1, got {num_embeddings}")
    emb = nn.Embedding(num_embeddings, channels)
    nn.init.zeros_(emb.weight)
    return emb


def _projection(emb: nn.Embedding | None, x: torch.Tensor, bandwidth_id: torch.Tensor | int | None):
    """Projection-discriminator term <emb(id), x> over channels: x [B, C, H, W] -> [B, 1, H, W]
    (0 when unconditioned). `bandwidth_id`: an int or a tensor of one id or one per item."""
    if emb is None or bandwidth_id is None:
        return 0
    ids = torch.as_tensor(bandwidth_id, device=x.device).reshape(-1)
    return (emb(ids)[:, :, None, None] * x).sum(dim=1, keepdim=True)


# ----------------------------------------------------------------------------- multi-period


class PeriodDiscriminator(nn.Module):
    """One MPD branch: wav [B, 1, T] -> (logits [B, N], features) on the [T/p, p] folding.

    Kernels span only the time-within-period axis, so each column (samples p apart) is judged
    on its own; this exposes periodic structure that 1-D convs on raw audio miss.
    Channels grow x4 per strided layer from `channels` up to `max_channels`
    (32, 128, 512, 1024, then 1024 unstrided, as in HiFi-GAN).

    Reference variants: `num_embeddings` adds Vocos' bandwidth-id projection term to the output;
    `first_feature_layer=1` and `features_with_output=True` list the maps Vocos' MPD feature-matches
    (layers 2..5 and the output); `pad_whole_period=True` pads p samples when p divides T, as DAC's
    MPD does (its fold then has one row more).
    """

    def __init__(self, period: int, channels: int = 32, max_channels: int = 1024,
                 num_strided: int = 4, kernel_size: int = 5, stride: int = 3, num_embeddings: int | None = None,
                 first_feature_layer: int = 0, features_with_output: bool = False, pad_whole_period: bool = False):
        super().__init__()
        if period < 1:
            raise BadConfigError(f"MPD period must be >= 1, got {period}")
        if not 0 <= first_feature_layer <= num_strided:
            raise BadConfigError(f"MPD first_feature_layer must be in 0..{num_strided}, got {first_feature_layer}")
        self.period = period
        self.first_feature_layer = first_feature_layer
        self.features_with_output = features_with_output
        self.pad_whole_period = pad_whole_period
        widths = [min(channels * 4 ** i, max_channels) for i in range(num_strided)]
        pad = (kernel_size // 2, 0)
        layers, in_ch = [], 1
        for out_ch in widths:
            layers.append(weight_norm(nn.Conv2d(in_ch, out_ch, (kernel_size, 1), (stride, 1), pad)))
            in_ch = out_ch
        layers.append(weight_norm(nn.Conv2d(in_ch, widths[-1], (kernel_size, 1), 1, pad)))
        self.convs = nn.ModuleList(layers)
        self.emb = _bandwidth_embedding(num_embeddings, widths[-1])
        self.conv_post = weight_norm(nn.Conv2d(widths[-1], 1, (3, 1), 1, (1, 0)))

    def forward(self, wav: torch.Tensor, bandwidth_id: torch.Tensor | int | None = None
                ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        b, c, t = wav.shape
        pad = self.period - t % self.period
        if pad < self.period or self.pad_whole_period:
            # Reflect rather than zero-pad so the fold does not add an artificial silent tail.
            wav = F.pad(wav, (0, pad), mode="reflect" if t > pad else "replicate")
            t += pad
        x = wav.view(b, c, t // self.period, self.period)
        features = []
        for i, conv in enumerate(self.convs):
            x = F.leaky_relu(conv(x), LRELU_SLOPE)
            if i >= self.first_feature_layer:
                features.append(x)
        out = self.conv_post(x) + _projection(self.emb, x, bandwidth_id)
        if self.features_with_output:
            features.append(out)
        return out.flatten(1), features


class MultiPeriodDiscriminator(nn.Module):
    """HiFi-GAN MPD: wav [B, 1, T] (bandwidth_id: int or [1] / [B] ids when conditioned)
    -> one (logits [B, N], features) per period.

    Primes are used as periods so the branches see non-overlapping sample lattices. The other
    options are `PeriodDiscriminator`'s (Vocos / WavTokenizer: num_embeddings=4,
    first_feature_layer=1, features_with_output=True).
    """

    def __init__(self, periods: Sequence[int] = (2, 3, 5, 7, 11), channels: int = 32,
                 max_channels: int = 1024, num_embeddings: int | None = None, first_feature_layer: int = 0,
                 features_with_output: bool = False):
        super().__init__()
        self.num_embeddings = num_embeddings
        self.discriminators = nn.ModuleList(
            PeriodDiscriminator(p, channels, max_channels, num_embeddings=num_embeddings,
                                first_feature_layer=first_feature_layer, features_with_output=features_with_output)
            for p in periods
        )

    @property
    def num_subdiscriminators(self) -> int:
        """Entries in the returned logits/features lists."""
        return len(self.discriminators)

    def forward(self, wav: torch.Tensor, bandwidth_id: torch.Tensor | int | None = None) -> Output:
        return _collect(self.discriminators, _check_wav(wav), bandwidth_id)


# ----------------------------------------------------------------------------- multi-scale


class ScaleDiscriminator(nn.Module):
    """One MSD branch: wav [B, 1, T'] -> (logits [B, N], features), grouped strided 1-D convs.

    Widths double from `channels` to `max_channels` (128, 128, 256, 512, 1024, 1024, 1024 in
    HiFi-GAN); grouping keeps the large 41-tap kernels affordable.
    """

    # (kernel, stride, groups, width multiplier) per layer, from the MelGAN/HiFi-GAN design.
    LAYERS = ((15, 1, 1, 1), (41, 2, 4, 1), (41, 2, 16, 2), (41, 4, 16, 4), (41, 4, 16, 8),
              (41, 1, 16, 8), (5, 1, 1, 8))

    def __init__(self, channels: int = 128, max_channels: int = 1024, use_spectral_norm: bool = False):
        super().__init__()
        norm = spectral_norm if use_spectral_norm else weight_norm
        layers, in_ch = [], 1
        for kernel, stride, groups, mult in self.LAYERS:
            out_ch = min(channels * mult, max_channels)
            # Narrow (tiny-config) widths may not divide by the published group count.
            groups = math.gcd(groups, in_ch, out_ch)
            layers.append(norm(nn.Conv1d(in_ch, out_ch, kernel, stride, kernel // 2, groups=groups)))
            in_ch = out_ch
        self.convs = nn.ModuleList(layers)
        self.conv_post = norm(nn.Conv1d(in_ch, 1, 3, 1, 1))

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x, features = wav, []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), LRELU_SLOPE)
            features.append(x)
        return self.conv_post(x).flatten(1), features


class MultiScaleDiscriminator(nn.Module):
    """HiFi-GAN/MelGAN MSD: wav [B, 1, T] -> one (logits, features) per scale.

    Scale k sees the input average-pooled k times (x1/2 each). The raw-rate branch uses spectral
    norm, which HiFi-GAN found stabilises the branch that sees the sharpest detail.
    """

    def __init__(self, num_scales: int = 3, channels: int = 128, max_channels: int = 1024):
        super().__init__()
        if num_scales < 1:
            raise BadConfigError(f"MSD needs at least one scale, got {num_scales}")
        self.discriminators = nn.ModuleList(
            ScaleDiscriminator(channels, max_channels, use_spectral_norm=(i == 0))
            for i in range(num_scales)
        )
        self.pool = nn.AvgPool1d(4, 2, padding=2)

    @property
    def num_subdiscriminators(self) -> int:
        """Entries in the returned logits/features lists."""
        return len(self.discriminators)

    def forward(self, wav: torch.Tensor) -> Output:
        x = _check_wav(wav)
        logits, features = [], []
        for i, sub in enumerate(self.discriminators):
            if i:
                x = self.pool(x)
            score, feats = sub(x)
            logits.append(score)
            features.append(feats)
        return logits, features


# ----------------------------------------------------------------------------- STFT magnitude


# STFT windows by config name. "rect" is what Vocos' and WavTokenizer's discriminators use
# (torch.stft with window=None): Vocos notes that it "kind of works" there.
WINDOWS = {"hann": torch.hann_window, "rect": torch.ones}


class _STFT(nn.Module):
    """Complex STFT of wav [B, 1, T] -> [B, n_fft//2+1, frames] with a `window` ("hann" | "rect") buffer."""

    def __init__(self, n_fft: int, hop_length: int, win_length: int, window: str = "hann"):
        super().__init__()
        if win_length > n_fft or hop_length < 1:
            raise BadConfigError(f"bad STFT resolution (n_fft={n_fft}, hop={hop_length}, win={win_length})")
        if window not in WINDOWS:
            raise BadConfigError(f"unknown STFT window '{window}' (choose from {sorted(WINDOWS)})")
        self.n_fft, self.hop_length, self.win_length = n_fft, hop_length, win_length
        self.register_buffer("window", WINDOWS[window](win_length), persistent=False)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        x = wav.squeeze(1).float()  # STFT in fp32: half-precision FFTs lose the quiet bins
        # Reflect padding (center=True) needs more than n_fft/2 samples; zero-pad shorter clips.
        mode = "reflect" if x.shape[-1] > self.n_fft // 2 else "constant"
        return torch.stft(x, self.n_fft, self.hop_length, self.win_length, self.window,
                          center=True, pad_mode=mode, return_complex=True)


# (kernel, stride, padding) per layer of an MRD branch, on [B, C, freq, frames].
SPECTROGRAM_LAYERS = {
    "univnet": (((3, 9), 1, (1, 4)), ((3, 9), (1, 2), (1, 4)), ((3, 9), (1, 2), (1, 4)), ((3, 9), (1, 2), (1, 4)),
                ((3, 3), 1, (1, 1))),
    "vocos": (((7, 5), (2, 2), (3, 2)), ((5, 3), (2, 1), (2, 1)), ((5, 3), (2, 2), (2, 1)), (3, (2, 1), 1),
              (3, (2, 2), 1)),
}


class SpectrogramDiscriminator(nn.Module):
    """One MRD branch: wav [B, 1, T] -> (logits [B, N], features) from the STFT magnitude.

    The magnitude is laid out [B, 1, freq, frames]. `layers` picks the conv stack (SPECTROGRAM_LAYERS):
    "univnet" (kernels 3 bins x 9 frames, strides halving the frame axis only, so frequency
    resolution is kept through the stack) or "vocos" (Vocos / WavTokenizer: 64 channels there,
    kernels (7, 5), (5, 3), (5, 3), 3, 3 that halve frequency at every layer and time at every
    other one, with `window="rect"`). `num_embeddings` and `features_with_output` as in
    `PeriodDiscriminator`.
    """

    def __init__(self, resolution: Sequence[int], channels: int = 32, layers: str = "univnet",
                 window: str = "hann", num_embeddings: int | None = None, features_with_output: bool = False):
        super().__init__()
        if layers not in SPECTROGRAM_LAYERS:
            raise BadConfigError(f"unknown MRD layers '{layers}' (choose from {sorted(SPECTROGRAM_LAYERS)})")
        n_fft, hop, win = resolution
        self.stft = _STFT(n_fft, hop, win, window)
        self.features_with_output = features_with_output
        self.convs = nn.ModuleList(
            weight_norm(nn.Conv2d(1 if i == 0 else channels, channels, kernel, stride, padding))
            for i, (kernel, stride, padding) in enumerate(SPECTROGRAM_LAYERS[layers])
        )
        self.emb = _bandwidth_embedding(num_embeddings, channels)
        self.conv_post = weight_norm(nn.Conv2d(channels, 1, (3, 3), padding=(1, 1)))

    def forward(self, wav: torch.Tensor, bandwidth_id: torch.Tensor | int | None = None
                ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = self.stft(wav).abs().unsqueeze(1)
        features = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), LRELU_SLOPE)
            features.append(x)
        out = self.conv_post(x) + _projection(self.emb, x, bandwidth_id)
        if self.features_with_output:
            features.append(out)
        return out.flatten(1), features


class MultiResolutionSTFTDiscriminator(nn.Module):
    """UnivNet/Vocos MRD: wav [B, 1, T] (bandwidth_id when conditioned) -> one (logits, features)
    per (n_fft, hop, win).

    Several resolutions trade time against frequency detail so the generator cannot hide
    artefacts in whichever axis a single STFT blurs. Options as in `SpectrogramDiscriminator`
    (WavTokenizer: channels=64, layers="vocos", window="rect", num_embeddings=4,
    features_with_output=True).
    """

    def __init__(self, resolutions: Sequence[Sequence[int]] = ((1024, 256, 1024), (2048, 512, 2048),
                                                               (512, 128, 512)),
                 channels: int = 32, layers: str = "univnet", window: str = "hann",
                 num_embeddings: int | None = None, features_with_output: bool = False):
        super().__init__()
        self.num_embeddings = num_embeddings
        self.discriminators = nn.ModuleList(
            SpectrogramDiscriminator(r, channels, layers, window, num_embeddings, features_with_output)
            for r in resolutions
        )

    @property
    def num_subdiscriminators(self) -> int:
        """Entries in the returned logits/features lists."""
        return len(self.discriminators)

    def forward(self, wav: torch.Tensor, bandwidth_id: torch.Tensor | int | None = None) -> Output:
        return _collect(self.discriminators, _check_wav(wav), bandwidth_id)


# ----------------------------------------------------------------------------- complex multi-band

# DAC's frequency bands, as fractions of the Nyquist range.
DAC_BANDS = ((0.0, 0.1), (0.1, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1.0))


class BandSplitSTFTDiscriminator(nn.Module):
    """One DAC MRD branch: wav [B, 1, T] -> (logits [B, N], features) from the complex STFT.

    The spectrogram is laid out [B, 2 (real, imag), frames, freq] and cut into frequency bands;
    each band has its own conv stack (3 frames x 9 bins, strides halving frequency), so low
    bands, where speech energy concentrates, do not share filters with the noisy top octave.
    Band outputs are concatenated along frequency and scored by one output conv. Features are
    listed band by band, layer by layer. `window`: "hann", or "rect" as WavTokenizer's copy of
    DAC computes it (torch.stft without a window).
    """

    def __init__(self, window_length: int, hop_factor: float = 0.25,
                 bands: Sequence[Sequence[float]] = DAC_BANDS, channels: int = 32, window: str = "hann"):
        super().__init__()
        hop = max(1, int(window_length * hop_factor))
        self.stft = _STFT(window_length, hop, window_length, window)
        n_bins = window_length // 2 + 1
        self.bands = [(int(lo * n_bins), int(hi * n_bins)) for lo, hi in bands]
        if any(hi <= lo for lo, hi in self.bands):
            raise BadConfigError(f"empty STFT band in {list(bands)} for window {window_length}")

        def stack() -> nn.ModuleList:
            return nn.ModuleList([
                weight_norm(nn.Conv2d(2, channels, (3, 9), padding=(1, 4))),
                *[weight_norm(nn.Conv2d(channels, channels, (3, 9), (1, 2), (1, 4))) for _ in range(3)],
                weight_norm(nn.Conv2d(channels, channels, (3, 3), padding=(1, 1))),
            ])

        self.band_convs = nn.ModuleList(stack() for _ in self.bands)
        self.conv_post = weight_norm(nn.Conv2d(channels, 1, (3, 3), padding=(1, 1)))

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        spec = torch.view_as_real(self.stft(wav))  # [B, F, frames, 2]
        spec = spec.permute(0, 3, 2, 1)  # [B, 2, frames, F]
        features, outs = [], []
        for (lo, hi), convs in zip(self.bands, self.band_convs):
            x = spec[..., lo:hi]
            for conv in convs:
                x = F.leaky_relu(conv(x), LRELU_SLOPE)
                features.append(x)
            outs.append(x)
        return self.conv_post(torch.cat(outs, dim=-1)).flatten(1), features


class DACDiscriminator(nn.Module):
    """DAC's discriminator as WavTokenizer trains it: wav [B, 1, T] -> one (logits, features) per
    period, then one per STFT window.

    The MPD branches (`PeriodDiscriminator`, widths `period_channels` .. `period_max_channels`,
    padding a whole period when p divides T as DAC does) and the multi-band complex STFT branches
    (`BandSplitSTFTDiscriminator`, `channels` wide, `window`) judge the same input, which with
    `normalize_input` (DAC's default) has its DC removed and is peak-normalised to 0.8, so the
    discriminator judges phase/timbre rather than loudness (the mel and waveform losses already
    constrain level). `bands` are fractions of the Nyquist range. Features are the hidden layers
    (DAC's feature matching leaves the output maps out).
    """

    def __init__(self, periods: Sequence[int] = (2, 3, 5, 7, 11), window_lengths: Sequence[int] = (2048, 1024, 512),
                 hop_factor: float = 0.25, bands: Sequence[Sequence[float]] = DAC_BANDS, channels: int = 32,
                 period_channels: int = 32, period_max_channels: int = 1024, window: str = "rect",
                 normalize_input: bool = True):
        super().__init__()
        self.normalize_input = normalize_input
        self.discriminators = nn.ModuleList([
            *(PeriodDiscriminator(p, period_channels, period_max_channels, pad_whole_period=True) for p in periods),
            *(BandSplitSTFTDiscriminator(w, hop_factor, bands, channels, window) for w in window_lengths),
        ])
        if not self.discriminators:
            raise BadConfigError("the DAC discriminator needs periods or window_lengths")

    @property
    def num_subdiscriminators(self) -> int:
        """Entries in the returned logits/features lists."""
        return len(self.discriminators)

    def forward(self, wav: torch.Tensor) -> Output:
        wav = _check_wav(wav)
        if self.normalize_input:
            wav = wav - wav.mean(dim=-1, keepdim=True)
            wav = 0.8 * wav / (wav.abs().amax(dim=-1, keepdim=True) + 1e-9)
        return _collect(self.discriminators, wav)


class MultiBandComplexSTFTDiscriminator(DACDiscriminator):
    """DAC's multi-band complex STFT discriminator alone (no MPD branches), Hann window:
    wav [B, 1, T] -> one (logits, features) per window length; see `DACDiscriminator`."""

    def __init__(self, window_lengths: Sequence[int] = (2048, 1024, 512), hop_factor: float = 0.25,
                 bands: Sequence[Sequence[float]] = DAC_BANDS, channels: int = 32, normalize_input: bool = True,
                 window: str = "hann"):
        super().__init__(periods=(), window_lengths=window_lengths, hop_factor=hop_factor, bands=bands,
                         channels=channels, window=window, normalize_input=normalize_input)


# ----------------------------------------------------------------------------- combination


class CombinedDiscriminator(nn.Module):
    """Several multi-discriminators run on the same wav [B, 1, T]; their lists are concatenated.

    `discriminators` is a list or a name -> module mapping (names are used by `split`, e.g. to
    weight the MRD terms separately as Vocos/WavTokenizer do). `forward(wav, bandwidth_id)` hands
    the id to the members built with `num_embeddings` (the others ignore it).
    """

    def __init__(self, discriminators: Sequence[nn.Module] | Mapping[str, nn.Module]):
        super().__init__()
        if not isinstance(discriminators, Mapping):
            discriminators = {f"d{i}": d for i, d in enumerate(discriminators)}
        if not discriminators:
            raise BadConfigError("CombinedDiscriminator needs at least one discriminator")
        self.discriminators = nn.ModuleDict(discriminators)

    @property
    def num_subdiscriminators(self) -> int:
        """Entries in the returned logits/features lists."""
        return sum(_count(d) for d in self.discriminators.values())

    @property
    def conditioning(self) -> dict[str, int]:
        """Name -> number of bandwidth ids of each member conditioned on one (empty: none is)."""
        return {name: int(d.num_embeddings) for name, d in self.discriminators.items()
                if getattr(d, "num_embeddings", None) is not None}

    def forward(self, wav: torch.Tensor, bandwidth_id: torch.Tensor | int | None = None) -> Output:
        logits, features = [], []
        conditioned = self.conditioning
        for name, disc in self.discriminators.items():
            lg, ft = disc(wav, bandwidth_id) if name in conditioned else disc(wav)
            logits += lg
            features += ft
        return logits, features

    def split(self, values: Sequence) -> dict[str, list]:
        """Cut a per-sub-discriminator list (logits, features, losses) into name -> its part."""
        if len(values) != self.num_subdiscriminators:
            raise ValueError(f"expected {self.num_subdiscriminators} entries, got {len(values)}")
        out, start = {}, 0
        for name, disc in self.discriminators.items():
            n = _count(disc)
            out[name] = list(values[start:start + n])
            start += n
        return out


def _count(disc: nn.Module) -> int:
    return getattr(disc, "num_subdiscriminators", 1)


DISCRIMINATORS: dict[str, type[nn.Module]] = {
    "mpd": MultiPeriodDiscriminator,
    "msd": MultiScaleDiscriminator,
    "mrd": MultiResolutionSTFTDiscriminator,
    "mrstft": MultiResolutionSTFTDiscriminator,
    "mbd": MultiBandComplexSTFTDiscriminator,
    "dac": DACDiscriminator,
}


def build_discriminators(names: Sequence[str], **kwargs: Mapping) -> CombinedDiscriminator:
    """Build a `CombinedDiscriminator` from short names ("mpd", "msd", "mrd"/"mrstft", "mbd", "dac").

    Keyword arguments are per-name option dicts, e.g.
    `build_discriminators(["mpd", "mrd"], mrd={"channels": 16})`.
    """
    if isinstance(names, str):
        names = [names]
    unknown = [n for n in names if n not in DISCRIMINATORS]
    if unknown or not names:
        raise BadConfigError(f"unknown discriminator(s) {unknown or list(names)} "
                             f"(choose from {sorted(DISCRIMINATORS)})")
    if len(set(names)) != len(names):
        raise BadConfigError(f"discriminator listed twice in {list(names)}")
    stray = sorted(set(kwargs) - set(names))
    if stray:
        raise BadConfigError(f"options given for discriminator(s) not in the list: {stray}")
    built = {}
    for name in names:
        try:
            built[name] = DISCRIMINATORS[name](**dict(kwargs.get(name) or {}))
        except TypeError as exc:
            raise BadConfigError(f"bad options for discriminator '{name}': {exc}") from None
    return CombinedDiscriminator(built)
