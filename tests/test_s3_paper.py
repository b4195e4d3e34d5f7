"""The S3 tokenizer's paper configs build at the size derived from the published architecture
and run one short forward (CPU, half a second of audio)."""

import gc
from pathlib import Path

import pytest
import torch
import yaml

from voxtok.registry import build

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "codec"


def expected_parameters(model: dict) -> tuple[int, int]:
    """(total trainable parameters, stem + Encoder-1 parameters) from the config alone.

    Stem: k=3 convs n_mels->D, then D->D per further stride. Block (Whisper layout, MLP f*D):
    q/v/out Linear with bias + key without bias = 4D^2 + 3D; two LayerNorms 4D; MLP 2fD^2 + fD + D;
    FSMN depthwise conv k*D. Quantizer: VQ codebook is an EMA buffer (no parameters); FSQ has
    Linear D->8 and 8->D. Head: LayerNorm 2D + Linear D->V (V = symbols + blank).
    """
    d, f = model["dim"], model["block"]["ffn_mult"]
    mels, strides = model["mel"]["n_mels"], model["strides"]
    stem = (mels * d * 3 + d) + (len(strides) - 1) * (d * d * 3 + d)
    block = (4 * d * d + 3 * d) + 4 * d + (2 * f * d * d + f * d + d) + model["block"]["fsmn_kernel"] * d
    q = model["quantizer"]
    quantizer = 0 if q["kind"] == "vq" else (d * len(q["levels"]) + len(q["levels"])) + (len(q["levels"]) * d + d)
    vocab = len(model["vocab"]["symbols"]) + 1
    total = stem + (model["encoder1_blocks"] + model["encoder2_blocks"]) * block + quantizer + 2 * d + d * vocab + vocab
    return total, stem + model["encoder1_blocks"] * block


# Stem + Encoder-1 of the public CosyVoice tokenizers (speech_tokenizer_v1 / _v2, as rebuilt in
# xingchensong/S3Tokenizer): 128 mels, 1280 dims, 6 blocks; v2 adds k=31 FSMN convs.
PUBLISHED_ENCODER1 = {"s3_v1_paper": 123_466_240, "s3_v2_paper": 123_704_320}


@pytest.mark.parametrize("name, rate, codes, codebook", [("s3_v1_paper", 50, 4096, 4096), ("s3_v2_paper", 25, 6561, 6561)])
def test_paper_config_size_and_forward(name, rate, codes, codebook):
    cfg = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
    torch.manual_seed(0)
    model = build("codec", cfg["name"], cfg["model"]).eval()
    total, encoder1 = expected_parameters(cfg["model"])
    assert sum(p.numel() for p in model.parameters()) == total
    assert sum(p.numel() for m in (model.stem, model.encoder1) for p in m.parameters()) == encoder1
    assert encoder1 == PUBLISHED_ENCODER1[name]
    if cfg["model"]["quantizer"]["kind"] == "vq":
        assert tuple(model.quantizer.codebook.shape) == (4096, 1280)
    assert model.frame_rate == rate and model.codebook_size == codebook and model.n_q == 1
    wav = 0.1 * torch.randn(1, 1, 8000)
    with torch.inference_mode():
        tokens = model.encode(wav)
        log_probs, frames = model.ctc_log_probs(wav)
    frames_expected = -(-8000 * rate // 16000)  # ceil: a partial last hop still gets a token
    assert tokens.shape == (1, 1, frames_expected) and tokens.dtype == torch.int64
    assert 0 <= int(tokens.min()) and int(tokens.max()) < codebook
    assert log_probs.shape == (1, frames_expected, 29) and int(frames[0]) == frames_expected
    assert torch.isfinite(log_probs).all()
    del model
    gc.collect()
