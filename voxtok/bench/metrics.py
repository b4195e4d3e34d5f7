"""Reconstruction metrics: how close a codec's output is to the audio it was given.

Every metric takes a mono reference and a degraded signal (torch or numpy, shape [T] or [1, T])
at one sample rate and resamples internally (with `voxtok.audio.resample`) to the rate the metric
was defined at: PESQ-WB 16 kHz, PESQ-NB 8 kHz, STOI 10 kHz, speaker similarity 16 kHz. Signals are
trimmed to the shorter of the two, since codecs often add a few samples of padding.

A metric that cannot be computed for an input (a silent reference, a clip shorter than PESQ's
0.25 s, nothing left after STOI's silence removal) returns NaN instead of raising, and counts the
failure in `voxtok.bench.failures.metric_failures()`: one bad utterance must not stop a benchmark over thousands.

Besides these reference-based metrics (`METRICS`), `reconstruction_metrics` runs the non-intrusive
quality predictors of `voxtok.bench.mos` (dnsmos: four columns; utmos) on the degraded signal alone;
`MetricSettings` carries what some metrics need (speaker encoder, UTMOS checkpoint).
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from scipy.signal import correlate, correlation_lags

from voxtok.audio import MelConfig, MelSpectrogram, resample
from voxtok.bench.failures import failed, is_silent
from voxtok.errors import BadAudioError, BadConfigError


# Metrics `reconstruction_metrics` computes when `which` is not given. Speaker similarity is left
# out because it loads a neural model; ask for it by name.
DEFAULT_METRICS = ("pesq_wb", "pesq_nb", "stoi", "si_sdr", "mel_distance")


# ----------------------------------------------------------------------------- helpers


def _mono(wav, name: str) -> np.ndarray:
    """[T] or [1, T] torch/numpy -> finite float64 numpy [T]."""
    if isinstance(wav, torch.Tensor):
        arr = wav.detach().cpu().double().numpy()
    else:
        arr = np.asarray(wav, dtype=np.float64)
    if arr.ndim == 2 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 1:
        raise BadAudioError(f"{name} must be mono audio [T], got shape {tuple(arr.shape)}")
    if not np.isfinite(arr).all():
        raise BadAudioError(f"{name} contains NaN or Inf samples")
    return arr


def _pair(ref, deg) -> tuple[np.ndarray, np.ndarray]:
    """Both signals as float64 [T], trimmed to the shorter length."""
    ref, deg = _mono(ref, "reference"), _mono(deg, "degraded signal")
    n = min(len(ref), len(deg))
    return ref[:n], deg[:n]


def _at_rate(x: np.ndarray, sr: int, target_sr: int) -> np.ndarray:
    return resample(x.astype(np.float32), sr, target_sr).numpy().astype(np.float64)


# ----------------------------------------------------------------------------- alignment


def estimate_delay(ref, deg, sr: int, max_delay_ms: float) -> int:
    """Delay of `deg` relative to `ref` in samples (positive: `deg` lags), within ±max_delay_ms.

    ref, deg: mono [T] at `sr`. The delay is the peak of the waveform cross-correlation, which is
    right for waveform codecs (Opus, neural codecs). Parametric vocoders such as Codec2 rebuild the
    phase, so their peak is unreliable: pass their known delay to `align_lengths` instead.
    """
    ref, deg = _mono(ref, "reference"), _mono(deg, "degraded signal")
    max_lag = int(round(max_delay_ms * sr / 1000))
    if max_lag <= 0 or is_silent(ref) or is_silent(deg):
        return 0
    corr = correlate(deg, ref, mode="full", method="fft")
    lags = correlation_lags(len(deg), len(ref), mode="full")
    window = np.abs(lags) <= max_lag
    return int(lags[window][np.argmax(corr[window])])


def align_lengths(ref, deg, sr: int | None = None, max_delay_ms: float = 0.0, delay: int | None = None):
    """Remove a constant delay of `deg`, then trim both signals to the shorter length.

    ref, deg: [T] or [1, T] torch tensors or numpy arrays (returned as slices of the same type).
    `delay` (samples, positive when `deg` lags `ref`) is used when known, e.g. a baseline's
    measured algorithmic delay; otherwise with `max_delay_ms > 0` it is estimated by
    cross-correlation (`estimate_delay`, needs `sr`); with neither only the lengths are trimmed.
    Returns (ref, deg) with equal length along the last axis.
    """
    if delay is None and max_delay_ms > 0:
        if sr is None:
            raise BadConfigError("align_lengths needs the sample rate to estimate a delay")
        delay = estimate_delay(ref, deg, sr, max_delay_ms)
    delay = int(delay or 0)
    if delay > 0:
        deg = deg[..., delay:]
    elif delay < 0:
        ref = ref[..., -delay:]
    n = min(ref.shape[-1], deg.shape[-1])
    return ref[..., :n], deg[..., :n]


# ----------------------------------------------------------------------------- metrics


def _pesq(ref, deg, sr: int, rate: int, mode: str, metric: str) -> float:
    from pesq import PesqError, pesq

    ref, deg = _pair(ref, deg)
    if is_silent(ref):
        return failed(metric, "the reference is silent")
    ref, deg = _at_rate(ref, sr, rate), _at_rate(deg, sr, rate)
    try:
        return float(pesq(rate, ref, deg, mode))
    except PesqError as err:  # no utterances found, or shorter than 0.25 s
        return failed(metric, str(err).strip("b'\""))


def pesq_wb(ref, deg, sr: int) -> float:
    """Wide-band PESQ (ITU-T P.862.2, MOS-LQO 1.04..4.64) at 16 kHz; ref, deg: mono [T] at `sr`."""
    return _pesq(ref, deg, sr, 16000, "wb", "pesq_wb")


def pesq_nb(ref, deg, sr: int) -> float:
    """Narrow-band PESQ (P.862 + P.862.1 mapping, ~1..4.55) at 8 kHz; ref, deg: mono [T] at `sr`."""
    return _pesq(ref, deg, sr, 8000, "nb", "pesq_nb")


def stoi(ref, deg, sr: int) -> float:
    """Short-time objective intelligibility (Taal et al. 2011, 0..1) on mono [T] signals at `sr`.

    Computed by pystoi (extended=False) at its native 10 kHz; resampling happens here so every
    metric uses the same resampler.
    """
    from pystoi import stoi as pystoi_stoi

    ref, deg = _pair(ref, deg)
    if is_silent(ref):
        return failed("stoi", "the reference is silent")
    ref, deg = _at_rate(ref, sr, 10000), _at_rate(deg, sr, 10000)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = float(pystoi_stoi(ref, deg, 10000, extended=False))
    # pystoi warns and returns 1e-5 when too few frames survive its silence removal.
    if any("Not enough STFT frames" in str(w.message) for w in caught):
        return failed("stoi", "too few non-silent frames (clip too short)")
    return value


def si_sdr(ref, deg) -> float:
    """Scale-invariant SDR in dB (Le Roux et al. 2019) of mono [T] signals, after removing the mean.

    The target is the projection of `deg` on `ref`, so any gain on `deg` leaves the value unchanged.
    An exact copy gives a very large value (limited only by float precision), not infinity.
    """
    ref, deg = _pair(ref, deg)
    ref, deg = ref - ref.mean(), deg - deg.mean()
    ref_energy = float(np.dot(ref, ref))
    if ref_energy <= 1e-12 or is_silent(ref):
        return failed("si_sdr", "the reference is silent")
    target = (np.dot(deg, ref) / ref_energy) * ref
    noise = deg - target
    # Relative floor: an exact copy scores ~156 dB (float64 precision) instead of overflowing.
    floor = np.finfo(np.float64).eps * ref_energy
    return float(10 * np.log10((np.dot(target, target) + floor) / (np.dot(noise, noise) + floor)))


@functools.lru_cache(maxsize=8)
def _mel_for_rate(sr: int) -> MelSpectrogram:
    # The Vocos/WavTokenizer front end (24 kHz, 1024-point window, hop 256, 100 HTK mels, magnitude,
    # log floor 1e-7) with window and hop kept at the same duration (42.7 ms / 10.7 ms) at `sr`, and
    # the mels spanning 0..sr/2, so a mel distance means the same time-frequency resolution at
    # every rate.
    base = MelConfig.preset("vocos")
    scale = sr / base.sample_rate
    cfg = base.with_(sample_rate=sr, n_fft=round(base.n_fft * scale), hop_length=round(base.hop_length * scale))
    return MelSpectrogram(cfg).eval()


def mel_distance(ref, deg, sr: int) -> float:
    """Mean absolute difference of log-mel spectrograms (natural log) of mono [T] signals at `sr`.

    The mel front end is `MelConfig.preset("vocos")` adjusted to `sr`: window and hop keep their
    24 kHz durations (n_fft = round(1024 * sr / 24000), hop = round(256 * sr / 24000)), 100 HTK
    mels up to sr / 2. 0 for identical signals.
    """
    ref, deg = _pair(ref, deg)
    mel = _mel_for_rate(sr)
    if len(ref) <= mel.config.n_fft // 2:  # centre padding reflects n_fft/2 samples
        return failed("mel_distance", f"clip shorter than the {mel.config.n_fft}-sample window")
    pair = torch.from_numpy(np.stack([ref, deg]).astype(np.float32))
    with torch.no_grad():
        logmel = mel(pair)
    return float((logmel[0] - logmel[1]).abs().mean())


def speaker_similarity(ref, deg, sr: int, encoder: str = "resemblyzer") -> float:
    """Cosine similarity (-1..1) of speaker embeddings of two mono [T] signals at `sr`.

    `encoder` picks the model (`voxtok.bench.speaker_encoders`): resemblyzer d-vectors by default,
    or wavlm:DIR (a local WavLMForXVector folder)."""
    from voxtok.bench.speaker_encoders import speaker_embedding

    ref, deg = _pair(ref, deg)
    if is_silent(ref) or is_silent(deg):
        return failed("speaker_similarity", "a signal is silent")
    a, b = speaker_embedding(ref, sr, encoder), speaker_embedding(deg, sr, encoder)
    if a is None or b is None:
        return failed("speaker_similarity", "less than 0.1 s of speech after voice activity trimming")
    norms = np.linalg.norm(a) * np.linalg.norm(b)
    if norms == 0:
        return failed("speaker_similarity", "a speaker embedding is zero")
    return float(np.dot(a, b) / norms)


METRICS: dict[str, Callable[..., float]] = {
    "pesq_wb": pesq_wb,
    "pesq_nb": pesq_nb,
    "stoi": stoi,
    "si_sdr": lambda ref, deg, sr: si_sdr(ref, deg),
    "mel_distance": mel_distance,
    "speaker_similarity": speaker_similarity,
}


@dataclass(frozen=True)
class MetricSettings:
    """Choices some metrics need: the speaker encoder (`voxtok.bench.speaker_encoders` spec) and a
    local UTMOS checkpoint (TorchScript, see `voxtok.bench.mos`)."""

    speaker_encoder: str = "resemblyzer"
    utmos_checkpoint: str | None = None

    def check(self, which: Sequence[str]) -> None:
        """One-line BadConfigError when a requested metric cannot run with these settings."""
        from voxtok.bench.mos import check_utmos
        from voxtok.bench.speaker_encoders import check_speaker_encoder

        if "speaker_similarity" in which:
            check_speaker_encoder(self.speaker_encoder)
        if "utmos" in which:
            check_utmos(self.utmos_checkpoint)


def _quality_metrics() -> dict[str, tuple[str, ...]]:
    from voxtok.bench.mos import QUALITY_METRICS

    return {name: columns for name, (columns, _) in QUALITY_METRICS.items()}


def metric_names() -> tuple[str, ...]:
    """Every metric `reconstruction_metrics` accepts: the reference-based ones (`METRICS`) and the
    non-intrusive quality predictors (dnsmos, utmos; `voxtok.bench.mos`)."""
    return (*METRICS, *_quality_metrics())


def metric_columns(which: Sequence[str]) -> list[str]:
    """The result keys the metrics `which` produce (dnsmos gives four: SIG, BAK, OVRL, P.808)."""
    groups = _quality_metrics()
    return [column for name in which for column in groups.get(name, (name,))]


def reconstruction_metrics(
    ref,
    deg,
    sr: int,
    which: Sequence[str] = DEFAULT_METRICS,
    max_delay_ms: float = 0.0,
    delay: int | None = None,
    settings: MetricSettings | None = None,
) -> dict[str, float]:
    """Several metrics of one reconstruction: {column: value}, NaN where one could not be computed.

    ref, deg: mono [T] (or [1, T]) at `sr`. The signals are aligned once with `align_lengths`
    (`delay` in samples when known, else estimated within `max_delay_ms`). `which` picks from
    `metric_names()`; by default all reference-based metrics but speaker similarity. The
    non-intrusive ones (dnsmos, utmos) score `deg` alone.
    """
    from voxtok.bench.mos import QUALITY_METRICS

    settings = settings or MetricSettings()
    unknown = [name for name in which if name not in metric_names()]
    if unknown:
        raise BadConfigError(f"unknown metric(s) {unknown} (choose from {sorted(metric_names())})")
    ref, deg = align_lengths(_mono(ref, "reference"), _mono(deg, "degraded signal"), sr, max_delay_ms, delay)
    out: dict[str, float] = {}
    for name in which:
        if name in QUALITY_METRICS:
            out.update(QUALITY_METRICS[name][1](deg, sr, settings))
        elif name == "speaker_similarity":
            out[name] = speaker_similarity(ref, deg, sr, settings.speaker_encoder)
        else:
            out[name] = METRICS[name](ref, deg, sr)
    return out
