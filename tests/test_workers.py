"""voxtok/workers.py: cost-balanced dealing and the multi-process runner (results in worker order,
progress counted over the whole corpus, a worker's error raised)."""

from __future__ import annotations

import pytest

from voxtok.workers import balance, run_workers


def square_all(device, items, progress, offset):
    out = []
    for x in items:
        out.append((device, x * x + offset))
        progress(1)
    return out


def fail_on_three(device, items, progress):
    if 3 in items:
        raise ValueError("item 3 is bad")
    return len(items)


def test_balance_keeps_every_item_once_and_evens_the_load():
    items = list(range(10))
    costs = [10, 1, 1, 1, 1, 1, 1, 1, 1, 2]
    parts = balance(items, costs, 3)
    assert sorted(x for p in parts for x in p) == items
    loads = sorted(sum(costs[x] for x in p) for p in parts)
    assert loads[-1] == 10 and loads[0] >= 4  # the long item alone; the rest split evenly
    assert all(p == sorted(p) for p in parts)  # each part keeps the given order
    with pytest.raises(ValueError):
        balance([1, 2], [1.0], 2)


def test_one_cpu_worker_runs_in_process():
    seen = []
    result = run_workers(lambda d, items, progress: seen.extend(items) or len(items), [[1, 2, 3]], ["cpu"],
                         progress=False)
    assert result == [3] and seen == [1, 2, 3]


def test_two_processes_give_results_in_worker_order():
    parts = balance(list(range(7)), [1.0] * 7, 2)
    results = run_workers(square_all, parts, ["cpu", "cpu"], args=(1,), desc="squares")
    assert [[x for _, x in r] for r in results] == [[x * x + 1 for x in p] for p in parts]
    assert all(device == "cpu" for r in results for device, _ in r)


def test_a_worker_error_is_raised():
    with pytest.raises(ValueError, match="item 3"):
        run_workers(fail_on_three, [[1, 2], [3, 4]], ["cpu", "cpu"], progress=False)
