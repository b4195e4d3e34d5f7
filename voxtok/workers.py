"""Corpus-scale jobs over several workers: one per GPU, or N CPU processes, with one progress bar.

A job is a list of items (e.g. (utt, wav path)) with a cost each (e.g. seconds of audio). `balance`
deals them to workers so each gets about the same total cost (longest first, to the least loaded:
workers finish together). `run_workers` starts one process per worker (spawned: CUDA cannot be
forked), passes each its device and its items, and draws one progress bar over the whole corpus
from the counts the workers report. A single CPU worker runs in this process (no start-up cost).

The worker function runs in a child process, so it must be importable (a module-level function);
it gets `(device, items, progress, *args)` (with `ranked`, `(device, items, progress, rank, *args)`:
a worker that writes files names them by its rank) and calls `progress(n)` after finishing n more
items. What it returns comes back in worker order. A failing worker's exception is re-raised here
once the others have stopped, so a killed or failed run leaves what the others completed. A worker
whose parent dies (killed by a scheduler, Ctrl-C'd twice) stops too: a rerun must never find an
orphan of the killed run still writing into the same output.
"""

from __future__ import annotations

import heapq
import multiprocessing
import os
import queue as queue_module
import sys
import threading
import time
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


def progress_wanted(setting: bool | None = True) -> bool:
    """Whether to draw progress bars: `setting` (a config's `progress`, None = yes) and not turned off
    for the whole run with VOXTOK_PROGRESS=0 (the recipe tests' logs, CI)."""
    return (setting is None or bool(setting)) and os.environ.get("VOXTOK_PROGRESS", "1") != "0"


class ProgressBar:
    """One bar over the whole corpus (tqdm on stderr; disabled when `total` is 0, `enabled` is false
    or VOXTOK_PROGRESS=0)."""

    def __init__(self, total: int, desc: str, enabled: bool = True):
        self.bar = None
        if progress_wanted(enabled) and total > 0:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="utt", file=sys.stderr, dynamic_ncols=True,
                            mininterval=1.0, smoothing=0.1)

    def update(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _exit_with_parent(parent: int, every: float = 1.0) -> None:
    """Watch (in a daemon thread) for the parent `parent` to go away, then end this process at once:
    a spawned worker is not killed with its parent, and one left running would write into the
    output a rerun is resuming."""

    def watch():
        while os.getppid() == parent:
            time.sleep(every)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="exit-with-parent").start()


_COUNTS = None  # the worker process's end of the progress queue (set by _start_child)


def _start_child(counts, parent: int) -> None:
    # The queue comes through the pool's initializer: a multiprocessing.Queue may only be handed
    # over when a process starts (no Manager process, which would outlive a killed parent).
    global _COUNTS
    _COUNTS = counts
    _exit_with_parent(parent)


def _report(rank: int, n: int) -> None:
    _COUNTS.put((rank, n))


def _child(fn: Callable[..., Any], device: str, items: list, rank: int, threads: int | None, args: tuple,
           ranked: bool):
    import functools

    import torch

    if threads:
        torch.set_num_threads(threads)
    if device.startswith("cuda"):
        torch.cuda.set_device(torch.device(device))
    head = (rank,) if ranked else ()
    return fn(device, items, functools.partial(_report, rank), *head, *args)


def run_workers(fn: Callable[..., Any], parts: Sequence[list], devices: Sequence[str], args: tuple = (),
                desc: str = "items", progress: bool = True, threads: int | None = None,
                ranked: bool = False) -> list[Any]:
    """Run `fn(device, items, progress, *args)` once per worker: parts[i] on devices[i]; with `ranked`,
    `fn(device, items, progress, rank, *args)` (rank = i).

    `threads`: torch threads per worker (default: 1 per CPU worker when there are several, else
    torch's own count). Returns the workers' results in order; raises the first worker error.
    """
    if len(parts) != len(devices):
        raise ValueError(f"{len(parts)} parts for {len(devices)} devices")
    bar = ProgressBar(sum(len(p) for p in parts), desc, progress)
    try:
        if len(parts) == 1 and devices[0] == "cpu":
            return [fn(devices[0], list(parts[0]), bar.update, *((0,) if ranked else ()), *args)]
        if threads is None and all(d == "cpu" for d in devices):
            threads = 1
        context = multiprocessing.get_context("spawn")
        counts = context.Queue()
        stop = threading.Event()

        def drain():
            while True:
                try:
                    bar.update(counts.get(timeout=0.2)[1])
                except queue_module.Empty:
                    if stop.is_set():  # the workers have ended and everything they sent is read
                        return
                except (EOFError, OSError):
                    return

        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        try:
            with ProcessPoolExecutor(len(parts), mp_context=context, initializer=_start_child,
                                     initargs=(counts, os.getpid())) as pool:
                futures = [pool.submit(_child, fn, device, list(part), rank, threads, args, ranked)
                           for rank, (device, part) in enumerate(zip(devices, parts))]
                return [f.result() for f in futures]
        finally:
            stop.set()
            reader.join()
            counts.close()
    finally:
        bar.close()
