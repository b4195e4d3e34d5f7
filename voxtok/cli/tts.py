"""`voxtok tts ...`: zero-shot voice cloning with a trained TTS pipeline, and the pipeline manifests.

The pipeline names, modes and what each pipeline can do (streaming, CFG, prompt length) come from the
registered pipeline classes (voxtok/tts/pipeline.py), never from lists kept here.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from voxtok.cli.common import command, group
from voxtok.device import add_device_options
from voxtok.errors import BadConfigError

EXAMPLE = ('voxtok tts synth --exp egs/libritts/exp/mini --text "Hello there." '
           '--prompt-wav ref.wav --prompt-text "What the reference says." -o out.wav')
MANIFEST_EXAMPLE = ("voxtok tts manifest --model cosyvoice -o exp/tts/cosyvoice.yaml llm=exp/tts/llm/model "
                    "flow=exp/tts/flow/model vocoder=exp/tts/vocoder/model tokenizer=exp/s3/model "
                    "speakers=dump/spk/train")


class _DeferredChoices:
    """argparse `choices` computed when first needed: the pipeline names and modes come from model
    code that imports torch, which `voxtok --help` and the other command groups must not wait for.
    Options using it need a `metavar` (argparse would otherwise list the choices while building)."""

    def __init__(self, read):
        self._read = read

    def __iter__(self):
        return iter(self._read())

    def __contains__(self, value) -> bool:
        return value in self._read()


def _pipeline_names() -> list[str]:
    from voxtok.registry import registered

    return sorted(registered("pipeline"))


def _mode_names() -> list[str]:
    from voxtok.tts.pipeline import MODE_LABELS

    return list(MODE_LABELS)


def _manifest(args: argparse.Namespace) -> Path:
    if args.pipeline:
        return Path(args.pipeline)
    if not args.exp:
        raise BadConfigError("give --pipeline MANIFEST or --exp EXP_DIR (holding tts/<model>.yaml)")
    return Path(args.exp) / "tts" / f"{args.model}.yaml"


def _load_pipeline(args: argparse.Namespace):
    from voxtok.device import resolve_device, resolve_dtype
    from voxtok.registry import load

    # An absent GPU or a dtype it cannot run is reported before any model is read.
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    pipe = load(_manifest(args), map_location=device, kind="pipeline")
    if args.model != pipe.registry_name and args.pipeline is None:
        raise BadConfigError(f"manifest holds a {pipe.registry_name} pipeline, not {args.model}")
    return pipe.to(device, dtype)


def _synth(args: argparse.Namespace) -> int:
    import time

    from voxtok.audio import load_audio, save_audio
    from voxtok.tts.pipeline import timed_stream

    pipe = _load_pipeline(args)
    pipe.check_options(args.mode, streaming=args.stream, cfg_strength=args.cfg)
    prompt = None
    if args.prompt_wav:
        wav, sr = load_audio(args.prompt_wav, None, min_seconds=pipe.min_prompt_seconds,
                             max_seconds=pipe.max_prompt_seconds)
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
    for spk in _load_pipeline(args).speakers.ids():
        print(spk)
    return 0


def _write_manifest(args: argparse.Namespace) -> int:
    from voxtok.registry import lookup
    from voxtok.tts.manifest import write_manifest

    spec = {"model": args.model}
    for part in args.parts:
        key, sep, value = part.partition("=")
        if not sep or not key or not value:
            raise BadConfigError(f"manifest parts are KEY=PATH, got '{part}'")
        if key in spec:
            raise BadConfigError(f"manifest part '{key}' given twice")
        spec[key] = value
    lookup("pipeline", args.model).check_manifest(spec)
    print(write_manifest(args.output, spec))
    return 0


def _model_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", choices=_DeferredChoices(_pipeline_names), default="cosyvoice", metavar="MODEL",
                   help="registered TTS pipeline: %(choices)s")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--exp", default=None,
                   help="recipe exp dir holding tts/<model>.yaml (or a `voxtok convert cosyvoice` output folder)")
    p.add_argument("--pipeline", default=None, help="a pipeline manifest (overrides --exp/--model)")
    _model_option(p)
    add_device_options(p)


def add_commands(sub) -> None:
    """`voxtok tts synth|speakers|manifest`."""
    tts = group(sub, "tts", "text-to-speech with zero-shot voice cloning")
    p = command(tts, "synth", "synthesize text in a reference voice (or a stored one)", EXAMPLE, _synth)
    _common(p)
    p.add_argument("--text", required=True)
    p.add_argument("--prompt-wav", default=None, help="reference audio (0.5-30 s)")
    p.add_argument("--prompt-text", default=None, help="transcript of the reference (zero_shot mode)")
    p.add_argument("--mode", choices=_DeferredChoices(_mode_names), default="zero_shot", metavar="MODE",
                   help="%(choices)s. zero_shot: reference + transcript; cross_lingual: reference only; "
                        "sft: --speaker")
    p.add_argument("--speaker", default=None, help="stored speaker id for --mode sft (see `voxtok tts speakers`)")
    p.add_argument("--steps", type=int, default=None, help="flow-matching ODE steps (default: the model's)")
    p.add_argument("--cfg", type=float, default=None,
                   help="classifier-free guidance strength (pipelines with CFG only)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--stream", action="store_true",
                   help="decode in chunks and print the first-chunk latency (streaming pipelines only)")
    p.add_argument("--first-chunk-tokens", type=int, default=None,
                   help="smaller first chunk: lower latency (speech tokens; Flow-Omni's are mel frames)")
    p.add_argument("-o", "--output", required=True, help="output .wav")
    p = command(tts, "speakers", "list the stored voices usable with --mode sft",
                "voxtok tts speakers --exp egs/libritts/exp/mini", _speakers)
    _common(p)
    p = command(tts, "manifest", "write a pipeline manifest naming its trained parts (paths stored relative to it)",
                MANIFEST_EXAMPLE, _write_manifest)
    _model_option(p)
    p.add_argument("-o", "--output", required=True, help="manifest to write (.yaml)")
    p.add_argument("parts", nargs="+", metavar="KEY=PATH",
                   help="a part's checkpoint folder (or the speakers store), relative to the current directory")
