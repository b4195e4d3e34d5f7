"""egs/libritts/local/bench_published.sh and `voxtok bench discover`: a folder of tiny random-weight
checkpoints (one sub-folder each, in each package's own layout) is recognised kind by kind and
benchmarked beside the classical codecs into one report."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench_fixtures import dirs  # noqa: F401  (the shared data dirs fixture)
from published_checkpoints import hf_folder, snac_folder, speechtokenizer_release, ssl_folder
from voxtok.bench.discover import discover_systems

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


@pytest.fixture(scope="module")
def ckpt_dir(tmp_path_factory) -> Path:
    dac = pytest.importorskip("dac", reason="the published extra (descript-audio-codec) is not installed")
    root = tmp_path_factory.mktemp("published")
    speechtokenizer_release(root / "speechtokenizer")
    snac_folder(root / "snac_16khz")
    hf_folder(root / "mimi", "mimi")
    ssl_folder(root / "hubert")
    (root / "dac_16khz").mkdir()
    torch.manual_seed(0)
    dac.DAC(encoder_dim=4, encoder_rates=[4, 8], latent_dim=16, decoder_dim=16, decoder_rates=[8, 4], n_codebooks=2,
            codebook_size=16, codebook_dim=4, sample_rate=16000).save(str(root / "dac_16khz" / "weights.pth"),
                                                                      package=False)
    (root / "notes").mkdir()
    (root / "notes" / "README.txt").write_text("not a checkpoint")
    return root


def test_discover_recognises_each_kind(ckpt_dir):
    specs, skipped = discover_systems(ckpt_dir, ssl_k=8)
    assert specs == [f"dac:{ckpt_dir}/dac_16khz/weights.pth@name=dac_16khz",
                     f"ssl_kmeans:{ckpt_dir}/hubert@layer=1@k=8,name=hubert",
                     f"mimi:{ckpt_dir}/mimi@name=mimi",
                     f"snac:{ckpt_dir}/snac_16khz@name=snac_16khz",
                     f"speechtokenizer:{ckpt_dir}/speechtokenizer@name=speechtokenizer"]
    assert skipped == [("notes", "no recognised checkpoint files")]
    assert discover_systems(ckpt_dir, ssl_layer="1+2")[0][1] == f"ssl_kmeans:{ckpt_dir}/hubert@layer=1+2,name=hubert"


@pytest.mark.slow
def test_script_benchmarks_them_beside_the_classical_codecs(tmp_path, ckpt_dir, dirs):  # noqa: F811
    test, train = dirs
    data = tmp_path / "data"
    data.mkdir()
    (data / "test").symlink_to(test)
    (data / "train").symlink_to(train)
    out = tmp_path / "bench"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    args = ("--no-asr --quiet --probe-steps 2 --speaker-steps 2 --lm-steps 2 --swuggy-words 0 --threads 1 "
            "--metrics stoi dnsmos")
    run = subprocess.run(["bash", str(ROOT / "egs/libritts/local/bench_published.sh"), "--ckpt_dir", str(ckpt_dir),
                          "--data_dir", str(data), "--out", str(out), "--baselines", "identity codec2_3200",
                          "--ssl_k", "8", "--nj", "1", "--bench_args", args],
                         capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "skipped notes: no recognised checkpoint files" in run.stderr
    assert "7 of 7 systems evaluated" in run.stdout
    report = (out / "report.md").read_text()
    for name in ("identity", "codec2_3200", "dac_16khz", "hubert", "mimi", "snac_16khz", "speechtokenizer"):
        assert f"| {name} |" in report, name
    assert "DNSMOS OVRL" in report and "hubert: tokens only (no decoder): reconstruction metrics skipped" in report
