"""Architecture tests for the codec building blocks: padded convs, SEANet, Vocos backbone, ISTFT head.

Parameter counts of the published models, derived layer by layer from the reference code
(jishengpeng/WavTokenizer encoder/modules/seanet.py + decoder/models.py + decoder/heads.py, and
ZhangXInFD/SpeechTokenizer speechtokenizer/modules/seanet.py + config/spt_base_cfg.json).
Both use ELU, weight-normed convs, compress 2, one residual block per stage (dilation 1) and a
1x1-conv skip in every residual block (true_skip=False, the SEANet default in both repositories).

Building blocks (C = channels of a stage):
  weight-normed Conv1d(i -> o, k)           i*o*k (v) + o (g) + o (bias)
  weight-normed ConvTranspose1d(i -> o, k)  i*o*k (v) + i (g: weight is [i, o, k], norm over dim 0) + o
  residual block(C): conv C->C/2 k3 (1.5C^2 + C) + conv C/2->C k1 (0.5C^2 + 2C)
                     + skip conv C->C k1 (C^2 + 2C)                              = 3C^2 + 5C
  encoder down conv C -> 2C, kernel 2r                                          = 4rC^2 + 4C
  LSTM layer, input i, hidden h, per direction: 4h(i + h) + 8h

WavTokenizer encoder (n_filters 32, dimension 512, ratios [8,5,4,2] -> strides 2,4,5,8, LSTM 2):
  conv 1->32 k7                                   224 + 64            =       288
  C=32,  r=2: 3232 + 8320                                             =    11,552
  C=64,  r=4: 12,608 + 65,792                                         =    78,400
  C=128, r=5: 49,792 + 328,192                                        =   377,984
  C=256, r=8: 197,888 + 2,098,176                                     = 2,296,064
  LSTM 512, 2 layers: 2 * (4*512*1024 + 8*512)                        = 4,202,496
  conv 512->512 k7: 1,835,008 + 1024                                  = 1,836,032
  total                                                                 8,802,816
  40 Hz variant (ratios [6,5,5,4] -> strides 4,5,5,6): stages 19,744 / 94,784 / 377,984 /
  1,771,776, same ends                                                  8,303,104

WavTokenizer decoder backbone (input 512, dim 768, intermediate 2304, 12 ConvNeXt layers,
pos_net, adanorm_num_embeddings 4 as in the published configs):
  embed conv 512->768 k7: 512*768*7 + 768                             =  2,753,280
  pos_net: ResNet block = 2 GroupNorm (2*1536) + 2 conv k3 (2 * (768*768*3 + 768))
           = 3,543,552, four of them                                  = 14,174,208
           attention = GroupNorm 1536 + q,k,v,proj 1x1 (4 * 590,592)  =  2,363,904
           final GroupNorm                                            =      1,536
           pos_net total                                                 16,539,648
  AdaLayerNorm(4, 768): scale + shift tables 2*4*768                  =      6,144
  ConvNeXt block: dwconv 768*7 + 768 (6,144) + AdaLN (6,144)
           + Linear 768->2304 (1,771,776) + Linear 2304->768 (1,770,240) + gamma 768
           = 3,555,072, twelve of them                                = 42,660,864
  final LayerNorm                                                     =      1,536
  total                                                                 61,961,472
  (with plain LayerNorms, adanorm None: 61,901,568)
ISTFT head Linear(768 -> n_fft + 2): n_fft 1280 -> 985,858; n_fft 2400 -> 1,847,138.

SpeechTokenizer encoder (n_filters 64, dimension 1024, BiLSTM 2 layers, ratios [8,5,4,2]):
  conv 1->64 k7                                                       =        576
  C=64,  r=2: 12,608 + 33,024                                         =     45,632
  C=128, r=4: 49,792 + 262,656                                        =    312,448
  C=256, r=5: 197,888 + 1,311,744                                     =  1,509,632
  C=512, r=8: 788,992 + 8,390,656                                     =  9,179,648
  BiLSTM hidden 1024: layer 1 (input 1024) 2 * (4*1024*2048 + 8192) = 16,793,600,
                      layer 2 (input 2048) 2 * (4*1024*3072 + 8192) = 25,182,208 = 41,975,808
  conv 2048->1024 k7 (takes both LSTM directions): 14,680,064 + 2048  = 14,682,112
  total                                                                 67,705,856
SpeechTokenizer decoder (mirror, one-directional LSTM):
  conv 1024->1024 k7 7,342,080; LSTM 16,793,600;
  up stage W -> W/2 (ConvTranspose k 2r: rW^2 + 1.5W) + residual block(W/2):
  W=1024 r=8 9,179,136; W=512 r=5 1,509,376; W=256 r=4 312,320; W=128 r=2 45,568;
  conv 64->1 k7 450                                                   total 35,182,530

Besides the hand count these numbers were checked by building the reference modules
themselves in a scratch directory (not part of this repository); loading their weights into
ours gave identical encoder / backbone / ISTFT outputs.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from voxtok.codecs.modules.conv import NormConv1d, NormConvTranspose1d, pad1d
from voxtok.codecs.modules.seanet import SEANetDecoder, SEANetEncoder
from voxtok.codecs.modules.vocos import AdaLayerNorm, ConvNeXtBlock, InverseSTFT, ISTFTHead, VocosBackbone


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def same_stft(x: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
    """STFT matching InverseSTFT's "same" convention: [B, T] -> complex [B, n_fft//2+1, T // hop]."""
    left = (n_fft - hop) // 2
    padded = F.pad(x.unsqueeze(1), (left, n_fft - hop - left), mode="reflect").squeeze(1)
    return torch.stft(padded, n_fft, hop, window=torch.hann_window(n_fft), center=False, return_complex=True)


