"""Evaluate a trained codec against classical codecs on a data dir (held-out test speakers).

Example:
    python -m voxtok.recipes.eval_codec model=exp/mini/codec_wavtokenizer/model test_dir=data/test \
        out_dir=exp/mini/codec_wavtokenizer/eval baselines=[codec2_1200,codec2_3200]

Writes out_dir/results.csv (one row per system and utterance), out_dir/table.md (means) and prints
the table. Metrics: PESQ-wb, STOI, mel distance at the codec's rate; codebook usage (share of codes
used over the whole set) and code perplexity for the neural codec; bitrate as produced.

Options: `n_q=N` keeps the first N codebooks of an RVQ codec (its bitrate drops accordingly);
`speaker_similarity=true` adds the d-vector cosine of original and reconstruction;
`asr=true` transcribes originals and reconstructions with Whisper tiny.en (voxtok.bench.asr) and
adds WER (against the data dir's text) and dWER (against the original audio's transcript);
`device=cuda dtype=bfloat16` runs the codec (and Whisper) on a GPU, the codec under bfloat16 autocast.
"""

from __future__ import annotations

import csv
import math
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from voxtok.atomic import atomic_write
from voxtok.audio import save_audio
from voxtok.bench.metrics import reconstruction_metrics
from voxtok.bench.tokens import code_statistics
from voxtok.registry import load
from voxtok.data.dataset import load_utterance
from voxtok.data.kaldi import DataDir
from voxtok.device import precision, resolve_device, resolve_dtype
from voxtok.recipes import recipe_main

METRICS = ("pesq_wb", "stoi", "mel_distance")
OPTIONAL_COLUMNS = (("speaker_similarity", "spk sim", ".3f"), ("wer", "WER", ".1%"), ("dwer", "dWER", ".1%"))


def evaluate(cfg: DictConfig) -> list[dict]:
    """Run every system over the data dir; returns the table rows (means per system)."""
    from voxtok.bench.baselines import CLASSICAL_CODECS

    device = resolve_device(cfg.get("device", "cpu"))  # before loading: an absent GPU is one line
    dtype = resolve_dtype(cfg.get("dtype", "float32"), device)
    codec = load(cfg.model, map_location=device, kind="codec")
    sr = codec.sample_rate
    n_q = cfg.get("n_q")
    n_q = codec.n_q if n_q is None else int(n_q)
    metrics = (*METRICS, "speaker_similarity") if cfg.get("speaker_similarity") else METRICS
    asr = None
    if cfg.get("asr"):
        from voxtok.bench.asr import WhisperASR

        asr = WhisperASR(device=str(device))
    transcripts: dict[str, list[str]] = {}
    data = DataDir.load(cfg.test_dir)
    utts = data.utts[: cfg.max_utts] if cfg.get("max_utts") else data.utts
    out_dir = Path(cfg.out_dir)
    samples = out_dir / "samples"
    per_utt: list[dict] = []
    codes_seen: list[torch.Tensor] = []
    seconds = {codec.codec_name: 0.0}
    total_audio = 0.0
    for i, utt in enumerate(utts):
        wav = load_utterance(data, utt, sr)
        total_audio += wav.shape[-1] / sr
        start = time.perf_counter()
        with torch.inference_mode(), precision(device, dtype):
            codes = codec.encode(wav[None].to(device), n_q=n_q)
            recon = codec.decode(codes, wav.shape[-1])[0].cpu()
        seconds[codec.codec_name] += time.perf_counter() - start
        codes_seen.append(codes[0].cpu())
        systems = {codec.codec_name: (recon, codec.bitrate_at(n_q))}
        for name in cfg.baselines:
            start = time.perf_counter()
            systems[name] = CLASSICAL_CODECS[name].run(wav[0].numpy(), sr)
            seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - start
        if asr is not None:
            transcripts.setdefault("original", []).append(asr.transcribe_one(wav[0], sr))
            transcripts.setdefault("text", []).append(data.text.get(utt, ""))
        for name, (rec, bitrate) in systems.items():
            row = {"system": name, "utt": utt, "kbps": bitrate / 1000}
            row.update(reconstruction_metrics(wav[0].numpy(), np.asarray(rec).reshape(-1), sr, which=metrics))
            if asr is not None:
                row["transcript"] = asr.transcribe_one(np.asarray(rec).reshape(-1), sr)
                transcripts.setdefault(name, []).append(row["transcript"])
            per_utt.append(row)
            if i < int(cfg.get("num_samples", 3)):
                save_audio(samples / name / f"{utt}.wav", np.asarray(rec).reshape(-1), sr)
        if i < int(cfg.get("num_samples", 3)):
            save_audio(samples / "original" / f"{utt}.wav", wav, sr)

    rows = []
    label = f"{codec.codec_name} ({Path(cfg.model).parent.name})" + (f" n_q={n_q}" if cfg.get("n_q") is not None else "")
    for name in [codec.codec_name, *cfg.baselines]:
        mine = [r for r in per_utt if r["system"] == name]
        row = {"system": name if name != codec.codec_name else label}
        for key in ("kbps", *metrics):
            values = [r[key] for r in mine if not math.isnan(r[key])]
            row[key] = float(np.mean(values)) if values else float("nan")
        if asr is not None:
            from voxtok.bench.asr import asr_scores

            scores = asr_scores(transcripts["text"], transcripts["original"], transcripts[name])
            row.update(wer=scores["wer"], dwer=scores["dwer"])
        row["rtf"] = seconds.get(name, 0.0) / max(total_audio, 1e-9)
        rows.append(row)
    rows[0].update(code_statistics(codes_seen, codec.codebook_size))
    write_outputs(out_dir, per_utt, rows, len(utts))
    return rows


