"""`voxtok asr ...`: speech recognition with the CTC head of a trained S3 tokenizer."""

from __future__ import annotations

import argparse
import sys

from voxtok.cli.common import command as _command
from voxtok.cli.common import group as _group
from voxtok.device import add_device_options


def _asr_transcribe(args: argparse.Namespace) -> int:
    import torch

    from voxtok.audio import load_audio
    from voxtok.registry import load
    from voxtok.codecs.tokenize import collect_inputs
    from voxtok.data.dataset import LengthBucketSampler, pad_batch
    from voxtok.device import precision, resolve_device, resolve_dtype
    from voxtok.errors import VoxTokError

    device = resolve_device(args.device)  # before loading: an absent GPU is one line, not a traceback
    dtype = resolve_dtype(args.dtype, device)
    model = load(args.model, map_location=device, kind="codec")
    if not hasattr(model, "transcribe"):
        raise VoxTokError(f"model is a '{model.codec_name}' codec, which cannot transcribe (an s3 model can)", args.model)
    loaded: list[tuple[str, torch.Tensor]] = []
    failed = 0
    for utt, path in collect_inputs(args.inputs):
        try:
            loaded.append((utt, load_audio(path, model.sample_rate)[0]))
        except VoxTokError as err:
            print(f"error: {err}", file=sys.stderr)
            failed += 1
    texts: dict[str, str] = {}
    sampler = LengthBucketSampler([w.shape[-1] for _, w in loaded], int(args.batch_seconds * model.sample_rate))
    for indices in sampler:
        wav, lengths = pad_batch([loaded[i][1] for i in indices])
        with torch.inference_mode(), precision(device, dtype):
            hyps = model.transcribe(wav.to(device), lengths.to(device))
        texts.update({loaded[i][0]: hyp for i, hyp in zip(indices, hyps)})
    for utt, _ in loaded:  # input order, like the wav.scp or file list given
        print(f"{utt}\t{texts[utt]}")
    return 2 if failed else 0


def add_commands(sub) -> None:
    """`voxtok asr ...`: transcribe audio with a trained S3 tokenizer's recognizer."""
    asr = _group(sub, "asr", "speech recognition with a trained S3 tokenizer (greedy CTC)")
    p = _command(asr, "transcribe", "audio files, folders or a wav.scp -> 'utt<TAB>text' lines on stdout",
                 "voxtok asr transcribe data/test/wav.scp --model exp/mini/s3/model > hyp.txt", _asr_transcribe)
    p.add_argument("inputs", nargs="+", help="audio files, folders or wav.scp files")
    p.add_argument("--model", required=True, help="S3 tokenizer checkpoint folder (save_pretrained output)")
    p.add_argument("--batch-seconds", type=float, default=60.0, help="padded audio per batch")
    add_device_options(p)
