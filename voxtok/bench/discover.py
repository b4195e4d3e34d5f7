"""Recognise published tokenizer checkpoints in a folder and name them as benchmark system specs.

`discover_systems(DIR)` looks at each sub-folder of DIR (one checkpoint each) and decides its kind
from the files inside:
    metadata.json with a model kind            vtk              (VoxTok / `voxtok convert` output)
    config.json model_type encodec/dac/xcodec  hf               (transformers codec folder)
    config.json model_type mimi                mimi
    config.json model_type hubert/wavlm/...    ssl_kmeans       (layer = half the depth unless given)
    config.json with n_filters, strides, n_q   speechtokenizer  (+ a .pt file)
    config.json with vq_strides                snac             (+ pytorch_model.bin)
    *.th (one file)                            encodec          (the `encodec` package's state dict)
    *.pth (one file, DAC layout)               dac
Each spec is named after its sub-folder (name=SUBFOLDER). Folders that match nothing are returned
as (folder, reason) so the caller can say what it skipped.
"""

from __future__ import annotations

import json
from pathlib import Path

from voxtok.errors import BadConfigError

SSL_TYPES = ("hubert", "wavlm", "wav2vec2", "data2vec-audio")
HF_CODECS = ("encodec", "dac", "xcodec")


def _json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _is_dac_file(path: Path) -> bool:
    import torch

    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # not a torch file, or one that needs unpickling code: not DAC's layout
        return False
    return isinstance(saved, dict) and "state_dict" in saved and "kwargs" in saved.get("metadata", {})


def detect(folder: Path, ssl_layer: str | None = None, ssl_k: int | None = None) -> tuple[str | None, str]:
    """(spec without name, "") for a recognised checkpoint folder, or (None, reason)."""
    meta, config = _json(folder / "metadata.json"), _json(folder / "config.json")
    if "kind" in meta:
        return (f"vtk:{folder}", "") if meta["kind"] == "codec" else (None, f"a VoxTok {meta['kind']}, not a codec")
    model_type = config.get("model_type")
    if model_type == "mimi":
        return f"mimi:{folder}", ""
    if model_type in HF_CODECS:
        return f"hf:{folder}", ""
    if model_type in SSL_TYPES:
        layer = ssl_layer or str(max(1, int(config.get("num_hidden_layers", 12)) // 2))
        return f"ssl_kmeans:{folder}@layer={layer}" + (f"@k={ssl_k}" if ssl_k else ""), ""
    if {"n_filters", "strides", "n_q", "codebook_size"} <= set(config) and list(folder.glob("*.pt")):
        return f"speechtokenizer:{folder}", ""
    if "vq_strides" in config and (folder / "pytorch_model.bin").is_file():
        return f"snac:{folder}", ""
    th = sorted(folder.glob("*.th"))
    if len(th) == 1:
        return f"encodec:{th[0]}", ""
    pth = [p for p in sorted(folder.glob("*.pth")) if _is_dac_file(p)]
    if len(pth) == 1:
        return f"dac:{pth[0]}", ""
    if model_type:
        return None, f"transformers model_type '{model_type}' is no tokenizer the benchmark knows"
    return None, "no recognised checkpoint files"


def discover_systems(ckpt_dir: str | Path, ssl_layer: str | None = None,
                     ssl_k: int | None = None) -> tuple[list[str], list[tuple[str, str]]]:
    """(specs "KIND:PATH@...,name=SUBFOLDER" sorted by sub-folder, skipped [(sub-folder, reason)])."""
    root = Path(ckpt_dir)
    if not root.is_dir():
        raise BadConfigError("checkpoint folder not found", root)
    specs, skipped = [], []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        spec, reason = detect(folder, ssl_layer, ssl_k)
        if spec is None:
            skipped.append((folder.name, reason))
        else:
            specs.append(f"{spec}{'@' if '@' not in spec else ','}name={folder.name}")
    return specs, skipped
