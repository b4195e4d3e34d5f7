"""Flow-Omni's backbone from a local Hugging Face Qwen2 folder (`model.backbone.init_from: PATH`).

Flow-Omni starts from a pretrained LLM (Qwen2-0.5B in the paper): its decoder layers become the
backbone and its token table the text embedding, so text must go through the LLM's own tokenizer
(the `hf_bpe` text frontend). `init_from` is a training-time instruction:
- `resolve_init_from` turns a model config whose backbone names a folder into one holding the
  folder's sizes (config.json) and no path. That is the config a trained checkpoint stores, so
  `voxtok.load` of it rebuilds the model without the folder and never re-reads the LLM's weights;
- `load_qwen2_weights` copies the folder's weights (model.safetensors, or the shards of
  model.safetensors.index.json; keys `model.*` of a Qwen2ForCausalLM file or the bare keys of a
  Qwen2Model one; the LM head is not used) into the backbone and the text embedding;
- `backbone_frontend` gives a TTS config with init_from the folder's tokenizer as its text frontend.
Only what `voxtok.tts.llm.build_causal_backbone` rebuilds from sizes is accepted (SiLU MLP, full
attention, plain RoPE): anything else in config.json is a one-line error, not a silently different
model.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Mapping

from voxtok.errors import BadConfigError
from voxtok.tts.hf_folder import hf_folder, read_hf_config

# backbone key -> (config.json key, type, transformers' Qwen2Config default); rope_theta is read apart
# (transformers 5 nests it in `rope_parameters`, older files have it at the top level).
_SIZES: dict[str, tuple[str, type, Any]] = {
    "hidden_size": ("hidden_size", int, None),
    "num_layers": ("num_hidden_layers", int, None),
    "num_heads": ("num_attention_heads", int, None),
    "num_kv_heads": ("num_key_value_heads", int, None),
    "intermediate_size": ("intermediate_size", int, None),
    "max_positions": ("max_position_embeddings", int, 32768),
    "rope_theta": ("rope_theta", float, 10000.0),
    "rms_norm_eps": ("rms_norm_eps", float, 1e-6),
    "attention_dropout": ("attention_dropout", float, 0.0),
}


def qwen2_sizes(folder: str | os.PathLike) -> tuple[dict[str, Any], int]:
    """(backbone sizes in `build_causal_backbone` keys, rows of the token table) of a Qwen2 folder's
    config.json; a config of another model or with features those sizes cannot rebuild (sliding
    window, scaled RoPE, another activation, a separate head_dim) is a one-line BadConfigError."""
    hf = read_hf_config(folder)
    where = Path(folder) / "config.json"
    if hf.get("model_type") != "qwen2":
        raise BadConfigError(f"config.json describes a '{hf.get('model_type')}' model; init_from reads Qwen2 "
                             "folders (model_type qwen2, e.g. Qwen2-0.5B or Qwen2.5-0.5B)", where)
    missing = [key for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                               "vocab_size") if not isinstance(hf.get(key), int)]
    if missing:
        raise BadConfigError(f"config.json lacks {missing}", where)
    rope = hf.get("rope_parameters") or {}
    scaling = hf.get("rope_scaling") or {}
    rope_type = rope.get("rope_type") or scaling.get("rope_type") or scaling.get("type") or "default"
    unsupported = {
        f"hidden_act '{hf.get('hidden_act')}'": hf.get("hidden_act", "silu") != "silu",
        "use_sliding_window": bool(hf.get("use_sliding_window")),
        f"rope type '{rope_type}'": rope_type != "default",
        "layer_types other than full_attention": any(t != "full_attention" for t in hf.get("layer_types") or ()),
        f"head_dim {hf.get('head_dim')}": hf.get("head_dim") not in (None, hf["hidden_size"] // hf["num_attention_heads"]),
    }
    bad = [name for name, found in unsupported.items() if found]
    if bad:
        raise BadConfigError(f"config.json asks for {', '.join(bad)}, which the Flow-Omni backbone does not build "
                             "(SiLU, full attention, plain RoPE only)", where)
    sizes = {}
    for key, (hf_key, kind, default) in _SIZES.items():
        value = rope.get("rope_theta", hf.get("rope_theta")) if key == "rope_theta" else hf.get(hf_key)
        if key == "num_kv_heads" and value is None:
            value = hf["num_attention_heads"]
        try:
            sizes[key] = kind(default if value is None else value)
        except (TypeError, ValueError):
            raise BadConfigError(f"config.json {hf_key} must be a number, got {value!r}", where) from None
    return sizes, int(hf["vocab_size"])


def _same(given: Any, found: Any) -> bool:
    """Whether a value written in a config equals the folder's (1e6 == 1000000.0, 896.5 != 896)."""
    try:
        return math.isclose(float(given), float(found), rel_tol=1e-9)
    except (TypeError, ValueError):
        return False


def init_folder(path: Any, key: str) -> Path:
    """The local folder an init_from value names; empty (the paper config with $QWEN2_DIR unset) or
    absent is a one-line BadConfigError naming `key`."""
    if not str(path).strip():
        raise BadConfigError(f"{key} is empty: set it to a local Hugging Face Qwen2 folder (the paper config reads "
                             "$QWEN2_DIR), or train from scratch (tts=flowomni_scratch_paper)")
    return hf_folder(path, key)


