"""CosyVoice-300M's llm.pt -> VoxTok's `TextToTokenLM` (a piece of `voxtok convert cosyvoice`).

The release's cosyvoice.yaml builds `cosyvoice.llm.llm.TransformerLM` with a causal
relative-position `ConformerEncoder` as text encoder and an ESPnet relative-position
`TransformerEncoder` as LM (v1 only: CosyVoice 2/3's `Qwen2LM` / `CosyVoice3LM` are refused in
one line). `llm_config_from_reference` reads that block (as `voxtok.convert.cosyvoice_yaml` parses
it, tags not executed) into a TextToTokenLM config with `text_encoder.kind: conformer` and
`backbone.kind: espnet` (`voxtok.tts.cosyvoice_lm`), refusing any option VoxTok does not reproduce;
`llm_from_reference` maps llm.pt onto it key for key:

    text_embedding                    -> text_encoder.embedding
    text_encoder.embed.out.0 / .1     -> text_encoder.encoder.input_linear / input_norm
    text_encoder.encoders.N.*         -> text_encoder.encoder.layers.N.*   (same leaf names)
    text_encoder.after_norm           -> text_encoder.encoder.after_norm
    text_encoder_affine_layer         -> text_encoder.out_proj
    llm_embedding (sos, task_id)      -> special
    llm.embed.out.0 / .1              -> backbone.encoder.input_linear / input_norm
    llm.encoders.N.norm1 / norm2      -> backbone.encoder.layers.N.norm_mha / norm_ff
    llm.encoders.N.self_attn / feed_forward -> backbone.encoder.layers.N.(same)
    llm.after_norm                    -> backbone.encoder.after_norm
    llm_decoder                       -> head
    speech_embedding                  -> speech_embedding
    spk_embed_affine_layer            -> spk_proj

Decoding keeps the reference's rules: RAS with the release's top_p / top_k / win_size / tau_r, and
2 to 20 speech tokens per text token (TransformerLM.inference's defaults).
"""

from __future__ import annotations

import os
from typing import Any, Mapping

import torch

from voxtok.convert.cosyvoice_yaml import Tagged, part, read_cosyvoice_yaml
from voxtok.convert.keymap import load_mapped, read_state_dict, rename
from voxtok.errors import BadConfigError

TRANSFORMER_LM = "cosyvoice.llm.llm.TransformerLM"
CONFORMER = "cosyvoice.transformer.encoder.ConformerEncoder"
TRANSFORMER = "cosyvoice.transformer.encoder.TransformerEncoder"
RAS = "cosyvoice.utils.common.ras_sampling"
CHECKPOINT_FILE = "a CosyVoice-300M llm.pt (TransformerLM state_dict)"
# TransformerLM.inference's defaults (not in the YAML): speech tokens per target-text token.
MIN_TOKEN_TEXT_RATIO, MAX_TOKEN_TEXT_RATIO = 2.0, 20.0

LM_ARGS = ("text_encoder_input_size", "llm_input_size", "llm_output_size", "text_token_size", "speech_token_size",
           "text_encoder", "llm", "sampling", "length_normalized_loss", "lsm_weight", "spk_embed_dim")
# The reference encoders' arguments and defaults; `required` lists the values VoxTok reproduces.
ENCODER_DEFAULTS = {"dropout_rate": 0.1, "positional_dropout_rate": 0.1, "attention_dropout_rate": 0.0,
                    "input_layer": "conv2d", "normalize_before": True, "static_chunk_size": 0,
                    "use_dynamic_chunk": False,
                    "global_cmvn": None, "use_dynamic_left_chunk": False, "key_bias": True,
                    "gradient_checkpointing": False, "attention_heads": 4, "linear_units": 2048, "num_blocks": 6,
                    "output_size": 256}
CONFORMER_DEFAULTS = {**ENCODER_DEFAULTS, "pos_enc_layer_type": "rel_pos", "selfattention_layer_type": "rel_selfattn",
                      "activation_type": "swish", "macaron_style": True, "use_cnn_module": True,
                      "positionwise_conv_kernel_size": 1, "cnn_module_kernel": 15, "causal": False,
                      "cnn_module_norm": "batch_norm"}
TRANSFORMER_DEFAULTS = {**ENCODER_DEFAULTS, "pos_enc_layer_type": "abs_pos", "selfattention_layer_type": "selfattn",
                        "activation_type": "relu"}
SHARED_REQUIRED = {"normalize_before": (True,), "pos_enc_layer_type": ("rel_pos_espnet",),
                   "selfattention_layer_type": ("rel_selfattn",), "use_dynamic_chunk": (False,),
                   "global_cmvn": (None,), "key_bias": (True,)}
CONFORMER_REQUIRED = {**SHARED_REQUIRED, "input_layer": ("linear",), "use_cnn_module": (False,),
                      "macaron_style": (False,), "static_chunk_size": (0, 1), "activation_type": ("swish",)}
