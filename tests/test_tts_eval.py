"""Test-set synthesis pairing and the robustness checks of the TTS evaluation."""

from __future__ import annotations

import pytest

from voxtok.data.kaldi import DataDir
from voxtok.errors import BadDataDirError
from voxtok.recipes.eval_tts import repeated_words, skipped_words
from voxtok.recipes.synth_tts import prompt_pairs


def _data(spk_utts: dict[str, list[str]]) -> DataDir:
    utt2spk = {u: s for s, us in spk_utts.items() for u in us}
    return DataDir(wav_scp={u: f"{u}.wav" for u in utt2spk}, text={u: "a b" for u in utt2spk}, utt2spk=utt2spk)


def test_prompts_come_from_another_utterance_of_the_same_speaker():
    data = _data({"s1": ["s1_a", "s1_b", "s1_c"], "s2": ["s2_a", "s2_b"], "s3": ["s3_a"]})
    pairs = prompt_pairs(data)
    assert len(pairs) == 5  # s3 has one utterance: nobody to clone it from
    for utt, prompt in pairs:
        assert utt != prompt and data.utt2spk[utt] == data.utt2spk[prompt]
    assert [u for u, _ in prompt_pairs(data, max_utts=2)] == ["s1_a", "s2_a"]  # round robin over speakers
    with pytest.raises(BadDataDirError):
        prompt_pairs(_data({"s3": ["s3_a"]}))


def test_skipped_and_repeated_words():
    ref = "the cat sat on the mat".split()
    assert not skipped_words(ref, ref) and not repeated_words(ref, ref)
    assert skipped_words(ref, "the cat the mat".split())
    assert not skipped_words(ref, "the cat sat on mat".split())  # one word: an ASR slip, not a skip
    assert repeated_words(ref, "the cat sat sat on the mat".split())
    assert repeated_words(ref, "the cat sat on the cat sat on the mat".split())
    assert not repeated_words("very very good".split(), "very very good".split())
