"""A small CosyVoice-style text-to-token LM and a toy TTS corpus (data dir, token and speaker-embedding
stores), shared by the LLM, decoding and Flow-Omni init tests."""

from pathlib import Path

import numpy as np
import torch

from voxtok.data.shards import ShardWriter
from voxtok.tts.frontend import TextFrontend
from voxtok.tts.llm import TextToTokenLM

V = 20  # speech vocabulary of the small models; EOS = V
SMALL = dict(text_vocab_size=40, speech_vocab_size=V, text_embed_dim=16,
             text_encoder=dict(dim=32, layers=1, heads=2, ffn_dim=64, dropout=0.0),
             backbone=dict(kind="qwen2", hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=64),
             spk_dim=8, min_token_text_ratio=1.0, max_token_text_ratio=4.0)


def small_model(seed: int = 0, **overrides) -> TextToTokenLM:
    """The SMALL config (with `overrides`) at `seed`, in eval mode."""
    torch.manual_seed(seed)
    return TextToTokenLM.from_config({**SMALL, **overrides}).eval()



TEXTS = {"a_1": "hello world.", "a_2": "good morning to you", "b_1": "the cat sat", "b_2": "a dog ran away!"}


def make_corpus(root: Path, codebook: int = 32) -> tuple[Path, Path, Path]:
    """A data dir (one split 'train' also used as 'dev'), a token store whose tokens follow the
    text (two tokens per character id) and speaker-embedding stores."""
    from voxtok.audio import save_audio
    from voxtok.tts.speaker import SPK_STORE, STORE_META, UTT_STORE

    frontend = TextFrontend("char")
    rng = np.random.default_rng(0)
    data, tokens, emb = root / "data", root / "tokens", root / "spk"
    for split in ("train", "dev"):
        d = data / split
        d.mkdir(parents=True)
        (d / "wav.scp").write_text("".join(f"{u} {root / 'wav' / (u + '.wav')}\n" for u in sorted(TEXTS)))
        (d / "text").write_text("".join(f"{u} {t}\n" for u, t in sorted(TEXTS.items())))
        (d / "utt2spk").write_text("".join(f"{u} {u[0]}\n" for u in sorted(TEXTS)))
        (d / "spk2utt").write_text("a a_1 a_2\nb b_1 b_2\n")
        meta = {"codec": "s3", "checkpoint_hash": "0123abcd", "sample_rate": 16000, "frame_rate": 50.0, "n_q": 1,
                "codebook_size": codebook, "format_version": 1}
        with ShardWriter(tokens / split, meta, dtype="int16", expect_ndim=2) as w:
            for u, t in sorted(TEXTS.items()):
                ids = np.array(frontend.encode(t))
                w.add(u, np.stack([ids % codebook, (ids * 7 + 1) % codebook], 1).reshape(1, -1))
        with ShardWriter(emb / split / UTT_STORE, STORE_META, dtype="float32", expect_ndim=1) as w:
            for u in sorted(TEXTS):
                v = rng.standard_normal(256) + (5.0 if u[0] == "a" else -5.0)
                w.add(u, v / np.linalg.norm(v))
        with ShardWriter(emb / split / SPK_STORE, STORE_META, dtype="float32", expect_ndim=1) as w:
            for s in "ab":
                w.add(s, np.ones(256) / 16)
    for i, u in enumerate(sorted(TEXTS)):
        t = np.arange(int((0.3 + 0.1 * i) * 22050)) / 22050
        save_audio(root / "wav" / f"{u}.wav", 0.3 * np.sin(2 * np.pi * (150 + 30 * i) * t), 22050)
    return data, tokens, emb