TRANSFORMER_REQUIRED = {**SHARED_REQUIRED, "input_layer": ("linear", "linear_legacy"), "static_chunk_size": (1,),
                        "activation_type": ("relu", "swish")}
ACTIVATION_NAMES = {"swish": "silu", "relu": "relu"}
RAS_DEFAULTS = {"top_p": 0.8, "top_k": 25, "win_size": 10, "tau_r": 0.1}

RULES = (
    (r"text_embedding\.weight", r"text_encoder.embedding.weight"),
    (r"text_encoder\.embed\.out\.0\.(weight|bias)", r"text_encoder.encoder.input_linear.\1"),
    (r"text_encoder\.embed\.out\.1\.(weight|bias)", r"text_encoder.encoder.input_norm.\1"),
    (r"text_encoder\.encoders\.(\d+)\.(self_attn|feed_forward|norm_mha|norm_ff)\.(.+)",
     r"text_encoder.encoder.layers.\1.\2.\3"),
    (r"text_encoder\.after_norm\.(weight|bias)", r"text_encoder.encoder.after_norm.\1"),
    (r"text_encoder_affine_layer\.(weight|bias)", r"text_encoder.out_proj.\1"),
    (r"llm_embedding\.weight", r"special.weight"),
    (r"llm\.embed\.out\.0\.(weight|bias)", r"backbone.encoder.input_linear.\1"),
    (r"llm\.embed\.out\.1\.(weight|bias)", r"backbone.encoder.input_norm.\1"),
    (r"llm\.encoders\.(\d+)\.norm1\.(weight|bias)", r"backbone.encoder.layers.\1.norm_mha.\2"),
    (r"llm\.encoders\.(\d+)\.norm2\.(weight|bias)", r"backbone.encoder.layers.\1.norm_ff.\2"),
    (r"llm\.encoders\.(\d+)\.(self_attn|feed_forward)\.(.+)", r"backbone.encoder.layers.\1.\2.\3"),
    (r"llm\.after_norm\.(weight|bias)", r"backbone.encoder.after_norm.\1"),
    (r"llm_decoder\.(weight|bias)", r"head.\1"),
    (r"speech_embedding\.weight", r"speech_embedding.weight"),
    (r"spk_embed_affine_layer\.(weight|bias)", r"spk_proj.\1"),
)


