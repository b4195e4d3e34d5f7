"""Corpus-scale jobs over several workers: one per GPU, or N CPU processes, with one progress bar.

A job is a list of items (e.g. (utt, wav path)) with a cost each (e.g. seconds of audio). `balance`
deals them to workers so each gets about the same total cost (longest first, to the least loaded:
workers finish together). `run_workers` starts one process per worker (spawned: CUDA cannot be
forked), passes each its device and its items, and draws one progress bar over the whole corpus
from the counts the workers report. A single CPU worker runs in this process (no start-up cost).

The worker function runs in a child process, so it must be importable (a module-level function);
it gets `(device, items, progress, *args)` and calls `progress(n)` after finishing n more items.
What it returns comes back in worker order. A failing worker's exception is re-raised here once
the others have stopped, so a killed or failed run leaves what the others completed.
"""

from __future__ import annotations

import heapq
import multiprocessing
import queue as queue_module
import sys
import threading
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Callable, Sequence, TypeVar

Item = TypeVar("Item")
Progress = Callable[[int], None]


def balance(items: Sequence[Item], costs: Sequence[float], n_workers: int) -> list[list[Item]]:
    """Deal `items` to `n_workers` lists of about equal total cost (longest-processing-time first);
    each list keeps the items in the order they were given, so workers see their own order."""
    if len(items) != len(costs):
        raise ValueError(f"{len(items)} items but {len(costs)} costs")
    n_workers = max(1, int(n_workers))
    heap = [(0.0, w) for w in range(n_workers)]
    owner = [0] * len(items)
    for i in sorted(range(len(items)), key=lambda i: -float(costs[i])):
        load, w = heapq.heappop(heap)
        owner[i] = w
        heapq.heappush(heap, (load + float(costs[i]), w))
    parts: list[list[Item]] = [[] for _ in range(n_workers)]
    for i, item in enumerate(items):
        parts[owner[i]].append(item)
    return parts


class ProgressBar:
    """One bar over the whole corpus (tqdm on stderr; disabled when `total` is 0 or `enabled` is false)."""

    def __init__(self, total: int, desc: str, enabled: bool = True):
        self.bar = None
        if enabled and total > 0:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="utt", file=sys.stderr, dynamic_ncols=True,
                            mininterval=1.0, smoothing=0.1)

    def update(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _child(fn: Callable[..., Any], device: str, items: list, counts, rank: int, threads: int | None, args: tuple):
    import torch

    if threads:
        torch.set_num_threads(threads)
    if device.startswith("cuda"):
        torch.cuda.set_device(torch.device(device))
    return fn(device, items, lambda n: counts.put((rank, n)), *args)


def run_workers(fn: Callable[..., Any], parts: Sequence[list], devices: Sequence[str], args: tuple = (),
                desc: str = "items", progress: bool = True, threads: int | None = None) -> list[Any]:
    """Run `fn(device, items, progress, *args)` once per worker: parts[i] on devices[i].

    `threads`: torch threads per worker (default: 1 per CPU worker when there are several, else
    torch's own count). Returns the workers' results in order; raises the first worker error.
    """
    if len(parts) != len(devices):
        raise ValueError(f"{len(parts)} parts for {len(devices)} devices")
    bar = ProgressBar(sum(len(p) for p in parts), desc, progress)
    try:
        if len(parts) == 1 and devices[0] == "cpu":
            return [fn(devices[0], list(parts[0]), bar.update, *args)]
        if threads is None and all(d == "cpu" for d in devices):
            threads = 1
        context = multiprocessing.get_context("spawn")
        with context.Manager() as manager:
            counts = manager.Queue()
            stop = threading.Event()

            def drain():
                while not stop.is_set():
                    try:
                        bar.update(counts.get(timeout=0.2)[1])
                    except queue_module.Empty:
                        continue
                    except (EOFError, OSError):  # the manager went away at shutdown
                        return

            reader = threading.Thread(target=drain, daemon=True)
            reader.start()
            try:
                with ProcessPoolExecutor(len(parts), mp_context=context) as pool:
                    futures = [pool.submit(_child, fn, device, list(part), counts, rank, threads, args)
                               for rank, (device, part) in enumerate(zip(devices, parts))]
                    return [f.result() for f in futures]
            finally:
                stop.set()
                reader.join()
    finally:
        bar.close()
