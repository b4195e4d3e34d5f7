"""A reduced, random-weight SpeechTokenizer built by the PyPI `speechtokenizer` package (codebooks
fitted the k-means-free way), test audio, and the converter tests' parity bound; shared by the
SpeechTokenizer and DM-Codec converter tests."""

import pytest
import torch

speechtokenizer = pytest.importorskip("speechtokenizer", reason="the baselines extra (speechtokenizer) is not installed")

# config.json of the release at a reduced size (the release: n_filters 64, dimension 1024,
# semantic_dimension 768, 8 x 1024 codes), with some of its training keys, which the converter ignores.
RELEASE_CONFIG = {"n_filters": 4, "strides": [8, 5, 4, 2], "dimension": 16, "semantic_dimension": 12,
                  "bidirectional": True, "dilation_base": 2, "residual_kernel_size": 3, "n_residual_layers": 1,
                  "lstm_layers": 2, "activation": "ELU", "codebook_size": 32, "n_q": 4, "sample_rate": 16000,
                  "num_mels": 80, "learning_rate": 1e-4, "segment_size": 48000}


def within_tolerance(ours, reference):
    """The parity bound: max |diff| <= 1e-4 x max(1, peak of the reference)."""
    return float((ours - reference).abs().max()) <= 1e-4 * max(1.0, float(reference.abs().max()))


def fit_codebooks(codebooks, latent):
    """Set each EnCodec-style codebook (residual order) to jittered frames of the residual it
    quantizes, marked initialised: the k-means-free path to codebooks that code latents [B, D, T].
    The jitter keeps codes apart (no duplicate codes, no near ties that float rounding could flip)."""
    residual = latent.transpose(1, 2).reshape(-1, latent.shape[1])
    for codebook in codebooks:
        picked = residual[torch.randperm(residual.shape[0])[: codebook.embed.shape[0]]]
        picked = picked + 0.5 * residual.std(0) * torch.randn_like(picked)
        codebook.embed.copy_(picked)
        codebook.embed_avg.copy_(picked)
        codebook.cluster_size.fill_(1.0)
        codebook.inited.fill_(1.0)
        residual = residual - codebook.decode(codebook.encode(residual))


def reference_model(config=RELEASE_CONFIG, seed=0):
    """A random-weight SpeechTokenizer built by the package, codebooks fitted, in eval mode.

    Every weight-norm gain is doubled: at PyTorch's init each conv shrinks the signal, and the
    latent would hardly vary across frames (std 0.004 around 0.07), leaving codes a float rounding
    apart; doubled, it varies as a trained model's does (std ~0.7)."""
    torch.manual_seed(seed)
    model = speechtokenizer.SpeechTokenizer(config).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("weight_g"):
                param.mul_(2.0)
        latent = model.encoder(torch.randn(4, 1, 16000) * 0.3)
        fit_codebooks([layer._codebook for layer in model.quantizer.vq.layers], latent)
    return model


def audio(batch, samples, seed=1):
    """A jittered 180 Hz tone plus noise, [batch, 1, samples] at 16 kHz."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(samples) / 16000
    tone = 0.3 * torch.sin(2 * torch.pi * 180 * t * (1 + torch.rand(batch, 1, 1, generator=g)))
    return tone + 0.1 * torch.randn(batch, 1, samples, generator=g)
