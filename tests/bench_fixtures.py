"""Benchmark inputs shared by the bench tests: Kaldi data dirs of espeak-ng speech (and the shared
16 kHz `dirs` fixture), white noise at a known SNR, and one system through the runner."""

from pathlib import Path

import numpy as np
import pytest

from conftest import espeak_speech
from published_checkpoints import RATE
from voxtok.audio import resample, save_audio
from voxtok.bench import runner
from voxtok.bench.lm import LMConfig
from voxtok.bench.probes import ProbeConfig
from voxtok.data.synth import Voice, run_espeak


def sentence_speech(text: str, voice: str) -> np.ndarray:
    """A whole espeak-ng sentence, float32 [T] at 24 kHz."""
    wav, sr = run_espeak(Voice("espeak", voice, "F", rate=190), text)
    return resample(wav, sr, 24000).numpy()


def data_dir(root: Path, utts: list[tuple[str, str, str, str]], speak=sentence_speech, rate: int = 24000) -> Path:
    """utts: (utt, speaker, voice, text) -> a Kaldi data dir of espeak-ng speech (`speak(text, voice)`
    -> float [T] at `rate`; default: whole sentences at 24 kHz)."""
    root.mkdir(parents=True)
    for utt, _, voice, text in utts:
        save_audio(root / f"{utt}.wav", speak(text, voice), rate)
    (root / "wav.scp").write_text("".join(f"{u} {root / (u + '.wav')}\n" for u, *_ in utts))
    (root / "text").write_text("".join(f"{u} {t}\n" for u, _, _, t in utts))
    (root / "utt2spk").write_text("".join(f"{u} {s}\n" for u, s, _, _ in utts))
    return root


def noisy(x: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    """x plus white noise scaled to exactly `snr_db` dB SNR."""
    noise = np.random.default_rng(seed).standard_normal(len(x))
    noise *= np.sqrt(np.sum(x.astype(np.float64) ** 2) / np.sum(noise**2) / 10 ** (snr_db / 10))
    return (x + noise).astype(np.float32)


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    """(test dir: 2 utterances, train dir: 2 speakers x 2 utterances), 1.2 s of 16 kHz speech each."""
    root = tmp_path_factory.mktemp("published_data")
    test = [("a_t", "a", "en-us", "the garden is green today"), ("b_t", "b", "en-gb", "a quiet garden at night")]
    train = [(f"{s}_{i}", s, v, t) for s, v in (("a", "en-us"), ("b", "en-gb"))
             for i, t in enumerate(["the green garden was quiet", "a green and quiet garden"])]
    speak = lambda text, voice: espeak_speech(text, voice, RATE, seconds=1.2)  # noqa: E731
    return data_dir(root / "test", test, speak, RATE), data_dir(root / "train", train, speak, RATE)


def bench(tmp_path, dirs, spec: str, metrics=("stoi", "mel_distance"), **changes) -> dict:
    """One system through `runner.run_benchmark`; returns its row (asserted ok)."""
    test, train = dirs
    cfg = dict(test_dir=str(test), train_dir=str(train), out_dir=str(tmp_path / "bench"), systems=[spec], asr=False,
               metrics=list(metrics), swuggy_words=0, num_samples=1, threads=1, progress=False,
               probe=ProbeConfig(dim=8, attention_hidden=8, lstm_hidden=8, lstm_layers=1, conv_channels=8,
                                 asr_steps=2, speaker_steps=2, batch_size=2),
               lm_model=LMConfig(dim=8, layers=1, heads=2, context=16, steps=2, batch_size=2))
    cfg.update(changes)
    (row,) = runner.run_benchmark(runner.BenchConfig(**cfg))
    assert row["status"] == "ok", row.get("error")
    return row
