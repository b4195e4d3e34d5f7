"""CTC forced alignment: exact answers on hand-built lattices, and word boundaries recovered on
real (espeak-ng) speech assembled from known words by a small model trained inside the test."""

import itertools
import random

import numpy as np
import pytest
import torch

from voxtok.audio import MelConfig, MelSpectrogram
from voxtok.codecs.align import (AlignmentError, WordSpan, ctc_forced_align, min_frames, proportional_word_spans,
                                 rescale_word_spans, word_spans)
from voxtok.errors import BadTextError

SR = 16000
HOP = 320  # 50 frames per second
BLANK, SPACE = 0, 1
LETTERS = "abcdefghijklmnopqrstuvwxyz"


class LetterVocab:
    """blank 0, space 1, a-z 2..27; like a CTC character vocabulary (case and other symbols dropped)."""

    size = 2 + len(LETTERS)

    def encode(self, text: str) -> list[int]:
        words = ["".join(c for c in w.lower() if c in LETTERS) for w in text.split()]
        ids: list[int] = []
        for word in (w for w in words if w):
            if ids:
                ids.append(SPACE)
            ids.extend(2 + LETTERS.index(c) for c in word)
        return ids


def lattice(rows: list[dict[int, float]], vocab_size: int) -> torch.Tensor:
    """Log-probs [T, V] from per-frame probabilities given for a few labels (rest share what is left)."""
    out = torch.empty(len(rows), vocab_size)
    for t, row in enumerate(rows):
        rest = (1.0 - sum(row.values())) / (vocab_size - len(row))
        out[t] = torch.tensor([row.get(v, rest) for v in range(vocab_size)]).log()
    return out


def path_score(log_probs: np.ndarray, targets: list[int], spans) -> float:
    labels = np.full(len(log_probs), BLANK)
    for index, start, end in spans:
        labels[start:end] = targets[index]
    return float(log_probs[np.arange(len(labels)), labels].sum())


def ctc_collapse(labels) -> list[int]:
    return [k for k, _ in itertools.groupby(labels) if k != BLANK]


# ----------------------------------------------------------------------------- hand-built lattices


def test_hand_built_lattice_exact_spans():
    a, b = 2, 3
    lp = lattice([{BLANK: 0.9}, {a: 0.8}, {a: 0.6}, {BLANK: 0.7}, {b: 0.9}, {BLANK: 0.9}], 4)
    assert ctc_forced_align(lp, [a, b]) == [(0, 1, 3), (1, 4, 5)]
    # The same lattice forced to a label sequence it does not favour still gets a valid path.
    spans = ctc_forced_align(lp, [b, a, b])
    assert [s[0] for s in spans] == [0, 1, 2]
    assert all(e > s for _, s, e in spans) and all(spans[i][2] <= spans[i + 1][1] for i in range(2))


def test_repeated_letter_needs_a_blank_between():
    l = 2
    # Every frame prefers "l": a path for "ll" must still put a blank between the two copies.
    lp = lattice([{l: 0.9, BLANK: 0.05}] * 3, 4)
    assert ctc_forced_align(lp, [l, l]) == [(0, 0, 1), (1, 2, 3)]
    with pytest.raises(AlignmentError, match="needs at least 3 frames"):
        ctc_forced_align(lp[:2], [l, l])
    assert min_frames([l, l, 5, 5, 5]) == 8
    # Distinct neighbours need no blank: two frames are enough for "la".
    assert ctc_forced_align(lp[:2], [l, 3]) == [(0, 0, 1), (1, 1, 2)]


def test_viterbi_matches_brute_force_on_random_lattices():
    rng = np.random.default_rng(0)
    vocab_size, frames = 4, 6
    for targets in ([1, 2], [2, 2], [1, 2, 1], [3, 3, 3], [1, 1, 2]):
        for _ in range(3):
            lp = np.log(rng.dirichlet(np.ones(vocab_size), size=frames))
            best = max(float(lp[np.arange(frames), list(seq)].sum())
                       for seq in itertools.product(range(vocab_size), repeat=frames)
                       if ctc_collapse(seq) == targets)
            spans = ctc_forced_align(lp, targets, blank=BLANK)
            assert [s[0] for s in spans] == list(range(len(targets)))
            assert path_score(lp, targets, spans) == pytest.approx(best, abs=1e-9)