def format_table(rows: list[dict], num_utts: int) -> str:
    """Markdown table of the per-system means (speaker similarity / WER / dWER columns when measured)."""
    extra = [(key, title, spec) for key, title, spec in OPTIONAL_COLUMNS if any(key in r for r in rows)]
    head = "| system | kbit/s | PESQ-wb | STOI | mel dist | " + "".join(f"{t} | " for _, t, _ in extra)
    head += "codebook usage | perplexity | RTF (enc+dec) |\n"
    head += "|---" * (8 + len(extra)) + "|\n"
    fmt = lambda v, spec: "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)
    body = "".join(
        f"| {r['system']} | {fmt(r['kbps'], '.2f')} | {fmt(r['pesq_wb'], '.2f')} | {fmt(r['stoi'], '.3f')} | "
        f"{fmt(r['mel_distance'], '.3f')} | " + "".join(f"{fmt(r.get(k), spec)} | " for k, _, spec in extra)
        + f"{fmt(r.get('usage'), '.1%')} | {fmt(r.get('perplexity'), '.0f')} | "
        f"{fmt(r['rtf'], '.3f')} |\n" for r in rows)
    return head + body + f"\n{num_utts} test utterances; means over utterances.\n"


def write_outputs(out_dir: Path, per_utt: list[dict], rows: list[dict], num_utts: int) -> None:
    """results.csv (per utterance) and table.md (means)."""
    fields = ["system", "utt", "kbps", *METRICS]
    fields += [k for k in ("speaker_similarity", "transcript") if any(k in r for r in per_utt)]
    with atomic_write(out_dir / "results.csv", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, restval="")
        writer.writeheader()
        writer.writerows(per_utt)
    with atomic_write(out_dir / "table.md") as handle:
        handle.write(format_table(rows, num_utts))


@recipe_main("eval_codec")
def main(cfg: DictConfig) -> None:
    evaluate(cfg)
    print((Path(cfg.out_dir) / "table.md").read_text())


if __name__ == "__main__":
    main()
