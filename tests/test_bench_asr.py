"""Benchmark ASR: the shared text normaliser, WER/CER/dWER, and Whisper tiny.en on real speech."""

import math

import numpy as np
import pytest

from voxtok.bench.asr import (WhisperASR, asr_scores, char_error_rate, normalize_text, whisper_model_path,
                              word_error_rate)
from conftest import espeak_speech


@pytest.mark.parametrize("raw, normalised", [
    ("We smiled, so Margaret painted seven chairs in Toronto in 1836.",
     "we smiled so margaret painted seven chairs in toronto in eighteen thirty six"),
    ("At 12:55, Ruth paid $125.", "at twelve fifty five ruth paid one hundred twenty five dollars"),
    ("It was the 28th time at 1:05!", "it was the twenty eighth time at one o five"),
    ("In 2004 and 2022, 96 letters.", "in two thousand four and twenty twenty two ninety six letters"),
    ("1,836 well-known 50% o'clock", "one thousand eight hundred thirty six well known fifty percent o'clock"),
    ("  'Quoted'  -- text ", "quoted text"),
])
def test_normaliser_spells_numbers_like_the_transcripts(raw, normalised):
    assert normalize_text(raw) == normalised


def test_error_rates_have_known_answers():
    assert word_error_rate(["the cat sat"], ["The cat sat."]) == 0.0
    assert word_error_rate(["the cat sat down"], ["the hat sat down"]) == 0.25
    assert word_error_rate(["a b", "c d e"], ["a", "c d e f"]) == pytest.approx(2 / 5)  # corpus-level
    assert char_error_rate(["abcd"], ["abed"]) == 0.25
    assert word_error_rate(["in eighteen thirty six"], ["in 1836"]) == 0.0
    assert math.isnan(word_error_rate(["..."], ["x"]))  # nothing to score
    scores = asr_scores(["the cat sat"], ["the cat sad"], ["the cat sad"])
    assert scores["dwer"] == 0.0 and scores["wer"] == pytest.approx(1 / 3) and scores["dcer"] == 0.0


def test_whisper_transcribes_speech_and_not_noise():
    assert (whisper_model_path() / "model.bin").is_file()
    text = "The quick brown fox jumps over the lazy dog."
    speech = espeak_speech(text, seconds=3.2)
    noise = np.random.default_rng(0).normal(0, 0.1, len(speech)).astype(np.float32)
    asr = WhisperASR()
    hyp_speech, hyp_noise = asr.transcribe([speech, noise], 16000)
    assert word_error_rate([text], [hyp_speech]) <= 0.35, hyp_speech
    assert word_error_rate([text], [hyp_noise]) >= 0.8, hyp_noise
    # dWER: the reconstruction compared with Whisper's transcript of the original.
    assert asr_scores([text], [hyp_speech], [hyp_speech])["dwer"] == 0.0
    assert asr_scores([text], [hyp_speech], [hyp_noise])["dwer"] >= 0.8
    assert asr.transcribe_one(speech[None], 16000) == hyp_speech  # [1, T] works; greedy is deterministic
