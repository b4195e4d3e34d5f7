"""`voxtok convert cosyvoice`: a released CosyVoice-300M folder -> a VoxTok TTS folder.

The release folder (e.g. iic/CosyVoice-300M or CosyVoice-300M-SFT) holds cosyvoice.yaml, llm.pt,
flow.pt, hift.pt, campplus.onnx, speech_tokenizer_v1.onnx and, for the SFT model, spk2info.pt. Each
part goes through its own mapper (voxtok/convert/cosyvoice_{llm,flow,hift,frontend}.py, which prove
parity with the reference) and the result is written in the layout of a recipe's exp dir, so
`voxtok tts synth --exp OUT` and the demo (`--exp OUT`) find it like a model trained here:

    OUT/tts/cosyvoice.yaml      pipeline manifest (model: cosyvoice; paths relative to it)
    OUT/tts/llm/model           TextToTokenLM; extra: the whisper_bpe frontend, the tokens' codec
    OUT/tts/flow/model          FlowDecoder;   extra: the tokens' codec, prompt_framing "reference"
    OUT/tts/vocoder/model       HiFT (22.05 kHz)
    OUT/s3/model                the S3 tokenizer (codec s3_onnx, encode only): prompt speech tokens
    OUT/speaker/campplus.onnx   CAM++ (manifest part speaker_encoder): 192-d prompt x-vectors
    OUT/spk/spk2embedding       the stored voices of spk2info.pt (manifest part speakers), if any
    OUT/conversion.json         what was converted (files and their hashes)

`prompt_framing: reference` makes the pipeline prepare prompts as CosyVoice v1's frontend does: every
prompt speech token and the whole prompt mel, each interpolated on its own by the flow's length
regulator (VoxTok's own models cut both to one whole-token span instead).

Only CosyVoice-300M v1 converts (base and SFT). CosyVoice 2 / 3 folders (cosyvoice2.yaml,
cosyvoice3.yaml, or their Qwen2LM / causal flow classes) and CosyVoice-300M-Instruct (its instruct
mode gives the LLM no speaker vector, which VoxTok's LLM always takes; upstream recognised the model
by its folder name too) are refused in one line. Nothing is written unless every part converts.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Mapping

from voxtok.cli.common import command
from voxtok.errors import BadConfigError

YAML_NAME = "cosyvoice.yaml"
PART_FILES = {"llm.pt": "the LLM", "flow.pt": "the flow decoder", "hift.pt": "the HiFT vocoder",
              "campplus.onnx": "the CAM++ speaker model", "speech_tokenizer_v1.onnx": "the S3 speech tokenizer"}
SPK2INFO = "spk2info.pt"
MARKER = "conversion.json"  # tells a folder this converter wrote (and may replace) from any other
SUPPORTED = "supported: CosyVoice-300M v1 (cosyvoice.yaml, 50 Hz speech_tokenizer_v1), base and -SFT, not -Instruct"
OTHER_RELEASES = {"cosyvoice2.yaml": "CosyVoice 2", "cosyvoice3.yaml": "CosyVoice 3",
                  "speech_tokenizer_v2.onnx": "CosyVoice 2", "speech_tokenizer_v3.onnx": "CosyVoice 3"}
# Classes of the later releases' parts (cosyvoice/utils/class_utils.py get_model_type).
OTHER_CLASSES = {"cosyvoice.llm.llm.Qwen2LM": "CosyVoice 2", "cosyvoice.llm.llm.CosyVoice3LM": "CosyVoice 3",
                 "cosyvoice.flow.flow.CausalMaskedDiffWithXvec": "CosyVoice 2",
                 "cosyvoice.flow.flow.CausalMaskedDiffWithDiT": "CosyVoice 3",
                 "cosyvoice.hifigan.generator.CausalHiFTGenerator": "CosyVoice 3"}


def check_release(folder: str | os.PathLike) -> Path:
    """The release's cosyvoice.yaml path, after checking that `folder` is a complete CosyVoice-300M v1
    folder; anything else (CosyVoice 2/3, Instruct, a missing part) is a one-line BadConfigError."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BadConfigError("not a CosyVoice release folder (no such directory)", folder)
    if "instruct" in folder.resolve().name.lower():
        raise BadConfigError("CosyVoice-300M-Instruct is not supported (its instruct mode gives the LLM no speaker "
                             f"vector, which VoxTok's LLM always takes); {SUPPORTED}", folder)
    if not (folder / YAML_NAME).is_file():
        found = [(name, release) for name, release in OTHER_RELEASES.items() if (folder / name).exists()]
        what = f"this is a {found[0][1]} release ({found[0][0]})" if found else f"no {YAML_NAME}"
        raise BadConfigError(f"{what}; {SUPPORTED}", folder)
    missing = [f"{name} ({what})" for name, what in PART_FILES.items() if not (folder / name).is_file()]
    if missing:
        raise BadConfigError(f"the release folder lacks {', '.join(missing)}", folder)
    return folder / YAML_NAME


