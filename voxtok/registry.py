"""The one registry and checkpoint format of every buildable VoxTok model.

Models register under a kind and a name (`@register("codec", "wavtokenizer")`) and provide
`from_config(dict)` and `to_config() -> dict`. Kinds:
    codec     audio <-> codes (wavtokenizer, dmcodec, fusecodec, s3)
    tts       the trained parts of a TTS system (llm, flow, flowomni, mel_vocoder, hift)
    pipeline  a TTS system assembled from parts by a manifest (cosyvoice, flowomni)

A checkpoint is a folder (format 2):
    config.yaml        the model config, exactly what `from_config` takes
    model.safetensors  the weights
    metadata.json      {kind, name, format, voxtok_version, weights_hash, info, extra}
`info` holds facts about the model readers need without loading it (a codec's rates);
`extra` holds what a model needs besides its weights (a TTS part's text frontend).
`load(path)` rebuilds any registered model from such a folder, like transformers' AutoModel, and
still reads the two layouts written before format 2 (codec folders with metadata `codec:`; TTS
folders with config.yaml {name, model, ...} and no metadata).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
from pathlib import Path
from typing import Any, Callable, ClassVar

import torch
import yaml

from voxtok.atomic import atomic_dir
from voxtok.checkpoint import write_weights
from voxtok.errors import BadConfigError

FORMAT_VERSION = 2
KINDS = ("codec", "tts", "pipeline")
# Importing these modules runs their @register decorators.
_BUILTIN_MODULES = {
    "codec": ("voxtok.codecs.wavtokenizer", "voxtok.codecs.dmcodec", "voxtok.codecs.fusecodec", "voxtok.codecs.s3",
              "voxtok.bench.ssl_units", "voxtok.codecs.s3_onnx"),
    "tts": ("voxtok.tts.llm", "voxtok.tts.flow", "voxtok.tts.flowomni", "voxtok.tts.vocoder", "voxtok.tts.hift"),
    "pipeline": ("voxtok.tts.cosyvoice", "voxtok.tts.flowomni_pipeline"),
}
_REGISTRY: dict[str, dict[str, type]] = {kind: {} for kind in KINDS}


def register(kind: str, name: str) -> Callable[[type], type]:
    """Class decorator: make the class buildable as `build(kind, name, config)` and loadable by `load`."""
    if kind not in KINDS:
        raise BadConfigError(f"unknown model kind '{kind}' (kinds: {', '.join(KINDS)})")

    def add(cls: type) -> type:
        known = _REGISTRY[kind].get(name)
        # Re-importing a module (tests, reloads) registers an equal class again: allowed.
        if known is not None and known.__qualname__ != cls.__qualname__:
            raise BadConfigError(f"{kind} name '{name}' is registered twice")
        cls.registry_kind, cls.registry_name = kind, name
        _REGISTRY[kind][name] = cls
        return cls

    return add


def registered(kind: str) -> dict[str, type]:
    """Name -> class of every registered model of `kind` (built-ins imported first)."""
    if kind not in KINDS:
        raise BadConfigError(f"unknown model kind '{kind}' (kinds: {', '.join(KINDS)})")
    for module in _BUILTIN_MODULES[kind]:
        importlib.import_module(module)
    return dict(_REGISTRY[kind])


def lookup(kind: str, name: str) -> type:
    """The class registered as (kind, name), or a one-line error listing the registered names."""
    classes = registered(kind)
    if name not in classes:
        raise BadConfigError(f"unknown {kind} '{name}' (registered: {', '.join(sorted(classes))})")
    return classes[name]


def build(kind: str, name: str, config: dict[str, Any]) -> Any:
    """A registered model built from its config dict (random weights)."""
    return lookup(kind, name).from_config(dict(config))


def file_hash(path: str | os.PathLike, length: int = 16) -> str:
    """First `length` hex digits of the file's SHA-256."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:length]


def _voxtok_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("voxtok")
    except PackageNotFoundError:
        return "unknown"


