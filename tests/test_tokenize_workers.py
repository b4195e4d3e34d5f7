"""Corpus tokenization over several workers (voxtok/codecs/tokenize.py encode_corpus, the tokenize
recipe, `voxtok codec encode/decode`): 2 workers give the 1-worker store, a killed run resumes to the
same store, a rerun skips what is written, an absent GPU is one line, bfloat16 runs on CPU."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from voxtok.audio import save_audio
from voxtok.cli import main
from voxtok.codecs.tokenfile import read_tokens
from voxtok.codecs.tokenize import EncodeJob, collect_inputs, decode_stream, encode_corpus, encode_stream
from voxtok.data.shards import ShardStore, ShardWriter, remove_incomplete
from voxtok.recipes.tokenize import tokenize_split
from voxtok.registry import build, load

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "codec" / "wavtokenizer_tiny.yaml"
N_UTTS = 160


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """(tiny codec folder, data dir of N_UTTS 0.4-1.6 s utterances at 24 or 16 kHz)."""
    root = tmp_path_factory.mktemp("corpus")
    torch.manual_seed(0)
    model = build("codec", "wavtokenizer", yaml.safe_load(TINY.read_text())["model"]).save_pretrained(root / "model")
    rng = np.random.default_rng(0)
    data = root / "data" / "s"
    data.mkdir(parents=True)
    scp, text, utt2spk = [], [], []
    for i in range(N_UTTS):
        sr = 24000 if i % 4 else 16000  # some need resampling
        t = np.arange(int((0.4 + 1.2 * rng.random()) * sr)) / sr
        wav = 0.3 * np.sin(2 * np.pi * (120 + 7 * i) * t) + 0.02 * rng.standard_normal(len(t))
        save_audio(root / "wav" / f"u{i:03d}.wav", wav, sr)
        scp.append(f"u{i:03d} {root / 'wav' / f'u{i:03d}.wav'}\n")
        text.append(f"u{i:03d} hello\n")
        utt2spk.append(f"u{i:03d} spk{i % 3}\n")
    for name, lines in (("wav.scp", scp), ("text", text), ("utt2spk", utt2spk)):
        (data / name).write_text("".join(lines))
    return model, data


@pytest.fixture(scope="module")
def reference(corpus, tmp_path_factory):
    """The store one in-process worker writes (no kill)."""
    model, data = corpus
    out = tmp_path_factory.mktemp("ref") / "s"
    summary = tokenize_split(str(model), data, out, nj=1, n_q=None)
    assert f"{N_UTTS} newly stored, 0 already stored, 0 failed" in summary
    return ShardStore(out)


def index_rows(store: Path) -> list[str]:
    """Keys of every index row of a store (a key written twice shows up twice)."""
    return [line.split("\t")[0] for idx in store.glob("shard-*.index.tsv") for line in idx.read_text().splitlines()]


def assert_same_store(store: Path, reference: ShardStore) -> None:
    got = ShardStore(store)
    rows = index_rows(store)
    assert len(rows) == len(set(rows)) == N_UTTS  # no key stored twice
    assert got.meta == reference.meta and sorted(got.keys()) == sorted(reference.keys())
    for key in reference.keys():
        assert np.array_equal(got[key], reference[key]), key
    assert not [b for b in store.glob("shard-*.bin") if not b.with_name(b.name[:-4] + ".index.tsv").exists()]
    assert yaml.safe_load((store / "progress.json").read_text())["complete"] is True


def test_two_workers_write_the_one_worker_store(corpus, reference, tmp_path):
    model, data = corpus
    summary = tokenize_split(str(model), data, tmp_path / "s", nj=2, n_q=None, shard_items=16)
    assert f"{N_UTTS} newly stored" in summary
    assert {p.name[:10] for p in (tmp_path / "s").glob("shard-*.bin")} == {"shard-r000", "shard-r001"}
    assert_same_store(tmp_path / "s", reference)
    # a rerun finds everything stored
    assert f"0 newly stored, {N_UTTS} already stored" in tokenize_split(str(model), data, tmp_path / "s", 1, None)


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the worker processes through /proc")
def test_a_killed_run_resumes_to_the_uninterrupted_store(corpus, reference, tmp_path):
    model, data = corpus
    out = tmp_path / "tok"
    cmd = [sys.executable, "-m", "voxtok.recipes.tokenize", f"model={model}", f"data_dir={data.parent}",
           f"out_dir={out}", "splits=[s]", "nj=2", "shard_items=2", "batch_seconds=2"]
    run = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           env={**os.environ, "VOXTOK_PROGRESS": "0"})
    deadline = time.monotonic() + 300
    while not list((out / "s").glob("shard-*.index.tsv")):  # kill once a shard is complete
        assert run.poll() is None, run.stdout.read().decode()[-2000:]
        assert time.monotonic() < deadline
        time.sleep(0.01)
    workers = _children(run.pid)
    os.kill(run.pid, signal.SIGKILL)  # only the main process, as an OOM killer would
    run.wait()
    run.stdout.close()
    # its spawned workers notice and stop: none is left writing into the store
    deadline = time.monotonic() + 30
    while any(map(_alive, workers)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert workers and not any(map(_alive, workers))
    partial = ShardStore(out / "s")
    assert 0 < len(partial) < N_UTTS
    assert yaml.safe_load((out / "s" / "progress.json").read_text())["complete"] is False
    # one in-process worker resumes (its rank-0 shards continue after the killed run's last complete one)
    summary = tokenize_split(str(model), data, out / "s", nj=1, n_q=None)
    assert f"{N_UTTS - len(partial)} newly stored, {len(partial)} already stored, 0 failed" in summary
    assert_same_store(out / "s", reference)


def test_shards_complete_by_time_and_leftovers_are_removed(tmp_path):
    w = ShardWriter(tmp_path, {}, dtype="int16", shard_items=100, flush_seconds=0.0)
    w.add("a", np.zeros((1, 3)))  # flush_seconds=0: every add completes its shard
    assert ShardStore(tmp_path).keys() == ["a"]
    (tmp_path / "shard-r001-00000.bin").write_bytes(b"\x01\x02")  # a killed writer's open shard
    (tmp_path / ".shard-r001-00000.index.tsv.0123456789ab.tmp").write_text("half")  # its interrupted index
    assert remove_incomplete(tmp_path) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["meta.json", "shard-r000-00000.bin",
                                                           "shard-r000-00000.index.tsv"]
    w2 = ShardWriter(tmp_path, {}, dtype="int16", shard_items=1)
    w2.add("b", np.ones((1, 2)))
    assert (tmp_path / "shard-r000-00001.index.tsv").is_file() and ShardStore(tmp_path)["b"].sum() == 2


def test_batches_hold_at_most_batch_items(corpus):
    model, data = corpus
    codec = load(model, kind="codec")
    items = collect_inputs([data / "wav.scp"])[:9]
    sizes = []
    encode = codec.encode
    codec.encode = lambda wav, lengths=None, n_q=None: sizes.append(wav.shape[0]) or encode(wav, lengths, n_q)
    limited = {u: c for u, c, _, _ in encode_stream(codec, items, max_batch_items=4)}
    assert sizes == [4, 4, 1]
    sizes.clear()
    whole = {u: c for u, c, _, _ in encode_stream(codec, items)}
    assert sizes == [9] and all(torch.equal(limited[u], whole[u]) for u in whole)


def test_cli_rerun_skips_written_files_and_overwrite_redoes_them(corpus, tmp_path, capsys):
    model, data = corpus
    scp = tmp_path / "wav.scp"
    scp.write_text("".join((data / "wav.scp").read_text().splitlines(keepends=True)[:3]))
    out = tmp_path / "tok"
    args = ["codec", "encode", str(scp), "-o", str(out), "--model", str(model), "--batch-size", "2"]
    assert main(args) == 0
    first = {p.name: read_tokens(p)[0] for p in out.glob("*.vtk")}
    (out / "u001.vtk").write_bytes((out / "u001.vtk").read_bytes()[:-9])  # truncated
    (out / "u002.vtk").unlink()
    (out / ".u002.vtk.0123456789ab.tmp").write_bytes(b"VTK")  # a killed write's temp file
    capsys.readouterr()
    assert main(args) == 0
    assert "encoded 2 utterance(s), 0 failed, 1 already done (skipped)" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["u000.vtk", "u001.vtk", "u002.vtk"]
    assert all(torch.equal(read_tokens(out / name)[0], codes) for name, codes in first.items())
    assert main(args + ["--overwrite"]) == 0
    assert "encoded 3 utterance(s), 0 failed, 0 already done" in capsys.readouterr().out


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error of a machine without a GPU")
@pytest.mark.parametrize("extra", [["--device", "cuda"], ["--ngpu", "2"], ["--device", "cuda:1", "--nj", "2"]])
def test_an_absent_gpu_is_a_one_line_error(corpus, tmp_path, capsys, extra):
    model, data = corpus
    wav = data.parent.parent / "wav" / "u000.wav"
    assert main(["codec", "encode", str(wav), "-o", str(tmp_path / "t"), "--model", str(model)] + extra) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no CUDA GPU" in err and not (tmp_path / "t").exists()
    vtk = tmp_path / "a.vtk"
    assert main(["codec", "encode", str(wav), "-o", str(vtk), "--model", str(model)]) == 0
    capsys.readouterr()
    assert main(["codec", "decode", str(vtk), "-o", str(tmp_path / "a.wav"), "--model", str(model),
                 "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no CUDA GPU" in err


def test_bfloat16_runs_on_cpu(corpus, reference, tmp_path):
    model, data = corpus
    items = collect_inputs([data / "wav.scp"])[:24]
    report = encode_corpus(EncodeJob(str(model), str(tmp_path / "bf"), store=True, dtype="bfloat16"), items,
                           progress=False)
    assert len(report.written) == 24 and not report.failed
    bf = ShardStore(tmp_path / "bf")
    assert bf.meta == reference.meta
    same = []
    for utt, _ in items:
        assert bf.shape(utt) == reference.shape(utt)
        assert 0 <= bf[utt].min() and bf[utt].max() < reference.meta["codebook_size"]
        same.append(bf[utt] == reference[utt])
    # autocast changes the encoder's rounding: a few frames near two codewords flip (measured 99 %)
    assert np.mean(np.concatenate([s.ravel() for s in same])) > 0.9
    codec = load(model, kind="codec")
    entries = [(u, torch.from_numpy(bf[u]).long(), None) for u, _ in items[:4]]
    for utt, wav in decode_stream(codec, entries, batch_size=4, dtype=torch.bfloat16):
        assert wav.dtype is torch.float32 and wav.shape[-1] == bf.shape(utt)[-1] * 320
        assert torch.isfinite(wav).all()


def test_batched_decode_of_one_equals_decode_and_batches_differ_only_at_the_end(corpus, reference):
    model, _ = corpus
    codec = load(model, kind="codec")
    entries = [(k, torch.from_numpy(reference[k]).long(), 2000 * (i + 1)) for i, k in enumerate(reference.keys()[:5])]
    one, many = dict(decode_stream(codec, entries, 1)), dict(decode_stream(codec, entries, 5))
    with torch.inference_mode():
        for key, codes, num_samples in entries:
            ref = codec.decode(codes[None], num_samples)[0]
            assert torch.equal(one[key], ref) and many[key].shape == ref.shape == (1, num_samples)
            # padding reaches back only through the decoder's receptive field (~8 frames)
            head = min(num_samples, (codes.shape[-1] - 10) * codec.hop_length)
            assert torch.allclose(many[key][..., :head], ref[..., :head], atol=1e-4)