def check_release_classes(config: Mapping[str, Any], path: str | os.PathLike) -> None:
    """One line naming the release a cosyvoice.yaml of CosyVoice 2 / 3 belongs to (before the part mappers
    would each refuse one class)."""
    from voxtok.convert.cosyvoice_yaml import Tagged

    for name in ("llm", "flow", "hift"):
        entry = config.get(name)
        target = entry.target if isinstance(entry, Tagged) else None
        if target in OTHER_CLASSES:
            raise BadConfigError(f"'{name}' is {target}, a {OTHER_CLASSES[target]} part; {SUPPORTED}", path)


def read_spk2info(path: str | os.PathLike, dim: int) -> tuple[dict[str, Any], list[str]]:
    """spk2info.pt -> ({speaker id: float32 [dim] numpy x-vector}, ids left out).

    The file maps speaker ids to dicts whose "embedding" ([1, dim]) is what CosyVoice's `frontend_sft`
    gives the LLM and the flow. Entries without one (zero-shot voices saved by `add_zero_shot_spk`, which
    carry a whole prompt) are left out. An unreadable file or a vector of another size is a one-line error.
    """
    import torch

    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a corrupt or foreign file: one line, not a pickle traceback
        raise BadConfigError(f"cannot read {SPK2INFO} ({type(err).__name__}: {str(err).splitlines()[0][:160]})",
                             path) from None
    if not isinstance(data, Mapping):
        raise BadConfigError(f"not a CosyVoice {SPK2INFO}: it holds a {type(data).__name__}, not speaker id -> info",
                             path)
    voices, skipped = {}, []
    for speaker, info in data.items():
        embedding = info.get("embedding") if isinstance(info, Mapping) else None
        if not isinstance(speaker, str) or not isinstance(embedding, torch.Tensor):
            skipped.append(str(speaker))
            continue
        if embedding.numel() != dim or not bool(torch.isfinite(embedding).all()):
            raise BadConfigError(f"speaker {speaker!r} has a {tuple(embedding.shape)} embedding; the models take "
                                 f"{dim}-d x-vectors", path)
        if not speaker.strip() or "\t" in speaker or "\n" in speaker:
            raise BadConfigError(f"speaker id {speaker!r} is empty or holds a tab or newline", path)
        voices[speaker] = embedding.detach().float().reshape(-1).numpy()
    return voices, skipped


def _check_output(out: Path) -> None:
    # The folder is replaced whole: only an empty one or an earlier conversion (never e.g. a recipe's exp dir).
    if out.exists() and not (out / MARKER).is_file() and (not out.is_dir() or any(out.iterdir())):
        raise BadConfigError(f"output exists and is not a folder written by `voxtok convert cosyvoice` (no {MARKER}); "
                             "refusing to replace it", out)


