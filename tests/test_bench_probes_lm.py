"""DASB-style probes and the token LM: modules, a few training steps on tokens with a known answer."""

import random

import numpy as np
import pytest
import torch

from voxtok.bench.lm import (LMConfig, TokenLM, evaluate_lm, pseudo_word, sequence_nll, swuggy_accuracy,
                             swuggy_pairs, train_lm)
from voxtok.bench.probes import (ALPHABET, AttentionMLP, CodebookEmbedding, ProbeConfig, encode_chars, greedy_ctc,
                                 pad_codes, split_by_speaker, train_asr_probe, train_speaker_probe)
from voxtok.errors import BadConfigError

TINY = ProbeConfig(dim=32, attention_hidden=16, lstm_hidden=48, lstm_layers=1, conv_channels=32, dropout=0.0,
                   batch_size=8, asr_lr=1e-2, speaker_lr=3e-3)


def test_one_embedding_table_with_per_codebook_offsets():
    emb = CodebookEmbedding(n_q=2, codebook_size=5, dim=3)
    codes = torch.tensor([[[4], [4]]])  # code 4 of codebook 0 and of codebook 1
    out = emb(codes)
    assert out.shape == (1, 2, 1, 3)
    assert torch.equal(out[0, 0, 0], emb.table.weight[4]) and torch.equal(out[0, 1, 0], emb.table.weight[5 + 4])
    with pytest.raises(BadConfigError):
        emb(torch.zeros(1, 3, 4, dtype=torch.long))


def test_attention_mlp_is_a_convex_combination_over_codebooks():
    att = AttentionMLP(dim=4, hidden=8)
    single = torch.randn(2, 1, 5, 4)
    assert torch.allclose(att(single), single[:, 0])  # one codebook: weight 1
    same = torch.randn(2, 1, 5, 4).expand(2, 3, 5, 4)
    assert torch.allclose(att(same), same[:, 0], atol=1e-6)  # equal inputs: any weights give the input


def test_ctc_helpers():
    assert encode_chars("Hi 2!") == [ALPHABET.index(c) + 1 for c in "hi two"]
    blank, h, i = 0, ALPHABET.index("h") + 1, ALPHABET.index("i") + 1
    log_probs = torch.full((1, 6, len(ALPHABET) + 1), -10.0)
    for t, label in enumerate([h, h, blank, i, i, blank]):
        log_probs[0, t, label] = 0.0
    assert greedy_ctc(log_probs, torch.tensor([6])) == ["hi"]
    codes, lengths = pad_codes([np.ones((2, 3), int), np.ones((2, 5), int)])
    assert codes.shape == (2, 2, 5) and lengths.tolist() == [3, 5] and int(codes[0, :, 3:].sum()) == 0


def _spoken(text: str, rng: random.Random, frames_per_char: int = 2) -> np.ndarray:
    """Codebook 0 spells the text (one code per character, held for a few frames); codebook 1 is noise."""
    ids = [ALPHABET.index(c) for c in text]
    q0 = np.repeat(ids, frames_per_char)
    q1 = np.array([rng.randrange(32) for _ in q0])
    return np.stack([q0, q1])


def test_asr_probe_learns_to_read_spelled_tokens():
    rng = random.Random(0)
    words = ["cab", "bad", "dab", "ace", "bead", "cede"]
    sentences = [" ".join(rng.choice(words) for _ in range(3)) for _ in range(60)]
    train = [(_spoken(s, rng), s) for s in sentences[:50]]
    test = [(_spoken(s, rng), s) for s in sentences[50:]]
    # 25 frames/s is below the CTC rate floor: frames are repeated, so decoding still works.
    result = train_asr_probe(train, test, n_q=2, codebook_size=32, frame_rate=25.0,
                             cfg=ProbeConfig(**{**TINY.to_dict(), "asr_steps": 150}))
    assert result["probe_cer"] < 0.1 and result["probe_wer"] < 0.2, result  # untrained: CER ~0.9, WER 1
    assert result["probe_ctc_loss"] < 0.5


