"""The benchmark's reconstruction pass over one system's test set, split over workers and resumable.

Each utterance goes through the system (encode, decode), is scored at the evaluation rate and,
with ASR, transcribed (`reconstruct_one`). `reconstruct_test_set` deals the utterances still to do
to workers balanced by duration (`ngpu` GPUs or `nj` CPU processes; voxtok/workers.py, one
progress bar); each worker builds the system on its device and writes its results every
`FLUSH_EVERY` utterances as one part file (atomic: a killed run loses at most that much per worker,
never leaves half a file). Part files live in a folder named after the stage's cache key, so a
rerun with the same settings continues where it stopped and one with other settings starts afresh.
The results are gathered in test-set order, so they are the same whatever the number of workers
(timings aside).
"""

from __future__ import annotations

import json
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import soundfile as sf

from voxtok.atomic import atomic_write

FLUSH_EVERY = 16  # utterances per part file: what a killed worker can lose at most
PART_GLOB = "part-*.npz"
STAT_KEYS = ("bits", "seconds", "encode", "decode", "total")


@dataclass
class ReconJob:
    """What a reconstruction worker needs (picklable, for spawned workers).

    spec: the system's spec string (a spawned worker builds the system on its own device);
    `system`: an already-built system used instead by an in-process worker; test_dir and the
    training context (`train_dir`, `train_utts`, `train_fp`, `fitted_dir`) as in the runner;
    reference_hyps: Whisper transcripts of the originals (None: no ASR), `asr`: transcribe the
    reconstructions; sample_utts: utterances whose reconstruction is kept as a wav in samples_dir;
    parts_dir: where the part files go; threads: torch/Whisper threads per worker; dtype: float32 or
    an autocast dtype for the system's encode/decode.
    """

    spec: str
    test_dir: str
    eval_sr: int
    metrics: list[str]
    parts_dir: Path
    settings: Any = None  # voxtok.bench.metrics.MetricSettings
    asr: bool = False
    reference_hyps: dict[str, str] | None = None
    sample_utts: list[str] = field(default_factory=list)
    samples_dir: Path | None = None
    threads: int = 1
    dtype: str = "float32"
    train_dir: str | None = None
    train_utts: list[str] = field(default_factory=list)
    train_fp: str = ""
    fitted_dir: Path | None = None
    system: Any = None


def native_rate(data, utt: str) -> int:
    """The sample rate of an utterance's audio file (read from its header)."""
    return sf.info(data.wav_scp[data.recording_of(utt)]).samplerate


def utterance_seconds(data, utts: Sequence[str]) -> list[float]:
    """Durations of `utts` (utt2dur when it has them all, else the audio headers), to balance workers."""
    if data.utt2dur and all(u in data.utt2dur for u in utts):
        return [float(data.utt2dur[u]) for u in utts]
    return [sf.info(data.wav_scp[data.recording_of(u)]).duration if not (data.segments and u in data.segments)
            else data.segments[u][2] - data.segments[u][1] for u in utts]


def reconstruct_one(system, data, utt: str, eval_sr: int, metrics: Sequence[str], asr=None,
                    reference_hyps: dict[str, str] | None = None, settings=None, sample_path: Path | None = None,
                    device: str = "cpu", dtype=None) -> dict:
    """One utterance through `system`, scored at `eval_sr`.

    Returns {"row": per-utterance row (utt, seconds, kbps, metrics, hyp), "codes": int64 [Q, T'] numpy
    or None, "stats": {bits, seconds, encode, decode, total processing seconds}}. `asr` (a WhisperASR)
    adds "hyp"; the identity system reuses `reference_hyps` instead. The system runs under autocast to
    `dtype` on `device` (None or float32: as is). `sample_path`: also save the reconstruction there.
    """
    from voxtok.audio import resample, save_audio
    from voxtok.bench.metrics import reconstruction_metrics
    from voxtok.data.dataset import load_utterance
    from voxtok.device import precision

    import torch

    rate = system.input_rate(native_rate(data, utt))
    wav = load_utterance(data, utt, rate)
    seconds = wav.shape[-1] / rate
    with precision(device, dtype or torch.float32):
        rt = system.roundtrip(wav, rate)
    row: dict[str, Any] = {"utt": utt, "seconds": seconds, "kbps": rt.bits / seconds / 1000}
    stats = {"bits": float(rt.bits), "seconds": seconds, "encode": rt.encode_seconds, "decode": rt.decode_seconds,
             "total": rt.total_seconds}
    if rt.recon is not None:
        ref = load_utterance(data, utt, eval_sr).reshape(-1)
        deg = resample(rt.recon.reshape(-1).float(), rate, eval_sr).reshape(-1)
        row.update(reconstruction_metrics(ref.numpy(), deg.numpy(), eval_sr, which=metrics, settings=settings))
        if reference_hyps is not None and system.spec.kind == "identity":
            row["hyp"] = reference_hyps[utt]
        elif asr is not None:
            row["hyp"] = asr.transcribe_one(deg, eval_sr)
        if sample_path is not None:
            save_audio(sample_path, rt.recon.reshape(-1).float(), rate)
    codes = None if rt.codes is None else np.asarray(rt.codes.cpu() if hasattr(rt.codes, "cpu") else rt.codes,
                                                      dtype=np.int64)
    return {"row": row, "codes": codes, "stats": stats}


