"""Training losses for GAN codecs: adversarial, feature matching, multi-resolution mel, waveform L1.

Adversarial and feature-matching losses take the outputs of `discriminators.py`: `logits` is a
list with one tensor per sub-discriminator (any shape, [B, N] there), `features` a list of lists
of hidden activations. They return `(total, per_subdiscriminator)`, where `total` is the MEAN over
sub-discriminators (`reduction="mean"`, as Vocos and WavTokenizer use for their MPD and MRD) or the
SUM (`reduction="sum"`: HiFi-GAN, and DAC's term in WavTokenizer).

`family_discriminator_loss` / `family_generator_losses` combine these per discriminator family
(`FamilyLoss`: its adversarial kind, weight and reductions), as WavTokenizer does: hinge means over
its MPD and MRD plus the LSGAN sum over DAC's eight sub-discriminators.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from voxtok.audio import MelConfig, MelSpectrogram
from voxtok.errors import BadConfigError
from voxtok.nn.masks import length_mask

Logits = Sequence[torch.Tensor]
Features = Sequence[Sequence[torch.Tensor]]
# (total over sub-discriminators, one scalar per sub-discriminator)
LossParts = tuple[torch.Tensor, list[torch.Tensor]]


def _pairs(real: Sequence, fake: Sequence) -> zip:
    if len(real) != len(fake):
        raise ValueError(f"real and fake come from different discriminators "
                         f"({len(real)} vs {len(fake)} outputs)")
    if not real:
        raise ValueError("no discriminator outputs given")
    return zip(real, fake)


# How a loss over several sub-discriminators is totalled.
REDUCTIONS = ("mean", "sum")


def _reduce(parts: list[torch.Tensor], reduction: str = "mean") -> LossParts:
    if reduction not in REDUCTIONS:
        raise BadConfigError(f"unknown loss reduction '{reduction}' (choose from {list(REDUCTIONS)})")
    stacked = torch.stack(parts)
    return (stacked.mean() if reduction == "mean" else stacked.sum()), parts


# ----------------------------------------------------------------------------- adversarial


def hinge_discriminator_loss(real_logits: Logits, fake_logits: Logits, reduction: str = "mean") -> LossParts:
    """Hinge D loss: per sub-discriminator mean(relu(1 - D(real))) + mean(relu(1 + D(fake))).

    Logits are lists of [B, N] tensors. Returns (scalar mean or sum over sub-discriminators, list
    of scalars). Scores beyond the margin give no gradient, so D stops pushing once confident.
    """
    pairs = _pairs(real_logits, fake_logits)
    return _reduce([F.relu(1 - r).mean() + F.relu(1 + f).mean() for r, f in pairs], reduction)


def hinge_generator_loss(fake_logits: Logits, reduction: str = "mean") -> LossParts:
    """Hinge G loss as in Vocos/WavTokenizer: per sub-discriminator mean(relu(1 - D(fake))).

    (The textbook hinge G loss is -mean(D(fake)); the clamped form stops rewarding fakes the
    discriminator already accepts.) Returns (scalar mean or sum, list of scalars).
    """
    if not fake_logits:
        raise ValueError("no discriminator outputs given")
    return _reduce([F.relu(1 - f).mean() for f in fake_logits], reduction)


def lsgan_discriminator_loss(real_logits: Logits, fake_logits: Logits, reduction: str = "mean") -> LossParts:
    """Least-squares D loss (HiFi-GAN, SpeechTokenizer, DAC): mean((1 - D(real))^2) + mean(D(fake)^2).

    Returns (scalar mean or sum over sub-discriminators, list of scalars).
    """
    pairs = _pairs(real_logits, fake_logits)
    return _reduce([(1 - r).pow(2).mean() + f.pow(2).mean() for r, f in pairs], reduction)


def lsgan_generator_loss(fake_logits: Logits, reduction: str = "mean") -> LossParts:
    """Least-squares G loss: per sub-discriminator mean((1 - D(fake))^2).

    Returns (scalar mean or sum over sub-discriminators, list of scalars).
    """
    if not fake_logits:
        raise ValueError("no discriminator outputs given")
    return _reduce([(1 - f).pow(2).mean() for f in fake_logits], reduction)


_D_LOSSES = {"hinge": hinge_discriminator_loss, "lsgan": lsgan_discriminator_loss}
_G_LOSSES = {"hinge": hinge_generator_loss, "lsgan": lsgan_generator_loss}


def _pick(table: dict, kind: str):
    if kind not in table:
        raise BadConfigError(f"unknown adversarial loss '{kind}' (choose from {sorted(table)})")
    return table[kind]


def discriminator_loss(kind: str, real_logits: Logits, fake_logits: Logits, reduction: str = "mean") -> LossParts:
    """Discriminator loss of `kind` ("hinge" | "lsgan"); see the functions it dispatches to."""
    return _pick(_D_LOSSES, kind)(real_logits, fake_logits, reduction)


def generator_adv_loss(kind: str, fake_logits: Logits, reduction: str = "mean") -> LossParts:
    """Generator adversarial loss of `kind` ("hinge" | "lsgan"); see the functions it dispatches to."""
    return _pick(_G_LOSSES, kind)(fake_logits, reduction)


# ----------------------------------------------------------------------------- feature matching


def feature_matching_loss(real_features: Features, fake_features: Features,
                          relative: bool = False, reduction: str = "mean") -> LossParts:
    """L1 between discriminator activations of real and generated audio (real side detached).

    Per sub-discriminator: the SUM over its layers of mean|real - fake|; total: the mean (or with
    `reduction="sum"` the sum) over sub-discriminators. This is the Vocos/WavTokenizer convention,
    which their unit feature matching weight assumes (a mean over layers would shrink the term
    ~5x). With `relative`, each layer's L1 is divided by mean|real| (EnCodec's normalisation) so
    layers with large activations do not dominate. Returns (scalar, list of per-sub-discriminator
    scalars).
    """
    parts = []
    for real_layers, fake_layers in _pairs(real_features, fake_features):
        if len(real_layers) != len(fake_layers):
            raise ValueError("real and fake feature lists have different depths")
        if not real_layers:
            raise ValueError("a sub-discriminator returned no features")
        terms = []
        for r, f in zip(real_layers, fake_layers):
            r = r.detach()
            term = F.l1_loss(f, r)
            terms.append(term / (r.abs().mean() + 1e-8) if relative else term)
        parts.append(torch.stack(terms).sum())
    return _reduce(parts, reduction)


# ----------------------------------------------------------------------------- per family


@dataclass(frozen=True)
class FamilyLoss:
    """How one discriminator family's terms enter the GAN losses.

    adversarial: "hinge" | "lsgan"; weight: multiplies the family's discriminator loss, generator
    adversarial loss and feature matching (Vocos' `mrd_loss_coeff`); reduction /
    feature_matching_reduction: "mean" | "sum" over the family's sub-discriminators.
    """

    adversarial: str = "hinge"
    weight: float = 1.0
    reduction: str = "mean"
    feature_matching_reduction: str = "mean"


def family_discriminator_loss(families: Mapping[str, FamilyLoss], real_logits: Mapping[str, Logits],
                              fake_logits: Mapping[str, Logits]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """sum over families f of weight_f * D-loss_f (its kind and reduction).

    Logits are split by family name (lists of [B, N] tensors). Returns (total, family -> its
    unweighted loss).
    """
    parts = {name: discriminator_loss(f.adversarial, real_logits[name], fake_logits[name], f.reduction)[0]
             for name, f in families.items()}
    return _weighted_sum(families, parts), parts


def family_generator_losses(families: Mapping[str, FamilyLoss], fake_logits: Mapping[str, Logits],
                            real_features: Mapping[str, Features], fake_features: Mapping[str, Features]
                            ) -> tuple[torch.Tensor, torch.Tensor, dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    """(sum_f weight_f * G-adversarial_f, sum_f weight_f * feature-matching_f, family -> its unweighted
    (adversarial, feature matching)); inputs split by family name as in `family_discriminator_loss`."""
    adv = {name: generator_adv_loss(f.adversarial, fake_logits[name], f.reduction)[0] for name, f in families.items()}
    fm = {name: feature_matching_loss(real_features[name], fake_features[name],
                                      reduction=f.feature_matching_reduction)[0]
          for name, f in families.items()}
    return _weighted_sum(families, adv), _weighted_sum(families, fm), {n: (adv[n], fm[n]) for n in families}


def _weighted_sum(families: Mapping[str, FamilyLoss], parts: Mapping[str, torch.Tensor]) -> torch.Tensor:
    return sum(family.weight * parts[name] for name, family in families.items())


# ----------------------------------------------------------------------------- reconstruction


def _valid_mask(lengths: torch.Tensor | None, batch: int, size: int, device) -> torch.Tensor | None:
    """[B, size] bool mask of positions < lengths, or None when nothing is padded."""
    if lengths is None:
        return None
    lengths = torch.as_tensor(lengths, device=device).reshape(-1)
    if lengths.numel() != batch:
        raise ValueError(f"lengths has {lengths.numel()} entries for a batch of {batch}")
    return length_mask(lengths, size)


def _masked_mean(value: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of value [B, ..., L] over positions where mask [B, L] is True."""
    if mask is None:
        return value.mean()
    mask = mask.reshape(mask.shape[0], *([1] * (value.dim() - 2)), mask.shape[-1]).to(value.dtype)
    mask = mask.expand_as(value)
    return (value * mask).sum() / mask.sum().clamp_min(1.0)


def waveform_l1_loss(pred: torch.Tensor, target: torch.Tensor,
                     lengths: torch.Tensor | None = None) -> torch.Tensor:
    """Mean |pred - target| over the valid samples of wav [B, 1, T] (or [B, T]).

    `lengths` [B] gives each item's true length; samples at or beyond it are padding and ignored.
    """
    if pred.shape != target.shape:
        raise ValueError(f"waveform shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}")
    mask = _valid_mask(lengths, pred.shape[0], pred.shape[-1], pred.device)
    return _masked_mean((pred - target).abs(), mask)


def _per_scale(value, n: int, name: str) -> list:
    if isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) != n:
            raise BadConfigError(f"mel loss: {name} has {len(value)} entries for {n} resolutions")
        return list(value)
    return [value] * n


