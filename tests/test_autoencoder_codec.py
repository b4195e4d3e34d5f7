"""The autoencoder-codec base that WavTokenizer and DM-Codec / FuseCodec share: one copy of
padding, quantizer warm-up bypass, right-context framing and the Codec API."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from voxtok.codecs.autoencoder import AutoencoderCodec
from voxtok.codecs.dmcodec import DMCodec
from voxtok.codecs.fusecodec import FuseCodec
from voxtok.codecs.modules.outputs import GeneratorOutput
from voxtok.codecs.wavtokenizer import WavTokenizer
from voxtok.errors import BadConfigError
from voxtok.registry import build

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "codec"
SHARED = ("_pad_to_hop", "inference_latent", "quantize", "training_forward", "_encode", "_decode",
          "right_context_frames", "init_quantizer")
WARMUP = 3


def small(name: str) -> tuple[str, dict]:
    """A fast variant of a shipped tiny config with a quantizer warm-up of WARMUP updates."""
    cfg = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
    model = cfg["model"]
    if cfg["name"] == "wavtokenizer":
        model["encoder"].update(dim=32, intermediate_dim=64, num_layers=1, dimension=16)
        model["backbone"].update(dim=32, intermediate_dim=64, num_layers=1)
        model["quantizer"].update(codebook_size=32)
    else:
        for block in ("encoder", "decoder"):
            model[block].update(n_filters=4, dimension=16)
        model["quantizer"].update(codebook_size=16)
        for target, dim in (("lm", 12), ("sm", 10)):
            if (model.get("distill") or {}).get(target) is not None:
                model["distill"][target]["dim"] = dim
    model["quantizer"]["warmup_steps"] = WARMUP
    return cfg["name"], model


CODECS = {"wavtokenizer": "wavtokenizer_tiny", "dmcodec": "rvq_tiny", "fusecodec": "fusecodec_tiny"}


@pytest.fixture(params=sorted(CODECS))
def codec(request):
    torch.manual_seed(0)
    return build("codec", *small(CODECS[request.param]))


def test_wavtokenizer_and_dmcodec_share_one_implementation():
    for cls in (WavTokenizer, DMCodec, FuseCodec):
        assert issubclass(cls, AutoencoderCodec)
        for name in SHARED:  # inherited, not copied
            assert name not in vars(cls), f"{cls.__name__} redefines {name}"


def test_warmup_bypasses_the_quantizer_then_uses_it(codec):
    wav = torch.randn(2, 1, 4000) * 0.2
    lengths = torch.tensor([4000, 2500])
    codec.train()
    codebooks = {k: v.clone() for k, v in codec.quantizer.state_dict().items()}
    torch.manual_seed(1)
    out = codec.training_forward(wav, lengths, step=WARMUP - 1)
    assert isinstance(out, GeneratorOutput) and out.quantizer is None and out.stats == {}
    assert out.recon.shape == wav.shape
    assert set(out.losses) == {"commit", "codebook"} and all(float(v) == 0 for v in out.losses.values())
    # the quantizer was not touched: no k-means, no EMA update
    for key, value in codec.quantizer.state_dict().items():
        assert torch.equal(value, codebooks[key]), key
    # the bypass is the plain autoencoder: decoder(encoder(x)) on the same latent
    torch.manual_seed(1)
    latent, _ = codec.training_latent(wav, lengths, {})
    assert torch.equal(out.recon, codec.synthesize(latent)[..., : wav.shape[-1]])

    out = codec.training_forward(wav, lengths, step=WARMUP)
    assert out.quantizer is not None and out.quantizer.codes.shape[1] >= 1
    assert "perplexity_q0" in out.stats and float(out.losses["commit"].detach()) > 0
    initialized = [v for k, v in codec.quantizer.state_dict().items() if k.endswith("initialized")]
    assert bool(initialized[0])  # k-means ran on the first quantized batch (RVQ dropout may skip later layers)


def test_codes_come_from_the_shared_right_context_framing(codec):
    codec.train()
    codec.training_forward(torch.randn(4, 1, 8000) * 0.2, step=WARMUP)  # fit the codebooks
    codec.eval()
    wav = torch.randn(2, 1, 5001) * 0.2
    with torch.no_grad():
        codes = codec.encode(wav)
        frames = -(-5001 // codec.hop_length)
        assert codes.shape == (2, codec.n_q, frames)
        assert torch.equal(codes, codec.quantizer.encode(codec.inference_latent(wav)))
        # quantize() is the training path (padded to the hop only, no right context)
        assert codec.quantize(wav).codes.shape == codes.shape
        assert torch.equal(codec.decode(codes), codec.synthesize(codec.quantizer.decode(codes)))
        assert codec.decode(codes, 5001).shape == wav.shape


def test_wavtokenizer_refuses_batch_entries_it_does_not_read():
    codec = build("codec", *small("wavtokenizer_tiny"))
    with pytest.raises(BadConfigError, match="unknown batch entries"):
        codec.training_forward(torch.zeros(1, 1, 3200), lm=torch.zeros(1, 10, 8))