def test_bad_inputs_are_clear_errors():
    lp = torch.randn(10, 5).log_softmax(-1)
    with pytest.raises(AlignmentError, match="needs at least 11 frames but the audio has only 10"):
        ctc_forced_align(lp, [1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3])
    with pytest.raises(AlignmentError, match="blank"):
        ctc_forced_align(lp, [1, 0, 2])
    with pytest.raises(AlignmentError, match="outside the vocabulary"):
        ctc_forced_align(lp, [1, 7])
    with pytest.raises(AlignmentError, match=r"\[T, V\]"):
        ctc_forced_align(lp[None], [1])
    with pytest.raises(AlignmentError, match="no labels"):
        ctc_forced_align(lp, [])
    with pytest.raises(BadTextError):
        proportional_word_spans("   ", 10)


def test_word_spans_from_character_spans():
    vocab = LetterVocab()
    text = "Hi, all  -- yo"
    targets = vocab.encode(text)  # h i _ a l l _ y o
    assert len(targets) == 9
    char_spans = [(0, 1, 2), (1, 2, 4), (2, 5, 6), (3, 7, 8), (4, 8, 9), (5, 10, 12), (6, 13, 14),
                  (7, 15, 16), (8, 16, 18)]
    assert word_spans(text, char_spans, vocab) == [
        WordSpan("Hi,", 1, 4), WordSpan("all", 7, 12), WordSpan("--", 12, 12), WordSpan("yo", 15, 18)]
    with pytest.raises(AlignmentError, match="character spans"):
        word_spans(text, char_spans[:-1], vocab)


def test_word_spans_with_the_s3_character_vocabulary():
    s3 = pytest.importorskip("voxtok.codecs.s3", reason="voxtok/codecs/s3.py (S3 tokenizer) is not in this tree")
    vocab = s3.CharVocab(" 'abcdefghijklmnopqrstuvwxyz")
    text = "Well-known -- facts, isn't it?"
    targets = vocab.encode(text)  # "well known facts isn't it": the hyphen became a word break
    assert vocab.decode(targets) == "well known facts isn't it"
    # One frame per label, and a blank frame after each: label i sits at frame 2i.
    lp = torch.full((2 * len(targets), len(vocab)), -20.0)
    for i, label in enumerate(targets):
        lp[2 * i, label], lp[2 * i + 1, 0] = 0.0, 0.0
    spans = word_spans(text, ctc_forced_align(lp, targets), vocab)
    assert spans == [WordSpan("Well-known", 0, 19), WordSpan("--", 19, 19), WordSpan("facts,", 22, 31),
                     WordSpan("isn't", 34, 43), WordSpan("it?", 46, 49)]


def test_proportional_spans_tile_all_frames():
    spans = proportional_word_spans("a bb cccc dddddddd", 30)
    assert spans[0].start == 0 and spans[-1].end == 30
    assert all(x.end == y.start for x, y in zip(spans, spans[1:]))
    assert [s.end - s.start for s in spans] == [2, 4, 8, 16]
    tight = proportional_word_spans("a bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb c", 3)
    assert [(s.start, s.end) for s in tight] == [(0, 1), (1, 2), (2, 3)]
    few = proportional_word_spans("one two three", 2)
    assert few[0].start == 0 and few[-1].end == 2 and all(s.end >= s.start for s in few)


def test_rescale_between_frame_rates():
    spans = [WordSpan("a", 0, 10), WordSpan("b", 15, 25)]
    assert rescale_word_spans(spans, 25, 50) == [WordSpan("a", 0, 20), WordSpan("b", 30, 50)]
    assert rescale_word_spans(spans, 25, 75)[1] == WordSpan("b", 45, 75)


# ----------------------------------------------------------------------------- real speech

WORDS = ["yes", "seven", "hello", "blue", "four", "moon"]


@pytest.fixture(scope="module")
def word_audio() -> dict[str, np.ndarray]:
    """Each word spoken by espeak-ng at 16 kHz, cut exactly to its audible part (no margin)."""
    from voxtok.audio import resample
    from voxtok.data.synth import Voice, run_espeak, trim_silence

    out = {}
    for word in WORDS:
        wav, sr = run_espeak(Voice("espeak", "en-us", "M"), word)
        x = resample(wav, sr, SR).numpy().reshape(-1)
        out[word] = trim_silence(x, SR, threshold_db=-35.0, margin_s=0.0).astype(np.float32)
    return out


