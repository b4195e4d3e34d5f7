"""Corpus throughput: utterances/s and real-time factor of tokenizing a corpus (the tokenize stage's
own path: voxtok.codecs.tokenize.encode_corpus -> workers, length-sorted padded batches, a shard
store) and of decoding it (batched, voxtok.codecs.tokenize.decode_stream), with peak memory; then how
the tokenizing time grows with the corpus size.

    python benchmarks/speed/throughput.py [--configs wavtokenizer_tiny wavtokenizer_75_paper]
        [--utts 100 64] [--batch-sizes 1 16 64] [--max-batch wavtokenizer_75_paper=16] [--threads 1 2]
        [--two-workers wavtokenizer_tiny] [--scaling 100 1000 10000] [--device cpu] [--dtype float32]

The corpus is synthetic: `--clips` speech-like clips (harmonic voice with a moving pitch, syllable
envelope, pauses; 24 kHz) whose lengths follow a LibriTTS-like gamma distribution (mean 6 s, 1-12 s),
listed over and over in one wav.scp up to the corpus size (the files are read every time, as for a
real corpus). Codecs are built from configs/codec/<config>.yaml with random weights (speed does not
depend on weight values). Batch size = utterances per batch.

Each row runs in a fresh process, so its peak memory is its own: peak RSS (VmHWM) of the process
that encodes (with several workers: the largest worker) and of the decoding; on a GPU the decode
column also gives torch.cuda.max_memory_allocated. Tokenize times are the whole call (worker start,
model load, reading audio, writing shards), so they include the fixed start-up cost the scaling
table shows; decode times are the decoding loop over the store's codes. RTF = time / audio duration.
The load average (os.getloadavg) before each row is printed: on a shared machine it explains noise.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SAMPLE_RATE = 24000
MEAN_SECONDS, SHAPE, MIN_SECONDS, MAX_SECONDS = 6.0, 2.5, 1.0, 12.0


def clip_lengths(n: int) -> list[float]:
    """`n` utterance lengths in seconds: quantiles of a gamma distribution with LibriTTS's mean (6 s),
    clipped to [1, 12] s, in a fixed shuffled order."""
    import numpy as np
    from scipy.stats import gamma

    q = gamma.ppf((np.arange(n) + 0.5) / n, SHAPE, scale=MEAN_SECONDS / SHAPE)
    return [float(x) for x in np.random.default_rng(0).permutation(np.clip(q, MIN_SECONDS, MAX_SECONDS))]


def speech_like(seconds: float, seed: int):
    """float32 [T] at 24 kHz: a harmonic voice (pitch 90-220 Hz drifting), a 4 Hz syllable envelope,
    short pauses and a little noise; what matters for speed is only the length."""
    import numpy as np

    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    f0 = rng.uniform(90, 220) * (1 + 0.15 * np.sin(2 * np.pi * rng.uniform(0.2, 0.6) * t))
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    voice = sum(np.sin(k * phase) / k for k in range(1, 12))
    envelope = np.clip(np.sin(2 * np.pi * 4.0 * t + rng.uniform(0, 6)), 0, None) ** 0.5
    envelope *= (np.sin(2 * np.pi * 0.3 * t + rng.uniform(0, 6)) > -0.8)  # pauses
    return (0.1 * voice * envelope + 0.003 * rng.standard_normal(len(t))).astype("float32")


def make_corpus(folder: Path, clips: int, sizes: list[int]) -> dict[int, Path]:
    """Write `clips` clips and one wav.scp per corpus size; returns {size: wav.scp path}."""
    from voxtok.audio import save_audio

    paths = []
    for i, seconds in enumerate(clip_lengths(clips)):
        path = folder / "wav" / f"clip{i:03d}.wav"
        save_audio(path, speech_like(seconds, i), SAMPLE_RATE)
        paths.append(path)
    scps = {}
    for n in sizes:
        scps[n] = folder / f"wav_{n}.scp"
        scps[n].write_text("".join(f"utt{i:06d} {paths[i % len(paths)]}\n" for i in range(n)))
    return scps


def peak_rss_mb() -> float:
    """Peak resident memory of this process since the last reset_peak() (VmHWM), in MB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KB; lifetime peak


