"""Strict codec model configs: a misspelt key at any level of a codec's `model:` block is a
one-line BadConfigError naming the key's path and the allowed keys; every shipped tiny config builds."""

from __future__ import annotations

import copy
import functools
from pathlib import Path

import pytest
import yaml

from voxtok.errors import BadConfigError
from voxtok.registry import build

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "codec"
TINY_CONFIGS = sorted(p.stem for p in CONFIGS.glob("*_tiny.yaml"))


def config(name: str) -> dict:
    return yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())


def buildable(name: str) -> tuple[str, dict]:
    """(codec name, model block) of a shipped config, made small where the test only needs the
    config to be read; teacher widths left null for the recipe are filled in."""
    cfg = config(name)
    model = cfg["model"]
    for target, dim in (("lm", 12), ("sm", 10)):
        if (model.get("distill") or {}).get(target) is not None and model["distill"][target]["dim"] is None:
            model["distill"][target]["dim"] = dim
    return cfg["name"], model


@pytest.mark.parametrize("name", TINY_CONFIGS)
def test_every_shipped_tiny_config_builds(name):
    codec_name, model = buildable(name)
    codec = build("codec", codec_name, model)
    assert codec.n_q >= 1 and codec.codebook_size > 1 and codec.registry_name == codec_name


def test_the_tiny_configs_cover_every_codec_family():
    assert {config(name)["name"] for name in TINY_CONFIGS} == {"wavtokenizer", "dmcodec", "fusecodec", "s3"}


def set_key(model: dict, path: str, value) -> dict:
    """A copy of `model` with `path` (dotted, from the model block) set to `value`."""
    model = copy.deepcopy(model)
    *parents, last = path.split(".")
    functools.reduce(lambda block, key: block.setdefault(key, {}), parents, model)[last] = value
    return model


# (shipped config, misspelt path, a key the error must list as allowed)
MISSPELT = [
    ("wavtokenizer_tiny", "backbon", "backbone"),
    ("wavtokenizer_tiny", "encoder.n_mel", "n_mels"),
    ("wavtokenizer_tiny", "quantizer.decay_rate", "decay"),
    ("wavtokenizer_tiny", "backbone.num_layer", "num_layers"),
    ("wavtokenizer_tiny", "head.n_ff", "n_fft"),
    ("wavtokenizer_75_paper", "encoder.n_filter", "n_filters"),  # the SEANet encoder
    ("rvq_tiny", "quantiser", "quantizer"),
    ("rvq_tiny", "encoder.n_filter", "n_filters"),
    ("rvq_tiny", "decoder.ratio", "ratios"),
    ("rvq_tiny", "quantizer.decay_rate", "decay"),
    ("dmcodec_lm_tiny", "distill.lm.frame_los", "frame_loss"),
    ("fusecodec_tiny", "fusoin", "fusion"),
    ("fusecodec_tiny", "fusion.head", "heads"),
    ("fusecodec_tiny", "global_supervision.los", "loss"),
    ("fusecodec_tiny", "context_alignment.windw", "window"),
    ("fusecodec_tiny", "quantizer.n_qq", "n_q"),
    ("s3_tiny", "dims", "dim"),
    ("s3_tiny", "block.ffn_multiplier", "ffn_mult"),
    ("s3_tiny", "quantizer.decay_rate", "decay"),
    ("s3_tiny", "mel.n_mel", "n_mels"),
    ("s3_tiny", "spec_augment.freq_mask", "freq_masks"),
    ("s3_tiny", "vocab.symbol", "symbols"),
]


@pytest.mark.parametrize("name, path, allowed", MISSPELT, ids=[f"{n}:{p}" for n, p, _ in MISSPELT])
def test_misspelt_key_at_any_level_is_a_one_line_error_naming_it(name, path, allowed):
    codec_name, model = buildable(name)
    with pytest.raises(BadConfigError) as info:
        build("codec", codec_name, set_key(model, path, 1))
    message = str(info.value)
    assert f"unknown config key 'model.{path}'" in message
    assert "allowed:" in message and allowed in message.split("allowed:")[1]
    assert "\n" not in message


def test_quantizer_block_keys_the_codec_fills_or_refuses():
    codec_name, model = buildable("wavtokenizer_tiny")
    # dim is the encoder's latent width: the codec sets it, a config may not
    with pytest.raises(BadConfigError, match="unknown config key 'model.quantizer.dim'"):
        build("codec", codec_name, set_key(model, "quantizer.dim", 64))
    with pytest.raises(BadConfigError, match="'model.quantizer.kind' must be"):
        build("codec", codec_name, set_key(model, "quantizer.kind", "pq"))
    with pytest.raises(BadConfigError, match="'model.quantizer.kind' must be 'rvq'"):
        build("codec", "dmcodec", set_key(buildable("rvq_tiny")[1], "quantizer.kind", "vq"))
    # the mel encoder takes the model's sample rate, so its block may not set another
    with pytest.raises(BadConfigError, match="unknown config key 'model.encoder.sample_rate'"):
        build("codec", codec_name, set_key(model, "encoder.sample_rate", 16000))


def test_missing_block_names_the_block():
    codec_name, model = buildable("rvq_tiny")
    del model["decoder"]
    with pytest.raises(BadConfigError, match=r"config 'model' lacks \['decoder'\]"):
        build("codec", codec_name, model)


def test_config_is_not_changed_by_building():
    for name in ("wavtokenizer_tiny", "fusecodec_tiny", "s3_tiny"):
        codec_name, model = buildable(name)
        before = copy.deepcopy(model)
        codec = build("codec", codec_name, model)
        assert model == before
        assert {k: v for k, v in codec.to_config().items() if k != "vocab"} == \
            {k: v for k, v in before.items() if k != "vocab"}
