"""CosyVoice-300M's `flow.pt` -> VoxTok's flow decoder (`voxtok.tts.flow.FlowDecoder`).

The release's flow is `MaskedDiffWithXvec` (cosyvoice/flow/flow.py): token embedding, x-vector
projection, a WeNet ConformerEncoder (linear input layer, relative positions, no conv module),
a projection to the mels, an `InterpolateRegulator` and a `ConditionalCFM` whose estimator is the
Matcha-TTS-based `ConditionalDecoder` U-Net. VoxTok's FlowDecoder has the same parts; the
state_dict maps by renames only:

    encoder.embed.out.0 / .1             -> encoder.input_linear / input_norm
    encoder.encoders.N.*                 -> encoder.layers.N.*
    length_regulator.model.{3i, 3i+1}    -> length_regulator.convs.i / norms.i  (3i+2 is a Mish)
    length_regulator.model.{3n}          -> length_regulator.out
    decoder.estimator.time_mlp           -> estimator.time_embedding
    decoder.estimator.*.block.{0, 1}     -> estimator.*.conv / norm   (Block1D's Sequential)
    decoder.estimator.*.mlp.1            -> estimator.*.mlp           (Mish has no weights)
    decoder.estimator.*.attn1.to_out.0   -> estimator.*.attn.to_out
    decoder.estimator.*.ff.net.{0.proj, 2} -> estimator.*.ff.proj_in / proj_out
    decoder.estimator.*_blocks.N.2.conv  -> estimator.*_blocks.N.2    (Downsample1D / Upsample1D)

and the settings the reference fixes in code become config: LayerNorm eps 1e-12 inside the encoder
blocks, head/tail interpolation of 20 tokens at inference (`edge_tokens`), 10 Euler steps on the
cosine schedule, CFG as in `solve_euler`, cosine-warped training t (how the release was trained).
Sizes come from the release's cosyvoice.yaml, read as data (`voxtok.convert.cosyvoice_yaml`).
Errors are one line naming the file; CosyVoice 2/3 flows (`CausalMaskedDiffWithXvec`, ...) are refused.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Mapping

from voxtok.convert.cosyvoice_yaml import Tagged, part
from voxtok.errors import BadConfigError

if TYPE_CHECKING:  # torch and the model load inside the functions: `voxtok --help` stays light
    import torch

    from voxtok.tts.flow import FlowDecoder

FLOW_CLASS = "cosyvoice.flow.flow.MaskedDiffWithXvec"
ENCODER_CLASS = "cosyvoice.transformer.encoder.ConformerEncoder"
REGULATOR_CLASS = "cosyvoice.flow.length_regulator.InterpolateRegulator"
CFM_CLASS = "cosyvoice.flow.flow_matching.ConditionalCFM"
ESTIMATOR_CLASS = "cosyvoice.flow.decoder.ConditionalDecoder"
CHECKPOINT_WHAT = "a CosyVoice flow.pt"  # for read_state_dict

# The reference constructors' defaults, for arguments a cosyvoice.yaml leaves out.
FLOW_DEFAULTS = {"input_size": 512, "output_size": 80, "spk_embed_dim": 192, "output_type": "mel",
                 "vocab_size": 4096, "input_frame_rate": 50, "only_mask_loss": True}
ENCODER_DEFAULTS = {"input_size": None, "output_size": 256, "attention_heads": 4, "linear_units": 2048,
                    "num_blocks": 6, "dropout_rate": 0.1, "positional_dropout_rate": 0.1,
                    "attention_dropout_rate": 0.0, "input_layer": "conv2d", "pos_enc_layer_type": "rel_pos",
                    "normalize_before": True, "static_chunk_size": 0, "use_dynamic_chunk": False,
                    "use_dynamic_left_chunk": False, "positionwise_conv_kernel_size": 1, "macaron_style": True,
                    "selfattention_layer_type": "rel_selfattn", "activation_type": "swish", "use_cnn_module": True,
                    "cnn_module_kernel": 15, "causal": False, "cnn_module_norm": "batch_norm", "key_bias": True,
                    "gradient_checkpointing": False}
# The encoder settings VoxTok's ConformerEncoder computes (the others change the computation).
ENCODER_REQUIRED = {"input_layer": "linear", "pos_enc_layer_type": "rel_pos_espnet", "normalize_before": True,
                    "macaron_style": False, "selfattention_layer_type": "rel_selfattn", "activation_type": "swish",
                    "use_cnn_module": False, "static_chunk_size": 0, "use_dynamic_chunk": False,
                    "positionwise_conv_kernel_size": 1, "key_bias": True}
ESTIMATOR_DEFAULTS = {"in_channels": None, "out_channels": None, "channels": [256, 256], "dropout": 0.05,
                      "attention_head_dim": 64, "n_blocks": 1, "num_mid_blocks": 2, "num_heads": 4,
                      "act_fn": "snake"}
CFM_PARAMS = ("sigma_min", "solver", "t_scheduler", "training_cfg_rate", "inference_cfg_rate", "reg_loss_type")
# The release's mel front end (feat_extractor: matcha.utils.audio.mel_spectrogram) = VoxTok's "cosyvoice" preset.
MEL_FRONT_END = {"n_fft": 1024, "num_mels": 80, "sampling_rate": 22050, "hop_size": 256, "win_size": 1024,
                 "fmin": 0, "fmax": 8000, "center": False}
# MaskedDiffWithXvec.inference: 10 Euler steps; InterpolateRegulator.inference: 20-token head and tail.
INFERENCE_STEPS = 10
EDGE_TOKENS = 20
# MaskedDiffWithXvec.forward: half the utterances get a prompt of up to 30 % of their own mel.
PROMPT_PROB, PROMPT_MAX_RATIO = 0.5, 0.3


def flow_config_from_reference(reference_config: Mapping[str, Any],
                               path: str | os.PathLike = "cosyvoice.yaml") -> dict[str, Any]:
    """The VoxTok flow `model:` config of a release's cosyvoice.yaml (as `read_cosyvoice_yaml` reads it).

    Refuses in one line (naming `path`) a flow VoxTok does not compute: another class (CosyVoice 2/3),
    an encoder with a conv module, macaron FFNs, chunk masks or other positions, an estimator
    activation other than GELU, a CFM solver other than Euler on the cosine schedule, and a mel
    front end other than the release's.
    """
    _, flow = part(reference_config, "flow", (FLOW_CLASS,), path)
    flow = _with_defaults("flow", flow, FLOW_DEFAULTS, path, nested=("encoder", "length_regulator", "decoder",
                                                                      "decoder_conf"))
    n_mels = _check_mel_front_end(reference_config, flow, path)
    _, encoder = part(flow, "encoder", (ENCODER_CLASS,), path)
    encoder = _with_defaults("flow.encoder", encoder, ENCODER_DEFAULTS, path)
    for key, want in ENCODER_REQUIRED.items():
        if encoder[key] != want:
            raise BadConfigError(f"flow.encoder {key} is {encoder[key]!r}; VoxTok's flow encoder computes {want!r} "
                                 "(the CosyVoice-300M setting)", path)
    if encoder["input_size"] not in (None, flow["input_size"]):
        raise BadConfigError(f"flow.encoder input_size {encoder['input_size']} != flow input_size "
                             f"{flow['input_size']}", path)
    _, regulator = part(flow, "length_regulator", (REGULATOR_CLASS,), path)
    regulator = _with_defaults("flow.length_regulator", regulator,
                               {"channels": None, "sampling_ratios": None, "out_channels": None, "groups": 1}, path)
    if regulator["channels"] != n_mels or regulator["out_channels"] not in (None, n_mels):
        raise BadConfigError(f"flow.length_regulator channels {regulator['channels']} (out "
                             f"{regulator['out_channels']}) must be the {n_mels} mels", path)
    if not isinstance(regulator["sampling_ratios"], list):
        raise BadConfigError("flow.length_regulator sampling_ratios must be a list", path)
    cfm, estimator = _decoder(flow, n_mels, path)
    return {
        "vocab_size": int(flow["vocab_size"]),
        "token_rate": flow["input_frame_rate"],
        "mel": "cosyvoice",
        "spk_dim": int(flow["spk_embed_dim"]),
        "embed_dim": int(flow["input_size"]),
        "encoder": {"kind": "conformer", "dim": int(encoder["output_size"]), "heads": int(encoder["attention_heads"]),
                    "ff_dim": int(encoder["linear_units"]), "layers": int(encoder["num_blocks"]),
                    "dropout": float(encoder["dropout_rate"]), "attn_dropout": float(encoder["attention_dropout_rate"]),
                    "conv_kernel": 0, "layer_norm_eps": 1e-12},
        "length_regulator": {"n_convs": len(regulator["sampling_ratios"]), "groups": int(regulator["groups"]),
                             "edge_tokens": EDGE_TOKENS},
        "estimator": {"kind": "unet", "channels": [int(c) for c in estimator["channels"]],
                      "n_blocks": int(estimator["n_blocks"]), "num_mid_blocks": int(estimator["num_mid_blocks"]),
                      "heads": int(estimator["num_heads"]), "head_dim": int(estimator["attention_head_dim"]),
                      "dropout": float(estimator["dropout"])},
        # The released 300M flow was trained with cosine-warped t (upstream's training later went uniform).
        "cfm": {"sigma_min": float(cfm["sigma_min"]), "train_t_scheduler": "cosine",
                "cfg_dropout": float(cfm["training_cfg_rate"]), "prompt_prob": PROMPT_PROB,
                "prompt_max_ratio": PROMPT_MAX_RATIO, "loss_on_prompt": True},
        "inference": {"n_steps": INFERENCE_STEPS, "cfg_strength": float(cfm["inference_cfg_rate"]), "temperature": 1.0},
    }


def flow_rules(n_convs: int) -> list[tuple[str, str]]:
    """(regex, replacement) rules from the reference's flow keys to VoxTok's (see the module docstring)."""
    est = r"decoder\.estimator\."
    rules = [
        (r"encoder\.embed\.out\.0\.(weight|bias)", r"encoder.input_linear.\1"),
        (r"encoder\.embed\.out\.1\.(weight|bias)", r"encoder.input_norm.\1"),
        (r"encoder\.encoders\.(\d+)\.(.+)", r"encoder.layers.\1.\2"),
        (rf"{est}time_mlp\.(.+)", r"estimator.time_embedding.\1"),
        (rf"{est}(.+)\.block\.0\.(weight|bias)", r"estimator.\1.conv.\2"),
        (rf"{est}(.+)\.block\.1\.(weight|bias)", r"estimator.\1.norm.\2"),
        (rf"{est}(.+)\.mlp\.1\.(weight|bias)", r"estimator.\1.mlp.\2"),
        (rf"{est}(.+)\.attn1\.to_out\.0\.(weight|bias)", r"estimator.\1.attn.to_out.\2"),
        (rf"{est}(.+)\.attn1\.(to_[qkv])\.(weight|bias)", r"estimator.\1.attn.\2.\3"),
        (rf"{est}(.+)\.ff\.net\.0\.proj\.(weight|bias)", r"estimator.\1.ff.proj_in.\2"),
        (rf"{est}(.+)\.ff\.net\.2\.(weight|bias)", r"estimator.\1.ff.proj_out.\2"),
        (rf"{est}((?:down|up)_blocks\.\d+\.2)\.conv\.(weight|bias)", r"estimator.\1.\2"),
        (rf"{est}(.+)", r"estimator.\1"),
    ]
    for i in range(n_convs):
        rules.append((rf"length_regulator\.model\.{3 * i}\.(weight|bias)", rf"length_regulator.convs.{i}.\1"))
        rules.append((rf"length_regulator\.model\.{3 * i + 1}\.(weight|bias)", rf"length_regulator.norms.{i}.\1"))
    rules.append((rf"length_regulator\.model\.{3 * n_convs}\.(weight|bias)", r"length_regulator.out.\1"))
    return rules


def flow_from_reference(state_dict: Mapping[str, torch.Tensor], reference_config: Mapping[str, Any],
                        source: str | os.PathLike = "flow.pt",
                        config_path: str | os.PathLike = "cosyvoice.yaml") -> FlowDecoder:
    """A release's flow state_dict (flow.pt, MaskedDiffWithXvec layout) + its cosyvoice.yaml -> FlowDecoder (eval).

    `reference_config` is the whole cosyvoice.yaml as `read_cosyvoice_yaml` returns it; `source` and
    `config_path` name the files in errors. Every key must map and fit, else a one-line
    BadConfigError (naming the first keys that differ and what the file holds).
    """
    from voxtok.convert.keymap import load_mapped, rename
    from voxtok.tts.flow import FlowDecoder

    config = flow_config_from_reference(reference_config, config_path)
    try:
        flow = FlowDecoder(config, where="flow")
    except BadConfigError as err:  # sizes VoxTok's modules cannot take: say which file holds them
        raise BadConfigError(str(err), config_path) from None
    mapped = rename(state_dict, flow_rules(config["length_regulator"]["n_convs"]), keep_unmatched=True)
    load_mapped(flow, mapped, source, "the CosyVoice flow (MaskedDiffWithXvec) of cosyvoice.yaml",
                original=state_dict)
    return flow.eval()


def _with_defaults(name: str, args: Mapping[str, Any], defaults: Mapping[str, Any], path,
                   nested: tuple[str, ...] = ()) -> dict[str, Any]:
    unknown = sorted(set(args) - set(defaults) - set(nested))
    if unknown:
        raise BadConfigError(f"{name} has arguments {unknown} that {name.split('.')[-1]} of CosyVoice-300M does not "
                             "take", path)
    return {**defaults, **args}


def _check_mel_front_end(document: Mapping[str, Any], flow: Mapping[str, Any], path) -> int:
    """The mel bins; the release's feat_extractor (when present) must be VoxTok's "cosyvoice" preset."""
    n_mels = MEL_FRONT_END["num_mels"]
    if flow["output_size"] != n_mels or flow["output_type"] != "mel":
        raise BadConfigError(f"flow output is {flow['output_size']} {flow['output_type']!r} channels; VoxTok's "
                             f"CosyVoice flow outputs {n_mels} mels", path)
    extractor = document.get("feat_extractor")
    if isinstance(extractor, Tagged) and isinstance(extractor.args, Mapping):
        differ = {k: extractor.args[k] for k, v in MEL_FRONT_END.items()
                  if k in extractor.args and extractor.args[k] != v}
        if differ:
            raise BadConfigError(f"feat_extractor {differ} differs from CosyVoice-300M's mel front end "
                                 f"{MEL_FRONT_END}, the only one VoxTok's CosyVoice flow takes", path)
    return n_mels


def _decoder(flow: Mapping[str, Any], n_mels: int, path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(cfm_params, estimator arguments) of the flow's ConditionalCFM, checked."""
    _, decoder = part(flow, "decoder", (CFM_CLASS,), path)
    params = decoder.get("cfm_params")
    if isinstance(params, Tagged):  # !new:omegaconf.DictConfig {content: {...}}
        params = params.args.get("content", params.args) if isinstance(params.args, Mapping) else None
    if not isinstance(params, Mapping) or any(k not in params for k in CFM_PARAMS[:5]):
        raise BadConfigError(f"flow.decoder.cfm_params must hold {', '.join(CFM_PARAMS[:5])}", path)
    if params["solver"] != "euler" or params["t_scheduler"] != "cosine":
        raise BadConfigError(f"flow.decoder solver {params['solver']!r} / t_scheduler {params['t_scheduler']!r}: "
                             "VoxTok's flow integrates with Euler on the cosine schedule", path)
    _, estimator = part(decoder, "estimator", (ESTIMATOR_CLASS,), path)
    estimator = _with_defaults("flow.decoder.estimator", estimator, ESTIMATOR_DEFAULTS, path)
    if estimator["act_fn"] != "gelu":
        raise BadConfigError(f"flow.decoder.estimator act_fn is {estimator['act_fn']!r}; VoxTok's U-Net "
                             "feed-forward is GELU (CosyVoice-300M's)", path)
    if estimator["in_channels"] not in (None, 4 * n_mels) or estimator["out_channels"] not in (None, n_mels):
        raise BadConfigError(f"flow.decoder.estimator in/out channels {estimator['in_channels']}/"
                             f"{estimator['out_channels']} must be {4 * n_mels}/{n_mels} (x, mu, spk, cond of "
                             f"{n_mels} mels)", path)
    return dict(params), estimator
