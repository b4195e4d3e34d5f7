"""Score synthesized test sets: WER (Whisper tiny.en), speaker similarity, robustness, RTF.

Example:
    python -m voxtok.recipes.eval_tts test_dir=data/test prompts=exp/mini/tts/synth_cosyvoice/prompts \
        systems='{ground_truth: data/test, vocoder: exp/mini/tts/synth_cosyvoice/resynth/data,
                  cosyvoice: exp/mini/tts/synth_cosyvoice/data}' out_dir=exp/mini/tts/eval

Every system is a Kaldi data dir holding (a subset of) the test utterances. Only utterances that
every system has are scored, so the rows compare the same sentences.
- WER: Whisper tiny.en transcript vs the reference text (both normalised, voxtok.bench.asr).
- Speaker similarity: cosine of resemblyzer d-vectors of the audio and of the speaker's real
  PROMPT utterance (the one the voice was cloned from: a different sentence), as zero-shot TTS
  papers score it. The ground-truth row is thus the same-speaker ceiling.
- Robustness: share of sentences with skipped words (a run of >= 2 reference words missing from
  the transcript) or repeated words (an n-gram said twice in a row that the reference says once).
- DNSMOS OVRL (P.835, 1..5; SIG/BAK/P.808 in results.csv): non-intrusive quality of the audio
  (voxtok.bench.mos, the speechmos package's ONNX models); `dnsmos=false` skips it.
- RTF: from the synthesis run's timing.json when the system's folder has one next to it.
Writes out_dir/results.csv (per utterance), out_dir/table.md (means) and prints the table.
`device` runs Whisper and the speaker encoder there (cpu, cuda, cuda:N, auto); `dtype` (bfloat16 /
float16) runs the speaker encoder under autocast.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from voxtok.data.dataset import load_utterance
from voxtok.data.kaldi import DataDir, read_kv
from voxtok.errors import BadDataDirError
from voxtok.recipes import recipe_main


def skipped_words(ref: list[str], hyp: list[str]) -> bool:
    """True when >= 2 consecutive reference words are deleted in the best alignment."""
    import jiwer

    if not ref:
        return False
    if not hyp:
        return len(ref) >= 2
    out = jiwer.process_words(" ".join(ref), " ".join(hyp))
    return any(c.type == "delete" and c.ref_end_idx - c.ref_start_idx >= 2 for c in out.alignments[0])


def repeated_words(ref: list[str], hyp: list[str], max_n: int = 4) -> bool:
    """True when the transcript says an n-gram (n <= max_n) twice in a row more often than the reference."""

    def repeats(words: list[str]) -> int:
        count = 0
        for n in range(1, max_n + 1):
            count += sum(words[i:i + n] == words[i + n:i + 2 * n] for i in range(len(words) - 2 * n + 1))
        return count

    return repeats(hyp) > repeats(ref)


def score_systems(cfg: dict) -> list[dict]:
    """Per-utterance rows {system, utt, wer, sim, skipped, repeated} for every system."""
    from voxtok.bench.asr import WhisperASR, normalize_text, word_error_rate
    from voxtok.device import precision, resolve_device, resolve_dtype
    from voxtok.tts.speaker import SpeakerEncoder

    device = resolve_device(cfg.get("device", "cpu"))  # before loading: an absent GPU is one line
    dtype = resolve_dtype(cfg.get("dtype", "float32"), device)
    test = DataDir.load(cfg["test_dir"])
    prompts = read_kv(cfg["prompts"])
    systems = {name: DataDir.load(path) for name, path in cfg["systems"].items()}
    utts = sorted(set(prompts).intersection(*[set(d.utts) for d in systems.values()]))
    if cfg.get("max_utts"):
        utts = utts[: int(cfg["max_utts"])]
    if not utts:
        raise BadDataDirError("the systems share no utterance that has a prompt: nothing to score")
    asr, spk = WhisperASR(cpu_threads=int(cfg.get("threads") or 1), device=str(device)), SpeakerEncoder(str(device))

    def embed(wav, name):
        with precision(device, dtype):
            return spk.embed_utterance(wav, rate, name)

    quality = None
    if cfg.get("dnsmos", True):
        from voxtok.bench.mos import dnsmos_scores as quality
    rate = 16000
    prompt_emb = {}
    for u in utts:
        p = prompts[u]
        if p not in prompt_emb:
            prompt_emb[p] = embed(load_utterance(test, p, rate), p)
    rows = []
    for name, data in systems.items():
        for u in utts:
            wav = load_utterance(data, u, rate)
            ref = normalize_text(test.text[u]).split()
            hyp = normalize_text(asr.transcribe_one(wav[0], rate)).split()
            try:
                sim = float(embed(wav, u) @ prompt_emb[prompts[u]])
            except Exception as err:  # a silent or garbled synthesis still gets a row
                print(f"{name}/{u}: no speaker embedding ({err})")
                sim = float("nan")
            rows.append({"system": name, "utt": u, "wer": word_error_rate([" ".join(ref)], [" ".join(hyp)]),
                         "sim": sim, "skipped": skipped_words(ref, hyp), "repeated": repeated_words(ref, hyp),
                         "hyp": " ".join(hyp), **(quality(wav.reshape(-1).numpy(), rate) if quality else {})})
        print(f"scored {name}: {len(utts)} utterances", flush=True)
    return rows


def summarize(rows: list[dict], systems: dict[str, str]) -> str:
    """Markdown table of the means per system (WER pooled per utterance, robustness as a share)."""
    lines = ["| system | utts | WER | speaker sim | DNSMOS OVRL | skipped | repeated | robust | RTF |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, path in systems.items():
        sel = [r for r in rows if r["system"] == name]
        timing = Path(path).parent / "timing.json"
        rtf = f"{json.loads(timing.read_text())['rtf']:.2f}" if timing.is_file() else "-"
        skipped = np.mean([r["skipped"] for r in sel])
        repeated = np.mean([r["repeated"] for r in sel])
        robust = 1 - np.mean([r["skipped"] or r["repeated"] for r in sel])
        sims = [r["sim"] for r in sel if np.isfinite(r["sim"])]
        sim = f"{np.mean(sims):.3f}" + ("" if len(sims) == len(sel) else f" ({len(sel) - len(sims)} silent)") if sims else "-"
        mos = [r["dnsmos_ovrl"] for r in sel if np.isfinite(r.get("dnsmos_ovrl", np.nan))]
        ovrl = f"{np.mean(mos):.2f}" if mos else "-"
        lines.append(f"| {name} | {len(sel)} | {np.mean([r['wer'] for r in sel]):.1%} | "
                     f"{sim} | {ovrl} | {skipped:.0%} | {repeated:.0%} | {robust:.0%} | {rtf} |")
    return "\n".join(lines) + "\n"


@recipe_main("eval_tts")
def main(cfg: DictConfig) -> None:
    from omegaconf import OmegaConf

    plain = OmegaConf.to_container(cfg, resolve=True)
    rows = score_systems(plain)
    out = Path(plain["out_dir"])
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    table = summarize(rows, plain["systems"])
    (out / "table.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
