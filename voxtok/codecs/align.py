"""CTC forced alignment: where each character (and so each word) of a transcript sits in time.

`ctc_forced_align` runs Viterbi over the CTC lattice of a transcript (blanks interleaved, a
repeated label needs a blank between its two copies) on per-frame log-probabilities, in
O(T * N) time and memory. `word_spans` groups the character spans into space-separated words;
`proportional_word_spans` is the fallback when no CTC model is available (frames shared by
character count). `align_words` runs a CTC model (anything with `ctc_log_probs` and `vocab`,
e.g. the S3 tokenizer) and returns word spans; `rescale_word_spans` moves spans between
frame rates. Spans are half-open frame ranges [start, end).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np
import torch

from voxtok.errors import BadTextError, VoxTokError

# Back-pointer codes of the Viterbi trellis: where state s at frame t came from.
_STAY, _FROM_PREV, _FROM_SKIP = 0, 1, 2


class AlignmentError(VoxTokError):
    """A transcript that cannot be aligned to the given frames (too long, unknown symbols)."""


@dataclass(frozen=True)
class WordSpan:
    """One space-separated word of a transcript and its frames [start, end)."""

    word: str
    start: int
    end: int


class Vocab(Protocol):
    """What the aligner needs from a character vocabulary (blank id 0 is reserved)."""

    def encode(self, text: str) -> list[int]: ...


def _as_numpy_2d(log_probs) -> np.ndarray:
    arr = log_probs.detach().cpu().double().numpy() if isinstance(log_probs, torch.Tensor) \
        else np.asarray(log_probs, dtype=np.float64)
    if arr.ndim != 2:
        raise AlignmentError(f"log_probs must be [T, V], got shape {tuple(arr.shape)}")
    if np.isnan(arr).any():
        raise AlignmentError("log_probs contain NaN")
    return arr


def min_frames(targets: Sequence[int]) -> int:
    """Fewest frames a CTC path for `targets` needs: one per label plus a blank between repeats."""
    repeats = sum(1 for a, b in zip(targets[:-1], targets[1:]) if a == b)
    return len(targets) + repeats


def ctc_forced_align(log_probs, targets: Sequence[int], blank: int = 0) -> list[tuple[int, int, int]]:
    """Most likely CTC path of `targets` through `log_probs`.

    log_probs: [T, V] per-frame log-probabilities (torch or numpy); targets: [N] label ids
    (no blanks). Returns, for every target position i in order, (i, start_frame, end_frame)
    with end exclusive: the frames where label targets[i] is emitted (at least one each).
    Frames not in any span are blanks. Raises AlignmentError when the transcript needs more
    frames than there are, or holds a label outside the vocabulary or the blank itself.
    """
    lp = _as_numpy_2d(log_probs)
    num_frames, vocab_size = lp.shape
    tgt = np.asarray(list(targets), dtype=np.int64)
    if tgt.ndim != 1 or tgt.size == 0:
        raise AlignmentError("nothing to align: the transcript encodes to no labels")
    if not 0 <= blank < vocab_size:
        raise AlignmentError(f"blank id {blank} is outside the vocabulary of {vocab_size}")
    outside = tgt[(tgt < 0) | (tgt >= vocab_size)]
    if outside.size:
        raise AlignmentError(f"target label {int(outside[0])} is outside the vocabulary of {vocab_size}")
    if (tgt == blank).any():
        raise AlignmentError(f"targets contain the blank id {blank}")
    needed = min_frames(tgt.tolist())
    if needed > num_frames:
        raise AlignmentError(f"transcript of {len(tgt)} labels needs at least {needed} frames "
                             f"but the audio has only {num_frames}")

    # Extended label sequence: blank, y1, blank, y2, ..., yN, blank (S = 2N + 1 states).
    num_states = 2 * len(tgt) + 1
    ext = np.full(num_states, blank, dtype=np.int64)
    ext[1::2] = tgt
    # A skip s-2 -> s is allowed into a label that differs from the label two states back;
    # this is the repeated-label rule ("ll" must pass through a blank).
    can_skip = np.zeros(num_states, dtype=bool)
    can_skip[3::2] = tgt[1:] != tgt[:-1]

    neg_inf = -np.inf
    score = np.full(num_states, neg_inf)
    score[0] = lp[0, ext[0]]
    score[1] = lp[0, ext[1]]
    back = np.zeros((num_frames, num_states), dtype=np.int8)
    for t in range(1, num_frames):
        prev = np.concatenate(([neg_inf], score[:-1]))
        skip = np.where(can_skip, np.concatenate(([neg_inf, neg_inf], score[:-2])), neg_inf)
        best = np.stack([score, prev, skip])
        choice = best.argmax(axis=0)
        back[t] = choice
        score = best[choice, np.arange(num_states)] + lp[t, ext]

    # The path ends in the final label or the final blank.
    state = num_states - 1 if score[-1] >= score[-2] else num_states - 2
    if not np.isfinite(score[state]):
        raise AlignmentError("no finite-probability alignment (some label has log-probability -inf everywhere)")
    path = np.empty(num_frames, dtype=np.int64)
    for t in range(num_frames - 1, -1, -1):
        path[t] = state
        state -= int(back[t, state])

    spans: list[tuple[int, int, int]] = []
    label_of_frame = np.where(path % 2 == 1, path // 2, -1)
    starts = np.flatnonzero(np.diff(np.concatenate(([-1], label_of_frame))) != 0)
    for start in starts:
        index = int(label_of_frame[start])
        if index < 0:
            continue
        end = start
        while end < num_frames and label_of_frame[end] == index:
            end += 1
        spans.append((index, int(start), int(end)))
    return spans


def split_words(text: str) -> list[str]:
    """Space-separated words of `text` (any run of whitespace separates)."""
    words = text.split()
    if not words:
        raise BadTextError("transcript is empty")
    return words


def _locate(needle: list[int], haystack: list[int], start: int) -> int:
    for pos in range(start, len(haystack) - len(needle) + 1):
        if haystack[pos:pos + len(needle)] == needle:
            return pos
    return -1


def word_spans(text: str, char_spans: Sequence[tuple[int, int, int]], vocab: Vocab) -> list[WordSpan]:
    """Group character spans from `ctc_forced_align(..., vocab.encode(text))` into words.

    A word spans from its first character's start to its last character's end; the separators
    the vocabulary puts between words (a space label, if any) belong to no word. A word the
    vocabulary encodes to nothing (e.g. a lone punctuation mark) gets an empty span at the end
    of the previous word. Returns one WordSpan per space-separated word, in order.
    """
    words = split_words(text)
    full = list(vocab.encode(text))
    if len(char_spans) != len(full):
        raise AlignmentError(f"{len(char_spans)} character spans for a transcript of {len(full)} labels")
    starts = {index: (s, e) for index, s, e in char_spans}
    out: list[WordSpan] = []
    pos, last_end = 0, 0
    for word in words:
        try:
            ids = list(vocab.encode(word))
        except BadTextError:
            # The whole transcript encoded, so this word only normalises to nothing (e.g. "--").
            ids = []
        if not ids:
            out.append(WordSpan(word, last_end, last_end))
            continue
        found = _locate(ids, full, pos)
        if found < 0:
            raise AlignmentError(f"word '{word}' does not encode to the same labels inside the transcript")
        first, last = starts[found], starts[found + len(ids) - 1]
        out.append(WordSpan(word, first[0], last[1]))
        pos, last_end = found + len(ids), last[1]
    return out


def proportional_word_spans(text: str, num_frames: int) -> list[WordSpan]:
    """Fallback alignment: `num_frames` shared among the words in proportion to their length.

    The spans tile [0, num_frames) with no gaps. Every word gets at least one frame when
    there are at least as many frames as words; otherwise the shortest share is empty.
    """
    words = split_words(text)
    if num_frames < 0:
        raise AlignmentError(f"negative frame count {num_frames}")
    weights = np.array([len(w) for w in words], dtype=np.float64)
    bounds = np.rint(np.cumsum(weights) / weights.sum() * num_frames).astype(np.int64)
    bounds = np.concatenate(([0], bounds))
    if num_frames >= len(words):
        # Keep every share non-empty while staying inside [0, num_frames].
        for k in range(1, len(words) + 1):
            bounds[k] = min(max(bounds[k], bounds[k - 1] + 1), num_frames - (len(words) - k))
    bounds[-1] = num_frames
    return [WordSpan(w, int(bounds[k]), int(bounds[k + 1])) for k, w in enumerate(words)]


def rescale_word_spans(spans: Sequence[WordSpan], src_frames: int, dst_frames: int) -> list[WordSpan]:
    """Spans measured on `src_frames` frames moved to a grid of `dst_frames` frames over the same audio."""
    if src_frames <= 0 or dst_frames < 0:
        raise AlignmentError(f"cannot rescale spans from {src_frames} to {dst_frames} frames")
    scale = dst_frames / src_frames
    out = []
    for span in spans:
        start = min(int(round(span.start * scale)), dst_frames)
        end = min(max(int(round(span.end * scale)), start), dst_frames)
        out.append(WordSpan(span.word, start, end))
    return out


class CTCModel(Protocol):
    """A CTC acoustic model the aligner can run (the S3 tokenizer is one)."""

    vocab: Vocab

    def ctc_log_probs(self, wav: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...


@torch.no_grad()
def align_words(model: CTCModel, wav: torch.Tensor, text: str, blank: int = 0) -> tuple[list[WordSpan], int]:
    """Word spans of `text` in one utterance `wav` [1, T] (at the model's rate), on the model's frames.

    Returns (spans, number of model frames) so the caller can `rescale_word_spans` to its own rate.
    """
    if wav.dim() != 2 or wav.shape[0] != 1:
        raise AlignmentError(f"align_words takes one utterance [1, T], got shape {tuple(wav.shape)}")
    lengths = torch.tensor([wav.shape[-1]])
    log_probs, frame_lengths = model.ctc_log_probs(wav.unsqueeze(0), lengths)
    frames = int(frame_lengths[0])
    targets = list(model.vocab.encode(text))
    spans = ctc_forced_align(log_probs[0, :frames], targets, blank=blank)
    return word_spans(text, spans, model.vocab), frames
