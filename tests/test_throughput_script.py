"""benchmarks/speed/throughput.py runs end to end on a tiny corpus: a grid row (tokenize + decode) and
a scaling row come out as table lines with numbers. The measured table itself is docs/throughput.md's."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "speed" / "throughput.py"


def test_the_throughput_table_runs():
    run = subprocess.run([sys.executable, str(SCRIPT), "--configs", "wavtokenizer_tiny", "--utts", "5",
                          "--batch-sizes", "2", "--threads", "1", "--two-workers", "--scaling", "3",
                          "--scaling-workers", "1", "--clips", "3"], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    rows = [line.split("|")[1:-1] for line in run.stdout.splitlines() if line.startswith("| wavtokenizer_tiny")]
    assert len(rows) == 1
    config, batch, threads, utts, *numbers = (cell.strip() for cell in rows[0])
    assert (batch, threads, utts) == ("2", "1 x 1", "5") and len(numbers) == 8
    assert all(re.fullmatch(r"[0-9.]+", n) and float(n) > 0 for n in numbers[:-1]), numbers
    scaling = [line for line in run.stdout.splitlines() if line.startswith("| 3 |")]
    assert len(scaling) == 1 and scaling[0].count("|") == 9
