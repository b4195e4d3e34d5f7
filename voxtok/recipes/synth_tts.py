"""Synthesize a test set with a trained TTS pipeline: each utterance in its own speaker's voice,
cloned from ANOTHER utterance of that speaker (zero-shot: the prompt transcript is given).

Example:
    python -m voxtok.recipes.synth_tts pipeline=exp/mini/tts/cosyvoice.yaml test_dir=data/test \
        out_dir=exp/mini/tts/synth_cosyvoice max_utts=40 nj=2 batch_size=4

Writes out_dir/wav/<utt>.wav, a Kaldi data dir out_dir/data (wav.scp, text, utt2spk, spk2utt),
out_dir/prompts (utt -> prompt utt) and out_dir/timing.json (real-time factor). With
`resynth=true` it also writes out_dir/resynth: the vocoder applied to each ground-truth mel
(the vocoder's ceiling).

Scale: the utterances are split over workers (`ngpu` GPUs, one worker each, or `nj` CPU processes;
voxtok/workers.py) with one progress bar; each worker loads the pipeline once on its `device` and
synthesizes `batch_size` texts per `synthesize_batch` call (CosyVoice's LLM decodes a batch at once),
in `dtype` (float32, or bfloat16 / float16 autocast). The batches are cut from the whole list before
they are dealt out and utterance i always gets seed `seed + i`, so the audio is the same whatever the
number of workers. Every wav is written atomically and a rerun skips finished ones (a batch with a
missing wav is redone whole, keeping its other members' seeds and batch-mates, and only the missing
files are written), so a killed run continues where it stopped. The data dir files are written at
the end, from the wavs that exist.
"""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path
from typing import Callable, NamedTuple

import torch
from omegaconf import DictConfig

from voxtok.atomic import atomic_write
from voxtok.audio import save_audio
from voxtok.data.dataset import load_utterance
from voxtok.data.kaldi import DataDir, write_kv
from voxtok.errors import BadConfigError, BadDataDirError
from voxtok.recipes import recipe_main


class Job(NamedTuple):
    """One utterance to synthesize: its index in the pair list (its seed offset), its id, the
    utterance whose voice it clones, and the batch it belongs to."""

    index: int
    utt: str
    prompt_utt: str
    batch: int


def prompt_pairs(data: DataDir, max_utts: int | None = None) -> list[tuple[str, str]]:
    """[(utt, prompt utt)]: the prompt is the next utterance of the same speaker (cyclically).

    Utterances are taken round-robin over speakers so a small `max_utts` still covers every
    speaker. Speakers with a single utterance cannot be cloned from another one and are skipped.
    """
    per_spk = {spk: sorted(utts) for spk, utts in data.spk2utt.items() if len(utts) > 1}
    if not per_spk:
        raise BadDataDirError("no speaker has two utterances: nothing to clone from")
    pairs, depth = [], 0
    while len(pairs) < (max_utts or 10**9) and any(depth < len(u) for u in per_spk.values()):
        for spk in sorted(per_spk):
            utts = per_spk[spk]
            if depth < len(utts) and len(pairs) < (max_utts or 10**9):
                pairs.append((utts[depth], utts[(depth + 1) % len(utts)]))
        depth += 1
    return pairs


