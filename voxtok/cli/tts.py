"""`voxtok tts ...`: zero-shot voice cloning with a trained CosyVoice-style or Flow-Omni pipeline."""

from __future__ import annotations

import argparse
from pathlib import Path

from voxtok.cli.common import command, group
from voxtok.errors import BadConfigError

EXAMPLE = ('voxtok tts synth --exp egs/libritts/exp/mini --text "Hello there." '
           '--prompt-wav ref.wav --prompt-text "What the reference says." -o out.wav')


def _manifest(args: argparse.Namespace) -> Path:
    if args.pipeline:
        return Path(args.pipeline)
    if not args.exp:
        raise BadConfigError("give --pipeline MANIFEST or --exp EXP_DIR (holding tts/<model>.yaml)")
    return Path(args.exp) / "tts" / f"{args.model}.yaml"


def _synth(args: argparse.Namespace) -> int:
    import time

    from voxtok.audio import load_audio, save_audio
    from voxtok.tts.cosyvoice import timed_stream
    from voxtok.tts.pipeline import load_pipeline

    pipe = load_pipeline(_manifest(args))
    if args.model != pipe.model_name and args.pipeline is None:
        raise BadConfigError(f"manifest holds a {pipe.model_name} pipeline, not {args.model}")
    prompt = None
    if args.prompt_wav:
        wav, sr = load_audio(args.prompt_wav, None, min_seconds=0.5, max_seconds=30.0)
        prompt = pipe.prepare_prompt(wav, sr, args.prompt_text, name=args.prompt_wav)
    kw = dict(n_steps=args.steps, cfg_strength=args.cfg, seed=args.seed)
    t0 = time.perf_counter()
    if args.stream:
        audio, first = timed_stream(pipe.stream(args.text, prompt, args.mode, args.speaker,
                                                first_chunk_tokens=args.first_chunk_tokens, **kw))
        print(f"first chunk after {first * 1000:.0f} ms")
    else:
        audio = pipe.synthesize(args.text, prompt, args.mode, args.speaker, **kw)
    seconds = time.perf_counter() - t0
    save_audio(args.output, audio, pipe.sample_rate)
    dur = audio.shape[-1] / pipe.sample_rate
    print(f"{args.output}: {dur:.2f} s of audio in {seconds:.2f} s (RTF {seconds / max(dur, 1e-9):.2f})")
    return 0


def _speakers(args: argparse.Namespace) -> int:
    from voxtok.tts.pipeline import load_pipeline

    for spk in load_pipeline(_manifest(args)).speakers.ids():
        print(spk)
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--exp", default=None, help="recipe exp dir holding tts/<model>.yaml")
    p.add_argument("--pipeline", default=None, help="a pipeline manifest (overrides --exp/--model)")
    p.add_argument("--model", choices=["cosyvoice", "flowomni"], default="cosyvoice")


def add_commands(sub) -> None:
    """`voxtok tts synth|speakers`."""
    tts = group(sub, "tts", "text-to-speech with zero-shot voice cloning")
    p = command(tts, "synth", "synthesize text in a reference voice (or a stored one)", EXAMPLE, _synth)
    _common(p)
    p.add_argument("--text", required=True)
    p.add_argument("--prompt-wav", default=None, help="reference audio (0.5-30 s)")
    p.add_argument("--prompt-text", default=None, help="transcript of the reference (zero_shot mode)")
    p.add_argument("--mode", choices=["zero_shot", "cross_lingual", "sft"], default="zero_shot",
                   help="zero_shot: reference + transcript; cross_lingual: reference only; sft: --speaker")
    p.add_argument("--speaker", default=None, help="stored speaker id for --mode sft (see `voxtok tts speakers`)")
    p.add_argument("--steps", type=int, default=None, help="flow-matching ODE steps (default: the model's)")
    p.add_argument("--cfg", type=float, default=None, help="classifier-free guidance strength")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--stream", action="store_true", help="decode in chunks and print the first-chunk latency")
    p.add_argument("--first-chunk-tokens", type=int, default=None, help="smaller first chunk: lower latency")
    p.add_argument("-o", "--output", required=True, help="output .wav")
    p = command(tts, "speakers", "list the stored voices usable with --mode sft",
                "voxtok tts speakers --exp egs/libritts/exp/mini", _speakers)
    _common(p)