def convert_cosyvoice(folder: str | os.PathLike, out: str | os.PathLike,
                      log: Callable[[str], Any] = print) -> Path:
    """A CosyVoice-300M release folder -> the VoxTok TTS folder `out` (layout in the module docstring).

    Every part is read, mapped and checked against the others before anything is written; then `out`
    is written atomically (replacing an earlier conversion). Returns `out`. Notes (voices left out)
    go to `log`. Errors are one line naming the file.
    """
    from voxtok.atomic import atomic_dir
    from voxtok.convert.cosyvoice_flow import CHECKPOINT_WHAT, flow_from_reference
    from voxtok.convert.cosyvoice_frontend import (speaker_encoder_from_release, speech_tokenizer_from_release,
                                                   text_frontend_from_reference)
    from voxtok.convert.cosyvoice_hift import HIFT_CHECKPOINT, hift_from_reference
    from voxtok.convert.cosyvoice_llm import CHECKPOINT_FILE, llm_config_from_reference, llm_from_reference
    from voxtok.convert.cosyvoice_yaml import read_cosyvoice_yaml
    from voxtok.convert.keymap import read_state_dict, source_note
    from voxtok.tts.cosyvoice import CosyVoicePipeline
    from voxtok.tts.manifest import write_manifest
    from voxtok.tts.pipeline import SpeakerTable

    folder, out = Path(folder), Path(out)
    _check_output(out)
    yaml_path = check_release(folder)
    config = read_cosyvoice_yaml(yaml_path)
    check_release_classes(config, yaml_path)
    llm_config_from_reference(config, yaml_path)  # the YAML's errors before the checkpoints'
    frontend = text_frontend_from_reference(config, yaml_path)
    tokenizer = speech_tokenizer_from_release(folder, config)
    speaker_encoder = speaker_encoder_from_release(folder)
    llm = llm_from_reference(read_state_dict(folder / "llm.pt", CHECKPOINT_FILE), config, folder / "llm.pt")
    flow = flow_from_reference(read_state_dict(folder / "flow.pt", CHECKPOINT_WHAT), config, folder / "flow.pt",
                               yaml_path)
    hift = hift_from_reference(read_state_dict(folder / "hift.pt", HIFT_CHECKPOINT), config, yaml_path,
                               folder / "hift.pt")
    voices, skipped = (read_spk2info(folder / SPK2INFO, flow.spk_dim) if (folder / SPK2INFO).is_file() else ({}, []))
    # The parts must fit one another (vocabularies, mels, speaker vectors) as the pipeline will check.
    CosyVoicePipeline(llm, flow, hift, tokenizer, frontend, speaker_encoder=speaker_encoder,
                      prompt_framing="reference")

    def note(name: str) -> dict[str, Any]:
        return source_note("cosyvoice", yaml_path, folder / name)

    with atomic_dir(out) as tmp:
        tokenizer.save_pretrained(tmp / "s3" / "model", extra=note("speech_tokenizer_v1.onnx"))
        tokens = {"codec": tokenizer.registry_name, "checkpoint_hash": tokenizer.checkpoint_hash,
                  "sample_rate": tokenizer.sample_rate, "frame_rate": float(tokenizer.frame_rate), "n_q": tokenizer.n_q,
                  "codebook_size": tokenizer.codebook_size}
        llm.config.tokenizer = {"name": tokens["codec"], "frame_rate": tokens["frame_rate"],
                                "checkpoint_hash": tokens["checkpoint_hash"]}
        llm.save_pretrained(tmp / "tts" / "llm" / "model", extra={**note("llm.pt"), "frontend": frontend.to_dict(),
                                                                   "tokens": tokens})
        flow.save_pretrained(tmp / "tts" / "flow" / "model", extra={**note("flow.pt"), "tokens": tokens,
                                                                     "prompt_framing": "reference"})
        hift.save_pretrained(tmp / "tts" / "vocoder" / "model", extra=note("hift.pt"))
        (tmp / "speaker").mkdir()
        shutil.copyfile(speaker_encoder.path, tmp / "speaker" / "campplus.onnx")
        speakers = _write_voices(voices, tmp / "spk", speaker_encoder.store_meta) if voices else None
        spec = {"model": "cosyvoice", "llm": tmp / "tts" / "llm" / "model", "flow": tmp / "tts" / "flow" / "model",
                "vocoder": tmp / "tts" / "vocoder" / "model", "tokenizer": tmp / "s3" / "model",
                "speaker_encoder": tmp / "speaker" / "campplus.onnx", "speakers": speakers}
        CosyVoicePipeline.check_manifest(spec)
        write_manifest(tmp / "tts" / "cosyvoice.yaml", spec)
        if speakers is not None and sorted(voices) != SpeakerTable(speakers).ids():
            raise BadConfigError("the stored voices do not read back as written", tmp / "spk")
        (tmp / MARKER).write_text(json.dumps(_provenance(folder, voices, skipped), indent=2, ensure_ascii=False))
    if skipped:
        log(f"note: left out {len(skipped)} {SPK2INFO} entr{'y' if len(skipped) == 1 else 'ies'} without an "
            f"'embedding' (zero-shot voices keep a whole prompt): {', '.join(skipped[:5])}")
    return out


