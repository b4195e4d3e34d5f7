"""AudioClipDataset crops and speed perturbation."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from voxtok.audio import save_audio
from voxtok.data.dataset import AudioClipDataset, change_speed
from voxtok.errors import BadConfigError

SR = 16000


def _sine_dir(root: Path, hz: float = 500.0, seconds: float = 1.0) -> Path:
    t = np.arange(int(seconds * SR)) / SR
    save_audio(root / "a.wav", 0.5 * np.sin(2 * np.pi * hz * t), SR)
    d = root / "data"
    d.mkdir()
    (d / "wav.scp").write_text(f"u1 {root / 'a.wav'}\n")
    (d / "text").write_text("u1 hello\n")
    (d / "utt2spk").write_text("u1 s1\n")
    (d / "spk2utt").write_text("s1 u1\n")
    return d


def _peak_hz(wav: torch.Tensor) -> float:
    spectrum = np.abs(np.fft.rfft(wav.reshape(-1).numpy() * np.hanning(wav.shape[-1])))
    return float(np.argmax(spectrum) * SR / wav.shape[-1])


def test_without_perturbation_a_crop_is_a_slice_of_the_file(tmp_path):
    ds = AudioClipDataset(_sine_dir(tmp_path), SR, crop_seconds=0.25, random_crop=False)
    item = ds[0]
    assert item["length"] == 4000 and torch.equal(item["wav"], ds.audio("u1")[:, :4000])


@pytest.mark.parametrize("speed", [90, 112])
def test_speed_perturbation_moves_pitch_and_keeps_the_crop_length(tmp_path, monkeypatch, speed):
    ds = AudioClipDataset(_sine_dir(tmp_path), SR, crop_seconds=0.5, speed_perturb=0.15)
    monkeypatch.setattr(random, "randint", lambda a, b: speed - 100 if (a, b) == (-15, 15) else a)
    item = ds[0]
    assert item["wav"].shape == (1, 8000) and item["length"] == 8000
    assert _peak_hz(item["wav"]) == pytest.approx(500 * speed / 100, rel=0.01)


def test_short_utterance_is_padded_after_the_speed_change(tmp_path, monkeypatch):
    ds = AudioClipDataset(_sine_dir(tmp_path, seconds=0.3), SR, crop_seconds=0.5, speed_perturb=0.2)
    monkeypatch.setattr(random, "randint", lambda a, b: 20 if (a, b) == (-20, 20) else a)
    item = ds[0]
    assert item["wav"].shape == (1, 8000)
    assert item["length"] == pytest.approx(4800 / 1.2, abs=2)  # the sped-up utterance, then zeros
    assert item["wav"][:, item["length"]:].abs().max() == 0


def test_change_speed_is_identity_at_100_percent():
    wav = torch.randn(1, 1000)
    assert change_speed(wav, 100) is wav and change_speed(wav, 125).shape[-1] == 800


@pytest.mark.parametrize("bad", [-0.1, 0.5, 2.0])
def test_out_of_range_speed_perturb_is_a_config_error(tmp_path, bad):
    with pytest.raises(BadConfigError, match="speed_perturb"):
        AudioClipDataset(_sine_dir(tmp_path), SR, crop_seconds=0.25, speed_perturb=bad)
