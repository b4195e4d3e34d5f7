"""A local Hugging Face model folder (the layout `save_pretrained` writes): its path and config.json.

Only local folders are read: a path that is not a directory is an error here, before transformers
could take it for a Hub repository id and try the network.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from voxtok.config import read_data_file
from voxtok.errors import BadConfigError


def hf_folder(path: str | os.PathLike | None, where: str) -> Path:
    """`path` as an existing local directory, else a one-line BadConfigError naming `where`
    (the config key or argument that gave it)."""
    if path is None or not str(path).strip():
        raise BadConfigError(f"{where} is empty: set it to a local Hugging Face model folder")
    folder = Path(str(path)).expanduser()
    if not folder.is_dir():
        raise BadConfigError(f"{where}: no such folder (a local Hugging Face model folder is needed; "
                             "nothing is downloaded)", folder)
    return folder


def read_hf_config(folder: str | os.PathLike, required: bool = True) -> dict[str, Any]:
    """The folder's config.json as a dict ({} when absent and not `required`); unreadable or
    non-object JSON is a one-line BadConfigError."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        if required:
            raise BadConfigError("no config.json: not a Hugging Face model folder", folder)
        return {}
    config = read_data_file(path, "config.json", "json")
    if not isinstance(config, dict):
        raise BadConfigError("config.json does not hold a JSON object", path)
    return config
