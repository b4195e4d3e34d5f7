"""WavTokenizer's discriminators (the tensors of its Lightning checkpoint) -> VoxTok's, key for key.

`voxtok convert wavtokenizer` calls `map_discriminators` when the checkpoint holds them, and writes
the result beside the codec (`voxtok.codecs.gan_checkpoint`), so `train_codec init_from=DIR` resumes the
GAN with the reference's discriminators.

Keys of the reference's Lightning module (decoder/experiment.py, WavTokenizer) -> VoxTok's `CombinedDiscriminator`:
    multiperioddisc.discriminators.N.*       (Vocos MPD, periods 2..11) -> discriminators.mpd.discriminators.N.*
    multiresddisc.discriminators.N.*         (Vocos MRD, 3 resolutions) -> discriminators.mrd.discriminators.N.*
    dac.discriminators.N.convs.L.0.*         (DAC MPD, N = 0..4)        -> discriminators.dac.discriminators.N.convs.L.*
    dac.discriminators.N.band_convs.B.L.0.*  (DAC STFT bands, N = 5..7) -> ....dac.discriminators.N.band_convs.B.L.*
    dac.discriminators.N.conv_post.*                                     -> ....dac.discriminators.N.conv_post.*
    (the reference's WNConv2d wraps conv + LeakyReLU in a Sequential: the `.0` goes)
    dacdiscriminator.discriminator.*         the same tensors again (DACGANLoss holds the DAC module): dropped
Weight norm stored as weight_g / weight_v becomes VoxTok's parametrizations (voxtok.convert.keymap).

The layer widths are read from the tensors, so checkpoints of narrower discriminators map too; the
periods, resolutions, FFT sizes and bands are fixed in the reference's code (its defaults), and the
number of bandwidth ids is the conditioning table's height (len(feature_extractor.bandwidths)).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Mapping

from voxtok.errors import BadConfigError

if TYPE_CHECKING:
    import torch

PREFIXES = ("multiperioddisc.", "multiresddisc.", "dac.", "dacdiscriminator.")
# Fixed in the reference's code (decoder/discriminators.py, decoder/discriminator_dac.py).
PERIODS = (2, 3, 5, 7, 11)
RESOLUTIONS = ((1024, 256, 1024), (2048, 512, 2048), (512, 128, 512))
DAC_WINDOWS = (2048, 1024, 512)
RULES = (
    (r"multiperioddisc\.(.+)", r"discriminators.mpd.\1"),
    (r"multiresddisc\.(.+)", r"discriminators.mrd.\1"),
    (r"dac\.discriminators\.(\d+)\.convs\.(\d+)\.0\.(\w+)", r"discriminators.dac.discriminators.\1.convs.\2.\3"),
    (r"dac\.discriminators\.(\d+)\.band_convs\.(\d+)\.(\d+)\.0\.(\w+)",
     r"discriminators.dac.discriminators.\1.band_convs.\2.\3.\4"),
    (r"dac\.discriminators\.(\d+)\.conv_post\.(\w+)", r"discriminators.dac.discriminators.\1.conv_post.\2"),
    (r"dacdiscriminator\..+", None),
)


def map_discriminators(state: Mapping[str, torch.Tensor], ref_config: Any = None
                       ) -> tuple[dict[str, Any], dict[str, torch.Tensor]] | None:
    """The reference checkpoint's state_dict (generator keys may be present: they are ignored) ->
    (VoxTok `discriminators:` block {names, options}, state_dict of the `CombinedDiscriminator` it
    builds), or None when the checkpoint holds no discriminators.

    `ref_config`: the reference's YAML document, read for the number of bandwidths when present
    (checked against the conditioning tables). A checkpoint that does not fit is a one-line
    BadConfigError naming the first keys that differ.
    """
    from voxtok.codecs.modules.discriminators import build_discriminators
    from voxtok.convert.keymap import load_mapped, rename

    ours = {k: v for k, v in state.items() if k.startswith(PREFIXES)}
    if not ours:
        return None
    config = discriminator_config(ours, _bandwidths(ref_config))
    disc = build_discriminators(config["names"], **config["options"])
    load_mapped(disc, rename(ours, RULES), "the WavTokenizer checkpoint", "WavTokenizer's discriminators",
                original=ours)
    return config, {k: v.detach().clone() for k, v in disc.state_dict().items()}


def discriminator_config(state: Mapping[str, torch.Tensor], bandwidths: int | None = None) -> dict[str, Any]:
    """The VoxTok `discriminators:` block matching the reference tensors in `state` (widths and
    conditioning read from the tensors; structure from the reference's code)."""
    names, options = [], {}
    if any(k.startswith("multiperioddisc.") for k in state):
        widths = _widths(state, r"multiperioddisc\.discriminators\.0\.convs\.(\d+)\.weight(?:_v)?")
        _expect(_branches(state, "multiperioddisc."), len(PERIODS), "multiperioddisc")
        names.append("mpd")
        options["mpd"] = {"periods": list(PERIODS), "channels": widths[0], "max_channels": max(widths),
                          "first_feature_layer": 1, "features_with_output": True,
                          **_conditioning(state, "multiperioddisc.", bandwidths)}
    if any(k.startswith("multiresddisc.") for k in state):
        widths = _widths(state, r"multiresddisc\.discriminators\.0\.convs\.(\d+)\.weight(?:_v)?")
        _expect(_branches(state, "multiresddisc."), len(RESOLUTIONS), "multiresddisc")
        names.append("mrd")
        options["mrd"] = {"resolutions": [list(r) for r in RESOLUTIONS], "channels": widths[0], "layers": "vocos",
                          "window": "rect", "features_with_output": True,
                          **_conditioning(state, "multiresddisc.", bandwidths)}
    if any(k.startswith("dac.") for k in state):
        _expect(_branches(state, "dac."), len(PERIODS) + len(DAC_WINDOWS), "dac")
        period = _widths(state, r"dac\.discriminators\.0\.convs\.(\d+)\.0\.weight(?:_v)?")
        band = _widths(state, rf"dac\.discriminators\.{len(PERIODS)}\.band_convs\.0\.(\d+)\.0\.weight(?:_v)?")
        names.append("dac")
        options["dac"] = {"periods": list(PERIODS), "window_lengths": list(DAC_WINDOWS), "channels": band[0],
                          "period_channels": period[0], "period_max_channels": max(period), "window": "rect"}
    if not names:
        raise BadConfigError(f"no WavTokenizer discriminator tensors (keys start with {list(PREFIXES)}) "
                             f"besides dacdiscriminator.*")
    return {"names": names, "options": options}


def _widths(state: Mapping[str, torch.Tensor], pattern: str) -> list[int]:
    """Output widths of the layers whose weight keys match `pattern` (group 1: the layer index)."""
    found = {int(m.group(1)): int(v.shape[0]) for k, v in state.items() if (m := re.fullmatch(pattern, k))}
    if not found:
        raise BadConfigError(f"WavTokenizer discriminator tensors lack the layers {pattern!r}")
    return [found[i] for i in sorted(found)]


def _branches(state: Mapping[str, torch.Tensor], prefix: str) -> int:
    pattern = re.compile(rf"{re.escape(prefix)}discriminators\.(\d+)\.")
    return len({m.group(1) for k in state if (m := pattern.match(k))})


def _expect(found: int, want: int, what: str) -> None:
    if found != want:
        raise BadConfigError(f"{what} has {found} sub-discriminators; WavTokenizer's code builds {want}")


def _conditioning(state: Mapping[str, torch.Tensor], prefix: str, bandwidths: int | None) -> dict[str, int]:
    """{"num_embeddings": n} when the family is conditioned on a bandwidth id (VocosExp's are not)."""
    table = state.get(f"{prefix}discriminators.0.emb.weight")
    if table is None:
        return {}
    if bandwidths is not None and int(table.shape[0]) != bandwidths:
        raise BadConfigError(f"{prefix}emb has {table.shape[0]} bandwidth ids but the config lists {bandwidths} "
                             "bandwidths (checkpoint and config of different models?)")
    return {"num_embeddings": int(table.shape[0])}


def _bandwidths(document: Any) -> int | None:
    """len(feature_extractor.init_args.bandwidths) of the reference's YAML document, if it says."""
    if not isinstance(document, Mapping):
        return None
    model = document.get("model")
    blocks = model.get("init_args", model) if isinstance(model, Mapping) else document
    features = blocks.get("feature_extractor") if isinstance(blocks, Mapping) else None
    args = features.get("init_args") if isinstance(features, Mapping) else None
    bandwidths = args.get("bandwidths") if isinstance(args, Mapping) else None
    return len(bandwidths) if isinstance(bandwidths, (list, tuple)) else None
