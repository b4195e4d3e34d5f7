"""WavTokenizer: published sizes, encode/decode contracts, checkpoints and token files."""

from pathlib import Path

import pytest
import torch
import yaml

from voxtok.registry import build, load
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


# The tiny config's log-mel encoder, and a small SEANet (the paper's encoder) in its place.
SMALL_SEANET = {"kind": "seanet", "channels": 1, "dimension": 32, "n_filters": 4, "n_residual_layers": 1,
                "ratios": [8, 5, 4, 2], "lstm_layers": 1}


def tiny_model_config(encoder: str) -> dict:
    cfg = config("wavtokenizer_tiny")["model"]
    if encoder == "seanet":
        cfg["encoder"] = dict(SMALL_SEANET)
    return cfg


@pytest.fixture(scope="module", params=["mel", "seanet"])
def tiny(request):
    torch.manual_seed(0)
    return build("codec", "wavtokenizer", tiny_model_config(request.param)).eval()


@pytest.mark.parametrize("name, hop, rate", [("wavtokenizer_75_paper", 320, 75), ("wavtokenizer_40_paper", 600, 40)])
def test_paper_configs_build_at_published_size(name, hop, rate):
    codec = build("codec", "wavtokenizer", config(name)["model"]).eval()
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


def test_mel_encoder_right_context_covers_its_receptive_field():
    """Changing samples after frame t's declared right context must leave latent frame t as it was."""
    codec = build("codec", "wavtokenizer", tiny_model_config("mel")).eval()
    hop, context = codec.hop_length, codec.right_context_frames
    torch.manual_seed(2)
    wav = torch.randn(1, 1, 60 * hop) * 0.1
    changed = wav.clone()
    t = 20
    changed[..., (t + 1 + context) * hop:] = torch.randn(1, 1, wav.shape[-1] - (t + 1 + context) * hop) * 0.1
    with torch.no_grad():
        a, b = codec.encoder(wav), codec.encoder(changed)
    assert torch.equal(a[..., : t + 1], b[..., : t + 1])
    assert not torch.allclose(a[..., t + context], b[..., t + context])  # a frame whose window holds the change


def test_unknown_encoder_kind_is_a_config_error():
    cfg = tiny_model_config("mel")
    cfg["encoder"]["kind"] = "wav2vec"
    with pytest.raises(BadConfigError, match="encoder kind 'wav2vec'"):
        build("codec", "wavtokenizer", cfg)
    cfg["encoder"].update(kind="mel", hop_length=320, n_fft=1279)  # "same" framing would drop a frame
    with pytest.raises(BadConfigError, match="even difference"):
        build("codec", "wavtokenizer", cfg)


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
    first = next(tiny.encoder.parameters())  # the encoder's input layer
    assert first.grad is not None and first.grad.abs().sum() > 0
    assert "perplexity_q0" in out.stats


def test_save_and_load_pretrained_round_trip(tiny, tmp_path):
    path = tiny.save_pretrained(tmp_path / "model")
    loaded = load(path, kind="codec")
    wav = torch.randn(1, 1, 4800) * 0.1
    with torch.no_grad():
        assert torch.equal(loaded.encode(wav), tiny.encode(wav))
    assert loaded.checkpoint_hash == tiny.checkpoint_hash != "untrained"
    with pytest.raises(BadConfigError, match="metadata.json"):
        load(tmp_path, kind="codec")


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

    other = build("codec", "wavtokenizer", config("wavtokenizer_tiny")["model"])
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
