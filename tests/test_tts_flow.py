"""Conditional flow-matching decoder (voxtok/tts/flow.py): loss, masking, lengths, sampling, chunks."""

import math
from pathlib import Path

import pytest
import torch
import yaml

from voxtok.errors import BadConfigError, VoxTokError
from voxtok.tts.flow import FlowDecoder, frame_noise
from voxtok.registry import build, load

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "tts"
N_MELS = 20


def tiny_config(**overrides) -> dict:
    cfg = {
        "vocab_size": 32, "token_rate": 50, "mel": {"preset": "cosyvoice", "n_mels": N_MELS}, "spk_dim": 256,
        "embed_dim": 32,
        "encoder": {"dim": 32, "heads": 2, "ff_dim": 64, "layers": 1, "dropout": 0.0, "attn_dropout": 0.0},
        "length_regulator": {"n_convs": 1},
        "estimator": {"kind": "unet", "channels": [32, 32], "n_blocks": 1, "num_mid_blocks": 1, "heads": 2,
                      "head_dim": 16},
        "inference": {"n_steps": 3, "cfg_strength": 0.7},
    }
    cfg.update(overrides)
    return cfg


def tiny_model(seed: int = 0, **overrides) -> FlowDecoder:
    torch.manual_seed(seed)
    return FlowDecoder(tiny_config(**overrides)).eval()


