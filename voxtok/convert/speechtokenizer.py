"""`voxtok convert speechtokenizer`: the official SpeechTokenizer release -> a VoxTok DM-Codec folder.

The release is a `config.json` (n_filters, strides, dimension, semantic_dimension, bidirectional,
dilation_base, residual_kernel_size, n_residual_layers, lstm_layers, activation, codebook_size, n_q,
sample_rate, plus training keys that are ignored) and `SpeechTokenizer.pt`, the generator's
state_dict: `encoder.*` and `decoder.*` (EnCodec-layout SEANet), `quantizer.vq.layers.N._codebook.*`
(EMA RVQ) and `transform` (RVQ-1 output -> the HuBERT teacher's width). It becomes VoxTok's
`dmcodec` with the same SEANet and RVQ, `transform` as the distillation head of the `sm` teacher at
RVQ layer 1, so DM-Codec / FuseCodec training can start from it. The DM-Codec repository trains and
saves this same model (voxtok/convert/dmcodec.py reuses everything here).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from voxtok.cli.common import command
from voxtok.convert.encodec_layout import (
    REFERENCE_QUANTIZER, as_voxtok_flags, check_codebooks_trained, rvq_rules, seanet_rules,
)
from voxtok.convert.keymap import source_note
from voxtok.errors import BadConfigError

if TYPE_CHECKING:
    from voxtok.codecs.dmcodec import DMCodec

# config.json keys that size the model (the rest are training settings).
MODEL_KEYS = ("n_filters", "strides", "dimension", "semantic_dimension", "bidirectional", "dilation_base",
              "residual_kernel_size", "n_residual_layers", "lstm_layers", "activation", "codebook_size", "n_q",
              "sample_rate")
def read_release_config(path: str | os.PathLike) -> dict[str, Any]:
    """A SpeechTokenizer / DM-Codec `config.json` -> its dict, with every model-sizing key present."""
    path = Path(path)
    if not path.is_file():
        raise BadConfigError("SpeechTokenizer config.json not found", path)
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BadConfigError(f"not a SpeechTokenizer config.json ({type(err).__name__}: "
                             f"{str(err).splitlines()[0][:120]})", path) from None
    if not isinstance(config, dict):
        raise BadConfigError("not a SpeechTokenizer config.json (not a JSON object)", path)
    missing = [k for k in MODEL_KEYS if k not in config]
    if missing:
        raise BadConfigError(f"not a SpeechTokenizer config.json: it lacks {missing[:4]}", path)
    if config["activation"] != "ELU":
        raise BadConfigError(f"activation {config['activation']!r} is not supported (VoxTok's SEANet uses ELU)", path)
    return config


def dmcodec_config(release: dict[str, Any], teachers: Sequence[str], layer: int = 1,
                   shared_head: bool = False) -> dict[str, Any]:
    """The VoxTok `dmcodec` model block for a release config: same SEANet and RVQ, and a head of
    width `semantic_dimension` on RVQ layer `layer` for each of `teachers` (one head for all of
    them when `shared_head`)."""
    seanet = {"channels": 1, "dimension": int(release["dimension"]), "n_filters": int(release["n_filters"]),
              "n_residual_layers": int(release["n_residual_layers"]), "ratios": [int(r) for r in release["strides"]],
              "lstm_layers": int(release["lstm_layers"]), "dilation_base": int(release["dilation_base"]),
              "residual_kernel_size": int(release["residual_kernel_size"])}
    head = {"dim": int(release["semantic_dimension"]), "layer": int(layer), "frame_loss": "d_axis"}
    config = {"sample_rate": int(release["sample_rate"]),
              "encoder": {**seanet, "bidirectional": bool(release["bidirectional"])},
              "decoder": dict(seanet),
              "quantizer": {"kind": "rvq", "n_q": int(release["n_q"]), "codebook_size": int(release["codebook_size"]),
                            **REFERENCE_QUANTIZER},
              "distill": {name: dict(head) for name in teachers},
              "framing": "reference"}
    if shared_head:
        config["shared_head"] = True
    return config


def release_rules(head: str) -> list[tuple[str, str]]:
    """Renames from the release's generator state_dict to VoxTok's DMCodec, `transform` -> heads.<head>."""
    return [*seanet_rules("encoder.", "encoder."), *seanet_rules("decoder.", "decoder."),
            *rvq_rules("quantizer.", "quantizer."), (r"transform\.(weight|bias)", rf"heads.{head}.\1")]


def convert_release(config_path: str | os.PathLike, checkpoint_path: str | os.PathLike, teachers: Sequence[str],
                    layer: int = 1, what: str = "a SpeechTokenizer checkpoint",
                    wrappers: Sequence[str] = ("state_dict",)) -> DMCodec:
    """config.json + generator checkpoint -> a VoxTok DMCodec (eval mode) computing what the
    reference computes. Several `teachers` share the release's one `transform` (shared_head)."""
    import torch

    from voxtok.codecs.dmcodec import SHARED_HEAD
    from voxtok.convert.keymap import load_mapped, read_state_dict, rename
    from voxtok.registry import build

    release = read_release_config(config_path)
    original = read_state_dict(checkpoint_path, what, wrappers=wrappers)
    check_codebooks_trained(original, "quantizer.", checkpoint_path)
    shared = len(teachers) > 1
    head = SHARED_HEAD if shared else teachers[0]
    try:
        model = dmcodec_config(release, teachers, layer, shared)
    except (TypeError, ValueError) as err:  # e.g. "strides": "8542"
        raise BadConfigError(f"config.json has a value of the wrong type ({err})", config_path) from None
    codec = build("codec", "dmcodec", model)
    state = as_voxtok_flags(rename(original, release_rules(head)))
    if release["dimension"] == release["semantic_dimension"] and not any(k.startswith("transform.") for k in original):
        # The reference's transform is then nn.Identity (no weights): an identity Linear computes the same.
        state[f"heads.{head}.weight"] = torch.eye(int(release["dimension"]))
        state[f"heads.{head}.bias"] = torch.zeros(int(release["dimension"]))
    load_mapped(codec, state, checkpoint_path, f"a DM-Codec of {Path(config_path).name}", original=original)
    return codec.eval()


