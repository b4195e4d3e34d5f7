"""WavTokenizer: published sizes, encode/decode contracts, checkpoints and token files."""

from pathlib import Path

import pytest
import torch
import yaml

from voxtok.codecs.base import build_codec, load_codec
from voxtok.errors import BadConfigError, BadTokenFileError

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "codec"

# Trainable parameters of the published models, counted layer by layer from the architecture
# (tests/test_codec_modules_arch.py has the per-module derivation): SEANet encoder + Vocos
# backbone with pos_net and AdaLN(4) + ISTFT head. The 4096 x 512 codebook is an EMA buffer.
PAPER_PARAMS = {
    "wavtokenizer_75_paper": 8_802_816 + 61_961_472 + 985_858,
    "wavtokenizer_40_paper": 8_303_104 + 61_961_472 + 1_847_138,
}


def config(name):
    return yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_codec("wavtokenizer", config("wavtokenizer_tiny")["model"]).eval()


@pytest.mark.parametrize("name, hop, rate", [("wavtokenizer_75_paper", 320, 75), ("wavtokenizer_40_paper", 600, 40)])
def test_paper_configs_build_at_published_size(name, hop, rate):
    codec = build_codec("wavtokenizer", config(name)["model"]).eval()
    assert sum(p.numel() for p in codec.parameters()) == PAPER_PARAMS[name]
    assert (codec.hop_length, codec.frame_rate, codec.n_q, codec.codebook_size) == (hop, rate, 1, 4096)
    assert codec.bitrate == pytest.approx(12 * rate)
    wav = torch.randn(1, 1, 24000) * 0.1
    with torch.no_grad():
        codes = codec.encode(wav)
        out = codec.decode(codes, 24000)
    assert codes.shape == (1, 1, rate) and codes.dtype == torch.int64
    assert out.shape == (1, 1, 24000) and torch.isfinite(out).all()


def test_batched_and_unbatched_codes_match(tiny):
    torch.manual_seed(1)
    lengths = [24000, 17111, 9600]
    items = [torch.randn(1, 1, n) * 0.2 for n in lengths]
    batch = torch.zeros(3, 1, max(lengths))
    for i, x in enumerate(items):
        batch[i, :, : x.shape[-1]] = x
    with torch.no_grad():
        batched = tiny.encode(batch, torch.tensor(lengths))
        valid = tiny.code_lengths(torch.tensor(lengths))
        for i, x in enumerate(items):
            single = tiny.encode(x)
            assert single.shape[-1] == int(valid[i])
            assert torch.equal(batched[i, :, : valid[i]], single[0])


def test_decode_restores_length(tiny):
    wav = torch.randn(2, 1, 12345) * 0.1
    with torch.no_grad():
        codes = tiny.encode(wav)
        assert codes.shape[-1] == -(-12345 // tiny.hop_length)
        assert tiny.decode(codes).shape[-1] == codes.shape[-1] * tiny.hop_length
        assert tiny.decode(codes, 12345).shape == wav.shape


def test_training_forward_gives_losses_and_gradients(tiny):
    tiny.train()
    wav = torch.randn(2, 1, 6400) * 0.1
    out = tiny.training_forward(wav, torch.tensor([6400, 3200]), step=10**6)  # past the warm-up
    tiny.eval()
    assert out.recon.shape == wav.shape
    (out.recon.pow(2).mean() + out.losses["commit"]).backward()
    assert tiny.encoder.model[0].conv.parametrizations.weight.original1.grad is not None
    assert "perplexity_q0" in out.stats


def test_save_and_load_pretrained_round_trip(tiny, tmp_path):
    path = tiny.save_pretrained(tmp_path / "model")
    loaded = load_codec(path)
    wav = torch.randn(1, 1, 4800) * 0.1
    with torch.no_grad():
        assert torch.equal(loaded.encode(wav), tiny.encode(wav))
    assert loaded.checkpoint_hash == tiny.checkpoint_hash != "untrained"
    with pytest.raises(BadConfigError, match="metadata.json"):
        load_codec(tmp_path)


def test_token_file_round_trip_and_bad_files(tiny, tmp_path):
    tiny.save_pretrained(tmp_path / "model")
    wav = torch.randn(1, 1, 7000) * 0.1
    with torch.no_grad():
        codes = tiny.encode(wav)[0]
    path = tiny.save_tokens(tmp_path / "a.vtk", codes, 7000)
    back, header = tiny.load_tokens(path)
    assert torch.equal(back, codes) and header.num_samples == 7000 and header.codec == "wavtokenizer"

    blob = path.read_bytes()
    (tmp_path / "trunc.vtk").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(BadTokenFileError, match="truncated or corrupt"):
        tiny.load_tokens(tmp_path / "trunc.vtk")
    (tmp_path / "junk.vtk").write_bytes(b"hello world, not tokens")
    with pytest.raises(BadTokenFileError, match="bad magic"):
        tiny.load_tokens(tmp_path / "junk.vtk")

    other = build_codec("wavtokenizer", config("wavtokenizer_tiny")["model"])
    other.save_pretrained(tmp_path / "other")
    with pytest.raises(BadTokenFileError, match="checkpoint"):
        other.load_tokens(path)

    with pytest.raises(BadTokenFileError, match="outside"):
        tiny.decode(torch.full((1, 1, 5), tiny.codebook_size))
    with pytest.raises(BadTokenFileError, match="outside"):
        tiny.save_tokens(tmp_path / "bad.vtk", torch.full((1, 5), -1), 1600)
    for err in (BadTokenFileError,):
        with pytest.raises(err) as info:
            tiny.load_tokens(tmp_path / "missing.vtk")
        assert "\n" not in str(info.value)


def test_encode_rejects_bad_shapes_and_n_q(tiny):
    with pytest.raises(BadConfigError):
        tiny.encode(torch.zeros(1, 2, 100))
    with pytest.raises(BadConfigError):
        tiny.encode(torch.zeros(1, 1, 3200), n_q=2)
