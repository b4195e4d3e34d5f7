"""configs/tts/cosyvoice_300m_paper.yaml: the three parts at the published size build and add up."""

from __future__ import annotations

import torch
import yaml

from voxtok.recipes import CONFIG_DIR
from voxtok.registry import build


def test_cosyvoice_300m_parts_build_at_the_published_size():
    spec = yaml.safe_load((CONFIG_DIR / "tts" / "cosyvoice_300m_paper.yaml").read_text())
    counts = {}
    for part in ("llm", "flow", "vocoder"):
        cfg = yaml.safe_load((CONFIG_DIR / "tts" / f"{spec[part]}.yaml").read_text())
        model_cfg = dict(cfg["model"])
        with torch.device("meta"):  # count without allocating 400 M parameters
            model = build("tts", cfg["name"], model_cfg)
        counts[part] = sum(p.numel() for p in model.parameters())
    # Each part's count is derived layer by layer in its own test (test_tts_llm, test_tts_flow, test_vocoder).
    assert counts == {"llm": 288_575_489, "flow": 104_879_872, "vocoder": 13_459_970}
    assert sum(counts.values()) == 406_915_331