# ---------------------------------------------------------------------------------------- conv


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("kernel,stride,dilation", [(7, 1, 1), (3, 1, 4), (4, 2, 1), (10, 5, 1), (16, 8, 1)])
def test_norm_conv1d_output_length_is_ceil(causal, kernel, stride, dilation):
    conv = NormConv1d(2, 3, kernel, stride=stride, dilation=dilation, causal=causal)
    for length in (1, 2, 7, 37, 100):
        assert conv(torch.randn(1, 2, length)).shape == (1, 3, math.ceil(length / stride))


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("norm", ["weight_norm", "none"])
def test_norm_conv_transpose_output_length(causal, norm):
    convtr = NormConvTranspose1d(4, 2, kernel_size=10, stride=5, causal=causal, norm=norm)
    assert convtr(torch.randn(2, 4, 9)).shape == (2, 2, 45)


def test_weight_norm_switch_changes_parameters():
    with_wn = NormConv1d(4, 8, 3)
    plain = NormConv1d(4, 8, 3, norm="none")
    assert n_params(with_wn) == n_params(plain) + 8  # one gain per output channel
    with pytest.raises(ValueError):
        NormConv1d(4, 8, 3, norm="spectral")


def test_pad1d_reflect_handles_inputs_shorter_than_padding():
    x = torch.arange(3.0).view(1, 1, 3)
    out = pad1d(x, 5, 2)
    assert out.shape == (1, 1, 10)
    assert torch.equal(out[..., 5:8], x)


# -------------------------------------------------------------------------------------- SEANet


@pytest.mark.parametrize("ratios", [(8, 5, 4, 2), (6, 5, 5, 4)])
@pytest.mark.parametrize("causal", [False, True])
def test_seanet_lengths(ratios, causal):
    hop = math.prod(ratios)
    enc = SEANetEncoder(dimension=16, n_filters=4, ratios=ratios, causal=causal)
    dec = SEANetDecoder(dimension=16, n_filters=4, ratios=ratios, causal=causal)
    assert enc.hop_length == dec.hop_length == hop
    for length in (hop * 3, hop * 3 + 1, hop * 4 - 1, 17):
        z = enc(torch.randn(2, 1, length))
        assert z.shape == (2, 16, math.ceil(length / hop))
        assert dec(z).shape == (2, 1, z.shape[-1] * hop)


def test_seanet_bidirectional_lstm_widths():
    enc = SEANetEncoder(dimension=24, n_filters=4, ratios=(2, 2), bidirectional=True, lstm_layers=2)
    lstm = enc.model[-3]
    assert lstm.out_channels == 2 * 16
    assert enc.model[-1].conv.in_channels == 32  # last conv takes both directions
    assert enc(torch.randn(1, 1, 40)).shape == (1, 24, 10)
    with pytest.raises(ValueError):
        SEANetEncoder(causal=True, bidirectional=True)