def resolve_init_from(cfg: Mapping[str, Any], given_text_vocab: Any = None,
                      where: str = "flowomni") -> tuple[dict[str, Any], Path | None]:
    """A merged Flow-Omni config -> (the config without backbone.init_from, the folder or None).

    With init_from, the backbone's sizes come from the folder's config.json (sizes written beside
    init_from must agree: a mismatch names the key) and text_vocab_size becomes the folder's token
    rows (`given_text_vocab`, the value the caller was given, null = unset, must agree too: ids
    from another frontend would index meaningless rows). init_from: null means none.
    """
    backbone = dict(cfg["backbone"])
    path = backbone.pop("init_from", None)
    if path is None:
        return {**cfg, "backbone": backbone}, None
    folder = init_folder(path, f"{where}.backbone.init_from")
    if backbone.get("kind", "qwen2") != "qwen2":
        raise BadConfigError(f"{where}.backbone.kind is '{backbone['kind']}', but init_from loads a Qwen2 model "
                             "(kind: qwen2)")
    sizes, rows = qwen2_sizes(folder)
    for name, value in sizes.items():
        if backbone.get(name) is not None and not _same(backbone[name], value):
            raise BadConfigError(f"{where}.backbone.{name} is {backbone[name]}, but the init_from model has {value} "
                                 "(remove the key to take the folder's)", folder)
    if given_text_vocab is not None and not _same(given_text_vocab, rows):
        raise BadConfigError(f"{where}.text_vocab_size is {given_text_vocab}, but the init_from model's token table "
                             f"has {rows} rows: text must go through that folder's tokenizer (frontend kind hf_bpe)",
                             folder)
    backbone = {"kind": "qwen2", **sizes, **{k: v for k, v in backbone.items() if k not in sizes and k != "kind"}}
    return {**cfg, "backbone": backbone, "text_vocab_size": rows}, folder


def weight_files(folder: Path) -> list[Path]:
    """The safetensors files of a Hugging Face folder: model.safetensors, or the shards its
    model.safetensors.index.json names (each must be there)."""
    single, index = folder / "model.safetensors", folder / "model.safetensors.index.json"
    if single.is_file():
        return [single]
    if not index.is_file():
        found = ", ".join(sorted(p.name for p in folder.glob("*.bin"))) or "none"
        raise BadConfigError("no model.safetensors or model.safetensors.index.json (pickled .bin weights are not "
                             f"read; found .bin files: {found})", folder)
    try:
        weight_map = json.loads(index.read_text()).get("weight_map")
    except (json.JSONDecodeError, AttributeError) as err:
        raise BadConfigError(f"unreadable shard index ({err})", index) from None
    if not isinstance(weight_map, dict) or not weight_map:
        raise BadConfigError("shard index has no weight_map", index)
    files = [folder / name for name in sorted(set(weight_map.values()))]
    absent = [p.name for p in files if not p.is_file()]
    if absent:
        raise BadConfigError(f"shard index names missing files {absent[:3]}", index)
    return files


def load_qwen2_weights(backbone, text_embedding, folder: str | os.PathLike) -> None:
    """Copy a Qwen2 folder's weights into `backbone` (a `build_causal_backbone` Qwen2Model of the
    folder's sizes, no token table) and its `embed_tokens` [rows, hidden] into `text_embedding`
    (nn.Embedding); every backbone key must be there and fit, else a one-line BadConfigError."""
    import torch

    from voxtok.convert.keymap import load_mapped, read_state_dict, rename

    folder = Path(folder)
    original: dict[str, torch.Tensor] = {}
    for path in weight_files(folder):
        original.update(read_state_dict(path, "Qwen2 weights (safetensors)"))
    # Derived RoPE tables and the LM head are not backbone weights; Qwen2ForCausalLM nests the rest in `model.`.
    state = rename(original, [(r".*rotary_emb\.inv_freq", None), (r"lm_head\..*", None), (r"model\.(.+)", r"\1"),
                              (r"(.+)", r"\1")])
    embed = state.pop("embed_tokens.weight", None)
    if embed is None:
        raise BadConfigError("the weights hold no embed_tokens table (model.embed_tokens.weight)", folder)
    load_mapped(backbone, state, folder, "a Qwen2 backbone of its config.json sizes", original)
    if tuple(embed.shape) != tuple(text_embedding.weight.shape):
        raise BadConfigError(f"embed_tokens is {tuple(embed.shape)}, the text embedding "
                             f"{tuple(text_embedding.weight.shape)} (config.json vocab_size / hidden_size)", folder)
    with torch.no_grad():
        text_embedding.weight.copy_(embed.to(text_embedding.weight.dtype))


def backbone_frontend(tts: Mapping[str, Any], frontend):
    """The text frontend of a TTS config (`tts:` block, `frontend` already read from it): when its
    model.backbone.init_from names a folder, that folder's tokenizer (kind hf_bpe, the frontend
    block's max_chars kept); otherwise `frontend` itself. A frontend block asking for anything
    else (another kind, another folder) is a one-line BadConfigError."""
    from voxtok.tts.frontend import TextFrontend

    backbone = (tts.get("model") or {}).get("backbone") or {}
    path = backbone.get("init_from") if isinstance(backbone, Mapping) else None
    if path is None:
        return frontend
    folder = init_folder(path, "tts.model.backbone.init_from")
    given = dict(tts.get("frontend") or {})
    if given.get("kind", "hf_bpe") != "hf_bpe" or (
            given.get("path") is not None and Path(str(given["path"])).expanduser().resolve() != folder.resolve()):
        raise BadConfigError("tts.frontend: a backbone initialised from a Hugging Face folder (init_from) reads text "
                             "with that folder's tokenizer; leave out the frontend block (or give only max_chars)")
    if given.get("kind") == "hf_bpe" and given.get("path") is not None:
        return frontend
    return TextFrontend("hf_bpe", frontend.max_chars, path=folder)
