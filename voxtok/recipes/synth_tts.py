"""Synthesize a test set with a trained TTS pipeline: each utterance in its own speaker's voice,
cloned from ANOTHER utterance of that speaker (zero-shot: the prompt transcript is given).

Example:
    python -m voxtok.recipes.synth_tts pipeline=exp/mini/tts/cosyvoice.yaml test_dir=data/test \
        out_dir=exp/mini/tts/synth_cosyvoice max_utts=40

Writes out_dir/wav/<utt>.wav, a Kaldi data dir out_dir/data (wav.scp, text, utt2spk, spk2utt),
out_dir/prompts (utt -> prompt utt) and out_dir/timing.json (real-time factor). With
`resynth=true` it also writes out_dir/resynth: the vocoder applied to each ground-truth mel
(the vocoder's ceiling). Existing outputs are kept, so a killed run continues.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from omegaconf import DictConfig

from voxtok.audio import save_audio
from voxtok.data.dataset import load_utterance
from voxtok.data.kaldi import DataDir, write_kv
from voxtok.errors import BadDataDirError
from voxtok.recipes import recipe_main


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


def write_data_dir(out: Path, data: DataDir, utts: list[str], wav_dir: Path) -> None:
    """A Kaldi data dir for the synthesized utterances (same text and speakers as the source)."""
    DataDir(wav_scp={u: str((wav_dir / f"{u}.wav").resolve()) for u in utts},
            text={u: data.text[u] for u in utts}, utt2spk={u: data.utt2spk[u] for u in utts}).save(out)


def synthesize_test_set(cfg: dict) -> Path:
    """Run the synthesis described above; returns out_dir."""
    from voxtok.registry import load

    torch.set_num_threads(int(cfg.get("threads") or torch.get_num_threads()))
    pipe = load(cfg["pipeline"], kind="pipeline")
    data = DataDir.load(cfg["test_dir"])
    out = Path(cfg["out_dir"])
    wav_dir = out / "wav"
    wav_dir.mkdir(parents=True, exist_ok=True)
    pairs = prompt_pairs(data, cfg.get("max_utts"))
    seconds_audio = seconds_compute = 0.0
    done = []
    for i, (utt, prompt_utt) in enumerate(pairs):
        target = wav_dir / f"{utt}.wav"
        if not target.is_file():
            wav = load_utterance(data, prompt_utt, pipe.sample_rate)
            t0 = time.perf_counter()
            prompt = pipe.prepare_prompt(wav, pipe.sample_rate, data.text[prompt_utt], name=prompt_utt)
            audio = pipe.synthesize(data.text[utt], prompt, cfg.get("mode", "zero_shot"),
                                    n_steps=cfg.get("n_steps"), seed=int(cfg.get("seed", 0)) + i)
            seconds_compute += time.perf_counter() - t0
            seconds_audio += audio.shape[-1] / pipe.sample_rate
            save_audio(target, audio, pipe.sample_rate)
        done.append(utt)
        print(f"[{i + 1}/{len(pairs)}] {utt} (voice of {prompt_utt})", flush=True)
    write_data_dir(out / "data", data, done, wav_dir)
    write_kv(out / "prompts", dict(pairs))
    if seconds_audio:
        (out / "timing.json").write_text(json.dumps({"seconds_audio": seconds_audio, "seconds_compute": seconds_compute,
                                                     "rtf": seconds_compute / seconds_audio}, indent=1))
    if cfg.get("resynth"):
        resynthesize(pipe.vocoder, data, done, out / "resynth")
    return out


@torch.inference_mode()
def resynthesize(vocoder, data: DataDir, utts: list[str], out: Path) -> None:
    """Vocoder on each ground-truth mel -> out/wav + a data dir out/data."""
    wav_dir = out / "wav"
    wav_dir.mkdir(parents=True, exist_ok=True)
    for utt in utts:
        target = wav_dir / f"{utt}.wav"
        if not target.is_file():
            wav = load_utterance(data, utt, vocoder.sample_rate)
            audio = vocoder(vocoder.mel(wav[None]))[0].clamp(-1, 1)
            save_audio(target, audio, vocoder.sample_rate)
    write_data_dir(out / "data", data, utts, wav_dir)


@recipe_main("synth_tts")
def main(cfg: DictConfig) -> None:
    from omegaconf import OmegaConf

    out = synthesize_test_set(OmegaConf.to_container(cfg, resolve=True))
    print(f"synthesized test set -> {out}")


if __name__ == "__main__":
    main()
