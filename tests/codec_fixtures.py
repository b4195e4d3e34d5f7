"""Codec test inputs shared across files: a Kaldi data dir of harmonic tones, a TensorBoard scalar
reader for training runs, and the tiny DM-Codec-family model configs (with k-means-fitted codebooks)."""

from pathlib import Path

import numpy as np
import torch
import yaml

from voxtok.audio import save_audio

CODEC_CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "codec"


def make_data_dir(root: Path, n: int = 8) -> Path:
    """n 0.5 s harmonic tones at 24 kHz, two speakers -> root/data (wav.scp, text, utt2spk, spk2utt)."""
    rng = np.random.default_rng(0)
    wavs, lines = root / "wav", []
    for i in range(n):
        t = np.arange(int(0.5 * 24000)) / 24000
        f0 = 120 + 20 * i
        x = sum(0.2 / k * np.sin(2 * np.pi * k * f0 * t) for k in range(1, 6)) + 0.005 * rng.standard_normal(len(t))
        save_audio(wavs / f"s{i % 2}_u{i}.wav", x, 24000)
        lines.append((f"s{i % 2}_u{i}", f"s{i % 2}"))
    d = root / "data"
    d.mkdir(parents=True)
    (d / "wav.scp").write_text("".join(f"{u} {wavs / (u + '.wav')}\n" for u, _ in sorted(lines)))
    (d / "text").write_text("".join(f"{u} hello\n" for u, _ in sorted(lines)))
    (d / "utt2spk").write_text("".join(f"{u} {s}\n" for u, s in sorted(lines)))
    (d / "spk2utt").write_text("".join(f"s{k} " + " ".join(u for u, s in sorted(lines) if s == f"s{k}") + "\n" for k in range(2)))
    return d


def scalars(exp: Path, tag: str) -> list[float]:
    """The values logged under `tag` in exp/tensorboard, in step order."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(exp / "tensorboard"))
    acc.Reload()
    return [e.value for e in acc.Scalars(tag)]


def codec_config(name: str) -> dict:
    """configs/codec/<name>.yaml as a dict."""
    return yaml.safe_load((CODEC_CONFIGS / f"{name}.yaml").read_text())


TINY_OVERRIDES = {"encoder": {"n_filters": 4, "dimension": 16}, "decoder": {"n_filters": 4, "dimension": 16},
                  "quantizer": {"codebook_size": 16, "warmup_steps": 0}}


def tiny_model(name="dmcodec_lmsm_tiny", dims=(12, 10), **extra):
    """The model block of configs/codec/<name>.yaml shrunk further (teacher dims `dims` for lm, sm)."""
    model = codec_config(name)["model"]
    for block, values in TINY_OVERRIDES.items():
        model[block].update(values)
    for target, dim in zip(("lm", "sm"), dims):
        if target in (model.get("distill") or {}):
            model["distill"][target]["dim"] = dim
    for key, value in extra.items():
        model[key] = value
    return model


def fitted(codec):
    """k-means-initialised codebooks (one training forward), in eval mode."""
    torch.manual_seed(0)
    codec.train()
    codec.training_forward(torch.randn(4, 1, 16000) * 0.2, step=10**6)
    return codec.eval()
