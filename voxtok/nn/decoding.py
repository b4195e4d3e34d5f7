"""Batched autoregressive decoding with a KV cache over a causal backbone fed with embeddings.

The CosyVoice-style LLM and Flow-Omni decode the same way and differ only in what one step
samples (a discrete token with repetition-aware sampling; a continuous frame from a flow head
plus a stop state). So the loop lives here once and takes the model's step as a callable:

    prefill the prefixes -> hidden -> step(hidden) -> outputs + embeddings to feed back -> ...

The bookkeeping it owns: prefixes are left-padded so every item's next position lands in the same
cache column (per-item position ids and the attention mask keep items independent of each other),
per-item minimum and maximum lengths, and finished items, which stay in the batch (no cache
surgery) but are masked out of what the step reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch
from torch import nn


@dataclass
class StepOutput:
    """What a model's step function returns for one decoding step of a batch of B items.

    emitted [B] bool: items whose output at this step counts (a subset of the active items).
    ended [B] bool: items that finish with this step (they get no further step).
    feed [B, width]: embeddings of this step's outputs, the next backbone input (None when nothing
        was emitted: decoding stops).
    value: the model's own result of the step (a token, a frame, ...), passed through untouched.
    """

    emitted: torch.Tensor
    ended: torch.Tensor
    feed: torch.Tensor | None
    value: Any = None


# step(step, hidden [B, width], active [B] bool, may_stop [B] bool) -> StepOutput. `active`: items
# still decoding (below their maximum, not ended); `may_stop`: items past their minimum length.
StepFunction = Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor], StepOutput]


def right_align(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Move each row's first lengths[b] entries to the end (left padding): x [B, N, d] -> [B, N, d].

    Batched KV-cached decoding appends one column per step to every row, so rows must end together.
    """
    size = x.shape[1]
    src = torch.arange(size, device=x.device)[None, :] - (size - lengths)[:, None]
    picked = x.gather(1, src.clamp(min=0)[..., None].expand_as(x))
    return torch.where((src >= 0)[..., None], picked, torch.zeros_like(picked))


def cache_argument(backbone: nn.Module) -> str:
    """The keyword `backbone.forward` takes its KV cache by: `cache` (transformers 5, where
    `past_key_values` is deprecated and goes away in 5.40) or `past_key_values` (transformers 4, the
    espnet backbone)."""
    import inspect

    return "cache" if "cache" in inspect.signature(backbone.forward).parameters else "past_key_values"


def returned_cache(out):
    """The KV cache a backbone returned: `out.cache` (transformers 5) or `out.past_key_values`."""
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


def decode_with_kv_cache(backbone: nn.Module, embeds: torch.Tensor, lengths: torch.Tensor, step: StepFunction,
                         min_steps: torch.Tensor, max_steps: torch.Tensor) -> Iterator[StepOutput]:
    """Decode after right-padded prefixes, one `StepOutput` per step while any item emits.

    backbone: a transformers-style causal model called with inputs_embeds, attention_mask,
        position_ids, use_cache and a KV cache (`cache_argument`) (e.g. `build_causal_backbone`).
    embeds [B, N, width]: the prefixes, right-padded; lengths [B]: their lengths.
    step: the model's step function (see `StepFunction`), called with the last hidden states.
    min_steps [B]: steps before an item may stop (`may_stop`); max_steps [B]: steps after which an
        item is finished whatever the step says.
    Stops when no item emits, when every item has ended, or after max(max_steps) steps. The model
    must be in eval mode and gradients off (the caller decides).
    """
    batch, device = embeds.shape[0], embeds.device
    lengths = lengths.to(device)
    # Bookkeeping stays on the CPU: the loop needs a Python bool per step anyway.
    min_steps, max_steps = min_steps.cpu(), max_steps.cpu()
    width = embeds.shape[1]
    cols = torch.arange(width, device=device)[None] - (width - lengths)[:, None]
    mask = cols >= 0
    out = backbone(inputs_embeds=right_align(embeds, lengths), attention_mask=mask.long(),
                   position_ids=cols.clamp(min=0), use_cache=True)
    cache_arg = cache_argument(backbone)
    cache, hidden = returned_cache(out), out.last_hidden_state[:, -1]
    next_pos = lengths.clone()
    active = torch.ones(batch, dtype=torch.bool)
    total = int(max_steps.max()) if batch else 0
    for index in range(total):
        active = active & (index < max_steps)
        if not bool(active.any()):
            return
        result = step(index, hidden, active.clone(), index >= min_steps)
        emitted = result.emitted.cpu() & active
        active = active & ~result.ended.cpu()
        if not bool(emitted.any()):
            return
        yield result
        if index + 1 == total or not bool(active.any()):
            return
        mask = torch.cat([mask, mask.new_ones(batch, 1)], dim=1)
        out = backbone(inputs_embeds=result.feed[:, None], attention_mask=mask.long(),
                       position_ids=next_pos[:, None], use_cache=True, **{cache_arg: cache})
        cache, hidden = returned_cache(out), out.last_hidden_state[:, -1]
        next_pos = next_pos + 1