# ----------------------------------------------------------------------------- part files


def write_part(parts_dir: Path, records: Sequence[dict]) -> Path:
    """Store finished utterances' records (as `reconstruct_one` returns them) as one new part file."""
    arrays, meta = {}, []
    for i, record in enumerate(records):
        if record["codes"] is not None:
            arrays[f"c{i}"] = record["codes"]
        meta.append({"row": record["row"], "stats": record["stats"], "codes": record["codes"] is not None})
    path = Path(parts_dir) / f"part-{uuid.uuid4().hex[:16]}.npz"
    with atomic_write(path, "wb") as handle:  # json keeps NaN scores as NaN
        np.savez(handle, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays)
    return path


def read_parts(parts_dir: Path) -> dict[str, dict]:
    """utt -> record of every utterance the part files under `parts_dir` hold."""
    done: dict[str, dict] = {}
    for path in sorted(Path(parts_dir).glob(PART_GLOB)):
        with np.load(path) as data:
            for i, entry in enumerate(json.loads(bytes(data["meta"]).decode())):
                codes = data[f"c{i}"] if entry["codes"] else None
                done[entry["row"]["utt"]] = {"row": entry["row"], "stats": entry["stats"], "codes": codes}
    return done


# ----------------------------------------------------------------------------- workers


def reconstruct_part(device: str, utts: list[str], progress: Callable[[int], None], job: ReconJob) -> int:
    """Worker: reconstruct `utts` on `device` (job.system, or one built here), writing part files
    to job.parts_dir every FLUSH_EVERY utterances. Returns how many utterances it did."""
    from voxtok.data.kaldi import DataDir
    from voxtok.device import resolve_dtype

    system = job.system
    if system is None:
        from voxtok.bench.systems import SystemContext, build_system

        context = SystemContext(job.train_dir, job.train_utts, job.train_fp, job.fitted_dir)
        system = build_system(job.spec, device, context)
    asr = None
    if job.asr and system.can_decode and system.spec.kind != "identity":
        from voxtok.bench.asr import WhisperASR

        # On the CPU whatever the worker's device: the originals' reference transcripts are made there
        # (int8), and dWER compares like with like.
        asr = WhisperASR(cpu_threads=job.threads)
    dtype = resolve_dtype(job.dtype, device)
    data = DataDir.load(job.test_dir)
    samples = set(job.sample_utts)
    buffer: list[dict] = []
    for utt in utts:
        sample = job.samples_dir / f"{utt}.wav" if job.samples_dir is not None and utt in samples else None
        buffer.append(reconstruct_one(system, data, utt, job.eval_sr, job.metrics, asr, job.reference_hyps,
                                      job.settings, sample, device, dtype))
        if len(buffer) >= FLUSH_EVERY:
            write_part(job.parts_dir, buffer)
            buffer = []
        progress(1)
    if buffer:
        write_part(job.parts_dir, buffer)
    return len(utts)


def reconstruct_test_set(job: ReconJob, utts: Sequence[str], devices: Sequence[str], desc: str = "",
                         progress: bool = False, position: int = 0) -> tuple[list[dict], list, dict]:
    """Reconstruct every utterance of `utts` not yet in job.parts_dir over `devices` (one worker each).

    One worker on the device job.system lives on runs in this process with that system; more are
    spawned (voxtok.workers.run_workers) and build their own. Returns (rows in `utts` order,
    [(utt, codes [Q, T'] or None, seconds)] in that order, totals {bits, seconds, encode, decode, total}).
    """
    from voxtok.data.kaldi import DataDir
    from voxtok.workers import balance, run_workers

    job.parts_dir.mkdir(parents=True, exist_ok=True)
    for stale in job.parts_dir.parent.iterdir():  # results of other settings can never be used again
        if stale != job.parts_dir and stale.is_dir():
            shutil.rmtree(stale)
    done = read_parts(job.parts_dir)
    todo = [u for u in utts if u not in done]
    devices = list(devices)[: max(1, len(todo))]
    if todo and len(devices) == 1 and job.system is not None:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), desc=desc, leave=False, disable=not progress, position=position, mininterval=2.0)
        try:
            reconstruct_part(devices[0], todo, bar.update, job)
        finally:
            bar.close()
    elif todo:
        parts = balance(todo, utterance_seconds(DataDir.load(job.test_dir), todo), len(devices))
        spawned = ReconJob(**{**job.__dict__, "system": None})  # each worker builds its own copy
        run_workers(reconstruct_part, parts, devices, args=(spawned,), desc=desc, progress=progress,
                    threads=job.threads)
    done = read_parts(job.parts_dir)
    missing = [u for u in utts if u not in done]
    if missing:
        raise RuntimeError(f"reconstruction lacks {len(missing)} utterances (e.g. {missing[0]})")
    totals = {key: 0.0 for key in STAT_KEYS}
    for utt in utts:
        for key in STAT_KEYS:
            totals[key] += done[utt]["stats"][key]  # NaN stays NaN (a tool that encodes and decodes at once)
    return ([done[u]["row"] for u in utts], [(u, done[u]["codes"], done[u]["stats"]["seconds"]) for u in utts],
            totals)


def remove_parts(parts_root: Path) -> None:
    """Drop the part files once the stage's results are stored."""
    shutil.rmtree(parts_root, ignore_errors=True)
