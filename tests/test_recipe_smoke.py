"""The whole recipe (every stage, corpus to report) on a tiny corpus with a few updates per model.

This is the CI smoke run of egs/libritts/run.sh: it proves the stages hand over to each other
(data dirs -> embeddings -> codecs -> tokens -> teachers -> TTS -> synthesis -> benchmark ->
report). Quality is not the point here; the mini recipe and the README tables are.
"""

from __future__ import annotations

import subprocess

import pytest
import voxtok
from recipe_copy import copy_recipe, recipe_env


@pytest.mark.slow
def test_smoke_recipe_runs_every_stage_to_the_report(tmp_path):
    work = copy_recipe(tmp_path)
    run = subprocess.run(["bash", "run.sh", "--smoke", "true", "--nj", "1"], cwd=work, env=recipe_env(),
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

    # Every model the recipe wrote, and both pipelines, load through the one entry point.
    from voxtok.registry import read_metadata

    folders = sorted(p.parent for p in exp.glob("**/model/model.safetensors"))
    kinds = {read_metadata(folder)["name"] for folder in folders}
    assert {"wavtokenizer", "s3", "llm", "flow", "flowomni", "mel_vocoder"} <= kinds, kinds
    for folder in folders:
        assert not voxtok.load(folder).training
    for manifest in ("cosyvoice.yaml", "flowomni.yaml"):
        assert voxtok.load(exp / "tts" / manifest).sample_rate > 0