def llm_config_from_reference(reference_config: Mapping[str, Any] | Tagged, path: str | os.PathLike | None = None,
                              tokenizer: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The TextToTokenLM config (a dict for `TextToTokenLM.from_config`) of a release's `llm` block.

    reference_config: the parsed cosyvoice.yaml (`read_cosyvoice_yaml`) or its `llm` entry.
    tokenizer: what made the speech tokens, recorded in the config (default S3 v1, 50 Hz).
    Anything VoxTok does not reproduce (CosyVoice 2/3 LMs, a conv module, other positions or input
    layers, non-causal LM) is a one-line BadConfigError naming the option and `path`.
    """
    where = path if path is not None else "cosyvoice.yaml"
    config = {"llm": reference_config} if isinstance(reference_config, Tagged) else reference_config
    _, lm = part(config, "llm", (TRANSFORMER_LM,), where)
    _check_known("llm", lm, LM_ARGS, where)
    text = _encoder_args(lm, "text_encoder", CONFORMER, CONFORMER_DEFAULTS, CONFORMER_REQUIRED, where)
    llm = _encoder_args(lm, "llm", TRANSFORMER, TRANSFORMER_DEFAULTS, TRANSFORMER_REQUIRED, where)
    sizes = {k: _positive_int(lm, k, where) for k in ("text_encoder_input_size", "llm_input_size", "llm_output_size",
                                                       "text_token_size", "speech_token_size")}
    spk_dim = int(lm.get("spk_embed_dim", 192))
    if text["input_size"] != sizes["text_encoder_input_size"]:
        raise BadConfigError(f"llm.text_encoder.input_size {text['input_size']} differs from text_encoder_input_size "
                             f"{sizes['text_encoder_input_size']}", where)
    width = sizes["llm_input_size"]
    if not llm["input_size"] == llm["output_size"] == width == sizes["llm_output_size"]:
        raise BadConfigError(f"the LM's input and output sizes must all be equal (llm_input_size {width}, "
                             f"llm.input_size {llm['input_size']}, llm.output_size {llm['output_size']}, "
                             f"llm_output_size {sizes['llm_output_size']})", where)
    return {
        "text_vocab_size": sizes["text_token_size"],
        "speech_vocab_size": sizes["speech_token_size"],
        "text_embed_dim": sizes["text_encoder_input_size"],
        "text_encoder": {"kind": "conformer", "dim": text["output_size"], "layers": text["num_blocks"],
                         "heads": text["attention_heads"], "ffn_dim": text["linear_units"],
                         "dropout": float(text["dropout_rate"]), "attn_dropout": float(text["attention_dropout_rate"]),
                         "causal": text["static_chunk_size"] == 1, "layer_norm_eps": 1e-12},
        "backbone": {"kind": "espnet", "hidden_size": width, "num_layers": llm["num_blocks"],
                     "num_heads": llm["attention_heads"], "intermediate_size": llm["linear_units"],
                     "dropout": float(llm["dropout_rate"]), "attention_dropout": float(llm["attention_dropout_rate"]),
                     "activation": ACTIVATION_NAMES[llm["activation_type"]],
                     "input_relu": llm["input_layer"] == "linear_legacy", "layer_norm_eps": 1e-12},
        "spk_dim": spk_dim,
        "label_smoothing": float(lm.get("lsm_weight", 0.0)),
        "min_token_text_ratio": MIN_TOKEN_TEXT_RATIO,
        "max_token_text_ratio": MAX_TOKEN_TEXT_RATIO,
        "sampling": {**_ras_args(lm.get("sampling"), where), "temperature": 1.0},
        "tokenizer": dict(tokenizer) if tokenizer is not None else {"name": "s3", "frame_rate": 50.0},
    }


def llm_from_reference(state_dict: Mapping[str, torch.Tensor], reference_config: Mapping[str, Any] | Tagged,
                       source: str | os.PathLike = "llm.pt", tokenizer: Mapping[str, Any] | None = None):
    """A TextToTokenLM (eval mode) computing what the release's TransformerLM computes.

    state_dict: llm.pt's tensors (`read_state_dict`); reference_config as in
    `llm_config_from_reference`; `source` names the checkpoint in errors. A state_dict that does not
    fit key for key and shape for shape is a one-line BadConfigError describing the file.
    """
    from voxtok.tts.llm import TextToTokenLM

    model = TextToTokenLM.from_config(llm_config_from_reference(reference_config, tokenizer=tokenizer))
    load_mapped(model, rename(state_dict, RULES, keep_unmatched=True), source, "CosyVoice v1's TransformerLM",
                original=state_dict)
    return model.eval()


def load_reference_llm(config_path: str | os.PathLike, checkpoint_path: str | os.PathLike,
                       tokenizer: Mapping[str, Any] | None = None):
    """Read a release's cosyvoice.yaml and llm.pt and return the mapped TextToTokenLM (eval mode)."""
    config = read_cosyvoice_yaml(config_path)
    llm_config_from_reference(config, config_path, tokenizer)  # config errors name the YAML first
    return llm_from_reference(read_state_dict(checkpoint_path, CHECKPOINT_FILE), config, checkpoint_path, tokenizer)


def _check_known(name: str, args: Mapping[str, Any], known, where) -> None:
    unknown = sorted(set(args) - set(known))
    if unknown:
        raise BadConfigError(f"{name} has arguments VoxTok does not know: {unknown}", where)


def _positive_int(args: Mapping[str, Any], key: str, where) -> int:
    value = args.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise BadConfigError(f"llm.{key} must be a positive integer, got {value!r}", where)
    return value


def _encoder_args(lm: Mapping[str, Any], name: str, target: str, defaults: Mapping[str, Any],
                  required: Mapping[str, tuple], where) -> dict[str, Any]:
    """The reference encoder's arguments with its defaults filled in, after checking its class,
    that every argument is one it has, and that the options VoxTok reproduces hold."""
    block = lm.get(name)
    if not isinstance(block, Tagged) or block.kind != "new" or not isinstance(block.args, Mapping):
        raise BadConfigError(f"llm.{name} is not a !new: encoder", where)
    if block.target != target:
        raise BadConfigError(f"llm.{name} is {block.target}; supported: {target.rsplit('.', 1)[-1]}", where)
    _check_known(f"llm.{name}", block.args, ("input_size", *defaults), where)
    args = {**defaults, **block.args}
    for key, allowed in required.items():
        if args[key] not in allowed:
            raise BadConfigError(f"llm.{name}.{key} is {args[key]!r}; VoxTok reproduces "
                                 f"{' or '.join(repr(a) for a in allowed)}", where)
    for key in ("input_size", "output_size", "attention_heads", "linear_units", "num_blocks"):
        if not isinstance(args.get(key), int) or args[key] < 1:
            raise BadConfigError(f"llm.{name}.{key} must be a positive integer, got {args.get(key)!r}", where)
    return args


def _ras_args(sampling: Any, where) -> dict[str, Any]:
    """top_p / top_k / win_size / tau_r of the release's `!name:...ras_sampling` (its defaults filled in)."""
    if not isinstance(sampling, Tagged) or sampling.target != RAS or not isinstance(sampling.args, Mapping):
        found = sampling.target if isinstance(sampling, Tagged) else type(sampling).__name__
        raise BadConfigError(f"llm.sampling is {found}; supported: ras_sampling", where)
    _check_known("llm.sampling", sampling.args, RAS_DEFAULTS, where)
    return {**RAS_DEFAULTS, **sampling.args}
