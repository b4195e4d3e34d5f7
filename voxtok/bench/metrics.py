"""Reconstruction metrics: how close a codec's output is to the audio it was given.

Every metric takes a mono reference and a degraded signal (torch or numpy, shape [T] or [1, T])
at one sample rate and resamples internally (with `voxtok.audio.resample`) to the rate the metric
was defined at: PESQ-WB 16 kHz, PESQ-NB 8 kHz, STOI 10 kHz, speaker similarity 16 kHz. Signals are
trimmed to the shorter of the two, since codecs often add a few samples of padding.

A metric that cannot be computed for an input (a silent reference, a clip shorter than PESQ's
0.25 s, nothing left after STOI's silence removal) returns NaN instead of raising, and counts the
failure in `metric_failures()`: one bad utterance must not stop a benchmark over thousands.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections import Counter
from typing import Callable, Sequence

import numpy as np
import torch
from scipy.signal import correlate, correlation_lags

from voxtok.audio import SILENCE_PEAK, MelConfig, MelSpectrogram, resample
from voxtok.errors import BadAudioError, BadConfigError

_FAILURES: Counter = Counter()

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


def _failed(metric: str, reason: str) -> float:
    """Record that `metric` could not be computed and return NaN in its place."""
    _FAILURES[metric] += 1
    warnings.warn(f"{metric} is NaN: {reason}", RuntimeWarning, stacklevel=3)
    return math.nan


def _silent(x: np.ndarray) -> bool:
    return x.size == 0 or float(np.abs(x).max()) < SILENCE_PEAK


def metric_failures() -> dict[str, int]:
    """How many times each metric returned NaN since the last reset: {metric name: count}."""
    return dict(_FAILURES)


def reset_metric_failures() -> None:
    """Zero the failure counts (e.g. at the start of a benchmark run)."""
    _FAILURES.clear()


# ----------------------------------------------------------------------------- alignment


def estimate_delay(ref, deg, sr: int, max_delay_ms: float) -> int:
    """Delay of `deg` relative to `ref` in samples (positive: `deg` lags), within ±max_delay_ms.

    ref, deg: mono [T] at `sr`. The delay is the peak of the waveform cross-correlation, which is
    right for waveform codecs (Opus, neural codecs). Parametric vocoders such as Codec2 rebuild the
    phase, so their peak is unreliable: pass their known delay to `align_lengths` instead.
    """
    ref, deg = _mono(ref, "reference"), _mono(deg, "degraded signal")
    max_lag = int(round(max_delay_ms * sr / 1000))
    if max_lag <= 0 or _silent(ref) or _silent(deg):
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
    if _silent(ref):
        return _failed(metric, "the reference is silent")
    ref, deg = _at_rate(ref, sr, rate), _at_rate(deg, sr, rate)
    try:
        return float(pesq(rate, ref, deg, mode))
    except PesqError as err:  # no utterances found, or shorter than 0.25 s
        return _failed(metric, str(err).strip("b'\""))


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
    if _silent(ref):
        return _failed("stoi", "the reference is silent")
    ref, deg = _at_rate(ref, sr, 10000), _at_rate(deg, sr, 10000)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = float(pystoi_stoi(ref, deg, 10000, extended=False))
    # pystoi warns and returns 1e-5 when too few frames survive its silence removal.
    if any("Not enough STFT frames" in str(w.message) for w in caught):
        return _failed("stoi", "too few non-silent frames (clip too short)")
    return value


def si_sdr(ref, deg) -> float:
    """Scale-invariant SDR in dB (Le Roux et al. 2019) of mono [T] signals, after removing the mean.

    The target is the projection of `deg` on `ref`, so any gain on `deg` leaves the value unchanged.
    An exact copy gives a very large value (limited only by float precision), not infinity.
    """
    ref, deg = _pair(ref, deg)
    ref, deg = ref - ref.mean(), deg - deg.mean()
    ref_energy = float(np.dot(ref, ref))
    if ref_energy <= 1e-12 or _silent(ref):
        return _failed("si_sdr", "the reference is silent")
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
        return _failed("mel_distance", f"clip shorter than the {mel.config.n_fft}-sample window")
    pair = torch.from_numpy(np.stack([ref, deg]).astype(np.float32))
    with torch.no_grad():
        logmel = mel(pair)
    return float((logmel[0] - logmel[1]).abs().mean())


_ENCODER = None


def _voice_encoder():
    """resemblyzer's d-vector model, built once; its weights ship inside the package (no network)."""
    global _ENCODER
    if _ENCODER is None:
        with warnings.catch_warnings():
            # resemblyzer and webrtcvad import deprecated scipy / pkg_resources names; not ours to fix.
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            from resemblyzer import VoiceEncoder

            _ENCODER = VoiceEncoder(device="cpu", verbose=False)
    return _ENCODER


def _d_vector(wav: np.ndarray, sr: int) -> np.ndarray | None:
    """256-d d-vector of a mono signal, or None when nothing voiced is left after VAD trimming."""
    encoder = _voice_encoder()  # first: it imports resemblyzer with its import warnings silenced
    from resemblyzer import preprocess_wav

    # resemblyzer works at 16 kHz; preprocess_wav without source_sr only normalises and trims.
    speech = preprocess_wav(_at_rate(wav, sr, 16000).astype(np.float32))
    if len(speech) < 1600:
        return None
    with torch.no_grad():
        return np.asarray(encoder.embed_utterance(speech), dtype=np.float64)


def speaker_similarity(ref, deg, sr: int) -> float:
    """Cosine similarity (-1..1) of resemblyzer d-vectors of two mono [T] signals at `sr`."""
    ref, deg = _pair(ref, deg)
    if _silent(ref) or _silent(deg):
        return _failed("speaker_similarity", "a signal is silent")
    a, b = _d_vector(ref, sr), _d_vector(deg, sr)
    if a is None or b is None:
        return _failed("speaker_similarity", "less than 0.1 s of speech after voice activity trimming")
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


METRICS: dict[str, Callable[..., float]] = {
    "pesq_wb": pesq_wb,
    "pesq_nb": pesq_nb,
    "stoi": stoi,
    "si_sdr": lambda ref, deg, sr: si_sdr(ref, deg),
    "mel_distance": mel_distance,
    "speaker_similarity": speaker_similarity,
}


def reconstruction_metrics(
    ref,
    deg,
    sr: int,
    which: Sequence[str] = DEFAULT_METRICS,
    max_delay_ms: float = 0.0,
    delay: int | None = None,
) -> dict[str, float]:
    """Several metrics of one reconstruction: {name: value}, NaN where one could not be computed.

    ref, deg: mono [T] (or [1, T]) at `sr`. The signals are aligned once with `align_lengths`
    (`delay` in samples when known, else estimated within `max_delay_ms`). `which` picks from
    `METRICS`; by default all but speaker similarity.
    """
    unknown = [name for name in which if name not in METRICS]
    if unknown:
        raise BadConfigError(f"unknown metric(s) {unknown} (choose from {sorted(METRICS)})")
    ref, deg = align_lengths(_mono(ref, "reference"), _mono(deg, "degraded signal"), sr, max_delay_ms, delay)
    return {name: METRICS[name](ref, deg, sr) for name in which}
