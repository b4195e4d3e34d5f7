"""Reading the class-path YAML of Vocos-family releases (Vocos, and WavTokenizer, which forks it).

Each model part is a block {class_path: module.Class, init_args: {...}} (jsonargparse / Lightning
CLI style). A release's config.yaml holds the blocks at the top level; a training config holds them
under `model.init_args`. Errors are one line naming the file; `what` names the expected file in
them ("a Vocos config.yaml").
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Mapping

from voxtok.errors import BadConfigError


def read_class_blocks(path: str | os.PathLike, what: str) -> tuple[Any, Mapping[str, Any]]:
    """(the whole YAML document, the mapping that holds the part blocks: feature_extractor, backbone, head)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise BadConfigError(f"{what} not found", path)
    try:
        document = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise BadConfigError(f"cannot read {what} ({type(err).__name__})", path) from None
    blocks = document
    model = document.get("model") if isinstance(document, Mapping) else None
    if isinstance(model, Mapping) and "feature_extractor" not in document:
        blocks = model.get("init_args", model)  # a training config
    if not isinstance(blocks, Mapping) or not isinstance(blocks.get("feature_extractor"), Mapping):
        keys = sorted(document)[:5] if isinstance(document, Mapping) else type(document).__name__
        raise BadConfigError(f"not {what}: no feature_extractor / backbone / head blocks (it has {keys})", path)
    return document, blocks


def class_block(blocks: Mapping[str, Any], name: str, what: str, path: str | os.PathLike) -> tuple[str, dict[str, Any]]:
    """(class_path, init_args) of part `name` (check the class before the arguments: another class
    has other arguments, and naming it is the clearer error)."""
    block = blocks.get(name)
    if not isinstance(block, Mapping) or not isinstance(block.get("class_path"), str):
        raise BadConfigError(f"not {what}: '{name}' has no class_path", path)
    args = block.get("init_args") or {}
    if not isinstance(args, Mapping):
        raise BadConfigError(f"{name}.init_args must be a mapping", path)
    return block["class_path"], dict(args)


def check_init_args(name: str, args: Mapping[str, Any], allowed: Iterable[str],
                    path: str | os.PathLike) -> dict[str, Any]:
    """`args` as a dict, or a one-line error naming the init_args of part `name` outside `allowed`."""
    allowed = tuple(allowed)
    unknown = sorted(set(args) - set(allowed))
    if unknown:
        raise BadConfigError(f"unknown {name}.init_args {unknown} (allowed: {', '.join(allowed)})", path)
    return dict(args)
