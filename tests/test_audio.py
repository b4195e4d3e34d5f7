"""Audio front end: round trips, resampling, mel presets, loudness, and every bad-input case."""

import numpy as np
import pytest
import soundfile as sf
import torch

from voxtok.audio import (
    MelConfig, MelSpectrogram, integrated_loudness, load_audio, normalize_loudness, resample,
    save_audio, validate_waveform,
)
from voxtok.errors import BadAudioError, BadConfigError, VoxTokError


def tone(sr=16000, seconds=0.5, freq=440.0, amp=0.5):
    t = np.arange(int(sr * seconds)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.mark.parametrize("ext", ["wav", "flac", "ogg"])
def test_save_load_round_trip(tmp_path, ext):
    x = tone(24000)
    path = save_audio(tmp_path / f"a.{ext}", x, 24000)
    y, sr = load_audio(path)
    assert sr == 24000 and y.shape == (1, len(x)) and y.dtype == torch.float32
    tol = 0.05 if ext == "ogg" else 1e-3  # vorbis is lossy
    assert np.abs(y[0].numpy() - x).max() < tol


def test_stereo_is_downmixed(tmp_path):
    left, right = tone(freq=300), tone(freq=500)
    sf.write(tmp_path / "st.wav", np.stack([left, right], 1), 16000)
    y, _ = load_audio(tmp_path / "st.wav")
    assert y.shape == (1, len(left))
    assert np.allclose(y[0].numpy(), (left + right) / 2, atol=1e-3)


def test_load_resamples_and_keeps_duration(tmp_path):
    save_audio(tmp_path / "a.wav", tone(16000, 1.0), 16000)
    y, sr = load_audio(tmp_path / "a.wav", 24000)
    assert sr == 24000 and abs(y.shape[-1] - 24000) <= 1
    # a 440 Hz tone stays at 440 Hz after resampling
    spec = np.abs(np.fft.rfft(y[0].numpy()))
    assert abs(np.argmax(spec) * 24000 / y.shape[-1] - 440) < 2


def test_resample_batched_shapes():
    x = torch.randn(3, 1, 16000) * 0.1
    y = resample(x, 16000, 22050)
    assert y.shape == (3, 1, 22050)


def test_save_is_atomic_and_refuses_nan(tmp_path):
    path = tmp_path / "keep.wav"
    save_audio(path, tone(), 16000)
    before = path.read_bytes()
    with pytest.raises(BadAudioError):
        save_audio(path, np.full(100, np.nan, dtype=np.float32), 16000)
    assert path.read_bytes() == before  # the old file is untouched
    assert [p.name for p in tmp_path.iterdir()] == ["keep.wav"]  # no temp files left


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda p: p.write_bytes(b""), "empty"),
        (lambda p: p.write_bytes(b"RIFF\x00\x00garbage that is not audio" * 10), "cannot read"),
        (lambda p: sf.write(p, np.zeros(0, dtype=np.float32), 16000), "empty"),
        (lambda p: sf.write(p, np.zeros(16000, dtype=np.float32), 16000), "silent"),
        (lambda p: sf.write(p, tone(16000, 0.02), 16000), "too short"),
        (lambda p: sf.write(p, np.r_[tone(), np.float32(np.nan)], 16000, subtype="FLOAT"), "NaN"),
        (lambda p: sf.write(p, np.r_[tone(), np.float32(np.inf)], 16000, subtype="FLOAT"), "NaN or Inf"),
    ],
    ids=["zero-bytes", "corrupt", "no-samples", "silent", "too-short", "nan", "inf"],
)
def test_bad_audio_gives_one_line_error_naming_file(tmp_path, make, expected):
    path = tmp_path / "bad.wav"
    make(path)
    with pytest.raises(BadAudioError) as err:
        load_audio(path)
    msg = str(err.value)
    assert expected in msg and str(path) in msg and "\n" not in msg
    assert isinstance(err.value, VoxTokError)


def test_missing_and_too_long_files(tmp_path):
    with pytest.raises(BadAudioError, match="does not exist"):
        load_audio(tmp_path / "nope.wav")
    save_audio(tmp_path / "long.wav", tone(8000, 3.0), 8000)
    with pytest.raises(BadAudioError, match="too long"):
        load_audio(tmp_path / "long.wav", max_seconds=2.0)


def test_validate_waveform_rejects_bad_rate():
    with pytest.raises(BadAudioError, match="sample rate"):
        validate_waveform(tone(), 0)


@pytest.mark.parametrize(
    "preset, sr, n_mels, hop", [("vocos", 24000, 100, 256), ("cosyvoice", 22050, 80, 256), ("dmcodec", 16000, 80, 256)]
)
def test_mel_presets_shapes(preset, sr, n_mels, hop):
    cfg = MelConfig.preset(preset)
    assert (cfg.sample_rate, cfg.n_mels, cfg.hop_length) == (sr, n_mels, hop)
    mel = MelSpectrogram(cfg)
    wav = torch.randn(2, 1, sr) * 0.1
    out = mel(wav)
    assert out.shape == (2, n_mels, mel.num_frames(sr))
    assert torch.isfinite(out).all()


def test_vocos_mel_matches_torchaudio():
    torchaudio = pytest.importorskip("torchaudio")
    cfg = MelConfig.preset("vocos")
    wav = torch.randn(1, 24000) * 0.1
    ref = torchaudio.transforms.MelSpectrogram(
        sample_rate=24000, n_fft=1024, hop_length=256, n_mels=100, center=True, power=1
    )(wav)
    ours = MelSpectrogram(cfg)(wav)
    assert torch.allclose(ours, torch.log(ref.clamp(min=1e-7)), atol=1e-3)


def test_mel_rejects_fmax_above_nyquist():
    with pytest.raises(BadConfigError):
        MelSpectrogram(MelConfig.preset("dmcodec").with_(f_max=9000.0))
    with pytest.raises(BadConfigError):
        MelConfig.preset("nope")


def test_loudness_normalisation_hits_target():
    x = tone(16000, 2.0, amp=0.05)
    y = normalize_loudness(x, 16000, target_lufs=-20.0)
    assert abs(integrated_loudness(y, 16000) + 20.0) < 0.5
    # a full-scale sine is about -3 LUFS (BS.1770 reference point ~ -3.01 for 997 Hz)
    assert abs(integrated_loudness(tone(48000, 2.0, 997.0, 1.0), 48000) + 3.01) < 0.3
    with pytest.raises(BadAudioError, match="silent"):
        normalize_loudness(np.zeros(16000, dtype=np.float32), 16000)
