"""Reconstruction metrics: known answers on identity, noise at a known SNR, hand-built SI-SDR cases,
alignment, and NaN (not a crash) on inputs a metric cannot score."""

import math

import numpy as np
import pytest
import torch

from bench_fixtures import noisy
from voxtok.audio import resample
from voxtok.bench import failures
from voxtok.bench import metrics as M
from voxtok.errors import BadAudioError, BadConfigError

SR = 16000


def test_identity_gives_the_best_scores(speech):
    scores = M.reconstruction_metrics(speech, speech.copy(), SR, which=list(M.METRICS))
    assert scores["pesq_wb"] == pytest.approx(4.64, abs=0.01)  # P.862.2 ceiling
    assert scores["pesq_nb"] == pytest.approx(4.55, abs=0.01)  # P.862.1 ceiling
    assert scores["stoi"] == pytest.approx(1.0, abs=1e-6)
    assert scores["si_sdr"] > 100
    assert scores["mel_distance"] == 0.0
    assert scores["speaker_similarity"] == pytest.approx(1.0, abs=1e-6)


def test_noise_at_10_db_is_worse_on_every_metric(speech):
    clean = M.reconstruction_metrics(speech, speech, SR, which=list(M.METRICS))
    dirty = M.reconstruction_metrics(speech, noisy(speech, 10.0), SR, which=list(M.METRICS))
    for name in ("pesq_wb", "pesq_nb", "stoi", "si_sdr", "speaker_similarity"):
        assert dirty[name] < clean[name] - 0.01, name
    assert dirty["mel_distance"] > clean["mel_distance"] + 0.1
    assert dirty["si_sdr"] == pytest.approx(10.0, abs=0.2)  # white noise is nearly orthogonal
    assert dirty["pesq_wb"] < 2.5 and 0.5 < dirty["stoi"] < 0.99


def test_si_sdr_is_scale_invariant(speech):
    noisy_copy = noisy(speech, 5.0, seed=1)
    for gain in (0.1, 3.0, -2.0):
        assert M.si_sdr(speech, gain * speech) > 100
        assert M.si_sdr(speech, gain * noisy_copy) == pytest.approx(M.si_sdr(speech, noisy_copy), abs=1e-6)


def test_si_sdr_with_orthogonal_noise_of_known_energy(speech):
    ref = speech.astype(np.float64) - speech.mean()
    noise = np.random.default_rng(2).standard_normal(len(ref))
    noise -= noise.mean()
    noise -= np.dot(noise, ref) / np.dot(ref, ref) * ref  # exactly orthogonal, still zero-mean
    noise *= np.sqrt(np.dot(ref, ref) / np.dot(noise, noise) / 10 ** (6.0 / 10))  # ||ref||²/||n||² = 6 dB
    assert M.si_sdr(ref, 0.5 * ref + 0.5 * noise) == pytest.approx(6.0, abs=1e-6)
    # With gain g on the signal only, the target is g * ref: SI-SDR = 6 dB + 20 log10(g).
    assert M.si_sdr(ref, 2.0 * ref + noise) == pytest.approx(6.0 + 20 * math.log10(2.0), abs=1e-6)


def test_torch_and_numpy_inputs_agree(speech):
    deg = noisy(speech, 15.0)
    a = M.reconstruction_metrics(speech, deg, SR)
    b = M.reconstruction_metrics(torch.from_numpy(speech)[None], torch.from_numpy(deg), SR)
    assert a == pytest.approx(b, abs=1e-4)
    assert set(a) == set(M.DEFAULT_METRICS)


def test_metrics_resample_internally(speech):
    """Scores at 24 kHz use the same 16 / 8 / 10 kHz internals, so they match closely."""
    deg = noisy(speech, 15.0)
    at_16k = M.reconstruction_metrics(speech, deg, SR, which=("pesq_wb", "stoi"))
    up = lambda x: resample(x, SR, 24000).numpy()  # noqa: E731
    at_24k = M.reconstruction_metrics(up(speech), up(deg), 24000, which=("pesq_wb", "stoi"))
    assert at_24k["pesq_wb"] == pytest.approx(at_16k["pesq_wb"], abs=0.05)
    assert at_24k["stoi"] == pytest.approx(at_16k["stoi"], abs=0.01)


def test_align_lengths_trims_and_removes_a_delay(speech):
    ref, deg = M.align_lengths(speech, np.concatenate([speech, np.zeros(37, np.float32)]))
    assert len(ref) == len(deg) == len(speech)
    delayed = np.concatenate([np.zeros(80, np.float32), speech])  # 5 ms late
    assert M.estimate_delay(speech, delayed, SR, max_delay_ms=20) == 80
    assert M.estimate_delay(delayed, speech, SR, max_delay_ms=20) == -80
    ref, deg = M.align_lengths(speech, delayed, SR, max_delay_ms=20)
    np.testing.assert_array_equal(ref, deg)
    ref, deg = M.align_lengths(torch.from_numpy(speech), torch.from_numpy(delayed), delay=80)
    assert isinstance(deg, torch.Tensor) and torch.equal(ref, deg)
    # Without compensation the 5 ms delay costs SI-SDR; with it the score is perfect again.
    assert M.si_sdr(speech, delayed) < 10
    assert M.reconstruction_metrics(speech, delayed, SR, which=("si_sdr",), max_delay_ms=20)["si_sdr"] > 100
    with pytest.raises(BadConfigError):
        M.align_lengths(speech, delayed, max_delay_ms=20)


def test_unscorable_inputs_give_nan_and_a_count(speech):
    failures.reset_metric_failures()
    silence = np.zeros(SR, np.float32)
    with pytest.warns(RuntimeWarning):
        assert math.isnan(M.pesq_wb(silence, silence, SR))
        assert math.isnan(M.pesq_nb(speech[:2000], speech[:2000], SR))  # 0.125 s < PESQ's 0.25 s
        assert math.isnan(M.stoi(speech[:2000], speech[:2000], SR))
        assert math.isnan(M.si_sdr(silence, speech[:SR]))
        assert math.isnan(M.mel_distance(speech[:100], speech[:100], SR))
    assert failures.metric_failures() == {"pesq_wb": 1, "pesq_nb": 1, "stoi": 1, "si_sdr": 1, "mel_distance": 1}
    failures.reset_metric_failures()
    assert failures.metric_failures() == {}


def test_bad_arguments_are_clear_errors(speech):
    with pytest.raises(BadConfigError, match="unknown metric"):
        M.reconstruction_metrics(speech, speech, SR, which=("pesq_wb", "nisqa"))
    with pytest.raises(BadConfigError, match="UTMOS needs a local checkpoint"):
        M.reconstruction_metrics(speech, speech, SR, which=("pesq_wb", "utmos"))
    with pytest.raises(BadAudioError, match="mono"):
        M.si_sdr(np.stack([speech, speech]), speech)
    with pytest.raises(BadAudioError, match="NaN"):
        M.stoi(speech, np.full_like(speech, np.nan), SR)
