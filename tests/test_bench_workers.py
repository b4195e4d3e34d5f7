"""The benchmark's reconstruction pass over several workers (voxtok/bench/reconstruction.py): the same
results as one worker, and a reconstruction that stopped part-way continues where it stopped."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from voxtok.bench import reconstruction, runner
from voxtok.errors import BadConfigError
from voxtok.recipes import CONFIG_DIR
from voxtok.registry import build

from bench_fixtures import data_dir


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> tuple[Path, Path]:
    """(a test data dir of 5 espeak utterances, an untrained tiny WavTokenizer checkpoint)."""
    root = tmp_path_factory.mktemp("bench_workers")
    texts = ["the garden is green", "a quiet garden", "green and quiet", "the cat sat", "good day"]
    test = data_dir(root / "test", [(f"{'ab'[i % 2]}_{i}", "ab"[i % 2], ("en-us", "en-gb")[i % 2], t)
                                    for i, t in enumerate(texts)])
    cfg = yaml.safe_load((CONFIG_DIR / "codec" / "wavtokenizer_tiny.yaml").read_text())["model"]
    torch.manual_seed(0)
    build("codec", "wavtokenizer", cfg).save_pretrained(root / "codec" / "model")
    return test, root / "codec" / "model"


def _config(setup, out: Path, **changes) -> runner.BenchConfig:
    test, codec = setup
    return runner.BenchConfig(**{
        "test_dir": str(test), "out_dir": str(out), "systems": [f"vtk:{codec}@name=wt"], "asr": False,
        "probes": False, "lm": False, "metrics": ["si_sdr", "mel_distance"], "num_samples": 2, "threads": 1,
        "progress": False, **changes})


def _outputs(out: Path) -> dict:
    """What the codec system's reconstruction wrote: per-utterance rows, test codes, sample wavs."""
    sys_dir = out / "systems" / "wt"
    with np.load(sys_dir / "tokens_test.npz") as tokens:
        codes = {k: tokens[k].tolist() for k in tokens.files}
    with open(sys_dir / "per_utt.csv", newline="") as f:
        per_utt = list(csv.DictReader(f))
    samples = {p.name: p.read_bytes() for p in sorted(sys_dir.glob("samples/*.wav"))}
    return {"per_utt": per_utt, "codes": codes, "samples": samples}


def _scores(rows: list[dict]) -> list[dict]:
    """Report rows without their timings (processing seconds and real-time factors)."""
    return [{k: v for k, v in r.items() if not k.startswith(("time_", "rtf"))} for r in rows]


@pytest.fixture(scope="module")
def reference(setup, tmp_path_factory):
    """One worker per system's reconstruction, in this process."""
    out = tmp_path_factory.mktemp("ref") / "bench"
    rows = runner.run_benchmark(_config(setup, out))
    assert [r["status"] for r in rows] == ["ok"]
    return out, rows


def test_two_workers_give_the_results_of_one(setup, reference, tmp_path):
    ref_out, ref_rows = reference
    rows = runner.run_benchmark(_config(setup, tmp_path / "bench", recon_nj=2))
    assert _scores(rows) == _scores(ref_rows)
    assert _outputs(tmp_path / "bench") == _outputs(ref_out)
    assert len(_outputs(ref_out)["samples"]) == 2 and rows[0]["num_test_utts"] == 5
    assert not list(tmp_path.rglob("recon_parts"))  # removed once the stage's results are stored


def test_a_reconstruction_that_stopped_continues_where_it_stopped(setup, reference, tmp_path, monkeypatch):
    ref_out, ref_rows = reference
    real = reconstruction.reconstruct_one
    calls = []

    def dies_on_the_fourth(system, data, utt, *args, **kwargs):
        calls.append(utt)
        if len(calls) == 4:
            raise RuntimeError("killed")
        return real(system, data, utt, *args, **kwargs)

    monkeypatch.setattr(reconstruction, "FLUSH_EVERY", 2)
    monkeypatch.setattr(reconstruction, "reconstruct_one", dies_on_the_fourth)
    out = tmp_path / "bench"
    cfg = _config(setup, out)
    first = runner.run_benchmark(cfg)
    assert first[0]["status"] == "failed" and first[0]["error"] == "reconstruction: RuntimeError: killed"
    parts = list((out / "systems" / "wt" / "recon_parts").glob("*/part-*.npz"))
    assert len(parts) == 1  # the first two utterances; the third was lost with the "killed" worker
    calls.clear()
    monkeypatch.setattr(reconstruction, "reconstruct_one", lambda *a, **k: calls.append(a[2]) or real(*a, **k))
    again = runner.run_benchmark(cfg)
    assert len(calls) == 3 and again[0]["status"] == "ok"
    assert _scores(again) == _scores(ref_rows)
    assert _outputs(out)["codes"] == _outputs(ref_out)["codes"]


def test_bad_worker_settings_are_one_line_errors(setup, tmp_path):
    for changes, message in (({"recon_nj": 0}, "recon_nj must be at least 1"),
                             ({"ngpu": 9}, "GPU"), ({"dtype": "float8"}, "unknown dtype")):
        if "ngpu" in changes and torch.cuda.device_count() >= 9:
            continue
        with pytest.raises(BadConfigError, match=message) as info:
            runner.run_benchmark(_config(setup, tmp_path / "x", **changes))
        assert "\n" not in str(info.value)
