"""Batched encoding of many utterances: inputs from files, folders, wav.scp or data dirs; outputs
as `.vtk` files or a sharded token store; and the matching batched decoding.

Utterances are sorted by length and batched with padding (`max_batch_seconds` of padded audio and
at most `max_batch_items` utterances per batch); codes past each utterance's end are cut with
`Codec.code_lengths`. A bad file is reported with a one-line reason and skipped: the others are
still encoded. Silent audio is valid input (a corpus has silent segments); only unreadable, empty,
non-finite or too short audio is refused.

A corpus (`encode_corpus`) is dealt to workers by seconds of audio (voxtok/workers.py: one per GPU,
or N CPU processes, one progress bar). Each worker writes its own files: `.vtk` files (each written
atomically) or its own shards of the store (named by its rank, indexed only when complete). A
killed run resumes: what the output already holds is skipped, and what the kill left half-written
(an unindexed shard, an atomic write's temp file) is removed first. A store gets `progress.json`:
how many utterances the run has, which failed, and whether it completed.

Under bfloat16 / float16 autocast (`dtype`) the encoder runs in reduced precision, so a frame whose
latent lies near two codewords may get the other one: codes can differ from float32 ones in a few
frames (the quantizer's distances themselves are computed in float32).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping, Sequence

import torch

from voxtok.audio import AUDIO_SUFFIXES, audio_duration, load_audio
from voxtok.data.dataset import pad_batch
from voxtok.data.kaldi import read_kv
from voxtok.errors import BadConfigError, VoxTokError

PROGRESS_FILE = "progress.json"


@dataclass
class EncodeReport:
    """What a batch encode did: utterances written, failures (utt -> one-line reason), and how many
    the output already held (skipped: a resumed run)."""

    written: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    skipped: int = 0

    def merge(self, other: "EncodeReport") -> None:
        self.written += other.written
        self.failed.update(other.failed)
        self.skipped += other.skipped

    def summary(self) -> str:
        return (f"encoded {len(self.written)} utterance(s), {len(self.failed)} failed, "
                f"{self.skipped} already done (skipped)")


def token_dtype(codebook_size: int) -> str:
    """Smallest integer dtype that holds codes below `codebook_size`."""
    return "int16" if codebook_size <= 32768 else "int32"


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


def probe_durations(items: Sequence[tuple[str, str]], known: Mapping[str, float] | None = None
                    ) -> tuple[list[tuple[str, str, float]], dict[str, str]]:
    """(utt, path) pairs -> ([(utt, path, seconds)], {utt: one-line reason} for unreadable files).

    Durations come from the file headers (no samples are decoded), or from `known` (e.g. a data
    dir's utt2dur) where it has the utterance."""
    known = known or {}
    found, failed = [], {}
    for utt, path in items:
        try:
            found.append((utt, path, float(known[utt]) if utt in known else audio_duration(path)))
        except VoxTokError as err:
            failed[utt] = str(err)
    return found, failed


def _device_of(module) -> torch.device:
    # Codecs are moved once to their device (voxtok.device.place); one without weights runs on CPU.
    return next((p.device for p in module.parameters()), torch.device("cpu")) if hasattr(module, "parameters") \
        else torch.device("cpu")


def encode_stream(codec, items: list[tuple[str, str]], n_q: int | None = None,
                  max_batch_seconds: float = 60.0, max_batch_items: int | None = None,
                  durations: Mapping[str, float] | None = None,
                  dtype: torch.dtype | None = None) -> Iterator[tuple[str, torch.Tensor | None, int, str | None]]:
    """Yield (utt, codes [Q, T'] (CPU) or None, num_samples, error or None) for each input.

    Inputs are decoded and resampled to the codec's rate, sorted by duration and batched so one
    batch holds at most `max_batch_seconds` of padded audio and at most `max_batch_items`
    utterances. Batches run on the codec's device, under autocast to `dtype` when it is not float32.
    `durations` (utt -> seconds) spares reading the headers of those files again. Silent inputs are
    encoded.
    """
    from voxtok.device import precision

    found, failed = probe_durations(items, durations)
    for utt, reason in failed.items():
        yield utt, None, 0, reason
    order = sorted(found, key=lambda x: (x[2], x[0]))
    budget = float(max_batch_seconds) * codec.sample_rate  # may be inf: only max_batch_items limits
    most = max(1, int(max_batch_items)) if max_batch_items else None
    device, dtype = _device_of(codec), dtype or torch.float32
    batch: list[tuple[str, torch.Tensor]] = []

    def flush():
        if not batch:
            return
        wav, lengths = pad_batch([w for _, w in batch])
        with torch.inference_mode(), precision(device, dtype):
            codes = codec.encode(wav.to(device), lengths, n_q=n_q).cpu()
        valid = codec.code_lengths(lengths)
        for i, (utt, _) in enumerate(batch):
            yield utt, codes[i, :, : int(valid[i])].clone(), int(lengths[i]), None
        batch.clear()

    for utt, path, _ in order:
        try:
            wav, _ = load_audio(path, codec.sample_rate, allow_silence=True)
        except VoxTokError as err:
            yield utt, None, 0, str(err)
            continue
        longest = max([wav.shape[-1]] + [w.shape[-1] for _, w in batch])
        if batch and (longest * (len(batch) + 1) > budget or (most is not None and len(batch) >= most)):
            yield from flush()
        batch.append((utt, wav))
    yield from flush()


def decode_stream(codec, entries: Iterable[tuple[str, torch.Tensor, int | None]], batch_size: int = 1,
                  dtype: torch.dtype | None = None) -> Iterator[tuple[str, torch.Tensor]]:
    """(key, codes [Q, T'], num_samples or None) entries -> (key, audio [1, num_samples or T' * hop])
    float32 on CPU, decoded `batch_size` at a time on the codec's device.

    Batches hold entries of similar length (sorted by frames) right-padded by repeating the last
    code frame. batch_size=1 decodes each entry alone, exactly as `codec.decode`; in larger batches
    the last frames of the shorter entries see the padding through the decoder's receptive field,
    so their final ~0.1 s differ (tiny WavTokenizer: up to 0.08 in the last 8 frames, < 1e-5 before).
    Yields in length order.
    """
    from voxtok.device import precision

    device, dtype = _device_of(codec), dtype or torch.float32
    order = sorted(entries, key=lambda e: (e[1].shape[-1], e[0]))
    for start in range(0, len(order), max(1, int(batch_size))):
        chunk = order[start:start + max(1, int(batch_size))]
        frames = max(c.shape[-1] for _, c, _ in chunk)
        codes = torch.stack([torch.nn.functional.pad(c[None].float(), (0, frames - c.shape[-1]), mode="replicate")[0]
                             .long() if c.shape[-1] < frames else c for _, c, _ in chunk])
        with torch.inference_mode(), precision(device, dtype):
            wav = codec.decode(codes.to(device)).float().cpu()
        for i, (key, c, num_samples) in enumerate(chunk):
            n = c.shape[-1] * codec.hop_length if num_samples is None else int(num_samples)
            yield key, torch.nn.functional.pad(wav[i], (0, max(0, n - wav.shape[-1])))[..., :n]


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


@dataclass(frozen=True)
class EncodeJob:
    """What every worker of one corpus encode shares (plain values: it crosses to spawned workers).

    model: codec checkpoint folder; out: a folder of <utt>.vtk files, or with `store` a shard store;
    n_q: codebooks kept (None: all); dtype: float32 | bfloat16 | float16 (autocast);
    batch_seconds / batch_items: padded audio / utterances per batch (None: no item limit);
    shard_items / flush_seconds: a store's shard completes after this many utterances or seconds,
    which bounds what a kill loses.
    """

    model: str
    out: str
    store: bool = False
    n_q: int | None = None
    dtype: str = "float32"
    batch_seconds: float = 60.0
    batch_items: int | None = None
    shard_items: int = 200
    flush_seconds: float | None = 60.0


def store_meta(codec, n_q: int | None = None) -> dict:
    """meta.json fields of a token store: the codec's token header without the per-utterance lengths."""
    header = codec.token_header(0, 0, n_q)
    return {k: v for k, v in header.__dict__.items() if k not in ("num_frames", "num_samples")}


def encode_worker(device: str, items: list[tuple[str, str, float]], progress: Callable[[int], None], rank: int,
                  job: EncodeJob) -> EncodeReport:
    """One worker of `encode_corpus` (run by voxtok.workers.run_workers): load the codec on `device`,
    encode `items` (utt, path, seconds) in length-sorted padded batches and write them to `job.out`
    (.vtk files, or this worker's own shards, named by `rank`). `progress(1)` after each utterance.
    A file that cannot be read or written is a failure with its reason; the others go on."""
    from voxtok.data.shards import ShardWriter
    from voxtok.device import resolve_dtype
    from voxtok.registry import load

    dtype = resolve_dtype(job.dtype, device)
    codec = load(job.model, map_location=device, kind="codec")
    out = Path(job.out)
    report = EncodeReport()
    writer = None
    if job.store:
        # resume=False: encode_corpus passed only what the store lacks.
        writer = ShardWriter(out, store_meta(codec, job.n_q), dtype=token_dtype(codec.codebook_size), rank=rank,
                             resume=False, expect_ndim=2, shard_items=job.shard_items,
                             flush_seconds=job.flush_seconds)
    stream = encode_stream(codec, [(u, p) for u, p, _ in items], job.n_q, job.batch_seconds, job.batch_items,
                           durations={u: s for u, _, s in items}, dtype=dtype)
    try:
        for utt, codes, num_samples, error in stream:
            if error is None and writer is not None:
                writer.add(utt, codes.numpy())
            elif error is None:
                target = out / f"{utt}.vtk"
                try:
                    codec.save_tokens(target, codes, num_samples)
                except OSError as err:
                    error = f"{target}: cannot write the token file ({err.strerror or type(err).__name__})"
            if error is None:
                report.written.append(utt)
            else:
                report.failed[utt] = error
            progress(1)
    finally:
        if writer is not None:
            writer.close()  # what was encoded before an error is kept
    return report


def _done_token_files(out: Path, utts: Iterable[str], model: str, n_q: int | None) -> set[str]:
    """Utterances whose out/<utt>.vtk is a complete token file of this checkpoint with these codebooks."""
    from voxtok.codecs.tokenfile import read_tokens
    from voxtok.registry import read_metadata

    meta = read_metadata(model)
    n_q = n_q if n_q is not None else meta.get("info", {}).get("n_q")
    done = set()
    for utt in utts:
        path = out / f"{utt}.vtk"
        if not path.is_file():
            continue
        try:
            _, header = read_tokens(path)
        except VoxTokError:  # truncated or corrupt: encode it again
            continue
        if header.codec == meta["name"] and header.checkpoint_hash == meta["weights_hash"] and \
                (n_q is None or header.n_q == int(n_q)):
            done.add(utt)
    return done


def _write_progress(out: Path, **fields) -> None:
    from voxtok.atomic import atomic_write

    with atomic_write(out / PROGRESS_FILE) as handle:
        handle.write(json.dumps({**fields, "updated": time.strftime("%Y-%m-%dT%H:%M:%S")}, indent=2) + "\n")


def encode_corpus(job: EncodeJob, items: Sequence[tuple[str, str]], devices: Sequence[str] = ("cpu",), *,
                  durations: Mapping[str, float] | None = None, overwrite: bool = False,
                  progress: bool | None = None, desc: str = "encode") -> EncodeReport:
    """Encode a corpus of (utt, path) `items` into `job.out` with one worker per entry of `devices`
    (from voxtok.device.worker_devices), the work dealt by seconds of audio, one progress bar.

    Resumable: utterances the output already holds (valid .vtk files of this checkpoint and n_q,
    or keys of the store) are skipped and counted in `skipped`; `overwrite` re-encodes .vtk files
    (a store is resumed only: remove it to start again). Before the workers start, what a killed
    run left half-written is removed. One run per output at a time. `durations` (utt -> seconds,
    e.g. utt2dur) spares reading those headers. A store gets progress.json (utterances, stored,
    failed, complete). An output folder that cannot be made is one VoxTokError.
    """
    from voxtok.data.shards import ShardStore, remove_incomplete, stale_temps
    from voxtok.device import resolve_dtype
    from voxtok.registry import read_metadata
    from voxtok.workers import balance, progress_wanted, run_workers

    if not devices:
        raise BadConfigError("no workers to encode with")
    resolve_dtype(job.dtype, devices[0])  # a bad dtype is one line, before any worker starts
    meta = read_metadata(job.model)
    if meta["kind"] != "codec":
        raise BadConfigError(f"checkpoint holds a {meta['kind']} ('{meta['name']}'), not a codec", job.model)
    out = prepare_output_dir(job.out)
    if job.store:
        remove_incomplete(out)
        done = set(ShardStore(out).keys()) if (out / "meta.json").is_file() else set()
    else:
        for temp in stale_temps(out):
            temp.unlink(missing_ok=True)
        done = set() if overwrite else _done_token_files(out, [u for u, _ in items], job.model, job.n_q)
    todo = [(u, p) for u, p in items if u not in done]
    report = EncodeReport(skipped=len(items) - len(todo))
    found, report.failed = probe_durations(todo, durations)
    if job.store:
        _write_progress(out, utterances=len(items), stored=report.skipped, failed={}, complete=False)
    if progress is None:
        progress = progress_wanted()
    if found:
        parts = balance(found, [s for _, _, s in found], len(devices))
        used = [(part, device) for part, device in zip(parts, devices) if part]
        results = run_workers(encode_worker, [p for p, _ in used], [d for _, d in used], args=(job,), desc=desc,
                              progress=progress, ranked=True)
        for result in results:
            report.merge(result)
    if job.store:
        stored = report.skipped + len(report.written)
        _write_progress(out, utterances=len(items), stored=stored, failed=dict(sorted(report.failed.items())),
                        complete=stored == len(items))
    return report
