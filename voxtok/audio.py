"""Audio front end: load, validate, save, resample, mel spectrogram, loudness.

This module is the only place in VoxTok where audio is read, written, resampled or turned into
mel features, so every model sees the same conventions: float32 in [-1, 1], mono, shape [1, T]
for one signal and [B, 1, T] for a batch.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import torch
import torch.nn.functional as F

from voxtok.atomic import atomic_write
from voxtok.errors import BadAudioError, BadConfigError

# Peak below -80 dBFS is treated as silence: such a file carries no speech for any model here.
SILENCE_PEAK = 1e-4
DEFAULT_MIN_SECONDS = 0.1
# File types soundfile reads that folder scans pick up.
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".opus")


def _as_numpy(wav) -> np.ndarray:
    if isinstance(wav, torch.Tensor):
        return wav.detach().cpu().float().numpy()
    return np.asarray(wav, dtype=np.float32)


def validate_waveform(
    wav,
    sample_rate: int,
    name: object = "<waveform>",
    min_seconds: float = DEFAULT_MIN_SECONDS,
    max_seconds: float | None = None,
    allow_silence: bool = False,
) -> None:
    """Raise BadAudioError unless `wav` ([T] or [C, T]) is finite, audible and long enough.

    `name` is what the message calls the signal (usually its file path). `allow_silence` accepts a
    silent signal: a codec encodes a corpus's silent segments like any other audio, while a voice
    prompt or a speaker embedding needs speech (their callers keep the check).
    """
    if sample_rate is None or sample_rate <= 0:
        raise BadAudioError(f"invalid sample rate {sample_rate}", name)
    arr = _as_numpy(wav)
    n = arr.shape[-1] if arr.ndim else 0
    if arr.size == 0 or n == 0:
        raise BadAudioError("audio is empty (0 samples)", name)
    if not np.isfinite(arr).all():
        raise BadAudioError("audio contains NaN or Inf samples", name)
    if not allow_silence and float(np.abs(arr).max()) < SILENCE_PEAK:
        raise BadAudioError("audio is silent (peak below -80 dBFS)", name)
    seconds = n / sample_rate
    if seconds < min_seconds:
        raise BadAudioError(f"audio is too short ({seconds:.3f} s < {min_seconds} s)", name)
    if max_seconds is not None and seconds > max_seconds:
        raise BadAudioError(f"audio is too long ({seconds:.1f} s > {max_seconds} s)", name)


def audio_duration(path: str | os.PathLike) -> float:
    """Duration in seconds read from the file header (no samples are decoded)."""
    try:
        info = sf.info(str(path))
    except Exception as exc:  # soundfile raises several types for unreadable files
        raise BadAudioError(f"cannot read audio ({_short(exc)})", path) from None
    return info.frames / info.samplerate if info.samplerate else 0.0


def _short(exc: Exception) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__


def load_audio(
    path: str | os.PathLike,
    sample_rate: int | None = None,
    *,
    min_seconds: float = DEFAULT_MIN_SECONDS,
    max_seconds: float | None = None,
    check: bool = True,
    allow_silence: bool = False,
) -> tuple[torch.Tensor, int]:
    """Read any file soundfile can (wav/flac/ogg...), downmix to mono, optionally resample.

    Returns (wav [1, T] float32, sample_rate). With `check`, the signal is validated (see
    `validate_waveform`; `allow_silence` as there); `max_seconds` is checked from the header
    before decoding so a huge file is refused without being loaded.
    """
    path = Path(path)
    if not path.exists():
        raise BadAudioError("file does not exist", path)
    if path.stat().st_size == 0:
        raise BadAudioError("file is empty (0 bytes)", path)
    if max_seconds is not None:
        seconds = audio_duration(path)
        if seconds > max_seconds:
            raise BadAudioError(f"audio is too long ({seconds:.1f} s > {max_seconds} s)", path)
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:
        raise BadAudioError(f"cannot read audio ({_short(exc)})", path) from None
    mono = data.mean(axis=1)
    if check:
        validate_waveform(mono, sr, path, min_seconds=min_seconds, allow_silence=allow_silence)
    wav = torch.from_numpy(np.ascontiguousarray(mono)).unsqueeze(0)
    if sample_rate is not None and sample_rate != sr:
        wav = resample(wav, sr, sample_rate)
        sr = sample_rate
    return wav, sr


def resample(wav, orig_sr: int, target_sr: int, quality: str = "VHQ") -> torch.Tensor:
    """High-quality (soxr) resampling along the last axis of a [..., T] tensor or array."""
    if orig_sr <= 0 or target_sr <= 0:
        raise BadAudioError(f"cannot resample {orig_sr} Hz -> {target_sr} Hz")
    tensor = wav if isinstance(wav, torch.Tensor) else torch.as_tensor(np.asarray(wav))
    if orig_sr == target_sr:
        return tensor.float()
    arr = _as_numpy(tensor)
    lead = arr.shape[:-1]
    flat = arr.reshape(-1, arr.shape[-1])
    # soxr wants [T, C] for multichannel input.
    out = soxr.resample(flat.T, orig_sr, target_sr, quality=quality).T
    out = np.ascontiguousarray(out, dtype=np.float32).reshape(*lead, -1)
    return torch.from_numpy(out)


def mono_speech(wav, sample_rate: int, target_sr: int, name: object = "<waveform>",
                min_seconds: float = DEFAULT_MIN_SECONDS) -> torch.Tensor:
    """One utterance [T] or [1, T] at `sample_rate` -> float32 [T'] at `target_sr`, after the checks of
    `validate_waveform` (what a speaker embedding needs: mono, finite, audible, long enough)."""
    x = torch.as_tensor(_as_numpy(wav))
    if x.dim() == 2 and x.shape[0] == 1:
        x = x[0]
    if x.dim() != 1:
        raise BadAudioError(f"speaker embedding needs mono audio [1, T], got shape {tuple(x.shape)}", name)
    validate_waveform(x, sample_rate, name, min_seconds=min_seconds)
    return resample(x, sample_rate, target_sr).reshape(-1)


def save_audio(path: str | os.PathLike, wav, sample_rate: int, subtype: str = "PCM_16") -> Path:
    """Write mono or [C, T] audio atomically: a temp file in the same folder, then rename.

    `wav` may be [T], [1, T] or [C, T]; samples are clipped to [-1, 1]. A crash mid-write never
    leaves a half-written file at `path`.
    """
    path = Path(path)
    arr = _as_numpy(wav)
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[-1] == 0:
        raise BadAudioError(f"cannot save audio of shape {tuple(arr.shape)}", path)
    if not np.isfinite(arr).all():
        raise BadAudioError("refusing to save audio with NaN or Inf samples", path)
    fmt = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG"}.get(path.suffix.lower(), "WAV")
    if fmt == "OGG":
        subtype = "VORBIS"
    with atomic_write(path, "wb") as handle:
        sf.write(handle, np.clip(arr, -1.0, 1.0).T, sample_rate, format=fmt, subtype=subtype)
    return path


# ----------------------------------------------------------------------------- mel features


@dataclass(frozen=True)
class MelConfig:
    """Mel settings; the presets reproduce the front ends of the published systems."""

    sample_rate: int = 24000
    n_fft: int = 1024
    hop_length: int = 256
    win_length: int | None = None
    n_mels: int = 100
    f_min: float = 0.0
    f_max: float | None = None
    power: float = 1.0  # 1 = magnitude (Vocos, HiFi-GAN), 2 = power
    htk: bool = True  # HTK mel scale (torchaudio default, used by Vocos); False = Slaney
    norm: str | None = None  # None (Vocos) or "slaney" (librosa / HiFi-GAN / CosyVoice)
    center: bool = True  # True: torch.stft centre padding; False: (n_fft-hop)/2 reflect pad
    log_floor: float = 1e-5

    @staticmethod
    def preset(name: str) -> "MelConfig":
        """'vocos' / 'wavtokenizer', 'cosyvoice', 'dmcodec' or 'whisper' front-end settings."""
        presets = {
            # Vocos / WavTokenizer: torchaudio MelSpectrogram defaults, magnitude, HTK, no norm.
            "vocos": MelConfig(24000, 1024, 256, None, 100, 0.0, None, 1.0, True, None, True, 1e-7),
            # CosyVoice (Matcha/HiFi-GAN style): Slaney mels up to 8 kHz, reflect pad, no centre.
            "cosyvoice": MelConfig(22050, 1024, 256, 1024, 80, 0.0, 8000.0, 1.0, False, "slaney", False, 1e-5),
            # DM-Codec / SpeechTokenizer mel loss at 16 kHz.
            "dmcodec": MelConfig(16000, 1024, 256, 1024, 80, 0.0, 8000.0, 1.0, False, "slaney", True, 1e-5),
            # Whisper / CosyVoice S3 tokenizer input: 25 ms windows every 10 ms, Slaney mels, power.
            "whisper": MelConfig(16000, 400, 160, 400, 128, 0.0, 8000.0, 2.0, False, "slaney", True, 1e-10),
        }
        presets["wavtokenizer"] = presets["vocos"]
        if name not in presets:
            raise BadConfigError(f"unknown mel preset '{name}' (choose from {sorted(presets)})")
        return presets[name]

    def with_(self, **kw) -> "MelConfig":
        """A copy with some fields changed."""
        return replace(self, **kw)

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_spec(spec: "MelConfig | str | dict | None", default: str | None = None) -> "MelConfig | None":
        """A MelConfig from a config value: a MelConfig, a preset name, or a dict of fields with an
        optional "preset" base (else the `default` preset, else the plain defaults). None gives the
        `default` preset, or None without one. Unknown field names are a BadConfigError."""
        if spec is None:
            return MelConfig.preset(default) if default else None
        if isinstance(spec, MelConfig):
            return spec
        if isinstance(spec, str):
            return MelConfig.preset(spec)
        fields = dict(spec)
        name = fields.pop("preset", default)
        base = MelConfig.preset(name) if name else MelConfig()
        unknown = sorted(set(fields) - set(base.to_dict()))
        if unknown:
            raise BadConfigError(f"unknown mel setting(s) {unknown} (MelConfig fields: {sorted(base.to_dict())})")
        return base.with_(**fields)


class MelSpectrogram(torch.nn.Module):
    """Log-mel spectrogram: wav [B, 1, T] or [B, T] -> log mel [B, n_mels, frames].

    frames = T // hop + 1 with `center=True`, T // hop with `center=False`.
    """

    def __init__(self, config: MelConfig | None = None, **overrides):
        super().__init__()
        import librosa  # imported lazily: librosa's import is slow and only needed here

        cfg = (config or MelConfig()).with_(**overrides) if overrides else (config or MelConfig())
        if cfg.f_max is not None and cfg.f_max > cfg.sample_rate / 2:
            raise BadConfigError(f"mel f_max {cfg.f_max} is above Nyquist for {cfg.sample_rate} Hz")
        self.config = cfg
        win = cfg.win_length or cfg.n_fft
        fb = librosa.filters.mel(
            sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels, fmin=cfg.f_min,
            fmax=cfg.f_max, htk=cfg.htk, norm=cfg.norm,
        )
        self.register_buffer("mel_basis", torch.from_numpy(fb).float(), persistent=False)
        self.register_buffer("window", torch.hann_window(win), persistent=False)

    def magnitude(self, wav: torch.Tensor) -> torch.Tensor:
        """Linear-frequency magnitude (power `config.power`): [B, T] -> [B, n_fft//2+1, frames]."""
        cfg = self.config
        if not cfg.center:
            pad = (cfg.n_fft - cfg.hop_length) // 2
            wav = F.pad(wav.unsqueeze(1), (pad, pad), mode="reflect").squeeze(1)
        spec = torch.stft(
            wav, cfg.n_fft, hop_length=cfg.hop_length, win_length=cfg.win_length or cfg.n_fft,
            window=self.window, center=cfg.center, pad_mode="reflect", return_complex=True,
        )
        mag = spec.abs()
        return mag if cfg.power == 1.0 else mag.pow(cfg.power)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        if wav.dim() == 3:
            wav = wav.squeeze(1)
        if wav.dim() == 1:
            wav = wav.unsqueeze(0)
        mel = torch.matmul(self.mel_basis, self.magnitude(wav.float()))
        return torch.log(torch.clamp(mel, min=self.config.log_floor))

    def num_frames(self, num_samples: int) -> int:
        """Frames produced for a signal of `num_samples` samples."""
        hop = self.config.hop_length
        return num_samples // hop + 1 if self.config.center else num_samples // hop


# ----------------------------------------------------------------------------- loudness


def _k_weighting(sample_rate: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """ITU-R BS.1770 K-weighting (shelf + high-pass) biquads designed for any sample rate."""
    # High-shelf stage (pre-filter), parameters from BS.1770-4 Annex 1 re-derived per rate.
    f0, gain_db, q = 1681.974450955533, 3.999843853973347, 0.7071752369554196
    k = math.tan(math.pi * f0 / sample_rate)
    vh = 10 ** (gain_db / 20)
    vb = vh ** 0.4996667741545416
    a0 = 1 + k / q + k * k
    b_shelf = np.array([(vh + vb * k / q + k * k) / a0, 2 * (k * k - vh) / a0, (vh - vb * k / q + k * k) / a0])
    a_shelf = np.array([1.0, 2 * (k * k - 1) / a0, (1 - k / q + k * k) / a0])
    # High-pass stage (RLB weighting).
    f0, q = 38.13547087602444, 0.5003270373238773
    k = math.tan(math.pi * f0 / sample_rate)
    a0 = 1 + k / q + k * k
    b_hp = np.array([1.0, -2.0, 1.0])
    a_hp = np.array([1.0, 2 * (k * k - 1) / a0, (1 - k / q + k * k) / a0])
    return [(b_shelf, a_shelf), (b_hp, a_hp)]


def integrated_loudness(wav, sample_rate: int) -> float:
    """Gated integrated loudness in LUFS (BS.1770) of mono audio [T] or [1, T]."""
    from scipy.signal import lfilter  # here, not at the top: scipy.signal costs ~1 s of every worker's start

    x = _as_numpy(wav).reshape(-1).astype(np.float64)
    for b, a in _k_weighting(sample_rate):
        x = lfilter(b, a, x)
    block, step = int(0.4 * sample_rate), int(0.1 * sample_rate)
    if len(x) < block:
        block = step = len(x)
    starts = range(0, len(x) - block + 1, step)
    power = np.array([np.mean(x[s:s + block] ** 2) for s in starts])
    loud = -0.691 + 10 * np.log10(power + 1e-12)
    gated = power[loud > -70.0]  # absolute gate
    if gated.size == 0:
        return -70.0
    rel = -0.691 + 10 * np.log10(gated.mean()) - 10.0  # relative gate
    gated = power[(loud > -70.0) & (loud > rel)]
    return float(-0.691 + 10 * np.log10(gated.mean() + 1e-12))


def normalize_loudness(wav, sample_rate: int, target_lufs: float = -23.0, peak: float = 0.99) -> torch.Tensor:
    """Scale mono audio [..., T] to `target_lufs` (BS.1770), then limit the peak to `peak`."""
    tensor = wav if isinstance(wav, torch.Tensor) else torch.as_tensor(np.asarray(wav, dtype=np.float32))
    validate_waveform(tensor, sample_rate, min_seconds=0.0)
    gain = 10 ** ((target_lufs - integrated_loudness(tensor, sample_rate)) / 20)
    out = tensor.float() * gain
    top = float(out.abs().max())
    if top > peak:
        out = out * (peak / top)
    return out
