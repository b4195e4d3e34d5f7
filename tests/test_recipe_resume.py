"""Kill egs/libritts/run.sh during codec training; the re-run skips finished stages and resumes.

The recipe is copied to a temp dir (as a user copies egs/libritts to start a new recipe) so the
test never touches the repository's own exp/ and data/.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from recipe_copy import RECIPE, copy_recipe, recipe_env

SMALL_CORPUS = "data.num_speakers=8 data.utts_per_speaker=3 data.num_dev_speakers=1 data.num_test_speakers=1"
TRAIN = ("trainer.val_every_n_steps=1000 trainer.checkpoint_every_n_steps=2 trainer.log_every_n_steps=1 "
         "codec.data.batch_size=2 codec.data.crop_seconds=0.4")


def _stage_number(name: str) -> int:
    """Stage number of `name` from the recipe's --help (stage numbers may change, names do not)."""
    out = subprocess.run(["bash", str(RECIPE / "run.sh"), "--help"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].isdigit() and parts[1] in (name, f"{name}:"):
            return int(parts[0])
    raise AssertionError(f"stage {name!r} not in run.sh --help:\n{out}")


def _run(workdir: Path, *args: str, **popen) -> subprocess.Popen:
    return subprocess.Popen(["bash", "run.sh", "--mini", "true", "--tag", "t", "--nj", "1", *args], cwd=workdir,
                            env=recipe_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)


def _updates_in(ckpt: Path) -> int:
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    return int(state["global_step"]) // 2  # GAN: two optimiser steps per update


@pytest.mark.slow
def test_killed_training_resumes_and_finished_stages_are_skipped(tmp_path):
    work = copy_recipe(tmp_path)
    data_stage, codec_stage = _stage_number("data"), _stage_number("codec")

    first = _run(work, "--stop_stage", str(codec_stage), "--data_args", SMALL_CORPUS,
                 "--train_args", f"trainer.max_steps=100000 {TRAIN}", start_new_session=True)
    last = work / "exp" / "t" / "codec_wavtokenizer" / "checkpoints" / "last.ckpt"
    deadline = time.time() + 240
    while time.time() < deadline and first.poll() is None:
        if last.is_file() and _updates_in(last) >= 2:
            break
        time.sleep(1)
    assert first.poll() is None, f"recipe ended before it could be killed:\n{first.stdout.read()}"
    assert last.is_file(), "no checkpoint within 240 s"
    os.killpg(first.pid, signal.SIGKILL)  # the harsh case: no chance to save anything on the way out
    first.wait()
    first.stdout.close()
    stage_dirs = {p.name.split("_", 1)[1]: p for p in (work / "exp" / "t").glob("stage*_*")}
    assert (stage_dirs["data"] / ".done").is_file()
    assert not (stage_dirs["codec"] / ".done").exists()
    done_updates = _updates_in(last)

    second = _run(work, "--stop_stage", str(codec_stage),
                  "--train_args", f"trainer.max_steps={done_updates + 2} {TRAIN}")
    log, _ = second.communicate(timeout=300)
    assert second.returncode == 0, log
    assert f"stage {data_stage} (data): already complete" in log
    assert f"resuming from {Path('exp/t/codec_wavtokenizer/checkpoints/last.ckpt')}" in log
    assert f"after {done_updates + 2} updates" in log  # trained on from the checkpoint, not from zero
    assert (stage_dirs["codec"] / ".done").is_file()
    assert (work / "exp" / "t" / "codec_wavtokenizer" / "model" / "model.safetensors").is_file()