def test_speaker_probe_tells_speakers_apart_by_their_codes():
    rng = np.random.default_rng(0)
    items = []
    for spk in range(3):
        for u in range(8):
            q0 = rng.integers(10 * spk, 10 * spk + 10, size=rng.integers(20, 40))
            items.append((f"s{spk}_u{u}", f"s{spk}", np.stack([q0, rng.integers(0, 30, size=len(q0))])))
    fit, held = split_by_speaker({u: s for u, s, _ in items}, test_share=0.25, seed=0)
    assert len(held) == 6 and not set(fit) & set(held)
    codes = {u: (c, s) for u, s, c in items}
    result = train_speaker_probe([codes[u] for u in fit], [codes[u] for u in held], 2, 30, 50.0,
                                 ProbeConfig(**{**TINY.to_dict(), "speaker_steps": 40, "speaker_crop_s": 0.3}))
    assert result["probe_spk_acc"] == 1.0 and result["probe_spk_chance"] == pytest.approx(1 / 3)
    with pytest.raises(BadConfigError):
        train_speaker_probe([codes[u] for u in fit], [(np.zeros((2, 5), int), "stranger")], 2, 30, 50.0, TINY)


def test_speaker_split_keeps_one_training_utterance_per_speaker():
    fit, held = split_by_speaker({"a1": "a", "a2": "a", "b1": "b"}, test_share=0.9, seed=1)
    assert sorted(fit + held) == ["a1", "a2"] and len(held) == 1  # b has one utterance: dropped


LM = LMConfig(dim=32, layers=1, heads=2, context=24, dropout=0.0, steps=120, batch_size=8, lr=3e-3)


def _pattern(length: int, start: int = 0) -> np.ndarray:
    t = np.arange(start, start + length)
    return np.stack([t % 7, (3 * t) % 16])


def test_lm_is_causal():
    model = TokenLM(2, 16, LM).eval()
    codes = torch.as_tensor(_pattern(10))[None]
    changed = codes.clone()
    changed[0, :, 6:] = (changed[0, :, 6:] + 5) % 16
    with torch.no_grad():
        a, b = model.nll(codes), model.nll(changed)
    assert torch.allclose(a[..., :6], b[..., :6]) and not torch.allclose(a[..., 6:], b[..., 6:])


def test_lm_learns_a_predictable_token_stream_and_prefers_it():
    train = [_pattern(40, start) for start in range(0, 70, 7)]
    model, train_nll = train_lm(train, n_q=2, codebook_size=16, cfg=LM)
    assert train_nll < 1.0  # chance is ln 16 = 2.77 nats
    regular = evaluate_lm(model, [_pattern(30, 3)], seconds=0.6, codebook_size=16)
    rng = np.random.default_rng(0)
    shuffled = rng.integers(0, 16, size=(2, 30))
    noisy = evaluate_lm(model, [shuffled], seconds=0.6, codebook_size=16)
    assert regular["lm_ppl"] < 3 < noisy["lm_ppl"]
    # bit accounting: 60 codes in 0.6 s; ratio against 4 bits per code
    assert regular["lm_bits_per_s"] == pytest.approx(regular["lm_bits_per_token"] * 60 / 0.6)
    assert regular["lm_bits_ratio"] == pytest.approx(regular["lm_bits_per_token"] / 4)
    # Longer than the context: scored in chunks, the total still adds up.
    long = _pattern(60)
    assert sequence_nll(model, long) == pytest.approx(sequence_nll(model, long[:, :24]) + sequence_nll(model, long[:, 24:48])
                                                      + sequence_nll(model, long[:, 48:]), rel=1e-5)
    codes = {"real": _pattern(20, 1), "fake": shuffled[:, :20]}
    assert swuggy_accuracy(model, [("real", "fake")], codes) == 1.0
    assert swuggy_accuracy(model, [("fake", "real")], codes) == 0.0


def test_pseudo_words_follow_the_vowel_rule_and_avoid_real_words():
    assert pseudo_word("cat", set()) == "cet"
    assert pseudo_word("cat", {"cet", "cit"}) == "cot"
    assert pseudo_word("tree", {"trie", "troe", "true", "trae"}) == "trei"  # first vowel exhausted: the next one
    assert pseudo_word("rhythm", set()) is None
    texts = ["Lucy said that the garden was green.", "The garden, Lucy said, was green and quiet.",
             "Green gardens, said Lucy.", "The green garden was quiet."] * 2
    pairs = swuggy_pairs(texts, num_words=10, lexicon={"gorden"})
    words = [w for w, _ in pairs]
    assert "lucy" not in words and "the" not in words and "was" not in words  # a name, short words
    assert words[:2] == ["green", "garden"]  # most frequent first
    for word, pseudo in pairs:
        assert len(pseudo) == len(word) and pseudo != word and pseudo != "gorden"
        assert [c in "aeiou" for c in pseudo] == [c in "aeiou" for c in word]
