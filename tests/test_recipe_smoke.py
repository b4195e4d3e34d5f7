"""The whole recipe (every stage, corpus to report) on a tiny corpus with a few updates per model.

This is the CI smoke run of egs/libritts/run.sh: it proves the stages hand over to each other
(data dirs -> embeddings -> codecs -> tokens -> teachers -> TTS -> synthesis -> benchmark ->
report). Quality is not the point here; the mini recipe and the README tables are.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

RECIPE = Path(__file__).resolve().parents[1] / "egs" / "libritts"


@pytest.mark.slow
def test_smoke_recipe_runs_every_stage_to_the_report(tmp_path):
    work = tmp_path / "recipe"
    work.mkdir()
    for item in ("run.sh", "path.sh", "utils"):
        src = RECIPE / item
        (shutil.copytree if src.is_dir() else shutil.copy)(src, work / item)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}", VOXTOK_PROGRESS="0")
    run = subprocess.run(["bash", "run.sh", "--smoke", "true", "--nj", "1"], cwd=work, env=env,
                         capture_output=True, text=True, timeout=900)
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-5000:]
    exp = work / "exp" / "smoke"
    done = sorted(p.parent.name for p in exp.glob("stage*/.done"))
    assert len(done) == 15, done
    report = exp / "report"
    for name in ("index.html", "report.md", "summary.txt"):
        assert (report / name).is_file()
    page = (report / "index.html").read_text()
    assert "(not run)" not in page and "<audio" in page
    assert "stage times:" in log and "report:" in log  # the one-screen summary is printed
    assert (exp / "tts" / "synth_cosyvoice" / "data" / "wav.scp").is_file()
    assert (exp / "tts" / "synth_flowomni" / "data" / "wav.scp").is_file()
