"""Evaluate a trained S3 tokenizer on a transcribed data dir: greedy-CTC CER / WER of its
recognizer, and how it uses its codebook.

Example:
    python -m voxtok.recipes.eval_s3 model=exp/mini/s3/model test_dir=data/test out_dir=exp/mini/s3/eval

Writes out_dir/results.csv (one row per utterance: reference, hypothesis, CER, WER, frames),
out_dir/table.md and prints the table. CER / WER are pooled over the set (jiwer, normalised text
as the model's vocabulary sees it); codebook usage is the share of codes used over all test
frames, perplexity exp(entropy) of their histogram.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path

import torch
from omegaconf import DictConfig

from voxtok.atomic import atomic_write
from voxtok.bench.tokens import code_statistics
from voxtok.registry import load
from voxtok.data.dataset import LengthBucketSampler, load_utterance, pad_batch, utterance_duration
from voxtok.data.kaldi import DataDir
from voxtok.device import precision, resolve_device, resolve_dtype
from voxtok.errors import BadConfigError
from voxtok.recipes import recipe_main


def evaluate(cfg: DictConfig) -> dict:
    """Transcribe and tokenize every test utterance; returns the summary row."""
    import jiwer

    device = resolve_device(cfg.get("device", "cpu"))  # before loading: an absent GPU is one line
    dtype = resolve_dtype(cfg.get("dtype", "float32"), device)
    model = load(cfg.model, map_location=device, kind="codec")
    if not hasattr(model, "recognize"):
        raise BadConfigError(f"model is a '{model.codec_name}' codec, not an S3 tokenizer with a recognizer", cfg.model)
    sr = model.sample_rate
    data = DataDir.load(cfg.test_dir)
    utts = [u for u in data.utts if u in data.text]
    utts = utts[: cfg.max_utts] if cfg.get("max_utts") else utts
    if not utts:
        raise BadConfigError("no transcribed utterances to evaluate", cfg.test_dir)
    durations = [utterance_duration(data, u) for u in utts]
    sampler = LengthBucketSampler(durations, max_frames=float(cfg.batch_seconds))
    rows, codes_seen = [], []
    seconds = 0.0
    for indices in sampler:
        wavs = [load_utterance(data, utts[i], sr) for i in indices]
        wav, lengths = pad_batch(wavs)
        start = time.perf_counter()
        with torch.inference_mode(), precision(device, dtype):
            hyps, codes, frames = model.recognize(wav.to(device), lengths.to(device))
        seconds += time.perf_counter() - start
        for j, i in enumerate(indices):
            ref = model.vocab.normalize(data.text[utts[i]])
            codes_seen.append(codes[j, :, : int(frames[j])].cpu())
            rows.append({"utt": utts[i], "ref": ref, "hyp": hyps[j], "cer": jiwer.cer(ref, hyps[j]),
                         "wer": jiwer.wer(ref, hyps[j]), "frames": int(frames[j])})
    rows.sort(key=lambda r: r["utt"])
    refs, hyps = [r["ref"] for r in rows], [r["hyp"] for r in rows]
    summary = {"system": f"s3 ({Path(cfg.model).parent.name})", "frame_rate": model.frame_rate,
               "codebook_size": model.codebook_size, "kbps": model.bitrate / 1000,
               "cer": jiwer.cer(refs, hyps), "wer": jiwer.wer(refs, hyps),
               "rtf": seconds / max(sum(durations), 1e-9)}
    summary.update(code_statistics(codes_seen, model.codebook_size))
    write_outputs(Path(cfg.out_dir), rows, summary)
    return summary


def format_table(summary: dict, num_utts: int) -> str:
    """Markdown table of the summary row."""
    s = summary
    return ("| system | tokens/s | codebook | kbit/s | CER | WER | codebook usage | perplexity | RTF |\n"
            "|---|---|---|---|---|---|---|---|---|\n"
            f"| {s['system']} | {s['frame_rate']:g} | {s['codebook_size']} | {s['kbps']:.2f} | {s['cer']:.1%} | "
            f"{s['wer']:.1%} | {s['usage']:.1%} | {s['perplexity']:.0f} | {s['rtf']:.3f} |\n"
            f"\n{num_utts} test utterances; greedy CTC; CER / WER pooled over the set.\n")


def write_outputs(out_dir: Path, rows: list[dict], summary: dict) -> None:
    """results.csv (per utterance) and table.md (summary)."""
    with atomic_write(out_dir / "results.csv", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["utt", "ref", "hyp", "cer", "wer", "frames"])
        writer.writeheader()
        writer.writerows(rows)
    with atomic_write(out_dir / "table.md") as handle:
        handle.write(format_table(summary, len(rows)))


@recipe_main("eval_s3")
def main(cfg: DictConfig) -> None:
    evaluate(cfg)
    print((Path(cfg.out_dir) / "table.md").read_text())


if __name__ == "__main__":
    main()