def _write_voices(voices: Mapping[str, Any], folder: Path, encoder_meta: Mapping[str, Any]) -> Path:
    """The stored voices as a spk2embedding ShardStore under `folder` (what `SpeakerTable` reads)."""
    from voxtok.data.shards import ShardWriter

    meta = {**encoder_meta, "level": "speaker", "source": SPK2INFO}
    with ShardWriter(folder / "spk2embedding", meta, dtype="float32", shard_items=100_000, resume=False,
                     expect_ndim=1) as writer:
        for speaker, vector in voices.items():
            writer.add(speaker, vector)
    return folder


def _provenance(folder: Path, voices: Mapping[str, Any], skipped: list[str]) -> dict[str, Any]:
    from voxtok.registry import file_hash

    names = [YAML_NAME, *PART_FILES, *([SPK2INFO] if (folder / SPK2INFO).is_file() else [])]
    return {"kind": "cosyvoice", "release": folder.resolve().name, "files": {n: file_hash(folder / n) for n in names},
            "voices": sorted(voices), "voices_left_out": skipped}


def summary(out: Path) -> str:
    """One line describing a converted folder (from its manifest and metadata, without loading weights)."""
    from voxtok.registry import read_metadata
    from voxtok.tts.manifest import read_manifest

    spec = read_manifest(out / "tts" / "cosyvoice.yaml")
    vocoder, codec = read_metadata(spec["vocoder"])["info"], read_metadata(spec["tokenizer"])["info"]
    voices = json.loads((out / MARKER).read_text())["voices"]
    stored = f"{len(voices)} stored voice(s): {', '.join(voices[:8])}" if voices else "no stored voices"
    return (f"wrote {out}: CosyVoice-300M as a VoxTok cosyvoice pipeline ({vocoder['sample_rate']} Hz HiFT, "
            f"{codec['frame_rate']:g} Hz S3 tokens x {codec['codebook_size']} codes, CAM++ prompts, {stored})")


def _handle(args: argparse.Namespace) -> int:
    out = convert_cosyvoice(args.checkpoint, args.output)
    print(summary(out))
    print(f"try: voxtok tts synth --exp {out} --text \"Hello there.\" --prompt-wav ref.wav "
          "--prompt-text \"What the reference says.\" -o out.wav")
    return 0


def add_command(subparsers) -> None:
    """Register `voxtok convert cosyvoice`."""
    parser = command(
        subparsers, "cosyvoice",
        "a released CosyVoice-300M folder (cosyvoice.yaml, llm.pt, flow.pt, hift.pt, campplus.onnx, "
        "speech_tokenizer_v1.onnx, spk2info.pt when present) -> a VoxTok TTS folder for `voxtok tts synth --exp` "
        "and the demo (CosyVoice-300M base and -SFT; CosyVoice 2/3 and -Instruct are refused)",
        "voxtok convert cosyvoice --checkpoint pretrained_models/CosyVoice-300M-SFT -o exp/cosyvoice_300m_sft && "
        "voxtok tts synth --exp exp/cosyvoice_300m_sft --mode sft --speaker 英文女 --text \"Hello.\" -o hello.wav",
        _handle,
    )
    parser.add_argument("--checkpoint", required=True, metavar="DIR", help="the release folder")
    parser.add_argument("-o", "--output", required=True,
                        help="folder to write (an earlier conversion there is replaced atomically)")
