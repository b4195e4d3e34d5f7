"""Metric failures: a metric that cannot score a signal returns NaN, and the benchmark counts why.

Shared by the intrusive metrics (voxtok.bench.metrics) and the quality predictors (voxtok.bench.mos),
so a run can report how many scores of each metric are missing instead of silently averaging them away.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter

import numpy as np

from voxtok.audio import SILENCE_PEAK

_FAILURES: Counter = Counter()


def failed(metric: str, reason: str) -> float:
    """Record that `metric` could not be computed and return NaN in its place."""
    _FAILURES[metric] += 1
    warnings.warn(f"{metric} is NaN: {reason}", RuntimeWarning, stacklevel=3)
    return math.nan


def is_silent(x: np.ndarray) -> bool:
    """True for an empty signal or one whose peak is below the silence threshold (x: any shape)."""
    return x.size == 0 or float(np.abs(x).max()) < SILENCE_PEAK


def metric_failures() -> dict[str, int]:
    """How many times each metric returned NaN since the last reset: {metric name: count}."""
    return dict(_FAILURES)


def reset_metric_failures() -> None:
    """Zero the failure counts (e.g. at the start of a benchmark run)."""
    _FAILURES.clear()
