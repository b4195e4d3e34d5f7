"""Run a benchmark: every system over a test data dir (and a training dir for probes and the LM),
with per-system caching, parallel systems and one report at the end.

Output folder layout:
    results.json                 rows of every system + run metadata (what `voxtok bench report` reads)
    results.csv table.md report.md report.html rd_*.png     (voxtok.bench.report)
    per_utterance.csv            reconstruction metrics and ASR output per system and utterance
    cache/reference_asr.json     Whisper transcripts of the original test audio
    cache/swuggy/*.wav           the spoken words of the sWUGGY-style test
    systems/<name>/results.json  that system's cached stage results
    systems/<name>/tokens_{test,train}.npz, per_utt.csv, samples/*.wav
    systems/<name>/recon_parts/  results of a reconstruction still under way (removed when it ends)

Each system runs in stages (reconstruction, train_tokens, probe_asr, probe_speaker, lm). A stage's
result is stored with a key hashing everything it depends on (the system's fingerprint, which
includes its checkpoint hash; the data dirs' contents; the stage's settings), so a re-run only
computes stages whose inputs changed and systems that are new. A failing stage marks the system
"failed" with a one-line reason; its finished stages and all other systems keep their results.

The reconstruction of one system's test set can itself be split over workers (`ngpu` GPUs or
`recon_nj` CPU processes; voxtok.bench.reconstruction): results do not depend on their number, and
an interrupted reconstruction continues where it stopped.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import multiprocessing
import os
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from voxtok.atomic import atomic_write
from voxtok.bench.lm import LMConfig
from voxtok.bench.probes import PROBE_PRESETS, ProbeConfig, probe_preset
from voxtok.config import check_keys, dataclass_from_dict, require_mapping
from voxtok.errors import BadConfigError

DEFAULT_SYSTEMS = ("identity", "codec2_1200", "codec2_3200", "opus_6k", "opus_12k")
ALL_RECON_METRICS = ("pesq_wb", "pesq_nb", "stoi", "si_sdr", "mel_distance", "speaker_similarity", "dnsmos")
CACHE_VERSION = 1


@dataclass
class BenchConfig:
    """Everything a benchmark run depends on (the CLI and the recipe both build one)."""

    test_dir: str
    out_dir: str
    systems: list[str] = field(default_factory=lambda: list(DEFAULT_SYSTEMS))
    train_dir: str | None = None  # probes and the LM need it
    nj: int = 1  # systems evaluated in parallel (processes)
    threads: int | None = None  # torch/Whisper threads per process (default: cores / (nj x workers))
    device: str = "cpu"
    dtype: str = "float32"  # neural systems: float32, or bfloat16 / float16 autocast (weights stay float32)
    ngpu: int = 0  # > 0: each system's test-set reconstruction split over cuda:0..ngpu-1 (one worker each)
    recon_nj: int = 1  # else: CPU worker processes per system's reconstruction (on `device`)
    max_test_utts: int | None = None
    max_train_utts: int | None = None
    eval_sample_rate: int = 16000
    metrics: list[str] = field(default_factory=lambda: list(ALL_RECON_METRICS))
    asr: bool = True
    probes: bool = True
    lm: bool = True
    swuggy_words: int = 40
    swuggy_voice: str = "en-us"
    num_samples: int = 2  # reconstructions saved as wav per system
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    lm_model: LMConfig = field(default_factory=LMConfig)
    progress: bool = True
    # speaker-similarity encoder: resemblyzer | wavlm:DIR | campplus:FILE (voxtok.bench.speaker_encoders)
    speaker_encoder: str = "resemblyzer"
    utmos_checkpoint: str | None = None  # TorchScript UTMOS file; needed by the utmos metric

    @classmethod
    def from_mapping(cls, values: dict) -> "BenchConfig":
        """Build from a plain dict (e.g. a Hydra config); `probe` and `lm_model` may be dicts.
        Unknown keys, nested ones included, are a BadConfigError naming the key.

        `probe_preset` (quick | dasb) picks the probe sizes; in a `probe` dict given with it, the
        values that differ from the quick preset override the chosen one (a Hydra config lists
        every quick value, and those must not undo the preset)."""
        values = dict(require_mapping(values, "bench"))
        preset = values.pop("probe_preset", None)
        check_keys(values, (f.name for f in fields(cls)), "")
        for key, kind in (("probe", ProbeConfig), ("lm_model", LMConfig)):
            if isinstance(values.get(key), Mapping):
                values[key] = dataclass_from_dict(kind, values[key], key)
        if preset is not None:
            given = values.get("probe", ProbeConfig()).to_dict()
            quick = PROBE_PRESETS["quick"].to_dict()
            changed = {k: v for k, v in given.items() if v != quick[k] and k != "name"}
            values["probe"] = probe_preset(str(preset), **changed)
        return cls(**values)

    def metric_settings(self):
        """The choices the metrics need (`voxtok.bench.metrics.MetricSettings`)."""
        from voxtok.bench.metrics import MetricSettings

        return MetricSettings(self.speaker_encoder, self.utmos_checkpoint)

    def check(self) -> None:
        """Reject settings that cannot work, before any system runs."""
        from voxtok.bench.metrics import metric_names
        from voxtok.bench.systems import parse_spec

        if not self.systems:
            raise BadConfigError("no systems to benchmark")
        specs = [parse_spec(s) for s in self.systems]
        names = [s.name for s in specs] + [s.safe_name for s in specs if s.safe_name != s.name]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise BadConfigError(f"two systems are named '{dupes[0]}': give one of them name=LABEL")
        unknown = [m for m in self.metrics if m not in metric_names()]
        if unknown:
            raise BadConfigError(f"unknown metric '{unknown[0]}' (choose from {sorted(metric_names())})")
        self.metric_settings().check(self.metrics)
        if any(s.kind == "ssl_kmeans" for s in specs) and not self.train_dir:
            raise BadConfigError("ssl_kmeans systems fit their k-means on the training split: give train_dir")
        if self.nj < 1:
            raise BadConfigError(f"nj must be at least 1, got {self.nj}")
        if self.recon_nj < 1 or self.ngpu < 0:
            raise BadConfigError(f"recon_nj must be at least 1 and ngpu at least 0, got {self.recon_nj} and "
                                 f"{self.ngpu}")
        from voxtok.device import resolve_device

        self.device = str(resolve_device(self.device))  # an absent GPU: one line, before any system loads
        if self.eval_sample_rate < 8000:
            raise BadConfigError(f"eval_sample_rate must be at least 8000 Hz, got {self.eval_sample_rate}")
        from voxtok.device import resolve_dtype

        self.recon_devices()  # ngpu GPUs this machine lacks: one line, before any system loads
        self.dtype = str(resolve_dtype(self.dtype, self.device)).removeprefix("torch.")

    def recon_devices(self) -> list[str]:
        """The devices of one system's reconstruction workers: cuda:0..ngpu-1, else recon_nj x `device`."""
        from voxtok.device import worker_devices

        return worker_devices(self.ngpu, self.recon_nj, self.device)


