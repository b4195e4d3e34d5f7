"""Fine-tuning a TTS part from a trained or converted checkpoint: the settings file and parameter freezing.

A fine-tuning settings file (a recipe's conf/finetune_*.yaml, e.g. egs/libritts/conf/finetune_cosyvoice.yaml)
holds one block per part, keyed by the model's registry name (llm, flow, ...):

    llm:
      trainer: {max_steps: 2000, val_every_n_steps: 500, checkpoint_every_n_steps: 500}
      optim: {lr: 1.0e-5, warmup_steps: 200, final_lr_ratio: 0.1}
      data: {batch_size: 8, max_seconds: 20.0}
      freeze: [text_encoder]      # submodules (parameter-name prefixes) held fixed; [] trains everything

`voxtok.recipes.train_tts init_from=DIR finetune=FILE` applies the block of DIR's model: `trainer` ->
the `trainer:` config block (configs/trainer keys), `optim` -> `tts.optim` (voxtok.training.optim
keys), `data` -> `tts.data` (voxtok.data.options.TTSDataOptions keys), `freeze` -> `freeze`. The
file's settings override the YAML configs; a setting given on the command line overrides the file's.
Every key is read strictly: an unknown one is a one-line BadConfigError naming it.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch

from voxtok.config import check_keys, read_data_file, require_mapping
from voxtok.errors import BadConfigError

BLOCK_KEYS = ("trainer", "optim", "data", "freeze")
# Where each block's settings go in train_tts's config (a dotted path prefix).
TARGETS = {"trainer": "trainer", "optim": "tts.optim", "data": "tts.data"}


def _allowed(block: str) -> tuple[str, ...]:
    # Imported here: the trainer and data modules pull in Lightning / the datasets.
    if block == "trainer":
        from voxtok.training.lightning import TRAINER_DEFAULTS

        return tuple(TRAINER_DEFAULTS)
    if block == "optim":
        from voxtok.training.optim import OPTIM_KEYS

        return OPTIM_KEYS
    from voxtok.data.options import TTSDataOptions

    return tuple(f.name for f in dataclasses.fields(TTSDataOptions))


def read_finetune_config(path: str | os.PathLike, part: str) -> dict[str, Any]:
    """The block of `part` (a model registry name: llm, flow, ...) in the settings file `path`, checked
    strictly (module docstring); a missing file or block, or an unknown key, is a one-line BadConfigError."""
    path = Path(path)
    if not path.is_file():
        raise BadConfigError("fine-tuning settings file not found", path)
    data = read_data_file(path, "the fine-tuning settings file")
    if not isinstance(data, Mapping):
        raise BadConfigError("fine-tuning settings must map part names (llm, flow, ...) to their settings", path)
    if part not in data:
        raise BadConfigError(f"no '{part}' block (the file has: {', '.join(map(str, data)) or 'none'})", path)
    try:
        block = dict(require_mapping(data[part], part))
        check_keys(block, BLOCK_KEYS, part)
        for name in TARGETS:
            check_keys(require_mapping(block.get(name), f"{part}.{name}"), _allowed(name), f"{part}.{name}")
        freeze = block.get("freeze") or []
        if not isinstance(freeze, list) or not all(isinstance(p, str) and p for p in freeze):
            raise BadConfigError(f"'{part}.freeze' must be a list of submodule names, got {freeze!r}")
    except BadConfigError as err:
        raise BadConfigError(str(err), path) from None
    return block


def finetune_overrides(block: Mapping[str, Any]) -> dict[str, Any]:
    """A settings block -> {dotted train_tts config path: value} (e.g. "tts.optim.lr": 1e-5)."""
    out = {f"{TARGETS[name]}.{key}": value for name in TARGETS for key, value in (block.get(name) or {}).items()}
    if "freeze" in block:
        out["freeze"] = list(block.get("freeze") or [])
    return out


def command_line_keys(overrides: Iterable[str]) -> set[str]:
    """The config keys set by Hydra command-line overrides ("trainer.max_steps=4", "+x=1", "~y")."""
    keys = set()
    for item in overrides:
        key = str(item).split("=", 1)[0].lstrip("+~").strip()
        if key:
            keys.add(key)
    return keys


def apply_overrides(config: dict[str, Any], overrides: Mapping[str, Any], given: Iterable[str] = ()) -> list[str]:
    """Set each dotted path of `overrides` in the nested dict `config` (in place), except those `given`
    on the command line: a given key covers itself and, when dotted (not a config-group choice such
    as `tts=...`), the keys under it. Returns the paths set."""
    given = set(given)
    applied = []
    for path, value in overrides.items():
        if any(path == key or ("." in key and path.startswith(key + ".")) for key in given):
            continue
        *parents, leaf = path.split(".")
        node = config
        for name in parents:
            node = node.setdefault(name, {})
            if not isinstance(node, dict):
                raise BadConfigError(f"cannot set '{path}': '{name}' is not a config block")
        node[leaf] = value
        applied.append(path)
    return applied


def freeze_parameters(model: torch.nn.Module, prefixes: Iterable[str], where: str = "freeze") -> tuple[int, int]:
    """Hold the parameters of the submodules named by `prefixes` fixed (requires_grad False).

    A prefix names a submodule by its dotted path ("text_encoder", "estimator.down_blocks.0"); one that
    names no parameter, or freezing every parameter, is a one-line BadConfigError. Returns (frozen,
    trainable) parameter counts (numbers of values).
    """
    prefixes = list(prefixes)
    named = dict(model.named_parameters())
    for prefix in prefixes:
        if not any(name == prefix or name.startswith(prefix + ".") for name in named):
            children = ", ".join(name for name, _ in model.named_children())
            raise BadConfigError(f"{where}: '{prefix}' names no submodule of {type(model).__name__} "
                                 f"(its submodules: {children})")
    frozen = 0
    for name, param in named.items():
        if any(name == p or name.startswith(p + ".") for p in prefixes):
            param.requires_grad_(False)
        if not param.requires_grad:
            frozen += param.numel()
    trainable = sum(p.numel() for p in named.values() if p.requires_grad)
    if prefixes and trainable == 0:
        raise BadConfigError(f"{where}: {prefixes} leaves no parameter of {type(model).__name__} to train")
    return frozen, trainable
