"""Shared test settings."""

import os

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("VOXTOK_PROGRESS", "0")


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    # Tests are small: one intra-op thread avoids spin-waiting when CI shares the 2 cores.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def espeak_speech(text: str, voice: str = "en-us", sample_rate: int = 16000, seconds: float = 2.0) -> np.ndarray:
    """Real (espeak-ng) speech cut to `seconds`, float32 [T] at `sample_rate`."""
    from voxtok.audio import resample
    from voxtok.data.synth import Voice, run_espeak

    wav, sr = run_espeak(Voice("espeak", voice, "F"), text)
    x = resample(wav, sr, sample_rate).numpy()[: int(seconds * sample_rate)]
    assert len(x) == int(seconds * sample_rate)
    return x


@pytest.fixture(scope="session")
def speech() -> np.ndarray:
    """2 s of espeak-ng speech at 16 kHz, float32 [T], shared by the metric and baseline tests."""
    return espeak_speech("She sells sea shells by the sea shore, surely. The quick brown fox jumps.")


def within_tolerance(audio: torch.Tensor, reference: torch.Tensor) -> float:
    """The parity criterion of the converter tests: max |diff| <= 1e-4 x max(1, peak of `reference`);
    `audio` is reshaped to the reference's layout (e.g. [B, 1, T] vs [B, T]). Returns the max |diff|."""
    diff = float((audio.reshape(reference.shape) - reference).abs().max())
    assert diff <= 1e-4 * max(1.0, float(reference.abs().max())), diff
    return diff
