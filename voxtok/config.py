"""Strict config reading: every config family goes through these helpers.

An unknown or misspelt key, at any level (loss weights included), is a one-line BadConfigError that
names the key's full path and the allowed keys, instead of being ignored (a misspelt loss weight
would otherwise train at its default without a word).

Three shapes of config exist in VoxTok and each has one reader here:
- a defaults dict overlaid by the user's (`merge_strict`): nested blocks merge key by key, blocks
  named in `replace_whole` are taken whole (their builder checks them, e.g. an estimator `kind`);
- a dataclass (`dataclass_from_dict`);
- the keyword arguments of a module constructor (`kwargs_for`): the signature is the schema.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import json
import os
from pathlib import Path
from typing import Any, Callable, Collection, Iterable, Mapping, TypeVar

from voxtok.errors import BadConfigError

T = TypeVar("T")


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else str(key)


def check_keys(config: Mapping[str, Any] | None, allowed: Iterable[str], where: str) -> None:
    """Raise BadConfigError for the first key of `config` not in `allowed` (`where` names the block)."""
    allowed = set(allowed)
    for key in (config or {}):
        if key not in allowed:
            raise BadConfigError(f"unknown config key '{_join(where, key)}' (allowed: {', '.join(sorted(allowed))})")


def require_mapping(value: Any, where: str) -> Mapping[str, Any]:
    """`value` if it is a mapping (None counts as empty), else a one-line BadConfigError."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise BadConfigError(f"config '{where}' must be a mapping, got {type(value).__name__}")
    return value


def merge_strict(defaults: Mapping[str, Any], config: Mapping[str, Any] | None, where: str,
                 replace_whole: Collection[str] = ()) -> dict[str, Any]:
    """`defaults` overlaid with `config`, recursively; unknown keys at any depth are errors.

    A default that is a dict is a block: the user's value must be a mapping and merges key by key,
    unless the block's name is in `replace_whole` (then it replaces the default whole, for blocks
    whose keys depend on a `kind`). A default of None accepts any value. Returns a new dict.
    """
    merged = copy.deepcopy(dict(defaults))
    config = require_mapping(config, where or "config")
    check_keys(config, merged, where)
    for key, value in config.items():
        path = _join(where, key)
        if isinstance(merged[key], dict) and key not in replace_whole:
            merged[key] = merge_strict(merged[key], require_mapping(value, path), path)
        else:
            merged[key] = copy.deepcopy(dict(value)) if isinstance(value, Mapping) else copy.deepcopy(value)
    return merged


def dataclass_from_dict(cls: type[T], data: Mapping[str, Any] | None, where: str) -> T:
    """Build dataclass `cls` from `data`; unknown keys are errors, and so are fields without a
    default that `data` lacks or sets to null (named in one line); the others take their defaults."""
    data = require_mapping(data, where or cls.__name__)
    fields = dataclasses.fields(cls)
    check_keys(data, (f.name for f in fields), where)  # a misspelt required key is reported as such
    missing = [f.name for f in fields if f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING and data.get(f.name) is None]
    if missing:
        raise BadConfigError(f"config '{where}' lacks {', '.join(missing)}")
    return cls(**dict(data))


def kwargs_for(fn: Callable[..., Any], config: Mapping[str, Any] | None, where: str,
               exclude: Collection[str] = (), also_allowed: Collection[str] = ()) -> dict[str, Any]:
    """`config` as keyword arguments of `fn` (a class or function), checked against its signature.

    `exclude` names parameters the caller fills itself (e.g. a dimension taken from another block),
    so a config that sets them is an error too. `also_allowed` names keys of the block that are not
    parameters of `fn` but that the caller reads itself (e.g. `kind`): they are accepted, named in
    the error's list of allowed keys, and left out of the returned kwargs.
    """
    config = dict(require_mapping(config, where or getattr(fn, "__name__", "config")))
    target = fn.__init__ if inspect.isclass(fn) else fn
    params = inspect.signature(target).parameters
    allowed = [name for name, p in params.items() if name != "self" and name not in exclude
               and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    check_keys(config, [*allowed, *also_allowed], where)
    return {key: value for key, value in config.items() if key not in also_allowed}


def require_keys(config: Mapping[str, Any], names: Collection[str], where: str) -> None:
    """One-line BadConfigError naming the keys of `names` that `config` lacks (a KeyError later
    would not say which block is incomplete)."""
    missing = [name for name in names if name not in config]
    if missing:
        raise BadConfigError(f"config '{where}' lacks {missing}")


def check_weights(weights: Mapping[str, Any] | None, allowed: Iterable[str], where: str) -> dict[str, float]:
    """Loss weights by name -> floats; a weight for a loss that does not exist is an error."""
    weights = require_mapping(weights, where)
    check_keys(weights, allowed, where)
    try:
        return {name: float(value) for name, value in weights.items()}
    except (TypeError, ValueError) as err:
        raise BadConfigError(f"config '{where}' must map loss names to numbers ({err})") from None


def plain_data(value: Any) -> Any:
    """A config value as plain YAML data (mappings -> dicts with str keys, tuples -> lists), so that
    what is saved reads back equal and configs from code compare equal to configs from files."""
    if isinstance(value, Mapping):
        return {str(k): plain_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_data(v) for v in value]
    return value


def differing_keys(mine: Any, theirs: Any, where: str) -> list[str]:
    """Dotted paths where config `mine` differs from `theirs` (a key only one has counts)."""
    if isinstance(mine, Mapping) and isinstance(theirs, Mapping):
        out = []
        for key in [*mine, *(k for k in theirs if k not in mine)]:
            out += differing_keys(mine.get(key), theirs.get(key), f"{where}.{key}")
        return out
    return [] if plain_data(mine) == plain_data(theirs) else [where]



def read_data_file(path: str | os.PathLike, what: str, fmt: str | None = None) -> Any:
    """A YAML or JSON file -> its data (`fmt` "yaml" | "json"; None: YAML for .yaml / .yml names, else
    JSON). Unreadable text or a parse error is a one-line BadConfigError "<what> is not valid YAML|JSON
    (...)" naming the file; whether the file exists and what the data must hold are the caller's checks."""
    path = Path(path)
    if (fmt or ("yaml" if path.suffix.lower() in (".yaml", ".yml") else "json")) == "yaml":
        import yaml

        fmt, parse, errors = "YAML", yaml.safe_load, (yaml.YAMLError, UnicodeDecodeError)
    else:
        fmt, parse, errors = "JSON", json.loads, (json.JSONDecodeError, UnicodeDecodeError)
    try:
        return parse(path.read_text())
    except errors as err:
        detail = getattr(err, "msg", None) or type(err).__name__
        raise BadConfigError(f"{what} is not valid {fmt} ({detail})", path) from None
