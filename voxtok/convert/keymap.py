"""Reading a published checkpoint and mapping its state_dict onto a VoxTok module, key for key.

Published checkpoints differ from VoxTok's modules only in names: key prefixes, and weight norm
stored the old way (`weight_g` / `weight_v`, torch.nn.utils.weight_norm) where VoxTok uses
parametrizations (`parametrizations.weight.original0` / `original1`). A converter states its
renames as (regex, replacement) rules; `load_mapped` applies them, translates weight norm, and loads
with every key accounted for, or raises one line naming the first keys that differ and what the
file looks like (so a checkpoint of another model is recognised as such).
"""

from __future__ import annotations

import os
import re
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

if TYPE_CHECKING:  # torch loads lazily: `voxtok --help` builds every converter's parser
    import torch

from voxtok.errors import BadConfigError

Rules = Iterable[tuple[str, str]]
_OLD_WEIGHT_NORM = {"weight_g": "parametrizations.weight.original0", "weight_v": "parametrizations.weight.original1"}


def read_state_dict(path: str | os.PathLike, what: str, key: str | None = None,
                    wrappers: Sequence[str] = ("state_dict",)) -> dict[str, torch.Tensor]:
    """The tensors of a published checkpoint file (.pt / .bin / .ckpt via torch.load, or .safetensors).

    `key` picks a nested dict (e.g. "state_dict" in a Lightning .ckpt); without it the first of
    `wrappers` found at the top level is used (a training package's "generator", say), else the
    file's top level. Only tensors are loaded (weights_only), nothing is executed.
    `what` names the expected file in errors ("a WavTokenizer Lightning checkpoint").
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise BadConfigError(f"{what} not found", path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            data = load_file(str(path))
        else:
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a corrupt or foreign file: one line, not a pickle traceback
        raise BadConfigError(f"cannot read {what} ({type(err).__name__}: {str(err).splitlines()[0][:200]})",
                             path) from None
    if key is not None:
        if not isinstance(data, Mapping) or key not in data:
            raise BadConfigError(f"not {what}: it has no '{key}' entry", path)
        data = data[key]
    elif isinstance(data, Mapping):
        data = next((data[w] for w in wrappers if isinstance(data.get(w), Mapping)), data)
    if not isinstance(data, Mapping) or not any(isinstance(v, torch.Tensor) for v in data.values()):
        raise BadConfigError(f"not {what}: it holds no tensors", path)
    return {k: v for k, v in data.items() if isinstance(v, torch.Tensor)}


def rename(state: Mapping[str, torch.Tensor], rules: Rules, keep_unmatched: bool = False) -> dict[str, torch.Tensor]:
    """Apply the first matching (regex, replacement) rule to each key (`re.fullmatch`).

    A replacement of None drops the key (parts VoxTok does not use, e.g. an unused decoder).
    Keys no rule matches are dropped unless `keep_unmatched`. Old weight-norm names are translated.
    """
    compiled = [(re.compile(pattern), repl) for pattern, repl in rules]
    out = {}
    for key, value in state.items():
        for pattern, repl in compiled:
            match = pattern.fullmatch(key)
            if match:
                if repl is not None:
                    out[_new_weight_norm(match.expand(repl))] = value
                break
        else:
            if keep_unmatched:
                out[_new_weight_norm(key)] = value
    return out


def _new_weight_norm(key: str) -> str:
    head, _, leaf = key.rpartition(".")
    return f"{head}.{_OLD_WEIGHT_NORM[leaf]}" if leaf in _OLD_WEIGHT_NORM else key


def describe(state: Mapping[str, torch.Tensor], depth: int = 2, most: int = 6) -> str:
    """A short summary of a state_dict for errors: tensor count and the commonest key prefixes."""
    prefixes = Counter(".".join(k.split(".")[:depth]) for k in state)
    top = ", ".join(f"{p}.* ({n})" for p, n in prefixes.most_common(most))
    return f"{len(state)} tensors: {top}"


def load_mapped(module: torch.nn.Module, state: Mapping[str, torch.Tensor], source: str | os.PathLike,
                what: str, original: Mapping[str, torch.Tensor] | None = None) -> None:
    """Load the renamed `state` into `module` with every key and shape matching, else one line.

    The error names the first missing / unexpected / mis-shaped keys and describes the original file
    (`original`, the state_dict before renaming), e.g. to tell a Vocos EnCodec-feature model from
    the mel model.
    """
    target = module.state_dict()
    missing = [k for k in target if k not in state]
    unexpected = [k for k in state if k not in target]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in target.items()
              if k in state and state[k].shape != v.shape]
    if missing or unexpected or shapes:
        parts = [f"missing {missing[:3]}" if missing else "", f"unexpected {unexpected[:3]}" if unexpected else "",
                 f"shape {shapes[:2]}" if shapes else ""]
        raise BadConfigError(f"checkpoint does not fit {what} ({'; '.join(p for p in parts if p)}); the file has "
                             f"{describe(original if original is not None else state)}", source)
    module.load_state_dict({k: v.to(target[k].dtype) for k, v in state.items()}, strict=True)


def source_note(kind: str, config_path: str | os.PathLike, checkpoint_path: str | os.PathLike) -> dict[str, Any]:
    """metadata.json `extra` entry saying which published files a folder was converted from."""
    from voxtok.registry import file_hash

    return {"converted_from": {"kind": kind, "config": Path(config_path).name, "checkpoint": Path(checkpoint_path).name,
                               "checkpoint_hash": file_hash(checkpoint_path)}}