def plan_jobs(pairs: list[tuple[str, str]], batch_size: int) -> list[Job]:
    """Number the pairs and cut them into batches of `batch_size` consecutive pairs (the cut depends
    on nothing else, so neither does any utterance's audio)."""
    return [Job(i, utt, prompt, i // batch_size) for i, (utt, prompt) in enumerate(pairs)]


def write_data_dir(out: Path, data: DataDir, utts: list[str], wav_dir: Path) -> None:
    """A Kaldi data dir for the synthesized utterances (same text and speakers as the source)."""
    DataDir(wav_scp={u: str((wav_dir / f"{u}.wav").resolve()) for u in utts},
            text={u: data.text[u] for u in utts}, utt2spk={u: data.utt2spk[u] for u in utts}).save(out)


def _settings(cfg: dict) -> dict:
    """The recipe's settings, checked (one-line BadConfigError for a bad worker or batch setting)."""
    out = dict(cfg)
    for key, low in (("batch_size", 1), ("nj", 1), ("ngpu", 0)):
        value = out.get(key, low)
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise BadConfigError(f"{key} must be an integer >= {low}, got {value!r}")
        out[key] = value
    return out


def _progress(cfg: dict) -> bool:
    """A progress bar unless `progress=false` or VOXTOK_PROGRESS=0 (as the benchmark)."""
    from voxtok.workers import progress_wanted

    return progress_wanted(cfg.get("progress", True))


def _outputs(job: Job, out: Path, resynth: bool) -> list[Path]:
    """The files a job writes: its synthesized wav (+ the vocoder resynthesis of its ground truth)."""
    paths = [out / "wav" / f"{job.utt}.wav"]
    return paths + [out / "resynth" / "wav" / f"{job.utt}.wav"] if resynth else paths


def synthesize_part(device: str, jobs: list[Job], progress: Callable[[int], None], cfg: dict) -> dict:
    """Worker: synthesize `jobs` (whole batches) on `device`, writing each missing wav atomically.

    Returns {"seconds_audio", "seconds_compute", "utts"} for what this worker synthesized (the
    resynthesis is not timed: it is the vocoder's ceiling, not a system).
    """
    from voxtok.registry import load

    pipe = load(cfg["pipeline"], map_location=device, kind="pipeline").to(device, cfg.get("dtype"))
    data = DataDir.load(cfg["test_dir"])
    out, resynth = Path(cfg["out_dir"]), bool(cfg.get("resynth"))
    timing = {"seconds_audio": 0.0, "seconds_compute": 0.0, "utts": 0}
    for _, group in itertools.groupby(jobs, key=lambda job: job.batch):
        batch = list(group)
        missing = [not (out / "wav" / f"{job.utt}.wav").is_file() for job in batch]
        if any(missing):
            t0 = time.perf_counter()
            prompts = [pipe.prepare_prompt(load_utterance(data, job.prompt_utt, pipe.sample_rate), pipe.sample_rate,
                                           data.text[job.prompt_utt], name=job.prompt_utt) for job in batch]
            audio = pipe.synthesize_batch([data.text[job.utt] for job in batch], prompts, cfg.get("mode", "zero_shot"),
                                          n_steps=cfg.get("n_steps"),
                                          seed=[int(cfg.get("seed", 0)) + job.index for job in batch])
            timing["seconds_compute"] += time.perf_counter() - t0
            for job, wav, todo in zip(batch, audio, missing):
                if todo:
                    timing["seconds_audio"] += wav.shape[-1] / pipe.sample_rate
                    timing["utts"] += 1
                    save_audio(out / "wav" / f"{job.utt}.wav", wav, pipe.sample_rate)
        if resynth:
            for job in batch:
                target = out / "resynth" / "wav" / f"{job.utt}.wav"
                if not target.is_file():
                    save_audio(target, resynthesize_one(pipe, data, job.utt), pipe.vocoder.sample_rate)
        progress(len(batch))
    return timing


@torch.inference_mode()
def resynthesize_one(pipe, data: DataDir, utt: str) -> torch.Tensor:
    """The pipeline's vocoder on the ground-truth mel of `utt` -> float32 CPU audio [1, T]."""
    vocoder = pipe.vocoder
    wav = load_utterance(data, utt, vocoder.sample_rate).to(pipe.device)
    with pipe.precision():
        audio = vocoder(vocoder.mel(wav[None]))[0]
    return audio.float().clamp(-1, 1).cpu()


def synthesize_test_set(cfg: dict) -> Path:
    """Run the synthesis described above over `nj` CPU workers or `ngpu` GPUs; returns out_dir."""
    from voxtok.device import resolve_dtype, worker_devices
    from voxtok.workers import balance, run_workers

    cfg = _settings(cfg)
    devices = worker_devices(cfg["ngpu"], cfg["nj"], cfg.get("device") or "cpu")
    resolve_dtype(cfg.get("dtype"), devices[0])  # a bad dtype fails here, not in every worker
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg["threads"]))
    data = DataDir.load(cfg["test_dir"])
    out = Path(cfg["out_dir"])
    (out / "wav").mkdir(parents=True, exist_ok=True)
    pairs = prompt_pairs(data, cfg.get("max_utts"))
    jobs = plan_jobs(pairs, cfg["batch_size"])
    resynth = bool(cfg.get("resynth"))
    batches = [list(group) for _, group in itertools.groupby(jobs, key=lambda job: job.batch)]
    earlier = sum((out / "wav" / f"{utt}.wav").is_file() for utt, _ in pairs)
    todo = [b for b in batches if not all(p.is_file() for job in b for p in _outputs(job, out, resynth))]
    if todo:
        # Synthesis time grows with the text (the LLM prompt and the output), so that is the cost dealt.
        costs = [sum(len(data.text[job.utt]) + len(data.text[job.prompt_utt]) for job in b) for b in todo]
        devices = devices[: len(todo)]
        parts = [[job for b in part for job in b] for part in balance(todo, costs, len(devices))]
        start = time.perf_counter()
        results = run_workers(synthesize_part, parts, devices, args=(cfg,), desc=f"synthesize {out.name}",
                              progress=_progress(cfg), threads=cfg.get("threads"))
        timing = {key: sum(r[key] for r in results) for key in ("seconds_audio", "seconds_compute", "utts")}
        if timing["seconds_audio"]:
            # rtf: compute seconds per second of audio on one worker; wall_seconds: the whole run.
            timing.update(rtf=timing["seconds_compute"] / timing["seconds_audio"], workers=len(devices),
                          devices=sorted(set(devices)), wall_seconds=time.perf_counter() - start)
            with atomic_write(out / "timing.json") as handle:
                json.dump(timing, handle, indent=1)
    done = [utt for utt, _ in pairs if (out / "wav" / f"{utt}.wav").is_file()]
    write_data_dir(out / "data", data, done, out / "wav")
    write_kv(out / "prompts", dict(pairs))
    if resynth:
        write_data_dir(out / "resynth" / "data", data, done, out / "resynth" / "wav")
    print(f"{len(done)} utterances ({earlier} from an earlier run) in {out / 'wav'}")
    return out


@recipe_main("synth_tts")
def main(cfg: DictConfig) -> None:
    from omegaconf import OmegaConf

    out = synthesize_test_set(OmegaConf.to_container(cfg, resolve=True))
    print(f"synthesized test set -> {out}")


if __name__ == "__main__":
    main()