def test_seanet_without_lstm():
    enc = SEANetEncoder(dimension=8, n_filters=4, ratios=(4, 2), lstm_layers=0)
    assert not any(isinstance(m, torch.nn.LSTM) for m in enc.modules())
    assert enc(torch.randn(1, 1, 64)).shape == (1, 8, 8)


def test_causal_encoder_ignores_future_samples():
    torch.manual_seed(0)
    ratios = (4, 2)
    enc = SEANetEncoder(dimension=8, n_filters=4, ratios=ratios, causal=True).eval()
    hop = enc.hop_length
    x = torch.randn(1, 1, hop * 12 + 3)
    t = 6
    y = x.clone()
    y[..., (t + 1) * hop :] = torch.randn_like(y[..., (t + 1) * hop :])
    with torch.no_grad():
        zx, zy = enc(x), enc(y)
    assert torch.allclose(zx[..., : t + 1], zy[..., : t + 1], atol=1e-6)
    assert not torch.allclose(zx[..., t + 1 :], zy[..., t + 1 :])


def test_causal_decoder_ignores_future_frames():
    torch.manual_seed(0)
    dec = SEANetDecoder(dimension=8, n_filters=4, ratios=(4, 2), causal=True).eval()
    hop = dec.hop_length
    z = torch.randn(1, 8, 10)
    t = 4
    z2 = z.clone()
    z2[..., t + 1 :] = torch.randn_like(z2[..., t + 1 :])
    with torch.no_grad():
        wx, wy = dec(z), dec(z2)
    assert torch.allclose(wx[..., : (t + 1) * hop], wy[..., : (t + 1) * hop], atol=1e-6)


def test_non_causal_encoder_sees_the_future():
    # Guards the causal test above against passing for the wrong reason.
    torch.manual_seed(0)
    enc = SEANetEncoder(dimension=8, n_filters=4, ratios=(4, 2), causal=False).eval()
    x = torch.randn(1, 1, 8 * 12)
    y = x.clone()
    y[..., 8 * 7 :] += 1.0
    with torch.no_grad():
        assert not torch.allclose(enc(x)[..., 6], enc(y)[..., 6])


# --------------------------------------------------------------------------------- Vocos / ISTFT


@pytest.mark.parametrize("n_fft,hop", [(1280, 320), (2400, 600), (64, 16), (30, 7)])
def test_istft_head_output_length(n_fft, hop):
    head = ISTFTHead(dim=8, n_fft=n_fft, hop_length=hop)
    for frames in (1, 2, 13):
        assert head(torch.randn(2, frames, 8)).shape == (2, 1, frames * hop)