def save_model(model: torch.nn.Module, path: str | os.PathLike, info: dict[str, Any] | None = None,
               extra: dict[str, Any] | None = None) -> str:
    """Write `model`'s checkpoint folder atomically; returns the weights hash.

    `model` must be registered and have `to_config()`. `info` and `extra` go to metadata.json
    (see the module docstring); both must be YAML/JSON-plain.
    """
    kind, name = getattr(model, "registry_kind", None), getattr(model, "registry_name", None)
    if kind is None or not hasattr(model, "to_config"):
        raise BadConfigError(f"{type(model).__name__} is not a registered model with to_config()")
    with atomic_dir(path) as tmp:
        digest = file_hash(write_weights(model, tmp))
        (tmp / "config.yaml").write_text(yaml.safe_dump(model.to_config(), sort_keys=False))
        meta = {"kind": kind, "name": name, "format": FORMAT_VERSION, "voxtok_version": _voxtok_version(),
                "weights_hash": digest, "info": info or {}, "extra": extra or {}}
        (tmp / "metadata.json").write_text(json.dumps(meta, indent=2))
    return digest


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """metadata.json of a checkpoint folder in the format-2 layout, whatever layout it was written in.

    Old codec folders (format 1: `codec`, `checkpoint_hash`, rates) and old TTS folders (no
    metadata.json; config.yaml {name, model, ...extra}) are translated; anything else is an error.
    """
    path = Path(path)
    if not path.is_dir():
        raise BadConfigError("not a checkpoint folder (no such directory)", path)
    meta_file, config_file = path / "metadata.json", path / "config.yaml"
    if meta_file.is_file():
        try:
            meta = json.loads(meta_file.read_text())
        except json.JSONDecodeError as err:
            raise BadConfigError(f"metadata.json is not valid JSON ({err.msg})", meta_file) from None
        if "kind" in meta:
            if int(meta.get("format", 0)) > FORMAT_VERSION:
                raise BadConfigError(f"checkpoint format {meta['format']} is newer than this VoxTok reads "
                                     f"({FORMAT_VERSION}); upgrade VoxTok", path)
            return meta
        if "codec" in meta:  # format 1: codecs
            info = {k: meta[k] for k in ("sample_rate", "frame_rate", "n_q", "codebook_size") if k in meta}
            return {"kind": "codec", "name": meta["codec"], "format": 1, "voxtok_version": "unknown",
                    "weights_hash": meta.get("checkpoint_hash", "untrained"), "info": info, "extra": {}}
        raise BadConfigError("metadata.json names no model kind (not a VoxTok checkpoint)", meta_file)
    if config_file.is_file():  # format 1: TTS parts, everything in config.yaml
        config = yaml.safe_load(config_file.read_text()) or {}
        if isinstance(config, dict) and "name" in config and "model" in config:
            extra = {k: v for k, v in config.items() if k not in ("name", "model")}
            digest = file_hash(path / "model.safetensors") if (path / "model.safetensors").is_file() else "untrained"
            return {"kind": "tts", "name": config["name"], "format": 1, "voxtok_version": "unknown",
                    "weights_hash": digest, "info": {}, "extra": extra}
    raise BadConfigError("not a VoxTok checkpoint folder (no metadata.json; re-export it with "
                         "`model.save_pretrained(dir)` or convert it with `voxtok convert`)", path)


def read_config(path: str | os.PathLike, meta: dict[str, Any]) -> dict[str, Any]:
    """The model config stored in a checkpoint folder (format 1 TTS folders nest it under `model`)."""
    config_file = Path(path) / "config.yaml"
    if not config_file.is_file():
        raise BadConfigError("checkpoint lacks config.yaml", path)
    config = yaml.safe_load(config_file.read_text()) or {}
    if meta["format"] == 1 and meta["kind"] == "tts":
        config = config["model"]
    return config


