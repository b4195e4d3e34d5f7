"""A micro Flow-Omni model (flow head already input-dependent) and a padded training batch, shared by
the Flow-Omni and decoding tests."""

import torch

from voxtok.tts.flowomni import FlowOmniTTS

N_MELS = 80
VOCAB = 20


def micro_config(r: int = 2, **overrides) -> dict:
    """A 2-layer qwen2 Flow-Omni config, `r` frames per step, `overrides` replacing top-level keys."""
    cfg = {"text_vocab_size": VOCAB, "frames_per_step": r,
           "backbone": {"kind": "qwen2", "hidden_size": 32, "num_layers": 2, "num_heads": 4, "num_kv_heads": 2,
                        "intermediate_size": 64},
           "head": {"width": 240, "depth": 2}, "inference": {"n_steps": 3}, "max_frame_text_ratio": 4.0}
    cfg.update(overrides)
    return cfg


def micro_model(r: int = 2, seed: int = 0, **overrides) -> FlowOmniTTS:
    """A micro model whose flow head already depends on its input: a fresh head predicts v = 0
    everywhere (zero-init), so sampling would return the noise whatever the text or prompt."""
    torch.manual_seed(seed)
    model = FlowOmniTTS(micro_config(r, **overrides)).eval()
    with torch.no_grad():
        for name, p in model.head.named_parameters():
            if not p.any():
                p.normal_(0.0, 0.05)
    return model


def make_batch(text_lengths=(6, 3), mel_lengths=(9, 4), seed: int = 1) -> dict:
    """Random text ids [B, L] and log-mel-like frames [B, N_MELS, T] padded to the longest, + lengths, spk_emb [B, 256]."""
    g = torch.Generator().manual_seed(seed)
    b = len(text_lengths)
    text = torch.zeros(b, max(text_lengths), dtype=torch.long)
    mel = torch.zeros(b, N_MELS, max(mel_lengths))
    for i, (n, t) in enumerate(zip(text_lengths, mel_lengths)):
        text[i, :n] = torch.randint(0, VOCAB, (n,), generator=g)
        mel[i, :, :t] = torch.randn(N_MELS, t, generator=g) * 2 - 5
    return {"text_ids": text, "text_lengths": torch.tensor(text_lengths), "mel": mel,
            "mel_lengths": torch.tensor(mel_lengths), "spk_emb": torch.randn(b, 256, generator=g)}
