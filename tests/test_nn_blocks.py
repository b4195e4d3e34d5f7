"""Shared building blocks (voxtok.nn): positions, masks, attention, eval mode.

The position tests compare against the five tables the models used before voxtok.nn existed,
written out here as they were, so every caller is proved bit-identical.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from voxtok.errors import BadConfigError
from voxtok.nn.attention import MultiHeadAttention
from voxtok.nn.masks import attention_mask, causal_mask, length_mask
from voxtok.nn.modes import eval_mode
from voxtok.nn.positions import apply_rotary, rotary_tables, sinusoids

# ----------------------------------------------------------------------------- the old tables


def old_conformer_sinusoids(positions, dim):  # tts/conformer.py (ESPnet, also rel positions)
    freqs = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    angles = positions.float()[:, None] * freqs[None, :]
    pe = torch.zeros(positions.shape[0], dim)
    pe[:, 0::2] = torch.sin(angles)
    pe[:, 1::2] = torch.cos(angles)
    return pe


def old_llm_positions(length, dim):  # tts/llm.py
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq)
    return table


def old_s3_sinusoids(frames, dim):  # codecs/s3.py (Whisper)
    half = dim // 2
    inv = torch.exp(-math.log(10000.0) * torch.arange(half) / max(half - 1, 1))
    angles = torch.arange(frames)[:, None].float() * inv[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def old_flow_timestep(t, dim, scale=1000.0):  # tts/flow_estimators.py (Matcha)
    half = dim // 2
    freqs = torch.exp(torch.arange(half, dtype=torch.float32) * -(math.log(10000.0) / max(half - 1, 1)))
    angles = scale * t.float().reshape(-1, 1) * freqs[None]
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


def old_flowomni_timestep(t, dim, max_period=10000.0, scale=1000.0):  # tts/flowomni.py (DiT)
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
    args = (t.float() * scale)[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


DIMS = [2, 8, 62, 128, 192, 320, 512, 1280]


@pytest.mark.parametrize("dim", DIMS)
def test_vaswani_positions_are_bit_identical(dim):
    rel = torch.arange(9, -10, -1)
    assert torch.equal(sinusoids(rel, dim), old_conformer_sinusoids(rel, dim))
    assert torch.equal(sinusoids(torch.arange(37), dim), old_llm_positions(37, dim))


@pytest.mark.parametrize("dim", DIMS)
def test_whisper_positions_are_bit_identical(dim):
    new = sinusoids(torch.arange(101), dim, layout="sin_cos", endpoint=True, log_first=True)
    assert torch.equal(new, old_s3_sinusoids(101, dim))


@pytest.mark.parametrize("dim", DIMS)
def test_timestep_tables_are_bit_identical(dim):
    t = torch.cat([torch.rand(13), torch.tensor([0.0, 1.0])])
    matcha = sinusoids(t, dim, layout="sin_cos", endpoint=True, scale=1000.0)
    assert torch.equal(matcha, old_flow_timestep(t, dim))
    dit = sinusoids(t, dim, layout="cos_sin", log_first=True, scale=1000.0)
    assert torch.equal(dit, old_flowomni_timestep(t, dim))


def test_odd_dim_gets_a_zero_column_and_bad_layout_fails():
    t = torch.rand(4)
    table = sinusoids(t, 7, layout="cos_sin", log_first=True, scale=1000.0)
    assert table.shape == (4, 7) and torch.equal(table, old_flowomni_timestep(t, 7))
    assert torch.equal(sinusoids(torch.arange(3), 5)[:, -1], torch.zeros(3))
    with pytest.raises(ValueError, match="layout"):
        sinusoids(t, 8, layout="sin_then_cos")


def test_rotary_is_a_rotation_by_position():
    cos, sin = rotary_tables(6, 8)
    assert cos.shape == sin.shape == (6, 8)
    x = torch.randn(2, 6, 3, 8)
    turned = apply_rotary(x, cos, sin)
    assert torch.allclose(turned.norm(dim=-1), x.norm(dim=-1), atol=1e-5)
    assert torch.equal(turned[:, 0], x[:, 0])  # position 0 is not rotated


# ----------------------------------------------------------------------------- masks


def test_length_causal_and_attention_masks():
    lengths = torch.tensor([3, 0, 5])
    mask = length_mask(lengths, 5)
    assert mask.dtype == torch.bool and mask.shape == (3, 5)
    assert mask.sum(1).tolist() == [3, 0, 5] and not mask[0, 3:].any()
    causal = causal_mask(4)
    assert causal.shape == (4, 4) and torch.equal(causal, torch.ones(4, 4, dtype=torch.bool).tril())
    assert attention_mask(None, 4) is None
    keys = length_mask(torch.tensor([2, 4]), 4)
    both = attention_mask(keys, 4, causal=True)
    assert both.shape == (2, 1, 4, 4)
    assert torch.equal(both[0, 0], causal & keys[0][None])
    assert attention_mask(None, 4, causal=True).shape == (1, 1, 4, 4)


# ----------------------------------------------------------------------------- attention: the old modules


class OldConformerAttention(nn.Module):  # tts/conformer.py MultiHeadSelfAttention
    def __init__(self, dim, heads, relative):
        super().__init__()
        self.heads, self.head_dim, self.relative = heads, dim // heads, relative
        self.linear_q, self.linear_k = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.linear_v, self.linear_out = nn.Linear(dim, dim), nn.Linear(dim, dim)
        if relative:
            self.linear_pos = nn.Linear(dim, dim, bias=False)
            self.pos_bias_u = nn.Parameter(torch.zeros(heads, self.head_dim))
            self.pos_bias_v = nn.Parameter(torch.zeros(heads, self.head_dim))

    def forward(self, x, key_mask, rel_pe=None):
        b, t, _ = x.shape
        split = lambda y: y.view(b, t, self.heads, self.head_dim).transpose(1, 2)
        q, k, v = split(self.linear_q(x)), split(self.linear_k(x)), split(self.linear_v(x))
        if self.relative:
            scores = (q + self.pos_bias_u[None, :, None]) @ k.transpose(-1, -2)
            p = self.linear_pos(rel_pe).view(2 * t - 1, self.heads, self.head_dim).transpose(0, 1)
            by_distance = (q + self.pos_bias_v[None, :, None]) @ p.transpose(-1, -2)[None]
            idx = (t - 1) - torch.arange(t)[:, None] + torch.arange(t)[None, :]
            scores = scores + by_distance.gather(-1, idx.expand(b, self.heads, t, t))
        else:
            scores = q @ k.transpose(-1, -2)
        scores = scores / math.sqrt(self.head_dim)
        scores = scores.masked_fill(~key_mask[:, None, None, :], float("-inf"))
        return self.linear_out((torch.softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(b, t, -1))


class OldFlowAttention(nn.Module):  # tts/flow_estimators.py Attention
    def __init__(self, dim, heads, head_dim):
        super().__init__()
        inner = heads * head_dim
        self.heads, self.head_dim = heads, head_dim
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(dim, inner, bias=False)
        self.to_v = nn.Linear(dim, inner, bias=False)
        self.to_out = nn.Linear(inner, dim)

    def forward(self, x, key_mask):
        b, t, _ = x.shape
        q, k, v = (f(x).view(b, t, self.heads, self.head_dim).transpose(1, 2) for f in (self.to_q, self.to_k, self.to_v))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask[:, None, None, :])
        return self.to_out(out.transpose(1, 2).reshape(b, t, -1))


class OldS3Attention(nn.Module):  # the attention half of codecs/s3.py EncoderBlock
    def __init__(self, dim, heads, fsmn_kernel):
        super().__init__()
        self.heads = heads
        self.query, self.key = nn.Linear(dim, dim), nn.Linear(dim, dim, bias=False)
        self.value, self.out = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.fsmn = nn.Conv1d(dim, dim, fsmn_kernel, groups=dim, bias=False)

    def forward(self, h, mask, rotary):
        batch, frames, dim = h.shape
        split = lambda t: t.reshape(batch, frames, self.heads, dim // self.heads)
        q, k, v = split(self.query(h)), split(self.key(h)), split(self.value(h))
        q, k = apply_rotary(q, *rotary), apply_rotary(k, *rotary)
        attn = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                              attn_mask=mask[:, None, None, :])
        out = self.out(attn.transpose(1, 2).reshape(batch, frames, dim))
        v = v.reshape(batch, frames, dim) * mask[..., None].to(v.dtype)
        kernel = self.fsmn.kernel_size[0]
        padded = F.pad(v.transpose(1, 2), ((kernel - 1) // 2, kernel - 1 - (kernel - 1) // 2))
        return out + (self.fsmn(padded).transpose(1, 2) + v) * mask[..., None].to(v.dtype)


def _batch(dim, lengths=(7, 4)):
    torch.manual_seed(0)
    lengths = torch.tensor(lengths)
    return torch.randn(len(lengths), int(lengths.max()), dim), length_mask(lengths, int(lengths.max()))


def _same_weights(new: nn.Module, old: nn.Module) -> None:
    assert set(new.state_dict()) == set(old.state_dict())  # the checkpoint keys did not change
    old.load_state_dict(new.state_dict())


@pytest.mark.parametrize("relative", [True, False])
def test_espnet_layout_matches_the_conformer_attention(relative):
    new = MultiHeadAttention(16, 4, layout="espnet", relative=relative).eval()
    old = OldConformerAttention(16, 4, relative)
    _same_weights(new, old)
    x, mask = _batch(16)
    rel_pe = sinusoids(torch.arange(6, -7, -1), 16) if relative else None
    expected = old(x, mask, rel_pe)
    got = new(x, mask, rel_pe)
    valid = mask[..., None].expand_as(got)
    if relative:  # same code path: bit-identical
        assert torch.equal(got, expected)
    else:  # now through scaled_dot_product_attention: equal to rounding
        assert torch.allclose(got[valid], expected[valid], atol=1e-6)


def test_diffusers_layout_matches_the_flow_estimator_attention():
    new = MultiHeadAttention(12, 3, 8, layout="diffusers").eval()
    old = OldFlowAttention(12, 3, 8)
    _same_weights(new, old)
    x, mask = _batch(12)
    assert torch.equal(new(x, mask), old(x, mask))


def test_whisper_layout_with_rotary_and_fsmn_matches_the_s3_attention():
    new = MultiHeadAttention(16, 2, layout="whisper", fsmn_kernel=5).eval()
    old = OldS3Attention(16, 2, 5)
    _same_weights(new, old)
    assert new.state_dict()["key.weight"] is not None and "key.bias" not in new.state_dict()
    x, mask = _batch(16)
    rotary = rotary_tables(x.shape[1], 8)
    assert torch.equal(new(x, mask, rotary=rotary), old(x, mask, rotary))


def test_padding_does_not_leak_and_causal_hides_the_future():
    attn = MultiHeadAttention(8, 2, causal=True).eval()
    x, mask = _batch(8, lengths=(6, 3))
    batched = attn(x, mask)
    alone = attn(x[1:, :3], mask[1:, :3])
    assert torch.allclose(batched[1, :3], alone[0], atol=1e-6)
    changed = x.clone()
    changed[:, 4:] = torch.randn_like(changed[:, 4:])
    assert torch.allclose(attn(changed, mask)[:, :4], batched[:, :4], atol=1e-6)
    assert not torch.allclose(MultiHeadAttention(8, 2).eval()(changed, mask)[0, :4],
                              MultiHeadAttention(8, 2).eval()(x, mask)[0, :4])


def test_attention_config_errors():
    with pytest.raises(BadConfigError, match="divisible"):
        MultiHeadAttention(10, 3)
    with pytest.raises(BadConfigError, match="layout"):
        MultiHeadAttention(8, 2, layout="fairseq")
    with pytest.raises(BadConfigError, match="relative"):
        MultiHeadAttention(8, 2, head_dim=8, relative=True)
    with pytest.raises(ValueError, match="rel_pe"):
        MultiHeadAttention(8, 2, relative=True)(torch.randn(1, 3, 8))


def test_s3_block_loads_weights_saved_before_the_shared_attention():
    from voxtok.codecs.s3 import EncoderBlock

    block = EncoderBlock(16, 2, fsmn_kernel=3).eval()
    state = block.state_dict()
    old_state = {k.replace("attn.", ""): v for k, v in state.items()}  # the keys the block had before
    assert "query.weight" in old_state and "fsmn.weight" in old_state
    fresh = EncoderBlock(16, 2, fsmn_kernel=3).eval()
    fresh.load_state_dict(old_state)
    x, mask = _batch(16)
    assert torch.equal(fresh(x, mask), block(x, mask))


# ----------------------------------------------------------------------------- eval mode


def test_eval_mode_restores_every_flag_even_after_an_error():
    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5))
    model.train()
    model[0].eval()  # e.g. a frozen part that stays in eval mode
    with eval_mode(model) as inside:
        assert inside is model and not any(m.training for m in model.modules())
    assert model.training and model[1].training and not model[0].training
    with pytest.raises(RuntimeError):
        with eval_mode(model):
            raise RuntimeError("boom")
    assert model.training and not model[0].training
    model.eval()
    with eval_mode(model):
        pass
    assert not model.training
