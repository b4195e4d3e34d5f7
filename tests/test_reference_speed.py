"""benchmarks/speed/reference_speed.py runs: its systems convert, compute what the packages compute and get timed.

Short inputs and one run per side; the speed table itself is docs/codec_speed.md's.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "speed" / "reference_speed.py"

pytest.importorskip("encodec", reason="the baselines extra (encodec) is not installed")
pytest.importorskip("vocos", reason="the baselines extra (vocos) is not installed")


def test_the_speed_table_runs_and_checks_parity():
    run = subprocess.run([sys.executable, str(SCRIPT), "--seconds", "0.3", "--repeats", "1", "--threads", "1",
                          "--batch", "2", "--batch-threads", "1", "--systems", "encodec", "vocos"],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    rows = [line for line in run.stdout.splitlines() if line.startswith("| EnCodec") or line.startswith("| Vocos")]
    # encodec: encode + decode for one clip and the batch; vocos: decode only
    assert len(rows) == 6 and all(row.count("|") == 8 for row in rows)
    assert "EnCodec SEANet + RVQ 8x1024 (package): codes equal" in run.stdout
    assert "Vocos mel vocoder (package): same features" in run.stdout
    diffs = [float(d) for d in re.findall(r"audio max \|diff\| ([0-9.e+-]+)", run.stdout)]
    assert len(diffs) == 2 and max(diffs) <= 1e-4
