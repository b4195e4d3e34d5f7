"""Batched encoding of many utterances: inputs from files, folders, wav.scp or data dirs; outputs
as `.vtk` files or a sharded token store.

Utterances are sorted by length and batched with padding (`max_batch_seconds` of padded audio per
batch); codes past each utterance's end are cut with `Codec.code_lengths`. A bad file is reported
with a one-line reason and skipped: the others are still encoded. Silent audio is valid input (a
corpus has silent segments); only unreadable, empty, non-finite or too short audio is refused.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import torch

from voxtok.audio import AUDIO_SUFFIXES, audio_duration, load_audio
from voxtok.data.dataset import pad_batch
from voxtok.data.kaldi import read_kv
from voxtok.errors import VoxTokError


@dataclass
class EncodeReport:
    """What a batch encode did: utterances written and failures (utt -> one-line reason)."""

    written: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    def merge(self, other: "EncodeReport") -> None:
        self.written += other.written
        self.failed.update(other.failed)

    def summary(self) -> str:
        return f"encoded {len(self.written)} utterance(s), {len(self.failed)} failed"


def collect_inputs(inputs: Iterable[str | os.PathLike]) -> list[tuple[str, str]]:
    """(utt_id, path) pairs from audio files, folders (searched recursively) and wav.scp files.

    The id of a file is its stem; a wav.scp gives its own ids. Duplicate ids are an error.
    """
    pairs: list[tuple[str, str]] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            if (path / "wav.scp").is_file():
                pairs += list(read_kv(path / "wav.scp").items())
            else:
                pairs += [(p.stem, str(p)) for p in sorted(path.rglob("*")) if p.suffix.lower() in AUDIO_SUFFIXES]
        elif path.name.endswith(".scp"):
            pairs += list(read_kv(path).items())
        elif path.exists():
            pairs.append((path.stem, str(path)))
        else:
            raise VoxTokError("input does not exist", path)
    seen: dict[str, str] = {}
    for utt, p in pairs:
        if utt in seen:
            raise VoxTokError(f"two inputs share the id '{utt}' ({seen[utt]} and {p})")
        seen[utt] = p
    if not pairs:
        raise VoxTokError(f"no audio found in {', '.join(map(str, inputs))}")
    return pairs


def encode_stream(codec, items: list[tuple[str, str]], n_q: int | None = None,
                  max_batch_seconds: float = 60.0) -> Iterator[tuple[str, torch.Tensor | None, int, str | None]]:
    """Yield (utt, codes [Q, T'] or None, num_samples, error or None) for each input.

    Inputs are decoded and resampled to the codec's rate, sorted by duration and batched so one
    batch holds at most `max_batch_seconds` of padded audio. Silent inputs are encoded.
    """
    durations = []
    for utt, path in items:
        try:
            durations.append((audio_duration(path), utt, path))
        except VoxTokError as err:
            yield utt, None, 0, str(err)
    durations.sort()
    budget = int(max_batch_seconds * codec.sample_rate)
    batch: list[tuple[str, torch.Tensor]] = []

    def flush():
        if not batch:
            return
        wav, lengths = pad_batch([w for _, w in batch])
        with torch.inference_mode():
            codes = codec.encode(wav, lengths, n_q=n_q)
        valid = codec.code_lengths(lengths)
        for i, (utt, _) in enumerate(batch):
            yield utt, codes[i, :, : int(valid[i])].clone(), int(lengths[i]), None
        batch.clear()

    for _, utt, path in durations:
        try:
            wav, _ = load_audio(path, codec.sample_rate, allow_silence=True)
        except VoxTokError as err:
            yield utt, None, 0, str(err)
            continue
        longest = max([wav.shape[-1]] + [w.shape[-1] for _, w in batch])
        if batch and longest * (len(batch) + 1) > budget:
            yield from flush()
        batch.append((utt, wav))
    yield from flush()


def prepare_output_dir(out_dir: str | os.PathLike) -> Path:
    """Create `out_dir` (and its parents) for token files, or raise a one-line VoxTokError saying why
    it cannot be (a file in the way, no permission)."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise VoxTokError("is a file, not a folder for the token files", out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise VoxTokError(f"cannot create the output folder ({err.strerror or type(err).__name__})", out_dir) from None
    if not os.access(out_dir, os.W_OK):
        raise VoxTokError("cannot write into the output folder (permission denied)", out_dir)
    return out_dir


def encode_to_files(codec, items: list[tuple[str, str]], out_dir: str | os.PathLike, n_q: int | None = None,
                    max_batch_seconds: float = 60.0) -> EncodeReport:
    """Encode `items` into out_dir/<utt>.vtk token files (the folder is created); a file that cannot
    be written is a failure with its reason, and the others are still written."""
    report = EncodeReport()
    out_dir = prepare_output_dir(out_dir)
    for utt, codes, num_samples, error in encode_stream(codec, items, n_q, max_batch_seconds):
        if error:
            report.failed[utt] = error
            continue
        target = out_dir / f"{utt}.vtk"
        try:
            codec.save_tokens(target, codes, num_samples)
        except OSError as err:
            report.failed[utt] = f"{target}: cannot write the token file ({err.strerror or type(err).__name__})"
            continue
        report.written.append(utt)
    return report


def _encode_job(model_dir: str, items: list[tuple[str, str]], out_dir: str, n_q: int | None,
                max_batch_seconds: float, threads: int) -> EncodeReport:
    from voxtok.registry import load

    torch.set_num_threads(threads)
    return encode_to_files(load(model_dir, kind="codec"), items, out_dir, n_q, max_batch_seconds)


def encode_files_parallel(model_dir: str | os.PathLike, items: list[tuple[str, str]], out_dir: str | os.PathLike,
                          n_q: int | None = None, nj: int = 1, max_batch_seconds: float = 60.0) -> EncodeReport:
    """`encode_to_files` split over `nj` processes (each loads the model, one torch thread each).

    The output folder is created first: a folder that cannot be is one VoxTokError, not a failure
    per utterance."""
    prepare_output_dir(out_dir)
    if nj <= 1:
        from voxtok.registry import load

        return encode_to_files(load(model_dir, kind="codec"), items, out_dir, n_q, max_batch_seconds)
    chunks = [items[i::nj] for i in range(nj)]
    report = EncodeReport()
    with ProcessPoolExecutor(nj) as pool:
        futures = [pool.submit(_encode_job, str(model_dir), c, str(out_dir), n_q, max_batch_seconds, 1)
                   for c in chunks if c]
        for f in futures:
            report.merge(f.result())
    return report