def reset_peak() -> None:
    """Restart the VmHWM count (Linux: /proc/self/clear_refs 5); elsewhere peaks are lifetime peaks."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def run_row(spec: dict) -> dict:
    """One measurement in this (fresh) process: tokenize spec['scp'] into a store, then decode it."""
    import torch

    from voxtok.codecs.tokenize import EncodeJob, collect_inputs, decode_stream, encode_corpus
    from voxtok.data.shards import ShardStore
    from voxtok.device import resolve_device, resolve_dtype, worker_devices
    from voxtok.registry import load

    torch.set_num_threads(spec["threads"])
    device = resolve_device(spec["device"])
    dtype = resolve_dtype(spec["dtype"], device)
    items = collect_inputs([spec["scp"]])
    with tempfile.TemporaryDirectory(dir=spec["tmp"]) as tmp:
        job = EncodeJob(spec["model"], str(Path(tmp) / "store"), store=True, dtype=spec["dtype"],
                        batch_seconds=float("inf"), batch_items=spec["batch"], shard_items=1000)
        reset_peak()
        start = time.perf_counter()
        report = encode_corpus(job, items, worker_devices(0, spec["workers"], str(device)), progress=False)
        encode_s = time.perf_counter() - start
        if report.failed:
            raise RuntimeError(f"{len(report.failed)} utterances failed: {next(iter(report.failed.values()))}")
        workers_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024 if spec["workers"] > 1 else 0
        row = {**spec, "encode_s": encode_s, "encode_peak_mb": max(peak_rss_mb(), workers_peak)}
        if spec["decode"]:
            store = ShardStore(job.out)
            entries = [(k, torch.from_numpy(store[k]).long(), None) for k in store.keys()]
            codec = load(spec["model"], map_location=device, kind="codec")
            reset_peak()
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            start = time.perf_counter()
            samples = sum(wav.shape[-1] for _, wav in decode_stream(codec, entries, spec["batch"], dtype))
            if device.type == "cuda":
                torch.cuda.synchronize(device)
                row["decode_gpu_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
            row.update(decode_s=time.perf_counter() - start, decode_peak_mb=peak_rss_mb())
            assert samples > 0
    return row


def audio_seconds(scp: Path) -> float:
    from voxtok.audio import audio_duration

    return sum(audio_duration(line.split(" ", 1)[1].strip()) for line in scp.read_text().splitlines())


def measure(spec: dict) -> dict:
    """Run one row in a child process (its own peak memory); returns its numbers and the load before."""
    load = os.getloadavg()[0]
    run = subprocess.run([sys.executable, __file__, "--row", json.dumps(spec)], capture_output=True, text=True)
    if run.returncode != 0:
        raise SystemExit(f"row {spec} failed:\n{run.stderr[-3000:]}")
    row = json.loads(run.stdout.strip().splitlines()[-1])
    row["load"] = load
    return row


def build_models(configs: list[str], folder: Path) -> dict[str, str]:
    """Random-weight codec checkpoints for the configs (seed 0)."""
    import torch
    import yaml

    from voxtok.recipes import CONFIG_DIR
    from voxtok.registry import build

    models = {}
    for name in configs:
        torch.manual_seed(0)
        cfg = yaml.safe_load((CONFIG_DIR / "codec" / f"{name}.yaml").read_text())
        codec = build("codec", cfg.get("name", "wavtokenizer"), cfg["model"])
        models[name] = str(codec.save_pretrained(folder / name))
    return models


def fmt(x: float | None, digits: int = 1) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=["wavtokenizer_tiny", "wavtokenizer_75_paper"])
    parser.add_argument("--utts", type=int, nargs="+", default=[100, 64], help="corpus size per config")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--max-batch", nargs="*", default=["wavtokenizer_75_paper=16"],
                        help="CONFIG=B: skip larger batches of CONFIG (paper size at 64 x 12 s padded needs ~13 GB)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--two-workers", nargs="*", default=["wavtokenizer_tiny"],
                        help="configs that also get a row with 2 worker processes x 1 thread (batch 16)")
    parser.add_argument("--scaling", type=int, nargs="*", default=[100, 1000, 10000],
                        help="corpus sizes of the scaling table (first config, batch 16, tokenize only)")
    parser.add_argument("--scaling-workers", type=int, default=2)
    parser.add_argument("--clips", type=int, default=32, help="distinct synthetic clips in the corpus")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--row", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.row:
        print(json.dumps(run_row(json.loads(args.row))))
        return
    if len(args.utts) not in (1, len(args.configs)):
        parser.error("--utts takes one size, or one per config")
    utts = dict(zip(args.configs, args.utts * len(args.configs) if len(args.utts) == 1 else args.utts))
    caps = {k: int(v) for k, v in (c.split("=") for c in args.max_batch)}
    scaling_batch = 16
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="voxtok_throughput_") as tmp:
        tmp = Path(tmp)
        scps = make_corpus(tmp, args.clips, sorted(set(utts.values()) | set(args.scaling)))
        models = build_models(args.configs, tmp / "models")
        seconds = {n: audio_seconds(scp) for n, scp in scps.items()}
        base = {"device": args.device, "dtype": args.dtype, "tmp": str(tmp)}
        rows, skipped = [], []
        for name in args.configs:
            for batch in args.batch_sizes:
                if batch > caps.get(name, batch):
                    skipped.append(f"{name} batch {batch}")
                    continue
                for threads in args.threads:
                    rows.append(measure({**base, "config": name, "model": models[name], "scp": str(scps[utts[name]]),
                                         "utts": utts[name], "batch": batch, "threads": threads, "workers": 1,
                                         "decode": True}))
                    print(f"... {name} batch {batch} threads {threads}: {time.time() - started:.0f} s",
                          file=sys.stderr, flush=True)
            if name in args.two_workers and 16 <= caps.get(name, 16):
                rows.append(measure({**base, "config": name, "model": models[name], "scp": str(scps[utts[name]]),
                                     "utts": utts[name], "batch": 16, "threads": 1, "workers": 2, "decode": False}))
        scaling = []
        for n in args.scaling:
            name = args.configs[0]
            scaling.append(measure({**base, "config": name, "model": models[name], "scp": str(scps[n]), "utts": n,
                                    "batch": scaling_batch, "threads": 1, "workers": args.scaling_workers,
                                    "decode": False}))
            print(f"... scaling {n}: {time.time() - started:.0f} s", file=sys.stderr, flush=True)

    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    print(f"\n{cpu}, {os.cpu_count()} cores; torch {torch.__version__}; device {args.device}, {args.dtype}; "
          f"{time.strftime('%Y-%m-%d')}; total {time.time() - started:.0f} s")
    print(f"synthetic corpus: {args.clips} clips, mean {sum(clip_lengths(args.clips)) / args.clips:.2f} s, "
          f"{MIN_SECONDS:g}-{MAX_SECONDS:g} s; RTF = time / audio duration; load = 1-min load average before the row\n")
    print("| config | batch | threads x workers | utts | audio (min) | tokenize utt/s | tokenize RTF | "
          "decode utt/s | decode RTF | peak RSS tokenize (MB) | peak RSS decode (MB) | load |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        audio = seconds[r["utts"]]
        dec = r.get("decode_s")
        gpu = f" (GPU {r['decode_gpu_mb']:.0f})" if "decode_gpu_mb" in r else ""
        print(f"| {r['config']} | {r['batch']} | {r['threads']} x {r['workers']} | {r['utts']} | {audio / 60:.1f} | "
              f"{r['utts'] / r['encode_s']:.2f} | {r['encode_s'] / audio:.4f} | "
              f"{fmt(None if dec is None else r['utts'] / dec, 2)} | {fmt(None if dec is None else dec / audio, 4)} | "
              f"{r['encode_peak_mb']:.0f} | {fmt(r.get('decode_peak_mb'), 0)}{gpu} | {r['load']:.1f} |")
    if skipped:
        print(f"\nnot run: {', '.join(skipped)} (--max-batch)")
    if scaling:
        first = scaling[0]
        print(f"\nTokenizing time vs corpus size ({first['config']}, batch {scaling_batch}, "
              f"{first['workers']} worker(s) x 1 thread):\n")
        print("| utts | audio (h) | tokenize (s) | utt/s | RTF | s per 1000 utts | peak RSS per worker (MB) | load |")
        print("|---|---|---|---|---|---|---|---|")
        for r in scaling:
            audio = seconds[r["utts"]]
            print(f"| {r['utts']} | {audio / 3600:.2f} | {r['encode_s']:.1f} | {r['utts'] / r['encode_s']:.1f} | "
                  f"{r['encode_s'] / audio:.4f} | {1000 * r['encode_s'] / r['utts']:.1f} | {r['encode_peak_mb']:.0f} | "
                  f"{r['load']:.1f} |")


if __name__ == "__main__":
    main()