def assemble(words: list[str], audio: dict[str, np.ndarray], rng: random.Random, glue: int | None = None):
    """Words separated by silences of 0.12-0.35 s (none after word `glue`): wav [T] and sample bounds."""
    pieces, bounds, pos = [], [], 0
    lead = int(rng.uniform(0.1, 0.3) * SR)
    pieces.append(np.zeros(lead, np.float32))
    pos += lead
    for k, word in enumerate(words):
        x = audio[word]
        pieces.append(x)
        bounds.append((pos, pos + len(x)))
        pos += len(x)
        gap = 0 if k == glue else int(rng.uniform(0.12, 0.35) * SR)
        pieces.append(np.zeros(gap if k < len(words) - 1 else int(0.2 * SR), np.float32))
        pos += len(pieces[-1])
    wav = np.concatenate(pieces)
    wav = wav + np.random.default_rng(rng.randrange(1 << 30)).normal(0, 1e-3, len(wav)).astype(np.float32)
    return wav, bounds


def frame_bounds(bounds):
    """Truth in frames: frame t (centred on sample t * HOP) belongs to the word containing that sample."""
    return [(-(-a // HOP), -(-b // HOP)) for a, b in bounds]


def frame_targets(words, fbounds, num_frames, vocab):
    """Soft per-frame targets [T, V]: silence mostly blank (some word-separator), letters spread over each word."""
    targets = torch.zeros(num_frames, vocab.size)
    targets[:, BLANK], targets[:, SPACE] = 0.8, 0.2
    for word, (s, e) in zip(words, fbounds):
        ids = vocab.encode(word)
        for t in range(s, e):
            targets[t] = 0.0
            targets[t, ids[(t - s) * len(ids) // (e - s)]] = 1.0
    return targets


def test_aligner_finds_known_word_boundaries_in_speech(word_audio):
    vocab = LetterVocab()
    mel = MelSpectrogram(MelConfig(sample_rate=SR, n_fft=640, hop_length=HOP, n_mels=40, f_max=8000.0))
    rng = random.Random(3)
    orders = list(itertools.permutations(WORDS))
    rng.shuffle(orders)
    train_orders, test_orders = orders[:6], orders[6:9]

    def features(wav):
        return mel(torch.from_numpy(wav)[None])[0]  # [40, T]

    xs, ys = [], []
    for order in train_orders:
        wav, bounds = assemble(list(order), word_audio, rng)
        x = features(wav)
        xs.append(x)
        ys.append(frame_targets(order, frame_bounds(bounds), x.shape[1], vocab))
    x_all, y_all = torch.cat(xs, 1), torch.cat(ys, 0)
    mean, std = x_all.mean(1, keepdim=True), x_all.std(1, keepdim=True)

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv1d(40, 64, 5, padding=2), torch.nn.ReLU(),
        torch.nn.Conv1d(64, 64, 5, padding=2), torch.nn.ReLU(),
        torch.nn.Conv1d(64, vocab.size, 1))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    inputs = ((x_all - mean) / std)[None]
    for _ in range(150):
        log_probs = model(inputs)[0].T.log_softmax(-1)
        loss = -(y_all * log_probs).sum(-1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    errors = []
    for k, order in enumerate(test_orders):
        # Two words of every test sequence touch (no silence between): that boundary must come from
        # what the model hears, not from a pause.
        wav, bounds = assemble(list(order), word_audio, rng, glue=k + 1)
        with torch.no_grad():
            lp = model(((features(wav) - mean) / std)[None])[0].T.log_softmax(-1)
        text = " ".join(order)
        spans = word_spans(text, ctc_forced_align(lp, vocab.encode(text)), vocab)
        assert [s.word for s in spans] == list(order)
        for span, (start, end) in zip(spans, frame_bounds(bounds)):
            errors += [abs(span.start - start), abs(span.end - end)]
    # 2 frames = 40 ms at 50 Hz, about the width of one analysis window.
    assert max(errors) <= 2, errors
    assert np.mean(errors) <= 0.5, errors
