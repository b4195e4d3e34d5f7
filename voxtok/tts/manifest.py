"""Pipeline manifests: the YAML file that names the trained parts of a TTS pipeline.

    model: cosyvoice            # the registered pipeline (voxtok.registry kind "pipeline")
    llm: llm/model
    flow: flow/model
    vocoder: vocoder/model
    tokenizer: ../s3/model      # the speech tokenizer the LLM/flow were trained on
    speakers: ../../dump/mini/spk/train   # optional: spk2embedding store for `sft` mode
    speaker_encoder: ../speaker/campplus.onnx   # optional: CAM++ prompt x-vectors (default resemblyzer)

Part paths are stored relative to the manifest's folder (so an exp dir can be moved) and read back
as absolute paths. Which parts a model needs is the pipeline class's business (`check_manifest`);
this module only reads and writes the file, so it imports no model code (`voxtok.registry.load`
reads manifests through it without an import cycle). The recipe writes its manifests with
`voxtok tts manifest` (voxtok/cli/tts.py), which calls `write_manifest`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from voxtok.atomic import atomic_write
from voxtok.config import read_data_file
from voxtok.errors import BadConfigError


class Manifest(dict):
    """A manifest's entries (part paths absolute) plus `path`, the file they were read from."""

    def __init__(self, entries: dict[str, Any], path: str | os.PathLike):
        super().__init__(entries)
        self.path = Path(path)


def read_manifest(path: str | os.PathLike) -> Manifest:
    """Read a pipeline manifest; relative part paths become absolute (relative to the manifest)."""
    path = Path(path)
    if not path.is_file():
        raise BadConfigError("pipeline manifest not found (train the TTS stages first)", path)
    spec = read_data_file(path, "pipeline manifest", "yaml")
    if not isinstance(spec, dict) or "model" not in spec:
        raise BadConfigError("pipeline manifest lacks `model:` (the pipeline name, e.g. cosyvoice)", path)
    for key, value in spec.items():
        if key != "model" and value is not None and not isinstance(value, str):
            raise BadConfigError(f"manifest entry '{key}' must be a path, got {type(value).__name__}", path)
    return Manifest({k: v if k == "model" or v is None or os.path.isabs(v) else str((path.parent / v).resolve())
                     for k, v in spec.items()}, path)


def write_manifest(path: str | os.PathLike, spec: dict[str, Any]) -> Path:
    """Write `spec` ({model: name, part: path, ...}) to `path` atomically; returns `path`.

    Part paths (absolute, or relative to the current directory) are stored relative to the
    manifest's folder; None (an optional part left out) is stored as null. Both sides are resolved
    first, like `realpath --relative-to`, so a symlinked exp dir reads back the same folders.
    """
    path = Path(path)
    folder = os.path.realpath(path.parent)
    entries = {k: v if k == "model" or v is None else os.path.relpath(os.path.realpath(v), folder)
               for k, v in spec.items()}
    with atomic_write(path) as f:
        f.write(yaml.safe_dump(entries, sort_keys=False))
    return path
