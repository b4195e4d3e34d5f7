"""The speed work of issue 19 keeps the numbers: in-place SEANet activations, the time-major ConvNeXt
stack and oneDNN's fused linear compute what the plain formulas compute, gradients included, and never
write into a caller's tensor."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from voxtok.codecs.modules import vocos
from voxtok.codecs.modules.conv import NormConv1d
from voxtok.codecs.modules.seanet import SEANetDecoder, SEANetEncoder, SEANetResidualBlock
from voxtok.codecs.modules.vocos import ConvNeXtBlock, VocosBackbone, inference_linear


def close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-5) -> bool:
    a, b = a.detach(), b.detach()
    return float((a - b).abs().max()) <= tol * max(1.0, float(b.abs().max()))


def test_a_1x1_conv_reads_its_input_without_a_padded_copy():
    x = torch.randn(2, 4, 50)
    assert NormConv1d(4, 8, 1).pad(x) is x
    padded = NormConv1d(4, 8, 3).pad(x)
    assert padded.shape == (2, 4, 52) and torch.equal(padded[..., 1:-1], x)


@pytest.mark.parametrize("true_skip, causal", [(False, False), (True, False), (False, True)])
def test_residual_block_in_place_equals_the_plain_formula(true_skip, causal):
    torch.manual_seed(0)
    block = SEANetResidualBlock(8, kernel_size=3, dilation=2, true_skip=true_skip, causal=causal)
    x = torch.randn(2, 8, 37, requires_grad=True)
    kept = x.detach().clone()
    plain = block.shortcut(x) + block.block(x)  # the Sequential: ELU, conv, ELU, 1x1 conv
    ours = block(x)
    assert torch.equal(x.detach(), kept)  # the input is never written
    assert close(ours, plain, 1e-6)
    grads = [torch.autograd.grad(y.square().sum(), [x, *block.parameters()]) for y in (plain, ours)]
    assert all(close(a, b) for a, b in zip(*grads))


def test_seanet_encoder_and_decoder_leave_their_inputs_alone():
    torch.manual_seed(0)
    encoder = SEANetEncoder(dimension=8, n_filters=4, ratios=[4, 2])
    decoder = SEANetDecoder(dimension=8, n_filters=4, ratios=[4, 2])
    wav, latent = torch.randn(1, 1, 160), torch.randn(1, 8, 20)
    before = wav.clone(), latent.clone()
    with torch.inference_mode():
        encoder(wav), decoder(latent)
    assert torch.equal(wav, before[0]) and torch.equal(latent, before[1])


@pytest.mark.parametrize("adanorm", [None, 3])
def test_time_major_convnext_equals_the_channel_first_formula(adanorm):
    torch.manual_seed(0)
    block = ConvNeXtBlock(16, 24, layer_scale_init_value=0.5, adanorm_num_embeddings=adanorm)
    x = torch.randn(2, 16, 13, requires_grad=True)
    cond = torch.tensor([0, 2]) if adanorm else None
    h = block.dwconv(x).transpose(1, 2)
    h = block.norm(h, cond) if adanorm else block.norm(h)
    plain = x + (block.pwconv2(F.gelu(block.pwconv1(h))) * block.gamma).transpose(1, 2)
    ours = block(x, cond)
    assert close(ours, plain, 1e-6)
    assert close(block.time_major(x.transpose(1, 2).contiguous(), cond).transpose(1, 2), plain, 1e-6)
    grads = [torch.autograd.grad(y.square().sum(), [x, *block.parameters()]) for y in (plain, ours)]
    assert all(close(a, b) for a, b in zip(*grads))


def test_inference_linear_matches_f_linear_and_falls_back(monkeypatch):
    torch.manual_seed(0)
    layer = torch.nn.Linear(24, 40)
    x = torch.randn(3, 7, 24)
    with torch.inference_mode():
        assert close(inference_linear(x, layer), F.linear(x, layer.weight, layer.bias))
        assert close(inference_linear(x, layer, gelu=True), F.gelu(F.linear(x, layer.weight, layer.bias)))
    # With autograd it is F.linear itself, differentiable.
    y = inference_linear(x.requires_grad_(True), layer, gelu=True)
    assert torch.equal(y, F.gelu(F.linear(x, layer.weight, layer.bias)))
    y.sum().backward()
    assert x.grad is not None and layer.weight.grad is not None

    def broken(*args):
        raise RuntimeError("no such kernel on this CPU")

    monkeypatch.setattr(vocos._OneDnnLinear, "op", broken)
    with torch.inference_mode():
        assert torch.equal(inference_linear(x, layer), F.linear(x, layer.weight, layer.bias))
    assert vocos._OneDnnLinear.op is None  # switched off for good


def test_backbone_inference_equals_its_autograd_path():
    torch.manual_seed(0)
    backbone = VocosBackbone(12, 32, 48, 3, adanorm_num_embeddings=4, pos_net=True).eval()
    x, cond = torch.randn(2, 12, 30), torch.tensor([1, 3])
    with torch.inference_mode():
        fast = backbone(x, cond)
    assert close(fast, backbone(x, cond).detach())
