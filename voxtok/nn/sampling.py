"""Per-item seeds: the one rule every sampler in VoxTok follows.

Item i of a batch called with seed s uses seed s + i, so a batch reproduces one-by-one calls with
seeds s, s + 1, ... (the pipelines rely on this: batch synthesis equals single synthesis). A
sequence gives each item its own seed; None draws fresh seeds from torch's global generator (so
`torch.manual_seed` still makes an unseeded run repeatable). Each item then draws from its own
generator, which keeps its result independent of what else is in the batch.
"""

from __future__ import annotations

import numbers
from typing import Sequence

import torch

from voxtok.errors import BadConfigError

Seed = int | Sequence[int] | None


def item_seeds(seed: Seed, batch: int) -> list[int]:
    """One int seed per batch item: [seed + i for i < batch], `seed` itself when it is a sequence
    of `batch` ints, or fresh seeds when it is None. A sequence of another length is a BadConfigError."""
    if seed is None:
        return torch.randint(0, 2 ** 62, (batch,)).tolist()
    if isinstance(seed, numbers.Integral):
        return [int(seed) + i for i in range(batch)]
    seeds = [int(s) for s in seed]
    if len(seeds) != batch:
        raise BadConfigError(f"{len(seeds)} seeds for a batch of {batch}")
    return seeds


def item_generators(seed: Seed, batch: int) -> list[torch.Generator]:
    """One CPU torch.Generator per batch item, seeded by `item_seeds(seed, batch)`."""
    return [torch.Generator().manual_seed(s) for s in item_seeds(seed, batch)]