def toy_batch(model: FlowDecoder, token_lengths=(12, 9), seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor(token_lengths)
    mel_lengths = model.frames_for_tokens(lengths)
    b, n, t = len(token_lengths), int(lengths.max()), int(mel_lengths.max())
    tokens = torch.randint(0, model.vocab_size, (b, n), generator=g)
    frames = torch.arange(t)[None, None].float()
    bins = torch.arange(N_MELS)[None, :, None].float()
    mel = 1.5 * torch.sin(0.3 * frames + 0.5 * bins + torch.arange(b)[:, None, None]) - 4.0
    for i in range(b):
        tokens[i, int(lengths[i]):] = 0
        mel[i, :, int(mel_lengths[i]):] = 0
    return {"speech_tokens": tokens, "token_lengths": lengths, "mel": mel, "mel_lengths": mel_lengths,
            "spk_emb": torch.randn(b, 256, generator=g)}


def test_cfm_loss_falls_on_a_fixed_target():
    model = tiny_model().train()
    batch = toy_batch(model, (16, 16))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    torch.manual_seed(1)
    losses = []
    for _ in range(100):
        loss, stats = model.forward_loss(batch)
        assert set(stats) == {"loss", "prompt_frames", "cfg_dropped"}
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert math.isfinite(last) and last < 0.25 * first, (first, last)


def test_padding_does_not_change_the_loss():
    model = tiny_model()
    batch = toy_batch(model, (12, 7))
    dirty = {k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}
    dirty["mel"][1, :, int(batch["mel_lengths"][1]):] = 123.0
    dirty["speech_tokens"][1, 7:] = 31
    torch.manual_seed(5)
    clean_loss, _ = model.forward_loss(batch)
    torch.manual_seed(5)
    dirty_loss, _ = model.forward_loss(dirty)
    assert torch.allclose(clean_loss, dirty_loss, atol=1e-6)


@pytest.mark.parametrize("loss_on_prompt", [False, True])
def test_prompt_frames_leave_the_loss_when_asked(loss_on_prompt):
    model = tiny_model(cfm={"prompt_prob": 1.0, "prompt_max_ratio": 0.9, "loss_on_prompt": loss_on_prompt,
                            "cfg_dropout": 0.0})
    batch = toy_batch(model, (20,))
    captured = {}

    def keep_output(module, inputs, output):
        output.retain_grad()
        captured["out"] = output

    model.estimator.register_forward_hook(keep_output)
    torch.manual_seed(3)
    loss, stats = model.forward_loss(batch)
    loss.backward()
    frames = int(batch["mel_lengths"][0])
    prompt = round(stats["prompt_frames"] * frames)
    assert 0 < prompt < frames and stats["cfg_dropped"] == 0.0
    grad = captured["out"].grad[0].abs().sum(dim=0)  # [T]
    assert bool((grad[prompt:frames] > 0).all())
    assert bool((grad[:prompt] > 0).all()) if loss_on_prompt else bool((grad[:prompt] == 0).all())


def test_length_regulator_lengths():
    model = tiny_model()
    assert model.frames_for_tokens(50) == 86  # 1 s of 50 Hz tokens at 22050 / 256 frames/s
    assert model.frames_for_tokens(torch.tensor([0, 25, 50, 100])).tolist() == [0, 43, 86, 172]
    h = torch.ones(2, 6, N_MELS) * torch.arange(1, 3).float()[:, None, None]
    out = model.length_regulator.interpolate(h, [[6], [2, 3]], [[10], [4, 7]], 12)
    assert out.shape == (2, N_MELS, 12)
    assert torch.allclose(out[0, :, :10], torch.ones(N_MELS, 10)) and out[0, :, 10:].abs().sum() == 0
    assert torch.allclose(out[1, :, :11], torch.full((N_MELS, 11), 2.0)) and out[1, :, 11:].abs().sum() == 0
    mu = model.length_regulator(h, [[6], [5]], [[10], [11]], 12)
    assert mu[0, :, 10:].abs().sum() == 0 and mu[1, :, 11:].abs().sum() == 0
    batch = toy_batch(model, (12, 9))
    mel, lengths = model.synthesize(batch["speech_tokens"], batch["token_lengths"], batch["spk_emb"], seed=0)
    assert lengths.tolist() == model.frames_for_tokens(batch["token_lengths"]).tolist() == [20, 15]
    assert mel.shape == (2, N_MELS, 20) and mel[1, :, 15:].abs().sum() == 0


def _manual_sample(model, tokens, spk_emb, seed, n_steps, w):
    """Reference Euler sampler, one item, unbatched estimator calls."""
    n = tokens.shape[1]
    frames = model.frames_for_tokens(n)
    with torch.no_grad():
        h = model.encode_tokens(tokens, torch.tensor([n]))
        mu = model.length_regulator(h, [[n]], [[frames]], frames)
        spk = model.speaker(spk_emb)
        x = frame_noise(seed, 0, 0, frames, N_MELS)[None]
        mask, cond = torch.ones(1, 1, frames), torch.zeros(1, N_MELS, frames)
        ts = [1 - math.cos(math.pi / 2 * k / n_steps) for k in range(n_steps + 1)]
        for k in range(n_steps):
            t = torch.tensor([ts[k]])
            v = model.estimator(x, mask, mu, t, spk, cond)
            if w:
                zero = torch.zeros_like
                v = (1 + w) * v - w * model.estimator(x, mask, zero(mu), t, zero(spk), zero(cond))
            x = x + (ts[k + 1] - ts[k]) * v
    return x


def test_cfg_zero_is_the_conditional_path_and_cfg_is_applied():
    model = tiny_model()
    batch = toy_batch(model, (10,))
    tokens, spk = batch["speech_tokens"], batch["spk_emb"]
    plain, _ = model.synthesize(tokens, None, spk, n_steps=3, cfg_strength=0.0, seed=4)
    assert torch.allclose(plain, _manual_sample(model, tokens, spk, 4, 3, 0.0), atol=1e-5)
    guided, _ = model.synthesize(tokens, None, spk, n_steps=3, cfg_strength=0.7, seed=4)
    assert torch.allclose(guided, _manual_sample(model, tokens, spk, 4, 3, 0.7), atol=1e-4)
    assert (guided - plain).abs().max() > 1e-3


def test_seeded_sampling_is_deterministic_and_batch_equals_single():
    model = tiny_model()
    batch = toy_batch(model, (12, 7))
    tok, lens, spk = batch["speech_tokens"], batch["token_lengths"], batch["spk_emb"]
    a, la = model.synthesize(tok, lens, spk, seed=11)
    b, _ = model.synthesize(tok, lens, spk, seed=11)
    c, _ = model.synthesize(tok, lens, spk, seed=12)
    assert torch.equal(a, b) and (a - c).abs().max() > 1e-3
    for i in range(2):
        n = int(lens[i])
        single, ls = model.synthesize(tok[i:i + 1, :n], None, spk[i:i + 1], seed=11 + i)
        assert ls.item() == la[i].item()
        assert torch.allclose(single[0], a[i, :, : ls.item()], atol=1e-4), i


def test_prompt_is_cut_from_the_output():
    model = tiny_model()
    batch = toy_batch(model, (12, 7))
    tok, lens, spk = batch["speech_tokens"], batch["token_lengths"], batch["spk_emb"]
    prompt_tokens = torch.randint(0, 32, (2, 5))
    prompt_mel = torch.randn(2, N_MELS, 9) - 4
    mel, lengths = model.synthesize(tok, lens, spk, prompt_tokens, prompt_mel, seed=0,
                                    prompt_token_lengths=torch.tensor([5, 3]),
                                    prompt_mel_lengths=torch.tensor([9, 5]))
    assert lengths.tolist() == model.frames_for_tokens(lens).tolist()
    assert mel.shape == (2, N_MELS, int(lengths.max()))
    no_prompt, _ = model.synthesize(tok, lens, spk, seed=0)
    assert (mel - no_prompt).abs().max() > 1e-3
    # batch == single also with ragged prompts
    single, _ = model.synthesize(tok[1:, :7], None, spk[1:], prompt_tokens[1:, :3], prompt_mel[1:, :, :5], seed=1)
    assert torch.allclose(single[0], mel[1, :, : int(lengths[1])], atol=1e-4)
    with pytest.raises(VoxTokError):
        model.synthesize(tok, lens, spk, prompt_tokens, None)


def test_chunked_decoding_lengths_and_consistency():
    model = tiny_model()
    batch = toy_batch(model, (23, 14))
    tok, lens, spk = batch["speech_tokens"], batch["token_lengths"], batch["spk_emb"]
    full, full_len = model.synthesize(tok, lens, spk, seed=3)
    chunks = model.chunk_bounds(23, chunk_tokens=8)
    assert chunks == [(0, 8), (8, 16), (16, 23)]
    kept = torch.zeros(2, dtype=torch.long)
    prev = None
    for start, end in chunks:
        mel, lengths = model.synthesize_chunk(tok, lens, spk, start, end, prev_mel=prev, context_tokens=4,
                                              overlap_tokens=3, seed=3)
        for i in range(2):
            n = int(lens[i])
            expect = max(0, model.frames_for_tokens(min(end + 3, n)) - model.frames_for_tokens(start)) if start < n else 0
            assert lengths[i].item() == expect
            overlap = model.frames_for_tokens(min(end + 3, n)) - model.frames_for_tokens(min(end, n)) if start < n else 0
            kept[i] += lengths[i] - overlap
        prev = mel
    assert kept.tolist() == full_len.tolist()
    # With the whole utterance as context, a chunk is exactly that slice of the full decode.
    tail, tail_len = model.synthesize_chunk(tok[:1, :23], None, spk[:1], 10, 20, context_tokens=10, overlap_tokens=3,
                                            seed=3)
    f10 = model.frames_for_tokens(10)
    assert tail_len.item() == full_len[0].item() - f10
    assert torch.allclose(tail[0], full[0, :, f10:full_len[0]], atol=1e-4)


def test_noise_depends_only_on_seed_and_frame():
    whole = frame_noise(7, 0, 0, 100, 4)
    assert torch.equal(frame_noise(7, 0, 37, 70, 4), whole[:, 37:70])
    assert not torch.equal(frame_noise(8, 0, 0, 100, 4), whole)


def test_bad_inputs_and_config():
    model = tiny_model()
    batch = toy_batch(model, (6,))
    tok, spk = batch["speech_tokens"], batch["spk_emb"]
    with pytest.raises(VoxTokError, match="outside the vocabulary"):
        model.synthesize(tok + 100, None, spk)
    with pytest.raises(VoxTokError, match="speaker embedding"):
        model.synthesize(tok, None, spk[:, :10])
    with pytest.raises(VoxTokError, match="mel must be"):
        model.forward_loss(dict(batch, mel=batch["mel"][:, :5]))
    with pytest.raises(BadConfigError, match="unknown config key 'flow.bogus'"):
        FlowDecoder(tiny_config(bogus=1))
    with pytest.raises(BadConfigError, match="estimator kind"):
        FlowDecoder(tiny_config(estimator={"kind": "wavenet"}))


def test_dit_estimator_trains_and_samples():
    model = tiny_model(estimator={"kind": "dit", "dim": 32, "depth": 2, "heads": 2, "head_dim": 16,
                                  "conv_pos_kernel": 7, "conv_pos_groups": 4})
    batch = toy_batch(model, (12, 7))
    loss, _ = model.train().forward_loss(batch)
    loss.backward()
    assert torch.isfinite(loss)
    mel, lengths = model.synthesize(batch["speech_tokens"], batch["token_lengths"], batch["spk_emb"], seed=0)
    single, _ = model.synthesize(batch["speech_tokens"][1:, :7], None, batch["spk_emb"][1:], seed=1)
    assert torch.allclose(single[0], mel[1, :, : int(lengths[1])], atol=1e-4)


def test_save_and_load_roundtrip(tmp_path):
    model = tiny_model()
    model.save_pretrained(tmp_path / "flow")
    loaded = load(tmp_path / "flow")
    assert loaded.registry_name == "flow" and isinstance(loaded, FlowDecoder)
    batch = toy_batch(model, (8,))
    a, _ = model.synthesize(batch["speech_tokens"], None, batch["spk_emb"], seed=0)
    b, _ = loaded.synthesize(batch["speech_tokens"], None, batch["spk_emb"], seed=0)
    assert torch.equal(a, b)


def _cosyvoice_flow_params(vocab=4096, embed=512, dim=512, ff=2048, layers=6, heads=8, n_mels=80, spk=256,
                           lr_convs=4, ch=256, n_blocks=4, mid=12, attn_inner=512) -> int:
    """Parameter count of CosyVoice-300M's MaskedDiffWithXvec, derived from its published layers."""
    lin = lambda i, o, bias=True: i * o + (o if bias else 0)  # noqa: E731
    ln = lambda d: 2 * d  # noqa: E731
    # Conformer: Linear+LN input layer; per block rel-pos MHSA (q,k,v,out + pos proj + u,v biases),
    # FFN, 2 LayerNorms; final LayerNorm.
    block = 4 * lin(dim, dim) + lin(dim, dim, False) + 2 * dim + lin(dim, ff) + lin(ff, dim) + 2 * ln(dim)
    encoder = lin(embed, dim) + ln(dim) + layers * block + ln(dim)
    regulator = lr_convs * (3 * n_mels * n_mels + n_mels + 2 * n_mels) + lin(n_mels, n_mels)
    in_ch, temb = 4 * n_mels, 4 * ch
    conv = lambda i, o, k: i * o * k + o  # noqa: E731
    resnet = lambda i, o: lin(temb, o) + conv(i, o, 3) + 2 * o + conv(o, o, 3) + 2 * o + conv(i, o, 1)  # noqa: E731
    tblock = ln(ch) + 3 * lin(ch, attn_inner, False) + lin(attn_inner, ch) + ln(ch) + lin(ch, 4 * ch) + lin(4 * ch, ch)
    estimator = (lin(in_ch, temb) + lin(temb, temb)
                 + resnet(in_ch, ch) + n_blocks * tblock + conv(ch, ch, 3)          # down 0 (+ stride-2 conv)
                 + resnet(ch, ch) + n_blocks * tblock + conv(ch, ch, 3)             # down 1 (last)
                 + mid * (resnet(ch, ch) + n_blocks * tblock)                       # mid
                 + resnet(2 * ch, ch) + n_blocks * tblock + conv(ch, ch, 4)         # up 0 (+ transposed conv)
                 + resnet(2 * ch, ch) + n_blocks * tblock + conv(ch, ch, 3)         # up 1 (last)
                 + conv(ch, ch, 3) + 2 * ch + conv(ch, n_mels, 1))                  # final block + proj
    return vocab * embed + encoder + lin(dim, n_mels) + regulator + lin(spk, n_mels) + estimator


def test_paper_config_size_and_short_forward():
    cfg = yaml.safe_load((CONFIGS / "flow_300m_paper.yaml").read_text())
    model = build("tts", cfg["name"], cfg["model"])
    count = sum(p.numel() for p in model.parameters())
    assert count == _cosyvoice_flow_params() == 104_879_872
    # The published checkpoint (192-d CAM++ x-vectors) is 64 x 80 weights smaller.
    assert _cosyvoice_flow_params(spk=192) == 104_874_752
    assert model.n_mels == 80 and model.mel_config.sample_rate == 22050 and model.mel_config.hop_length == 256
    tokens = torch.randint(0, 4096, (1, 8))
    mel = torch.randn(1, 80, model.frames_for_tokens(8)) - 5
    loss, _ = model.forward_loss({"speech_tokens": tokens, "token_lengths": torch.tensor([8]), "mel": mel,
                                  "mel_lengths": torch.tensor([mel.shape[-1]]), "spk_emb": torch.randn(1, 256)})
    assert torch.isfinite(loss)
    out, lengths = model.synthesize(tokens, None, torch.randn(1, 256), n_steps=1, seed=0)
    assert out.shape == (1, 80, 13) and lengths.tolist() == [13]


def test_tiny_config_builds():
    cfg = yaml.safe_load((CONFIGS / "flow_tiny.yaml").read_text())
    model = build("tts", cfg["name"], cfg["model"])
    assert model.n_mels == 80 and model.mel_config == FlowDecoder().mel_config
    assert sum(p.numel() for p in model.parameters()) < 5_000_000