def load_state(model: torch.nn.Module, path: str | os.PathLike, map_location: str | torch.device = "cpu") -> None:
    """Load model.safetensors of `path` into `model`; keys must match exactly (one-line error otherwise)."""
    from safetensors.torch import load_file

    weights = Path(path) / "model.safetensors"
    if not weights.is_file():
        raise BadConfigError("checkpoint lacks model.safetensors", path)
    state = load_file(str(weights), device=str(map_location))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise BadConfigError(f"checkpoint weights do not fit its config (missing {missing[:3]}, "
                             f"unexpected {unexpected[:3]})", path)


def load(path: str | os.PathLike, map_location: str | torch.device = "cpu", kind: str | None = None) -> Any:
    """Any VoxTok checkpoint folder -> the model it holds, in eval mode (local paths only), on the
    device `map_location` names (cpu, cuda, cuda:N, auto; an absent one is a one-line BadConfigError
    before anything is read).

    The model gets `checkpoint_hash` (its weights hash) and `extra` (metadata extra) attributes.
    A pipeline manifest (a YAML file, or an exp folder holding pipeline.yaml) loads the pipeline.
    With `kind`, a checkpoint of another kind is an error.
    """
    from voxtok.device import place, resolve_device

    device = resolve_device(map_location)
    path = Path(path)
    manifest = _manifest_path(path)
    if manifest is not None:
        if kind not in (None, "pipeline"):
            raise BadConfigError(f"this is a pipeline manifest, not a {kind} checkpoint", manifest)
        from voxtok.tts.manifest import read_manifest

        spec = read_manifest(manifest)
        return lookup("pipeline", spec["model"]).from_manifest(spec, map_location=device)
    meta = read_metadata(path)
    if kind is not None and meta["kind"] != kind:
        raise BadConfigError(f"checkpoint holds a {meta['kind']} ('{meta['name']}'), not a {kind}", path)
    model = lookup(meta["kind"], meta["name"]).from_config(read_config(path, meta))
    # Weights are read into the CPU-built model, then the whole model moves once (load_state_dict
    # copies into the existing parameters, so reading them onto a GPU first would not place it).
    load_state(model, path)
    model.checkpoint_hash = meta["weights_hash"]
    model.extra = dict(meta.get("extra") or {})
    return place(model, device)


def _manifest_path(path: Path) -> Path | None:
    # A .yaml path is always a manifest, so a missing one gets the manifest reader's error
    # ("train the TTS stages first") rather than a generic one.
    if path.suffix in (".yaml", ".yml"):
        return path
    if path.is_dir() and not (path / "metadata.json").is_file() and (path / "pipeline.yaml").is_file():
        return path / "pipeline.yaml"
    return None


class SavesPretrained:
    """Mixin for registered nn.Modules: `save_pretrained(dir)` and `from_pretrained(dir)`.

    Subclasses may override `checkpoint_info()` (facts for metadata `info`); `extra` is kept on the
    instance (set by `load`, or by the trainer before saving) and written back.
    """

    registry_kind: ClassVar[str]
    registry_name: ClassVar[str]
    checkpoint_hash: str = "untrained"

    def checkpoint_info(self) -> dict[str, Any]:
        """Facts about the model stored in metadata.json `info` (overridden by codecs: rates)."""
        return {}

    def save_pretrained(self, path: str | os.PathLike, extra: dict[str, Any] | None = None) -> Path:
        """Write config.yaml + model.safetensors + metadata.json into `path` atomically.

        `extra` (default: the instance's `extra`) is stored with the weights for the model's users.
        """
        if extra is not None:
            self.extra = dict(extra)
        self.checkpoint_hash = save_model(self, path, self.checkpoint_info(), getattr(self, "extra", None))
        return Path(path)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, map_location: str | torch.device = "cpu"):
        """Load a checkpoint folder that must hold this very class (eval mode)."""
        model = load(path, map_location=map_location, kind=cls.registry_kind)
        if not isinstance(model, cls):
            raise BadConfigError(f"checkpoint holds {model.registry_kind} '{model.registry_name}', "
                                 f"not '{cls.registry_name}'", path)
        return model
