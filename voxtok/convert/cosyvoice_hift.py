"""CosyVoice-300M's hift.pt -> VoxTok's HiFT vocoder (`voxtok.tts.hift`), key for key.

`hift_from_reference(state_dict, reference_config)` takes the release's hift.pt tensors
(`keymap.read_state_dict(path, HIFT_CHECKPOINT)`) and its cosyvoice.yaml read as data
(`voxtok.convert.cosyvoice_yaml.read_cosyvoice_yaml`), and returns the HiFT in eval mode; `voxtok
convert cosyvoice` writes it into the TTS folder. The `hift` entry must be CosyVoice v1's
`HiFTGenerator` at 22.05 kHz with a `ConvRNNF0Predictor`: CosyVoice 2's 24 kHz HiFT (another sine
source) and CosyVoice 3's CausalHiFTGenerator are refused in one line. The mel front end comes from
the file's `feat_extractor` (matcha `mel_spectrogram`) when present, else CosyVoice's defaults.

Key map (the reference's names on the left):
    m_source.l_linear.*                 -> source.harmonic_merge.*
    f0_predictor.condnet.{0,2,4,6,8}.*  -> f0_predictor.convs.{0..4}.*  (the odd entries are ELUs)
    everything else (conv_pre, ups, source_downs, source_resblocks, resblocks, conv_post,
    f0_predictor.classifier)            -> the same name
Old weight norm (`weight_g` / `weight_v`, as the release stores it) becomes parametrizations; a
`generator.` prefix (a HiFiGan training checkpoint) is dropped with its discriminator, as the
reference's loader does.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

import torch

from voxtok.convert.cosyvoice_yaml import Tagged, part
from voxtok.errors import BadConfigError

HIFT_CLASS = "cosyvoice.hifigan.generator.HiFTGenerator"
F0_CLASS = "cosyvoice.hifigan.f0_predictor.ConvRNNF0Predictor"
MEL_FUNCTION = "matcha.utils.audio.mel_spectrogram"
HIFT_CHECKPOINT = "a CosyVoice hift.pt"
V1_SAMPLE_RATE = 22050  # HiFTGenerator uses the SineGen source at 22.05 kHz only (SineGen2 otherwise)
# HiFTGenerator's constructor defaults (CosyVoice-300M's sizes), for arguments a file leaves out.
HIFT_DEFAULTS = {
    "in_channels": 80, "base_channels": 512, "nb_harmonics": 8, "sampling_rate": V1_SAMPLE_RATE, "nsf_alpha": 0.1,
    "nsf_sigma": 0.003, "nsf_voiced_threshold": 10, "upsample_rates": [8, 8], "upsample_kernel_sizes": [16, 16],
    "istft_params": {"n_fft": 16, "hop_len": 4}, "resblock_kernel_sizes": [3, 7, 11],
    "resblock_dilation_sizes": [[1, 3, 5]] * 3, "source_resblock_kernel_sizes": [7, 11],
    "source_resblock_dilation_sizes": [[1, 3, 5]] * 2, "lrelu_slope": 0.1, "audio_limit": 0.99, "f0_predictor": None,
}
F0_DEFAULTS = {"num_class": 1, "in_channels": 80, "cond_channels": 512}
# reference argument -> VoxTok HiFTConfig field, where they correspond one to one
SAME_MEANING = {"base_channels": "base_channels", "nb_harmonics": "harmonics", "nsf_alpha": "sine_amp",
                "nsf_sigma": "noise_std", "nsf_voiced_threshold": "voiced_threshold",
                "upsample_rates": "upsample_rates", "upsample_kernel_sizes": "upsample_kernel_sizes",
                "resblock_kernel_sizes": "resblock_kernel_sizes", "resblock_dilation_sizes": "resblock_dilation_sizes",
                "source_resblock_kernel_sizes": "source_resblock_kernel_sizes",
                "source_resblock_dilation_sizes": "source_resblock_dilation_sizes",
                "lrelu_slope": "lrelu_slope", "audio_limit": "audio_limit"}
RULES = (
    (r"m_source\.l_linear\.(.*)", r"source.harmonic_merge.\1"),
    *((rf"f0_predictor\.condnet\.{2 * i}\.(.*)", rf"f0_predictor.convs.{i}.\1") for i in range(5)),
    (r"discriminator\..*", None),  # a HiFiGan training checkpoint: not the vocoder
)


def hift_config_from_reference(reference_config: Mapping[str, Any],
                               config_path: str | os.PathLike = "cosyvoice.yaml") -> dict[str, Any]:
    """cosyvoice.yaml read as data -> the VoxTok HiFT config (the `model:` block of a hift config)."""
    _, given = part(reference_config, "hift", (HIFT_CLASS,), config_path)
    unknown = sorted(set(given) - set(HIFT_DEFAULTS))
    if unknown:
        raise BadConfigError(f"unknown hift arguments {unknown} (HiFTGenerator takes {', '.join(HIFT_DEFAULTS)})",
                             config_path)
    args = {**HIFT_DEFAULTS, **given}
    if int(args["sampling_rate"]) != V1_SAMPLE_RATE:
        raise BadConfigError(f"hift sampling_rate {args['sampling_rate']}: only CosyVoice v1's 22.05 kHz HiFT "
                             "converts (at other rates the reference uses another sine source, SineGen2, as in "
                             "CosyVoice 2)", config_path)
    f0 = _f0_predictor_args(args["f0_predictor"], config_path)
    if f0["num_class"] != 1 or f0["in_channels"] != args["in_channels"]:
        raise BadConfigError(f"hift f0_predictor num_class {f0['num_class']} / in_channels {f0['in_channels']}: "
                             f"need 1 / the hift's in_channels {args['in_channels']}", config_path)
    istft = args["istft_params"]
    if not isinstance(istft, Mapping) or set(istft) != {"n_fft", "hop_len"}:
        raise BadConfigError(f"hift istft_params must be {{n_fft, hop_len}}, got {istft!r}", config_path)
    config = {"mel": _mel_config(reference_config, args, istft, config_path), "f0_channels": int(f0["cond_channels"]),
              "istft_n_fft": int(istft["n_fft"]), "istft_hop_length": int(istft["hop_len"])}
    config.update({ours: args[theirs] for theirs, ours in SAME_MEANING.items()})
    return config


def _f0_predictor_args(value: Any, path) -> dict[str, Any]:
    if not isinstance(value, Tagged) or value.kind != "new" or value.target != F0_CLASS:
        found = value.target if isinstance(value, Tagged) else value
        raise BadConfigError(f"hift f0_predictor is {found!r}; supported: ConvRNNF0Predictor", path)
    args = dict(value.args) if isinstance(value.args, Mapping) else {}
    unknown = sorted(set(args) - set(F0_DEFAULTS))
    if unknown:
        raise BadConfigError(f"unknown f0_predictor arguments {unknown}", path)
    return {**F0_DEFAULTS, **args}


def _mel_config(reference_config: Mapping[str, Any], args: Mapping[str, Any], istft: Mapping[str, Any],
                path) -> dict[str, Any]:
    """The hift's input mel: the release's feat_extractor settings on the cosyvoice preset."""
    hop = 1
    for rate in args["upsample_rates"]:
        hop *= int(rate)
    mel = {"preset": "cosyvoice", "sample_rate": int(args["sampling_rate"]), "n_mels": int(args["in_channels"]),
           "hop_length": hop * int(istft["hop_len"])}
    feat = reference_config.get("feat_extractor")
    if isinstance(feat, Tagged) and feat.target == MEL_FUNCTION and isinstance(feat.args, Mapping):
        given = feat.args
        if given.get("center", False):
            raise BadConfigError("feat_extractor center: True is not CosyVoice's mel (uncentred)", path)
        for theirs, ours in (("n_fft", "n_fft"), ("win_size", "win_length"), ("fmin", "f_min"), ("fmax", "f_max")):
            if theirs in given:
                value = given[theirs]
                mel[ours] = float(value) if ours.startswith("f_") and value is not None else value
        for theirs, ours in (("num_mels", "n_mels"), ("hop_size", "hop_length"), ("sampling_rate", "sample_rate")):
            if theirs in given and int(given[theirs]) != mel[ours]:
                raise BadConfigError(f"feat_extractor {theirs} {given[theirs]} disagrees with the hift ({ours} "
                                     f"{mel[ours]})", path)
    return mel


def hift_from_reference(state_dict: Mapping[str, torch.Tensor], reference_config: Mapping[str, Any],
                        config_path: str | os.PathLike = "cosyvoice.yaml",
                        checkpoint_path: str | os.PathLike = "hift.pt"):
    """hift.pt tensors + cosyvoice.yaml (read as data) -> `voxtok.tts.hift.HiFT` in eval mode.

    `config_path` / `checkpoint_path` name the files in errors. A state_dict of another model is a
    one-line BadConfigError naming the first keys that differ and what the file holds.
    """
    from voxtok.convert.keymap import describe, load_mapped, rename
    from voxtok.tts.hift import HiFT

    config = hift_config_from_reference(reference_config, config_path)
    original = {k.removeprefix("generator."): v for k, v in state_dict.items()}
    if not any(k.startswith(("f0_predictor.", "m_source.")) for k in original):
        raise BadConfigError(f"not {HIFT_CHECKPOINT}: no f0_predictor.* / m_source.* weights; the file has "
                             f"{describe(state_dict)}", checkpoint_path)
    try:
        hift = HiFT(config, where="hift")
    except BadConfigError as err:  # sizes VoxTok's HiFT cannot take: say which file holds them
        raise BadConfigError(str(err), config_path) from None
    load_mapped(hift, rename(original, RULES, keep_unmatched=True), checkpoint_path,
                "the HiFT of cosyvoice.yaml", original=state_dict)
    return hift.eval()
