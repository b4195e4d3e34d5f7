"""Tiny random-weight checkpoints of published tokenizers, each built by its own package (or
transformers) and saved in that package's layout; shared by the published-benchmark tests."""

import json
from pathlib import Path

import pytest
import torch

RATE = 16000

SPEECHTOKENIZER = {"n_filters": 4, "strides": [8, 5, 4, 2], "dimension": 16, "semantic_dimension": 12,
                   "bidirectional": True, "dilation_base": 2, "residual_kernel_size": 3, "n_residual_layers": 1,
                   "lstm_layers": 2, "activation": "ELU", "codebook_size": 32, "n_q": 4, "sample_rate": RATE}


def speechtokenizer_release(folder: Path, config=SPEECHTOKENIZER) -> Path:
    """config.json + SpeechTokenizer.pt as the release ships them (random weights)."""
    speechtokenizer = pytest.importorskip("speechtokenizer")
    torch.manual_seed(0)
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(config))
    torch.save(speechtokenizer.SpeechTokenizer(config).state_dict(), folder / "SpeechTokenizer.pt")
    return folder


SNAC = dict(sampling_rate=RATE, encoder_dim=4, encoder_rates=[2, 4], decoder_dim=16, decoder_rates=[4, 2],
            attn_window_size=None, codebook_size=16, codebook_dim=4, vq_strides=[4, 2, 1], noise=True, depthwise=True)


def snac_folder(folder: Path) -> Path:
    """config.json + pytorch_model.bin as SNAC's hub folders hold them (random weights)."""
    snac = pytest.importorskip("snac", reason="the published extra (snac) is not installed")
    torch.manual_seed(0)
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(SNAC))
    torch.save(snac.SNAC(**SNAC).state_dict(), folder / "pytorch_model.bin")
    return folder


def hf_configs():
    import transformers as T

    return {
        "encodec": (T.EncodecConfig(num_filters=4, upsampling_ratios=[4, 4], hidden_size=16, codebook_size=16,
                                    target_bandwidths=[4.0, 8.0], sampling_rate=RATE, num_lstm_layers=1), "bw=8", 2),
        "dac": (T.DacConfig(encoder_hidden_size=4, downsampling_ratios=[4, 8], decoder_hidden_size=16,
                            upsampling_ratios=[8, 4], n_codebooks=3, codebook_size=16, codebook_dim=4, hidden_size=16,
                            sampling_rate=RATE), "n_q=2", 2),
        "mimi": (T.MimiConfig(hidden_size=16, num_filters=4, upsampling_ratios=[4, 4, 5, 4], codebook_size=16,
                              codebook_dim=8, num_quantizers=4, num_semantic_quantizers=1, num_hidden_layers=1,
                              num_attention_heads=2, num_key_value_heads=2, head_dim=8, intermediate_size=16,
                              upsample_groups=16, vector_quantization_hidden_dimension=8, sampling_rate=RATE,
                              frame_rate=12.5), "n_q=3", 3),
        "xcodec": (T.XcodecConfig(
            acoustic_model_config=dict(encoder_hidden_size=4, downsampling_ratios=[8, 5, 4, 2], decoder_hidden_size=16,
                                       upsampling_ratios=[8, 5, 4, 2], hidden_size=8, codebook_size=16, n_codebooks=2,
                                       codebook_dim=4),
            semantic_model_config=dict(model_type="hubert", hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                       intermediate_size=16, conv_dim=(4,) * 7, num_conv_pos_embeddings=8,
                                       num_conv_pos_embedding_groups=2),
            codebook_size=16, target_bandwidths=[0.2, 0.4]), "bw=0.4", 2),
    }


def hf_folder(folder: Path, model_type: str) -> Path:
    """A transformers codec with random weights, saved with save_pretrained (+ its feature extractor)."""
    import transformers as T

    config = hf_configs()[model_type][0]
    torch.manual_seed(0)
    T.AutoModel.from_config(config).save_pretrained(folder)
    if model_type in ("encodec", "mimi"):
        T.EncodecFeatureExtractor(feature_size=1, sampling_rate=RATE).save_pretrained(folder)
    return folder


def ssl_folder(folder: Path, model: str = "hubert") -> Path:
    """A tiny transformers SSL model with random weights (3 layers, hop 320 as the real ones)."""
    import transformers as T

    kwargs = dict(hidden_size=16, num_hidden_layers=3, num_attention_heads=2, intermediate_size=32,
                  conv_dim=(8,) * 7, num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=2)
    torch.manual_seed(0)
    if model == "hubert":
        T.HubertModel(T.HubertConfig(**kwargs)).save_pretrained(folder)
    else:  # WavLM large-style: pre-norm layers, and a feature extractor that normalises the input
        T.WavLMModel(T.WavLMConfig(do_stable_layer_norm=True, feat_extract_norm="layer", **kwargs)).save_pretrained(folder)
        T.Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True).save_pretrained(folder)
    return folder
