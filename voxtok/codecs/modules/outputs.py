"""What a generator's training forward hands the GAN trainer (codecs and the mel vocoder alike).

Kept apart from any model so that the trainer, the vocoder and every codec import a type, not
another model's file.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from voxtok.codecs.modules.quantize import QuantizerOutput


@dataclass
class GeneratorOutput:
    """One training forward of a GAN generator.

    recon: [B, 1, T] reconstruction trimmed to the input length; losses: unweighted auxiliary
    losses by name (the trainer weights them); stats: floats for logging; quantizer: the
    quantizer's output (codes [B, Q, T']) when the generator has one and used it.
    """

    recon: torch.Tensor
    losses: dict[str, torch.Tensor] = field(default_factory=dict)
    stats: dict[str, float] = field(default_factory=dict)
    quantizer: QuantizerOutput | None = None


def quantizer_stats(q: QuantizerOutput) -> dict[str, float]:
    """Perplexity and batch usage of each of the Q codebooks of q (codes [B, Q, T']), as loggable
    floats named perplexity_q<i> / usage_q<i>."""
    stats = {}
    for i in range(q.codes.shape[1]):
        if q.perplexity is not None:
            stats[f"perplexity_q{i}"] = float(q.perplexity[i])
        if q.batch_usage is not None:
            stats[f"usage_q{i}"] = float(q.batch_usage[i])
    return stats