@pytest.mark.parametrize("n_fft,hop", [(1280, 320), (64, 16), (30, 7)])
def test_inverse_stft_reconstructs_its_own_stft(n_fft, hop):
    torch.manual_seed(0)
    frames = 20
    x = 0.1 * torch.randn(2, frames * hop)
    spec = same_stft(x, n_fft, hop)
    assert spec.shape == (2, n_fft // 2 + 1, frames)
    # Through the head's own magnitude / phase path (exp of log-magnitude, cos/sin of phase).
    assert spec.abs().max() < 1e2  # below the head's clip, so reconstruction can be exact
    head = ISTFTHead(dim=8, n_fft=n_fft, hop_length=hop)
    y = head.synthesize(spec.abs().log(), spec.angle()).squeeze(1)
    assert y.shape == x.shape
    assert torch.allclose(y, x, atol=1e-4)
    # And straight through the inverse transform.
    assert torch.allclose(InverseSTFT(n_fft, hop)(spec), x, atol=1e-4)


def test_inverse_stft_center_matches_torch():
    torch.manual_seed(0)
    x = torch.randn(1, 16 * 10)
    spec = torch.stft(x, 64, 16, window=torch.hann_window(64), return_complex=True)
    y = InverseSTFT(64, 16, padding="center")(spec)
    assert torch.allclose(y, x, atol=1e-4)
    with pytest.raises(ValueError):
        InverseSTFT(64, 16, padding="valid")


def test_istft_head_clips_magnitude():
    head = ISTFTHead(dim=4, n_fft=16, hop_length=4)
    big = head.synthesize(torch.full((1, 9, 6), 50.0), torch.zeros(1, 9, 6))
    capped = head.synthesize(torch.full((1, 9, 6), math.log(1e2)), torch.zeros(1, 9, 6))
    assert torch.isfinite(big).all()
    assert torch.allclose(big, capped, atol=1e-3)


def test_backbone_layout_and_length():
    backbone = VocosBackbone(input_channels=6, dim=32, intermediate_dim=48, num_layers=3, pos_net=True)
    out = backbone(torch.randn(2, 6, 11))
    assert out.shape == (2, 11, 32)  # time-major, what ISTFTHead expects
    assert torch.allclose(backbone.convnext[0].gamma, torch.full((32,), 1 / 3))
    head = ISTFTHead(dim=32, n_fft=16, hop_length=4)
    assert head(out).shape == (2, 1, 44)


def test_adanorm_conditioning_changes_output():
    torch.manual_seed(0)
    backbone = VocosBackbone(6, 32, 48, 2, adanorm_num_embeddings=3).eval()
    with torch.no_grad():  # untrained tables are identical for every id; make them differ
        for module in backbone.modules():
            if isinstance(module, AdaLayerNorm):
                module.scale.weight.add_(0.5 * torch.randn_like(module.scale.weight))
                module.shift.weight.add_(0.5 * torch.randn_like(module.shift.weight))
    x = torch.randn(2, 6, 9)
    with torch.no_grad():
        out0 = backbone(x, torch.tensor([0, 0]))
        out1 = backbone(x, torch.tensor([1, 1]))
        mixed = backbone(x, torch.tensor([0, 1]))
    assert not torch.allclose(out0, out1, atol=1e-3)
    # Each batch item uses its own id.
    assert torch.allclose(mixed[0], out0[0], atol=1e-5)
    assert torch.allclose(mixed[1], out1[1], atol=1e-5)
    with pytest.raises(ValueError):
        backbone(x)


def test_convnext_block_without_layer_scale():
    block = ConvNeXtBlock(16, 32, layer_scale_init_value=None)
    assert block.gamma is None
    assert block(torch.randn(1, 16, 5)).shape == (1, 16, 5)


# ---------------------------------------------------------------- published parameter counts


def test_wavtokenizer_encoder_parameter_count():
    enc = SEANetEncoder(dimension=512, n_filters=32, ratios=(8, 5, 4, 2), lstm_layers=2)
    assert n_params(enc) == 8_802_816
    with torch.no_grad():
        assert enc(torch.randn(1, 1, 640)).shape == (1, 512, 2)
    assert n_params(SEANetEncoder(dimension=512, n_filters=32, ratios=(6, 5, 5, 4))) == 8_303_104


def test_wavtokenizer_decoder_parameter_count():
    backbone = VocosBackbone(512, 768, 2304, 12, adanorm_num_embeddings=4, pos_net=True)
    assert n_params(backbone.pos_net) == 16_539_648
    assert n_params(backbone) == 61_961_472
    head = ISTFTHead(768, n_fft=1280, hop_length=320)
    assert n_params(head) == 985_858
    with torch.device("meta"):  # count-only variants: skip the slow weight init
        assert n_params(VocosBackbone(512, 768, 2304, 12, pos_net=True)) == 61_901_568
        assert n_params(ISTFTHead(768, n_fft=2400, hop_length=600)) == 1_847_138
    with torch.no_grad():
        wav = head(backbone(torch.randn(1, 512, 3), torch.tensor([0])))
    assert wav.shape == (1, 1, 960)


def test_speechtokenizer_parameter_counts():
    enc = SEANetEncoder(dimension=1024, n_filters=64, ratios=(8, 5, 4, 2), lstm_layers=2, bidirectional=True)
    dec = SEANetDecoder(dimension=1024, n_filters=64, ratios=(8, 5, 4, 2), lstm_layers=2)
    assert n_params(enc) == 67_705_856
    assert n_params(dec) == 35_182_530
    with torch.no_grad():
        z = enc(torch.randn(1, 1, 400))
        assert z.shape == (1, 1024, 2)
        assert dec(z).shape == (1, 1, 640)
