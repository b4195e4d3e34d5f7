"""Tiny random-weight TTS parts (and an exp dir holding them) shared by the TTS and demo tests."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import yaml

from voxtok.registry import build
from voxtok.data.shards import ShardWriter
from voxtok.recipes import CONFIG_DIR
from voxtok.tts.flow import FlowDecoder
from voxtok.tts.frontend import TextFrontend
from voxtok.tts.llm import TextToTokenLM
from voxtok.tts.manifest import write_manifest
from voxtok.tts.vocoder import MelVocoder


def model_config(path: str) -> dict:
    """The `model:` section of a config under configs/ (e.g. "tts/llm_tiny.yaml")."""
    return yaml.safe_load((CONFIG_DIR / path).read_text())["model"]


class TinyTTS(NamedTuple):
    """Random-weight CosyVoice-style parts plus a one-speaker spk2embedding store."""

    frontend: TextFrontend
    tokenizer: object  # the S3 codec
    llm: TextToTokenLM
    flow: FlowDecoder
    vocoder: MelVocoder
    speakers_dir: Path


def tiny_tts_parts(speakers_dir: Path, seed: int = 0) -> TinyTTS:
    """Build the parts from the *_tiny configs, shortened so synthesis takes a fraction of a second;
    `speakers_dir` gets a spk2embedding store with speaker "spk1"."""
    torch.manual_seed(seed)
    frontend = TextFrontend("char", max_chars=60)
    tokenizer = build("codec", "s3", model_config("codec/s3_tiny.yaml")).eval()
    llm_cfg = model_config("tts/llm_tiny.yaml") | {"text_vocab_size": frontend.vocab_size,
                                                   "speech_vocab_size": tokenizer.codebook_size}
    llm_cfg["max_token_text_ratio"] = 3.0  # short outputs keep the tests fast
    llm = TextToTokenLM.from_config(llm_cfg)
    flow = FlowDecoder(model_config("tts/flow_tiny.yaml") | {
        "vocab_size": tokenizer.codebook_size, "token_rate": tokenizer.frame_rate,
        "inference": {"n_steps": 2, "cfg_strength": 0.7, "temperature": 1.0},
        "streaming": {"chunk_tokens": 6, "overlap_tokens": 2, "context_tokens": 6}})
    vocoder = MelVocoder(model_config("tts/vocoder_tiny.yaml"))
    speakers_dir = Path(speakers_dir)
    with ShardWriter(speakers_dir / "spk2embedding", meta={"dim": 256}, dtype="float32") as w:
        v = np.random.default_rng(seed).standard_normal(256).astype("float32")
        w.add("spk1", v / np.linalg.norm(v))
    return TinyTTS(frontend, tokenizer, llm, flow, vocoder, speakers_dir)


def tiny_flowomni(frontend: TextFrontend):
    """A random-weight Flow-Omni model (tiny config) using `frontend`'s vocabulary."""
    from voxtok.tts.flowomni import FlowOmniTTS

    cfg = model_config("tts/flowomni_tiny.yaml") | {"text_vocab_size": frontend.vocab_size, "max_frame_text_ratio": 2.0}
    return FlowOmniTTS.from_config(cfg)


def save_cosyvoice_exp(parts: TinyTTS, exp: Path) -> Path:
    """Save the parts in the recipe's layout (s3/model, tts/{llm,flow,vocoder}/model) and write
    exp/tts/cosyvoice.yaml; returns the manifest."""
    exp = Path(exp)
    parts.tokenizer.save_pretrained(exp / "s3" / "model")
    parts.llm.save_pretrained(exp / "tts" / "llm" / "model", extra={"frontend": parts.frontend.to_dict()})
    parts.flow.save_pretrained(exp / "tts" / "flow" / "model")
    parts.vocoder.save_pretrained(exp / "tts" / "vocoder" / "model")
    return write_manifest(exp / "tts" / "cosyvoice.yaml", {
        "model": "cosyvoice", "llm": str(exp / "tts" / "llm" / "model"), "flow": str(exp / "tts" / "flow" / "model"),
        "vocoder": str(exp / "tts" / "vocoder" / "model"), "tokenizer": str(exp / "s3" / "model"),
        "speakers": str(parts.speakers_dir)})


def save_flowomni_exp(model, parts: TinyTTS, exp: Path) -> Path:
    """Save a Flow-Omni model (+ the parts' vocoder) under exp/tts/ and write exp/tts/flowomni.yaml."""
    exp = Path(exp)
    model.save_pretrained(exp / "tts" / "flowomni" / "model", extra={"frontend": parts.frontend.to_dict()})
    if not (exp / "tts" / "vocoder" / "model").is_dir():
        parts.vocoder.save_pretrained(exp / "tts" / "vocoder" / "model")
    return write_manifest(exp / "tts" / "flowomni.yaml", {
        "model": "flowomni", "flowomni": str(exp / "tts" / "flowomni" / "model"),
        "vocoder": str(exp / "tts" / "vocoder" / "model"), "speakers": str(parts.speakers_dir)})
