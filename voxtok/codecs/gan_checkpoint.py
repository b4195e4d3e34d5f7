"""Discriminators saved beside a codec checkpoint, so fine-tuning resumes the GAN where it stopped.

A VoxTok codec folder (config.yaml + model.safetensors + metadata.json) may also hold

    discriminators.safetensors   the `CombinedDiscriminator` state_dict (GANModule.discriminator)
    discriminators.yaml          {discriminators: {names, options}, weights_hash}: the config block that
                                 builds them (`voxtok.codecs.gan_config.read_discriminators`) and the
                                 hash of the weights file, so a stale pair is refused

The GAN trainer's export (voxtok.recipes.train_codec) and `voxtok convert wavtokenizer` write them;
`train_codec init_from=DIR` reads them. Each file is written atomically; the weights go first and the
yaml, which names their hash, last.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import torch
import yaml

from voxtok.atomic import atomic_write
from voxtok.config import plain_data
from voxtok.errors import BadConfigError

WEIGHTS = "discriminators.safetensors"
CONFIG = "discriminators.yaml"


def save_discriminators(folder: str | os.PathLike, disc_config: Mapping[str, Any],
                        disc_state_or_module: Mapping[str, torch.Tensor] | torch.nn.Module) -> Path:
    """Write discriminators.safetensors + discriminators.yaml into the checkpoint folder `folder`.

    `disc_config`: the `discriminators:` block {names, options} that builds them (checked strictly);
    `disc_state_or_module`: their state_dict, or the module. Returns the weights file.
    """
    from safetensors.torch import save

    from voxtok.codecs.gan_config import read_discriminators
    from voxtok.registry import file_hash

    folder = Path(folder)
    if not folder.is_dir():
        raise BadConfigError("cannot save discriminators: no such checkpoint folder", folder)
    names, options = read_discriminators(disc_config, "discriminators")
    state = (disc_state_or_module.state_dict() if isinstance(disc_state_or_module, torch.nn.Module)
             else disc_state_or_module)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    if not tensors:
        raise BadConfigError("cannot save discriminators: the state holds no tensors", folder)
    with atomic_write(folder / WEIGHTS, "wb") as handle:
        handle.write(save(tensors))
    block = {"discriminators": {"names": list(names), "options": plain_data(options)},
             "weights_hash": file_hash(folder / WEIGHTS)}
    with atomic_write(folder / CONFIG) as handle:
        handle.write("# The GAN discriminators of this checkpoint (voxtok.codecs.gan_checkpoint)\n")
        handle.write(yaml.safe_dump(block, sort_keys=False))
    return folder / WEIGHTS


def load_discriminators(folder: str | os.PathLike) -> tuple[dict[str, Any], dict[str, torch.Tensor]] | None:
    """(the `discriminators:` block {names, options}, state_dict) saved in checkpoint folder `folder`,
    or None when it holds no discriminators. A half-written, stale or unreadable pair is a one-line
    BadConfigError."""
    from safetensors.torch import load_file

    from voxtok.codecs.gan_config import read_discriminators
    from voxtok.registry import file_hash

    folder = Path(folder)
    weights, config = folder / WEIGHTS, folder / CONFIG
    if not weights.exists() and not config.exists():
        return None
    if not (weights.is_file() and config.is_file()):
        have, lack = (WEIGHTS, CONFIG) if weights.is_file() else (CONFIG, WEIGHTS)
        raise BadConfigError(f"checkpoint has {have} without {lack} (an interrupted save?)", folder)
    try:
        block = yaml.safe_load(config.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise BadConfigError(f"cannot read {CONFIG} ({type(err).__name__})", config) from None
    if not isinstance(block, Mapping) or "discriminators" not in block:
        raise BadConfigError(f"{CONFIG} has no 'discriminators' block", config)
    if block.get("weights_hash") != file_hash(weights):
        raise BadConfigError(f"{WEIGHTS} is not the file {CONFIG} was written for (weights hash differs)", folder)
    names, options = read_discriminators(block["discriminators"], f"{CONFIG}: discriminators")
    try:
        state = load_file(str(weights))
    except Exception as err:  # a corrupt file: one line
        raise BadConfigError(f"cannot read {WEIGHTS} ({type(err).__name__})", weights) from None
    return {"names": names, "options": options}, state