class MultiResolutionMelLoss(nn.Module):
    """Weighted sum over resolutions of L1 (plus optional L2) between log-mel spectrograms.

    forward(pred, target, lengths=None): wav [B, 1, T] each -> scalar
        sum_i weights[i] * (mean|M_i(pred) - M_i(target)| + l2_weight * mean(M_i(pred) - M_i(target))^2)
    where M_i is `voxtok.audio.MelSpectrogram` at resolution i (log mel [B, n_mels, frames]).
    With `lengths` [B], frames whose centre lies beyond an item's length are ignored.

    The defaults are WavTokenizer's loss (24 kHz, n_fft 1024, hop 256, 100 mels, Vocos mel front
    end); multiply by 45 outside. The SpeechTokenizer/DM-Codec multi-scale loss is, e.g.,
    `MultiResolutionMelLoss(16000, n_ffts=(1024, 512, 256, 128), n_mels=(80, 80, 40, 20),
    weights=(45, 1, 1, 1), l2_weight=1.0, base=MelConfig.preset("dmcodec"))`.

    Args:
        sample_rate: audio rate in Hz.
        n_ffts: FFT size per resolution.
        hop_lengths: hop per resolution (default n_fft // 4, so 256 for the default 1024).
        n_mels: mel bands, one int for all or one per resolution (small FFTs need fewer bands:
            a bank of more bands than FFT bins has empty filters).
        weights: weight per resolution (default 1 each).
        win_lengths: window per resolution (default n_fft).
        l2_weight: weight of the squared log-mel error added to the L1 term (0 = L1 only).
        base: mel settings not set above (mel scale, norm, centring, f_max, log floor);
            default `MelConfig.preset("vocos")`. An f_max above Nyquist is clipped to it.
    """

    def __init__(self, sample_rate: int = 24000, n_ffts: Sequence[int] = (1024,),
                 hop_lengths: Sequence[int] | None = None, n_mels: int | Sequence[int] = 100,
                 weights: Sequence[float] | None = None, win_lengths: Sequence[int | None] | None = None,
                 l2_weight: float = 0.0, base: MelConfig | None = None):
        super().__init__()
        n = len(n_ffts)
        if n == 0:
            raise BadConfigError("mel loss needs at least one resolution")
        if hop_lengths is None:
            hop_lengths = [f // 4 for f in n_ffts]
        hops = _per_scale(hop_lengths, n, "hop_lengths")
        mels = _per_scale(n_mels, n, "n_mels")
        wins = _per_scale(win_lengths, n, "win_lengths")
        self.weights = [float(w) for w in _per_scale(1.0 if weights is None else weights, n, "weights")]
        self.l2_weight = float(l2_weight)
        base = (base or MelConfig.preset("vocos")).with_(sample_rate=sample_rate)
        if base.f_max is not None and base.f_max > sample_rate / 2:
            base = base.with_(f_max=None)
        self.mels = nn.ModuleList(
            MelSpectrogram(base.with_(n_fft=f, hop_length=h, win_length=w, n_mels=m))
            for f, h, w, m in zip(n_ffts, hops, wins, mels)
        )

    def forward(self, pred: torch.Tensor, target: torch.Tensor,
                lengths: torch.Tensor | None = None) -> torch.Tensor:
        if pred.shape != target.shape:
            raise ValueError(f"waveform shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}")
        total = pred.new_zeros((), dtype=torch.float32)
        for weight, mel in zip(self.weights, self.mels):
            diff = mel(pred) - mel(target)  # [B, n_mels, frames]
            mask = None
            if lengths is not None:
                frames = torch.as_tensor(lengths, device=pred.device).reshape(-1)
                frames = frames // mel.config.hop_length + (1 if mel.config.center else 0)
                mask = _valid_mask(frames, diff.shape[0], diff.shape[-1], diff.device)
            term = _masked_mean(diff.abs(), mask)
            if self.l2_weight:
                term = term + self.l2_weight * _masked_mean(diff.pow(2), mask)
            total = total + weight * term
        return total
