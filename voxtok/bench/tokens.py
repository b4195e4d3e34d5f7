"""Token sets of one system over one data dir, and their statistics (rates, usage, entropy).

A `TokenSet` holds the codes [Q, T'] of every utterance plus what is needed to turn counts into
rates: the frame rate, the codebook size and each utterance's duration. It is what the probes and
the acoustic LM train on, and it is cached as one `.npz` file per system and split.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from voxtok.atomic import atomic_write
from voxtok.errors import BadConfigError


@dataclass
class TokenSet:
    """codes: utt -> int array [Q, T']; seconds: utt -> duration of the audio that was encoded."""

    frame_rate: float
    codebook_size: int
    n_q: int
    codes: dict[str, np.ndarray] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, utt: str, codes, seconds: float) -> None:
        """Store one utterance's codes [Q, T'] (torch or numpy)."""
        arr = np.asarray(codes.cpu() if hasattr(codes, "cpu") else codes).astype(np.int64)
        if arr.ndim != 2 or arr.shape[0] != self.n_q:
            raise BadConfigError(f"codes of {utt} have shape {arr.shape}, expected [{self.n_q}, T]")
        if arr.size and (arr.min() < 0 or arr.max() >= self.codebook_size):
            raise BadConfigError(f"codes of {utt} fall outside 0..{self.codebook_size - 1}")
        self.codes[utt] = arr
        self.seconds[utt] = float(seconds)

    @property
    def utts(self) -> list[str]:
        """Utterance ids, sorted."""
        return sorted(self.codes)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the set to one `.npz` file atomically (a temp file, then rename)."""
        path = Path(path)
        dtype = np.int16 if self.codebook_size <= 32768 else np.int32
        meta = {"frame_rate": self.frame_rate, "codebook_size": self.codebook_size, "n_q": self.n_q,
                "seconds": self.seconds, "utts": self.utts}
        arrays = {f"c{i}": self.codes[u].astype(dtype) for i, u in enumerate(self.utts)}
        with atomic_write(path, "wb") as handle:
            np.savez(handle, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "TokenSet":
        """Read a set written by `save`."""
        with np.load(path) as data:
            meta = json.loads(bytes(data["meta"]).decode())
            codes = {u: data[f"c{i}"].astype(np.int64) for i, u in enumerate(meta["utts"])}
        return cls(meta["frame_rate"], meta["codebook_size"], meta["n_q"], codes, meta["seconds"])


def codebook_usage(all_codes: Iterable, q: int, codebook_size: int) -> tuple[float, float]:
    """(share of codebook q used at least once, unigram entropy of its codes in bits) over a list
    of codes [Q, T'] (numpy or torch)."""
    counts: Counter = Counter()
    for codes in all_codes:
        counts.update(np.asarray(codes[q]).reshape(-1).tolist())
    probs = np.array(list(counts.values()), dtype=np.float64) / max(sum(counts.values()), 1)
    entropy = float(-(probs * np.log2(probs)).sum()) if probs.size else 0.0
    return len(counts) / codebook_size, entropy


def code_statistics(all_codes: Iterable, codebook_size: int) -> dict[str, float]:
    """{"usage", "perplexity"} of codebook 0 over a list of codes [Q, T'] (numpy or torch): the
    share of the codebook used at least once and 2 ** (unigram entropy in bits)."""
    usage, entropy_bits = codebook_usage(all_codes, 0, codebook_size)
    return {"usage": usage, "perplexity": 2.0 ** entropy_bits}


def token_statistics(tokens: TokenSet) -> dict[str, float]:
    """Rates and codebook use of a token set.

    Returns tokens_per_s (codes of all codebooks per second of audio), frames_per_s,
    token_bits_per_s (log2(codebook size) bits per code: fixed-length coding of what was produced),
    entropy_bits_per_s (the same with each codebook's unigram entropy: what an ideal
    frame-independent entropy coder would need), and for each codebook q: usage_q{q} (share of the
    codebook used at least once), entropy_q{q} (unigram entropy in bits) and perplexity_q{q}
    (2 ** entropy); plus usage and entropy means over codebooks.
    """
    seconds = sum(tokens.seconds.values())
    if not tokens.codes or seconds <= 0:
        raise BadConfigError("token statistics need at least one non-empty utterance")
    frames = sum(c.shape[1] for c in tokens.codes.values())
    stats: dict[str, float] = {"n_q": tokens.n_q, "codebook_size": tokens.codebook_size,
                               "frames_per_s": frames / seconds,
                               "tokens_per_s": frames * tokens.n_q / seconds,
                               "token_bits_per_s": frames * tokens.n_q * math.log2(tokens.codebook_size) / seconds}
    entropies, usages = [], []
    for q in range(tokens.n_q):
        usage, entropy = codebook_usage(tokens.codes.values(), q, tokens.codebook_size)
        stats[f"usage_q{q}"], stats[f"entropy_q{q}"], stats[f"perplexity_q{q}"] = usage, entropy, 2.0 ** entropy
        entropies.append(entropy)
        usages.append(usage)
    stats["usage"] = float(np.mean(usages))
    stats["entropy"] = float(np.mean(entropies))
    stats["entropy_bits_per_s"] = frames * sum(entropies) / seconds
    return stats
