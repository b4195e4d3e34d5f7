"""Strict reading of the parts of a codec's `model:` config block that several codecs share.

Errors name the key's path from the `model:` block of configs/codec/*.yaml (e.g.
`model.quantizer.decay_rate`), as `voxtok.config` does for every config family.
"""

from __future__ import annotations

from typing import Any, Collection, Mapping

from torch import nn

from voxtok.codecs.modules.quantize import QUANTIZERS, build_quantizer
from voxtok.config import kwargs_for, require_mapping
from voxtok.errors import BadConfigError

# Root of the paths named in errors: the `model:` block of a codec config.
MODEL = "model"


def quantizer_from_config(block: Mapping[str, Any] | None, dim: int, where: str = f"{MODEL}.quantizer",
                          kinds: Collection[str] = tuple(QUANTIZERS), default_kind: str = "rvq", why: str = "",
                          caller_keys: Collection[str] = ()) -> tuple[nn.Module, int, dict[str, Any]]:
    """A codec's `quantizer:` block -> (quantizer, warmup_steps, {caller key: value}).

    Keys: `kind` (one of `kinds`; `why` says why others are refused), `warmup_steps` (updates the
    codec trains with the quantizer bypassed, 0 = none), `caller_keys` (options the codec reads
    itself, e.g. S3's `normalize`; returned in the dict) and the constructor options of the kind's
    class except `dim`, which is the codec's latent width D. Anything else is a BadConfigError
    naming its path. The quantizer maps latents [B, D, T'] to codes [B, Q, T'].
    """
    options = require_mapping(block, where)
    kind = options.get("kind", default_kind)
    if kind not in kinds:
        raise BadConfigError(f"config '{where}.kind' must be {' or '.join(repr(k) for k in kinds)}{why}, "
                             f"got {kind!r}")
    own = {key: options[key] for key in caller_keys if key in options}
    warmup_steps = int(options.get("warmup_steps", 0))
    options = kwargs_for(QUANTIZERS[kind], options, where, exclude=("dim",),
                         also_allowed=("kind", "warmup_steps", *caller_keys))
    return build_quantizer(kind, dim=dim, **options), warmup_steps, own