def convert_speechtokenizer(config_path: str | os.PathLike, checkpoint_path: str | os.PathLike,
                            out_dir: str | os.PathLike) -> Path:
    """Write the VoxTok checkpoint folder of an official SpeechTokenizer release; returns `out_dir`.

    `transform` becomes the `sm` (HuBERT) distillation head on RVQ layer 1. A checkpoint that does not
    fit is a one-line BadConfigError and nothing is written.
    """
    codec = convert_release(config_path, checkpoint_path, teachers=("sm",))
    return codec.save_pretrained(out_dir, extra=source_note("speechtokenizer", config_path, checkpoint_path))


def summary(codec: DMCodec, out: Path) -> str:
    """One line describing a converted folder."""
    heads = ", ".join(f"{name} {t.dim} on RVQ-{t.layer}" for name, t in codec.targets.items())
    shared = " (one shared head)" if codec.shared_head else ""
    return (f"wrote {out}: dmcodec, {codec.sample_rate} Hz, {codec.n_q} x {codec.codebook_size} codes at "
            f"{codec.frame_rate:g} Hz, {codec.framing} framing; distillation heads: {heads}{shared}")


def report(out: Path) -> int:
    """Print the summary of the converted folder `out` (the handlers' last step); exit status 0."""
    from voxtok.registry import load

    print(summary(load(out, kind="codec"), out))
    return 0


def release_arguments(parser: argparse.ArgumentParser, config_help: str, checkpoint_help: str) -> None:
    """--config, --checkpoint and -o/--output, the arguments every SpeechTokenizer-family command takes."""
    parser.add_argument("--config", required=True, help=config_help)
    parser.add_argument("--checkpoint", required=True, help=checkpoint_help)
    parser.add_argument("-o", "--output", required=True, help="VoxTok checkpoint folder to write (replaced atomically)")


def _run(args: argparse.Namespace) -> int:
    return report(convert_speechtokenizer(args.config, args.checkpoint, args.output))


def add_command(subparsers) -> None:
    """`voxtok convert speechtokenizer --config config.json --checkpoint SpeechTokenizer.pt -o DIR`."""
    p = command(subparsers, "speechtokenizer",
                "official SpeechTokenizer config.json + SpeechTokenizer.pt -> a VoxTok dmcodec folder "
                "(its semantic projection becomes the sm distillation head)",
                "voxtok convert speechtokenizer --config speechtokenizer_hubert_avg/config.json "
                "--checkpoint speechtokenizer_hubert_avg/SpeechTokenizer.pt -o exp/speechtokenizer", _run)
    release_arguments(p, "the release's config.json", "the release's SpeechTokenizer.pt (generator state_dict)")