# ----------------------------------------------------------------------------- helpers


def _hash(*parts: Any) -> str:
    text = json.dumps([CACHE_VERSION, *parts], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _write_json(path: Path, data: Any) -> None:
    with atomic_write(path) as handle:
        json.dump(data, handle, indent=1, sort_keys=True)


def _write_csv(path: Path, rows: Sequence[dict]) -> None:
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    with atomic_write(path, newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)


def _spread(utts: list[str], limit: int | None) -> list[str]:
    """`limit` utterances evenly spread over the sorted list (so every speaker tends to appear)."""
    if not limit or limit >= len(utts):
        return utts
    return [utts[(i * len(utts)) // limit] for i in range(limit)]


def data_fingerprint(data, utts: Sequence[str]) -> str:
    """Hash of the selected utterances' audio files (path, size, mtime), transcripts and speakers."""
    entries = []
    for utt in utts:
        rec = data.recording_of(utt)
        path = data.wav_scp.get(rec, "")
        try:
            st = os.stat(path)
            stamp = (st.st_size, st.st_mtime_ns)
        except OSError:
            stamp = None
        segment = data.segments.get(utt) if data.segments else None
        entries.append((utt, path, stamp, segment, data.text.get(utt), data.utt2spk.get(utt)))
    return _hash(entries)


def progress_enabled(cfg: BenchConfig) -> bool:
    """Progress bars unless disabled in the config or with VOXTOK_PROGRESS=0."""
    from voxtok.workers import progress_wanted

    return progress_wanted(cfg.progress)


class StageCache:
    """A system's stage results: {stage: {"key": hash, "result": {...}}} in one JSON file."""

    def __init__(self, path: Path):
        self.path = path
        self.data: dict = json.loads(path.read_text()) if path.is_file() else {}

    def get(self, stage: str, key: str) -> dict | None:
        """The stored result of `stage` when it was computed with `key`, else None."""
        entry = self.data.get(stage)
        return entry["result"] if entry and entry.get("key") == key else None

    def put(self, stage: str, key: str, result: dict) -> None:
        """Store a stage's result (written to disk at once)."""
        self.data[stage] = {"key": key, "result": result}
        _write_json(self.path, self.data)


@dataclass
class Shared:
    """What the main process prepares once for all systems."""

    test_utts: list[str]
    test_fp: str
    train_utts: list[str]
    train_fp: str
    reference_hyps: dict[str, str]
    swuggy_pairs: list[tuple[str, str]]
    swuggy_audio: dict[str, str]


# ----------------------------------------------------------------------------- stages


def summarize_reconstruction(rows: Sequence[dict], totals: dict, metrics: Sequence[str]) -> dict[str, float]:
    """Means over utterances (NaNs skipped; `<metric>_failures` counts them), measured kbit/s over
    the whole set and real-time factors (processing seconds / audio seconds). A metric with several
    columns (dnsmos) is summarised column by column."""
    from voxtok.bench.metrics import metric_columns

    audio = max(totals["seconds"], 1e-9)
    out: dict[str, float] = {"kbps": totals["bits"] / audio / 1000, "num_test_utts": len(rows),
                             "test_seconds": totals["seconds"], "rtf_encode": totals["encode"] / audio,
                             "rtf_decode": totals["decode"] / audio, "rtf": totals["total"] / audio}
    for metric in metric_columns(metrics):
        values = [r[metric] for r in rows if metric in r]
        finite = [v for v in values if not math.isnan(v)]
        if values:
            out[metric] = float(np.mean(finite)) if finite else math.nan
            out[f"{metric}_failures"] = len(values) - len(finite)
    return out


def _stage_reconstruction(system, data, cfg: BenchConfig, shared: Shared, sys_dir: Path, position: int,
                          key: str) -> dict:
    """Every test utterance through `system` over the reconstruction workers (resumable under
    sys_dir/recon_parts/<key>; voxtok.bench.reconstruction), then the summary, tokens and per_utt.csv."""
    from voxtok.bench.asr import asr_scores
    from voxtok.bench.reconstruction import ReconJob, reconstruct_test_set, remove_parts
    from voxtok.bench.tokens import TokenSet, token_statistics

    devices = cfg.recon_devices()
    job = ReconJob(system.spec.text, cfg.test_dir, cfg.eval_sample_rate, list(cfg.metrics),
                   parts_dir=sys_dir / "recon_parts" / key, settings=cfg.metric_settings(), asr=cfg.asr,
                   reference_hyps=shared.reference_hyps if cfg.asr else None,
                   sample_utts=shared.test_utts[: cfg.num_samples], samples_dir=sys_dir / "samples",
                   threads=_threads(cfg, len(devices)), dtype=cfg.dtype, train_dir=cfg.train_dir,
                   train_utts=shared.train_utts, train_fp=shared.train_fp,
                   fitted_dir=Path(cfg.out_dir) / "cache" / "fitted", system=system)
    rows, codes, totals = reconstruct_test_set(job, shared.test_utts, devices, f"{system.name}: test set",
                                               progress_enabled(cfg), position)
    result = summarize_reconstruction(rows, totals, cfg.metrics if system.can_decode else [])
    hyps = [r.get("hyp") for r in rows]
    if cfg.asr and system.can_decode and all(h is not None for h in hyps):
        texts = [data.text.get(r["utt"], "") for r in rows]
        refs = [shared.reference_hyps[r["utt"]] for r in rows]
        result.update(asr_scores(texts, refs, hyps))
    if system.has_tokens:
        tokens = TokenSet(system.frame_rate, system.codebook_size, system.n_q)
        for utt, utt_codes, seconds in codes:
            if utt_codes is not None:
                tokens.add(utt, utt_codes, seconds)
        tokens.save(sys_dir / "tokens_test.npz")
        result.update(token_statistics(tokens))
    _write_csv(sys_dir / "per_utt.csv", rows)
    remove_parts(sys_dir / "recon_parts")
    return result


def _stage_train_tokens(system, data, cfg: BenchConfig, shared: Shared, sys_dir: Path, position: int) -> dict:
    from tqdm import tqdm

    from voxtok.bench.tokens import TokenSet
    from voxtok.data.dataset import load_utterance

    tokens = TokenSet(system.frame_rate, system.codebook_size, system.n_q)
    chunk = 32  # utterances decoded and encoded together: bounded memory, batched encoding
    bar = tqdm(total=len(shared.train_utts), desc=f"{system.name}: train tokens", leave=False,
               disable=not progress_enabled(cfg), position=position, mininterval=2.0)
    start = time.perf_counter()
    for begin in range(0, len(shared.train_utts), chunk):
        utts = shared.train_utts[begin:begin + chunk]
        wavs = [load_utterance(data, u, system.sample_rate) for u in utts]
        with _system_precision(cfg):
            all_codes = system.encode_many(wavs)
        for utt, wav, codes in zip(utts, wavs, all_codes):
            tokens.add(utt, codes, wav.shape[-1] / system.sample_rate)
        bar.update(len(utts))
    bar.close()
    tokens.save(sys_dir / "tokens_train.npz")
    return {"num_train_utts": len(tokens.codes), "train_seconds": sum(tokens.seconds.values()),
            "train_encode_seconds": time.perf_counter() - start}


def _load_tokens(sys_dir: Path, split: str):
    from voxtok.bench.tokens import TokenSet

    path = sys_dir / f"tokens_{split}.npz"
    if not path.is_file():
        raise BadConfigError(f"{split} tokens are missing; delete the folder to recompute", sys_dir)
    return TokenSet.load(path)


def _stage_probe_asr(system, test_data, train_data, cfg: BenchConfig, sys_dir: Path) -> dict:
    from voxtok.bench.probes import train_asr_probe

    train, test = _load_tokens(sys_dir, "train"), _load_tokens(sys_dir, "test")
    train_pairs = [(train.codes[u], train_data.text.get(u, "")) for u in train.utts]
    test_pairs = [(test.codes[u], test_data.text.get(u, "")) for u in test.utts]
    return train_asr_probe(train_pairs, test_pairs, system.n_q, system.codebook_size, system.frame_rate,
                           cfg.probe, progress_enabled(cfg))


def _stage_probe_speaker(system, train_data, cfg: BenchConfig, sys_dir: Path) -> dict:
    from voxtok.bench.probes import split_by_speaker, train_speaker_probe

    train = _load_tokens(sys_dir, "train")
    utt2spk = {u: train_data.utt2spk[u] for u in train.utts}
    fit, held_out = split_by_speaker(utt2spk, cfg.probe.speaker_test_share, cfg.probe.seed)
    return train_speaker_probe([(train.codes[u], utt2spk[u]) for u in fit],
                               [(train.codes[u], utt2spk[u]) for u in held_out],
                               system.n_q, system.codebook_size, system.frame_rate, cfg.probe, progress_enabled(cfg))


def _stage_lm(system, cfg: BenchConfig, shared: Shared, sys_dir: Path) -> dict:
    from voxtok.audio import load_audio
    from voxtok.bench.lm import evaluate_lm, swuggy_accuracy, train_lm

    train, test = _load_tokens(sys_dir, "train"), _load_tokens(sys_dir, "test")
    model, train_nll = train_lm([train.codes[u] for u in train.utts], system.n_q, system.codebook_size,
                                cfg.lm_model, progress_enabled(cfg))
    result = evaluate_lm(model, [test.codes[u] for u in test.utts], sum(test.seconds.values()), system.codebook_size)
    result["lm_train_nll"] = train_nll
    if shared.swuggy_pairs:
        words = sorted({w for pair in shared.swuggy_pairs for w in pair})
        wavs = [load_audio(shared.swuggy_audio[w], system.sample_rate)[0] for w in words]
        with _system_precision(cfg):
            codes = dict(zip(words, (c.numpy() for c in system.encode_many(wavs))))
        result["swuggy"] = swuggy_accuracy(model, shared.swuggy_pairs, codes)
        result["swuggy_pairs"] = len(shared.swuggy_pairs)
    return result


def _metric_key(cfg: BenchConfig) -> list:
    """What the metric settings add to the reconstruction stage's cache key (nothing at the defaults,
    so caches made before the settings existed stay valid)."""
    key = []
    if "speaker_similarity" in cfg.metrics and cfg.speaker_encoder != "resemblyzer":
        key.append(cfg.speaker_encoder)
    if "utmos" in cfg.metrics and cfg.utmos_checkpoint:
        from voxtok.registry import file_hash

        key.append(file_hash(cfg.utmos_checkpoint))
    return key


def _threads(cfg: BenchConfig, workers: int = 1) -> int:
    """torch/Whisper threads per process: `threads`, else the cores shared by the `nj` systems running at
    once and each one's `workers` reconstruction workers."""
    return cfg.threads or max(1, (os.cpu_count() or 1) // (cfg.nj * workers))


def _system_precision(cfg: BenchConfig):
    """The autocast context a system's encoding runs in outside the workers (`dtype` on its device)."""
    from voxtok.device import precision, resolve_dtype

    device = cfg.recon_devices()[0]
    return precision(device, resolve_dtype(cfg.dtype, device))


def evaluate_system(spec_text: str, cfg: BenchConfig, shared: Shared, position: int = 0) -> dict:
    """Run (or take from the cache) every stage of one system; returns its report row.

    Never raises for a problem of the system: the row then has status "failed" and `error`
    ("<stage>: <one-line reason>") plus whatever stages had finished.
    """
    from voxtok.bench.systems import SystemContext, build_system, parse_spec
    from voxtok.data.kaldi import DataDir

    spec = parse_spec(spec_text)
    row: dict[str, Any] = {"system": spec.name, "spec": spec.text, "kind": spec.kind, "family": spec.family,
                           "status": "ok"}
    sys_dir = Path(cfg.out_dir) / "systems" / spec.safe_name
    stage = "load"
    try:
        torch.set_num_threads(_threads(cfg))
        cache = StageCache(sys_dir / "results.json")
        context = SystemContext(cfg.train_dir, shared.train_utts, shared.train_fp, Path(cfg.out_dir) / "cache" / "fitted")
        system = build_system(spec, cfg.recon_devices()[0], context)  # where its first worker runs
        row["notes"] = system.notes()
        # Reduced precision changes the codes and audio; float32 keeps the caches made before dtype existed.
        fp = system.fingerprint() + ("" if cfg.dtype == "float32" else f":{cfg.dtype}")
        test_data = DataDir.load(cfg.test_dir)
        train_data = DataDir.load(cfg.train_dir) if cfg.train_dir else None

        def run(stage_name: str, key_parts: tuple, compute, needs: Sequence[str] = ()) -> None:
            nonlocal stage
            stage = stage_name
            key = _hash(fp, *key_parts)
            result = cache.get(stage_name, key)
            if result is None or any(not (sys_dir / f).is_file() for f in needs):
                start = time.perf_counter()
                result = compute()
                result[f"time_{stage_name}_s"] = time.perf_counter() - start
                cache.put(stage_name, key, result)
            row.update(result)

        recon_key = (shared.test_fp, cfg.metrics, cfg.eval_sample_rate, cfg.asr, _hash(shared.reference_hyps),
                     _metric_key(cfg))
        run("reconstruction", recon_key,
            lambda: _stage_reconstruction(system, test_data, cfg, shared, sys_dir, position, _hash(fp, *recon_key)),
            ["tokens_test.npz"] if system.has_tokens else [])
        if system.has_tokens and train_data is not None and (cfg.probes or cfg.lm):
            run("train_tokens", (shared.train_fp,),
                lambda: _stage_train_tokens(system, train_data, cfg, shared, sys_dir, position),
                ["tokens_train.npz"])
            if cfg.probes:
                run("probe_asr", (shared.train_fp, shared.test_fp, cfg.probe.to_dict()),
                    lambda: _stage_probe_asr(system, test_data, train_data, cfg, sys_dir))
                run("probe_speaker", (shared.train_fp, cfg.probe.to_dict()),
                    lambda: _stage_probe_speaker(system, train_data, cfg, sys_dir))
            if cfg.lm:
                run("lm", (shared.train_fp, shared.test_fp, cfg.lm_model.to_dict(), shared.swuggy_pairs,
                           cfg.swuggy_voice), lambda: _stage_lm(system, cfg, shared, sys_dir))
    except Exception as err:  # one failing system must not cost the others their results
        row["status"] = "failed"
        row["error"] = f"{stage}: {_one_line(err)}"
        if os.environ.get("VOXTOK_BENCH_TRACEBACK"):
            traceback.print_exc()
    return row


# ----------------------------------------------------------------------------- shared preparation


def reference_transcripts(data, utts: Sequence[str], fp: str, cfg: BenchConfig) -> dict[str, str]:
    """Whisper transcripts of the original test audio at the evaluation rate (cached)."""
    from tqdm import tqdm

    from voxtok.bench.asr import WhisperASR
    from voxtok.data.dataset import load_utterance

    path = Path(cfg.out_dir) / "cache" / "reference_asr.json"
    key = _hash(fp, cfg.eval_sample_rate, "whisper-tiny.en-greedy")
    if path.is_file():
        stored = json.loads(path.read_text())
        if stored.get("key") == key:
            return stored["hyps"]
    asr = WhisperASR(cpu_threads=_threads(cfg))
    hyps = {utt: asr.transcribe_one(load_utterance(data, utt, cfg.eval_sample_rate), cfg.eval_sample_rate)
            for utt in tqdm(utts, desc="Whisper on the original audio", leave=False,
                            disable=not progress_enabled(cfg), mininterval=2.0)}
    _write_json(path, {"key": key, "hyps": hyps})
    return hyps


def prepare_swuggy(train_data, cfg: BenchConfig) -> tuple[list[tuple[str, str]], dict[str, str]]:
    """The word pairs and their spoken audio (cached under out_dir/cache/swuggy)."""
    from voxtok.bench.lm import speak_words, swuggy_pairs

    pairs = swuggy_pairs(list(train_data.text.values()), cfg.swuggy_words)
    words = sorted({w for pair in pairs for w in pair})
    paths = speak_words(words, Path(cfg.out_dir) / "cache" / "swuggy", cfg.swuggy_voice)
    return pairs, {w: str(p) for w, p in paths.items()}


def prepare_shared(cfg: BenchConfig) -> tuple[Shared, dict]:
    """Select utterances, fingerprint the data, transcribe the originals, build the sWUGGY set."""
    from voxtok.bench.systems import parse_spec
    from voxtok.data.kaldi import DataDir

    test = DataDir.load(cfg.test_dir)
    test_utts = _spread(test.utts, cfg.max_test_utts)
    if not test_utts:
        raise BadConfigError("the test data dir has no utterances", cfg.test_dir)
    test_fp = data_fingerprint(test, test_utts)
    train_utts, train_fp, pairs, audio = [], "", [], {}
    train = None
    fitted = any(parse_spec(s).kind == "ssl_kmeans" for s in cfg.systems)  # they fit on the training split
    if cfg.train_dir and (cfg.probes or cfg.lm or fitted):
        train = DataDir.load(cfg.train_dir)
        train_utts = _spread(train.utts, cfg.max_train_utts)
        train_fp = data_fingerprint(train, train_utts)
        if cfg.lm and cfg.swuggy_words > 0:
            pairs, audio = prepare_swuggy(train.subset(train_utts), cfg)
    hyps = reference_transcripts(test, test_utts, test_fp, cfg) if cfg.asr else {}
    seconds = sum(test.utt2dur[u] for u in test_utts) if test.utt2dur and all(u in test.utt2dur for u in test_utts) else None
    meta = {"test_dir": str(cfg.test_dir), "num_test_utts": len(test_utts), "train_dir": cfg.train_dir,
            "num_train_utts": len(train_utts), "eval_sample_rate": cfg.eval_sample_rate, "device": cfg.device,
            "dtype": cfg.dtype, "reconstruction_workers": cfg.recon_devices(),
            "created": time.strftime("%Y-%m-%d %H:%M:%S"), "probe": cfg.probe.to_dict(),
            "probe_preset": cfg.probe.describe(), "speaker_encoder": cfg.speaker_encoder,
            "lm_model": cfg.lm_model.to_dict(), "swuggy_pairs": pairs}
    if seconds is not None:
        meta["test_hours"] = round(seconds / 3600, 3)
    return Shared(test_utts, test_fp, train_utts, train_fp, hyps, pairs, audio), meta


# ----------------------------------------------------------------------------- entry point


def _run_all(cfg: BenchConfig, shared: Shared) -> list[dict]:
    from tqdm import tqdm

    specs = list(cfg.systems)
    rows: dict[str, dict] = {}
    bar = tqdm(total=len(specs), desc="systems", disable=not progress_enabled(cfg))
    if cfg.nj == 1 or len(specs) == 1:
        for spec in specs:
            bar.set_postfix_str(spec[:40])
            rows[spec] = evaluate_system(spec, cfg, shared, position=1)
            bar.update()
    else:
        # spawn: forked children would inherit the parent's torch/CTranslate2 thread pools.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(min(cfg.nj, len(specs)), mp_context=context) as pool:
            futures = {pool.submit(evaluate_system, spec, cfg, shared, i % cfg.nj + 1): spec
                       for i, spec in enumerate(specs)}
            for future in as_completed(futures):
                spec = futures[future]
                try:
                    rows[spec] = future.result()
                except Exception as err:  # the worker process died (e.g. killed for memory)
                    from voxtok.bench.systems import parse_spec

                    rows[spec] = {"system": parse_spec(spec).name, "spec": spec, "status": "failed",
                                  "error": f"worker: {_one_line(err)}"}
                bar.update()
    bar.close()
    return [rows[s] for s in specs]


def _combine_per_utt(cfg: BenchConfig, rows: Sequence[dict]) -> None:
    from voxtok.bench.systems import parse_spec

    combined = []
    for spec in cfg.systems:
        path = Path(cfg.out_dir) / "systems" / parse_spec(spec).safe_name / "per_utt.csv"
        if path.is_file():
            with open(path, newline="", encoding="utf-8") as f:
                combined += [{"system": parse_spec(spec).name, **r} for r in csv.DictReader(f)]
    if combined:
        _write_csv(Path(cfg.out_dir) / "per_utterance.csv", combined)


def run_benchmark(cfg: BenchConfig) -> list[dict]:
    """Evaluate every system of `cfg` and write the report; returns the rows (one per system)."""
    from voxtok.bench.failures import reset_metric_failures
    from voxtok.bench.report import write_report

    cfg.check()
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    reset_metric_failures()
    shared, meta = prepare_shared(cfg)
    rows = _run_all(cfg, shared)
    _write_json(out / "results.json", {"meta": meta, "rows": rows})
    _combine_per_utt(cfg, rows)
    write_report(rows, out, meta)
    return rows

