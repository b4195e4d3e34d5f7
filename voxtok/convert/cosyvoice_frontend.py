"""CosyVoice-300M's input side in VoxTok: text frontend, S3 speech tokenizer, CAM++ speaker encoder.

The release folder's parts that have no state_dict to map (`voxtok convert cosyvoice` assembles them
with the mapped LLM, flow and HiFT):

    cosyvoice.yaml `get_tokenizer`      -> TextFrontend("whisper_bpe")  (voxtok/tts/whisper_bpe.py)
    speech_tokenizer_v1.onnx            -> S3OnnxCodec (registered codec "s3_onnx", encode only)
    campplus.onnx                       -> CamPlusEncoder (192-d x-vectors)

The YAML is read as data (`voxtok.convert.cosyvoice_yaml`). Only CosyVoice v1's text tokens are
supported: `!name:whisper.tokenizer.get_tokenizer` (multilingual, 100 languages: 51,866 ids) with
`allowed_special: all`; the 25 Hz variant's own BPE and CosyVoice 2/3's Qwen tokenizer are refused
with a one-line error naming what is supported.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from voxtok.convert.cosyvoice_yaml import Tagged
from voxtok.errors import BadConfigError

WHISPER_TOKENIZER = "whisper.tokenizer.get_tokenizer"
SAMPLE_RATE = 16000  # the S3 tokenizer's and CAM++'s input rate


def text_frontend_from_reference(config: Mapping[str, Any], path: str | os.PathLike | None = None):
    """The release config (`read_cosyvoice_yaml`) -> TextFrontend("whisper_bpe") giving its text ids.

    Checks the tokenizer entry, its special-token rule and, when the LLM entry states it,
    text_token_size against the vocabulary; `path` (the YAML) names the file in errors.
    """
    from voxtok.tts.frontend import TextFrontend

    entry = config.get("get_tokenizer")
    if not isinstance(entry, Tagged) or entry.kind != "name":
        raise BadConfigError("cosyvoice.yaml has no get_tokenizer entry (!name: function)", path)
    args = dict(entry.args) if isinstance(entry.args, Mapping) else {}
    if entry.target != WHISPER_TOKENIZER or not args.get("multilingual"):
        raise BadConfigError(f"get_tokenizer is {entry.target} {args or ''}; supported: CosyVoice-300M's "
                             f"{WHISPER_TOKENIZER} (multilingual Whisper BPE)", path)
    languages = int(args.get("num_languages", 99))
    if languages != 100:
        raise BadConfigError(f"get_tokenizer has num_languages {languages}; supported: 100 (51,866 ids)", path)
    if config.get("allowed_special", "all") != "all":
        raise BadConfigError(f"allowed_special is {config.get('allowed_special')!r}; supported: 'all'", path)
    frontend = TextFrontend("whisper_bpe")
    llm = config.get("llm")
    size = llm.args.get("text_token_size") if isinstance(llm, Tagged) and isinstance(llm.args, Mapping) else None
    if size is not None and int(size) != frontend.vocab_size:
        raise BadConfigError(f"llm text_token_size {size} differs from the Whisper BPE's {frontend.vocab_size} ids", path)
    return frontend


def _codec_settings(config: Mapping[str, Any] | None, path: str | os.PathLike | None) -> dict[str, Any]:
    """S3 codec settings the release config states: codes (llm speech_token_size = flow vocab_size, 4,096)
    and the token rate (flow input_frame_rate, 50 Hz -> 320 samples per token)."""
    def args(name: str) -> Mapping[str, Any]:
        entry = (config or {}).get(name)
        return entry.args if isinstance(entry, Tagged) and isinstance(entry.args, Mapping) else {}

    sizes = {int(v) for v in (args("llm").get("speech_token_size"), args("flow").get("vocab_size")) if v is not None}
    if len(sizes) > 1:
        raise BadConfigError(f"llm speech_token_size and flow vocab_size differ ({sorted(sizes)})", path)
    settings: dict[str, Any] = {"codebook_size": sizes.pop()} if sizes else {}
    rate = args("flow").get("input_frame_rate")
    if rate is not None:
        if int(rate) <= 0 or SAMPLE_RATE % int(rate):
            raise BadConfigError(f"flow input_frame_rate {rate} does not divide {SAMPLE_RATE} Hz", path)
        settings["hop_length"] = SAMPLE_RATE // int(rate)
    return settings


def speech_tokenizer_from_release(folder: str | os.PathLike, config: Mapping[str, Any] | None = None):
    """speech_tokenizer_v1.onnx of a release folder -> S3OnnxCodec (codes and rate from the release
    config `read_cosyvoice_yaml(folder / "cosyvoice.yaml")` when given, else v1's 4,096 at 50 Hz)."""
    from voxtok.codecs.s3_onnx import ONNX_NAME, S3OnnxCodec

    return S3OnnxCodec.from_onnx(Path(folder) / ONNX_NAME, **_codec_settings(config, Path(folder) / "cosyvoice.yaml"))


def speaker_encoder_from_release(folder: str | os.PathLike, device: str = "cpu"):
    """campplus.onnx of a release folder -> CamPlusEncoder."""
    from voxtok.tts.campplus import ONNX_NAME, CamPlusEncoder

    return CamPlusEncoder(Path(folder) / ONNX_NAME, device)
