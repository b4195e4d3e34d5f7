"""Reading a CosyVoice release's cosyvoice.yaml (HyperPyYAML) as data, without executing it.

The release describes every model part as a HyperPyYAML object: `!new:module.Class` (an instance
built from the mapping below the tag), `!name:module.function` (a function with bound keyword
arguments), `!apply:module.function` (a call made while loading, e.g. seeding) and `!ref <key>`
(another entry's value). HyperPyYAML imports and runs all of them; a converter must not (nothing
from a user's folder is executed, and the reference code is not installed). So the tags are read
into `Tagged` records (kind, target, arguments) and the references are resolved, which is all a
converter needs to size VoxTok's models: e.g. `read_cosyvoice_yaml(p)["llm"]` is
`Tagged("new", "cosyvoice.llm.llm.TransformerLM", {...})` and `part(config, "llm", ...)` its
arguments after checking the class. Errors are one line naming the file.
"""

from __future__ import annotations

import ast
import operator
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from voxtok.errors import BadConfigError

WHAT = "a CosyVoice cosyvoice.yaml"
_REF = re.compile(r"<([^<>]+)>")
# YAML 1.2 floats without a dot ("1e-06", as in the release's cfm_params), which PyYAML's YAML 1.1
# resolver would leave as strings; HyperPyYAML (ruamel, YAML 1.2) reads them as floats.
_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$")


@dataclass(frozen=True)
class Tagged:
    """A HyperPyYAML object tag, not executed: kind "new" | "name" | "apply", the dotted `target`
    (class or function) and its arguments (a dict of keywords, or a list of positional ones)."""

    kind: str
    target: str
    args: Any


@dataclass(frozen=True)
class _Ref:
    expression: str  # "<key>" or an arithmetic expression over references, e.g. "<hop> * 2"


def _loader():
    import yaml

    class Loader(yaml.SafeLoader):
        """SafeLoader that records HyperPyYAML tags instead of rejecting or running them."""

    def tagged(loader, suffix, node):
        kind, _, target = suffix.partition(":")
        target = target.rstrip(",")  # PyYAML keeps the comma after a tag in a flow list ("[!name:f, ...]")
        if isinstance(node, yaml.MappingNode):
            args = loader.construct_mapping(node, deep=True)
        elif isinstance(node, yaml.SequenceNode):
            args = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_scalar(node)
            args = [value] if value not in ("", None) else {}
        return Tagged(kind, target, args)

    for kind in ("new", "name", "apply"):
        Loader.add_multi_constructor(f"!{kind}:", lambda loader, suffix, node, kind=kind:
                                     tagged(loader, f"{kind}:{suffix}", node))
    Loader.add_constructor("!ref", lambda loader, node: _Ref(str(loader.construct_scalar(node))))
    Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789"))
    return Loader


def read_cosyvoice_yaml(path: str | os.PathLike, what: str = WHAT) -> dict[str, Any]:
    """The release's YAML as plain data: tags as `Tagged`, `!ref`s replaced by their values.

    A missing, unreadable or non-mapping file is a one-line BadConfigError naming `path`.
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise BadConfigError(f"{what} not found", path)
    try:
        document = yaml.load(path.read_text(), Loader=_loader())  # noqa: S506 - a SafeLoader subclass
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise BadConfigError(f"cannot read {what} ({type(err).__name__}: "
                             f"{str(err).splitlines()[0][:160]})", path) from None
    if not isinstance(document, Mapping):
        raise BadConfigError(f"not {what}: it holds a {type(document).__name__}, not a mapping", path)
    return _resolve(document, document, path, depth=0)


def part(config: Mapping[str, Any], name: str, targets: Iterable[str], path: str | os.PathLike,
         what: str = WHAT) -> tuple[str, dict[str, Any]]:
    """(target, keyword arguments) of the top-level `!new:` object `name`, whose class must be one
    of `targets`; otherwise a one-line error naming what was found (e.g. a CosyVoice 2 `Qwen2LM`)."""
    targets = tuple(targets)
    value = config.get(name)
    if not isinstance(value, Tagged) or value.kind != "new":
        raise BadConfigError(f"not {what}: '{name}' is not a !new: object", path)
    if value.target not in targets:
        short = ", ".join(t.rsplit(".", 1)[-1] for t in targets)
        raise BadConfigError(f"'{name}' is {value.target}; supported: {short}", path)
    if not isinstance(value.args, Mapping):
        raise BadConfigError(f"'{name}' ({value.target}) has no keyword arguments", path)
    return value.target, dict(value.args)


def _resolve(value: Any, root: Mapping[str, Any], path: Path, depth: int) -> Any:
    if depth > 32:  # references that refer to each other
        raise BadConfigError(f"{WHAT}: !ref nesting too deep (a reference cycle?)", path)
    if isinstance(value, _Ref):
        return _resolve(_evaluate(value.expression, root, path), root, path, depth + 1)
    if isinstance(value, Tagged):
        return Tagged(value.kind, value.target, _resolve(value.args, root, path, depth + 1))
    if isinstance(value, Mapping):
        return {k: _resolve(v, root, path, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, root, path, depth + 1) for v in value]
    return value


def _lookup(key: str, root: Mapping[str, Any], path: Path) -> Any:
    """`<a>`, `<a.b>` or `<a[b]>`: a top-level entry, or an entry inside it."""
    node: Any = root
    for name in (k for k in re.split(r"[.\[\]]", key.strip()) if k):
        if isinstance(node, Tagged):
            node = node.args
        if not isinstance(node, Mapping) or name not in node:
            raise BadConfigError(f"!ref <{key}> names no entry of the file", path)
        node = node[name]
    return node


_OPERATORS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
              ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}


def _evaluate(expression: str, root: Mapping[str, Any], path: Path) -> Any:
    """A reference's value: the entry itself for "<key>", else the arithmetic over the entries."""
    whole = _REF.fullmatch(expression.strip())
    if whole:
        return _lookup(whole.group(1), root, path)
    values: list[Any] = []

    def placeholder(match: re.Match) -> str:
        values.append(_resolve(_lookup(match.group(1), root, path), root, path, 1))
        return f"_v{len(values) - 1}"

    text = _REF.sub(placeholder, expression)
    try:
        return _arithmetic(ast.parse(text, mode="eval").body, values)
    except (SyntaxError, ValueError, TypeError, ZeroDivisionError):
        raise BadConfigError(f"cannot evaluate !ref {expression!r} (only arithmetic on references)", path) from None


def _arithmetic(node: ast.AST, values: list[Any]) -> Any:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        return node.value
    if isinstance(node, ast.Name) and node.id.startswith("_v"):
        return values[int(node.id[2:])]
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        return _OPERATORS[type(node.op)](_arithmetic(node.left, values), _arithmetic(node.right, values))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_arithmetic(node.operand, values)
    raise ValueError("not arithmetic")
