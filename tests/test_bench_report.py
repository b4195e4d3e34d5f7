"""The benchmark: systems and bitrate accounting, tiers and ranking, the report files, and the runner
(known answers, a failing system, cache reuse)."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from voxtok.audio import resample
from voxtok.bench import runner
from voxtok.bench.lm import LMConfig
from voxtok.bench.probes import ProbeConfig
from voxtok.bench.report import bitrate_tier, load_results, rank_tiers, tier_of, write_report
from voxtok.bench.systems import build_system, parse_spec
from voxtok.bench.tokens import TokenSet, token_statistics
from voxtok.registry import build
from voxtok.data.synth import Voice, run_espeak
from voxtok.errors import BadConfigError
from voxtok.recipes import CONFIG_DIR

from bench_fixtures import data_dir


@pytest.fixture(scope="module")
def tiny_codec_dir(tmp_path_factory) -> Path:
    """An untrained tiny WavTokenizer: its output is noise-like, so it must lose to the identity."""
    cfg = yaml.safe_load((CONFIG_DIR / "codec" / "wavtokenizer_tiny.yaml").read_text())["model"]
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("codec") / "model"
    build("codec", "wavtokenizer", cfg).save_pretrained(path)
    return path


# ----------------------------------------------------------------------------- specs and systems


def test_spec_syntax():
    spec = parse_spec("vtk:exp/mini/codec_wavtokenizer/model@n_q=1")
    assert (spec.kind, spec.path, spec.options, spec.name) == ("vtk", "exp/mini/codec_wavtokenizer/model",
                                                               {"n_q": "1"}, "wavtokenizer@q1")
    assert parse_spec("encodec:w/encodec_24khz.th@bw=1.5,name=enc").name == "enc"
    assert parse_spec("codec2_1200").family == parse_spec("codec2_3200").family == "codec2"
    for bad in ("vtk", "codec2_1200:x", "mp3", "vtk:x@q=1", "identity@name"):
        with pytest.raises(BadConfigError):
            parse_spec(bad)


def test_identity_and_voxtok_bitrates_are_measured_from_what_was_produced(tiny_codec_dir):
    wav = torch.randn(1, 24000) * 0.1
    identity = build_system("identity").roundtrip(wav, 24000)
    assert torch.equal(identity.recon, wav[0]) and identity.bits == 16 * 24000
    system = build_system(f"vtk:{tiny_codec_dir}@n_q=1")
    assert system.has_tokens and system.can_decode and system.frame_rate == 75
    rt = system.roundtrip(wav, 24000)
    assert rt.codes.shape == (1, 75) and rt.recon.shape == (24000,)
    assert rt.bits == 75 * math.log2(system.codebook_size)  # 1 s -> exactly 75 x 12 bits
    longer = system.roundtrip(torch.randn(1, 24000 + 320) * 0.1, 24000)  # one more hop, one more frame
    assert longer.bits == 76 * math.log2(system.codebook_size)
    many = system.encode_many([wav, wav[:, :12000]])
    assert torch.equal(many[0], rt.codes) and many[1].shape == (1, 38)
    with pytest.raises(BadConfigError):
        build_system(f"vtk:{tiny_codec_dir}@n_q=2")


def test_classical_and_encodec_bitrates(tmp_path):
    from encodec import EncodecModel

    wav = resample(run_espeak(Voice("espeak", "en-us", "F"), "A short test sentence.")[0], 22050, 24000)[None]
    seconds = wav.shape[-1] / 24000
    rt = build_system("codec2_1200").roundtrip(wav, 24000)
    assert rt.codes is None and rt.recon.shape == wav[0].shape
    assert 1150 < rt.bits / seconds < 1300  # payload bits, incl. the flushed last frame
    ckpt = tmp_path / "encodec_24khz-test.th"
    torch.save(EncodecModel.encodec_model_24khz(pretrained=False).state_dict(), ckpt)
    enc = build_system(f"encodec:{ckpt}@bw=1.5")
    out = enc.roundtrip(wav[:, :24000], 24000)
    assert enc.n_q == 2 and out.codes.shape == (2, 75) and out.bits == 2 * 75 * 10
    with pytest.raises(BadConfigError, match="bandwidths"):
        build_system(f"encodec:{ckpt}@bw=5")
    with pytest.raises(BadConfigError, match="not a DAC weights file"):  # an EnCodec file given as DAC
        build_system(f"dac:{ckpt}")


def test_token_statistics():
    tokens = TokenSet(frame_rate=50, codebook_size=4, n_q=2)
    tokens.add("a", np.array([[0, 1, 2, 3], [0, 0, 0, 0]]), seconds=0.08)
    stats = token_statistics(tokens)
    assert stats["tokens_per_s"] == 100 and stats["token_bits_per_s"] == 200
    assert stats["usage_q0"] == 1.0 and stats["entropy_q0"] == 2.0 and stats["perplexity_q0"] == 4.0
    assert stats["usage_q1"] == 0.25 and stats["entropy_q1"] == 0.0 and stats["entropy_bits_per_s"] == 100
    with pytest.raises(BadConfigError):
        tokens.add("b", np.array([[4], [0]]), 0.02)  # outside the codebook


# ----------------------------------------------------------------------------- tiers, ranking, report


def test_tiers_and_ranking():
    assert [bitrate_tier(k) for k in (0.5, 1.5, 6.0, 6.1, None)] == ["low", "medium", "medium", "high", "n/a"]
    rows = [
        {"system": "a", "status": "ok", "kbps": 1.0, "pesq_wb": 2.0, "stoi": 0.9, "dwer": 0.1},
        {"system": "b", "status": "ok", "kbps": 0.8, "pesq_wb": 3.0, "stoi": 0.8, "dwer": 0.05},
        {"system": "c", "status": "ok", "kbps": 0.7, "pesq_wb": 1.0, "stoi": 0.7, "dwer": 0.5},
        {"system": "s3", "status": "ok", "kbps": 0.6, "probe_wer": 0.3},  # tokens only: alone on its metric
        {"system": "dead", "status": "failed", "kbps": 0.9, "pesq_wb": 4.5},
        {"system": "opus", "status": "ok", "kbps": 12.1, "pesq_wb": 3.5},
        {"system": "gt", "kind": "identity", "status": "ok", "kbps": 384, "pesq_wb": 4.64},
    ]
    ranked = rank_tiers(rows)
    assert [e["system"] for e in ranked["low"]] == ["b", "a", "c", "s3"]
    assert ranked["low"][0]["ranks"] == {"pesq_wb": 1, "stoi": 2, "dwer": 1}
    assert math.isnan(ranked["low"][3]["mean_rank"])
    assert [e["system"] for e in ranked["high"]] == ["opus"] and tier_of(rows[-1]) == "reference"


def test_report_files(tmp_path):
    rows = [{"system": "gt", "kind": "identity", "status": "ok", "kbps": 384.0, "pesq_wb": 4.6, "stoi": 1.0,
             "dwer": 0.0},
            {"system": "wt", "family": "vtk:x", "status": "ok", "kbps": 0.75, "pesq_wb": 1.2, "stoi": 0.7,
             "dwer": 0.6, "n_q": 1, "usage_q0": 0.5, "entropy_q0": 8.0, "probe_wer": 0.9, "swuggy": 0.6},
            {"system": "c2", "status": "ok", "kbps": 3.2, "pesq_wb": 1.8, "stoi": 0.9, "dwer": 0.2},
            {"system": "broken", "status": "failed", "error": "load: BadConfigError: no metadata.json"}]
    report = write_report(rows, tmp_path, {"test_dir": "data/test", "num_test_utts": 3})
    text = report.read_text()
    assert "| broken (FAILED) |" in text and "load: BadConfigError: no metadata.json" in text
    assert "### low" in text and "### medium" in text and "![rd_pesq_wb](rd_pesq_wb.png)" in text
    assert "q0: 50% / 8.00" in text
    for name in ("results.csv", "table.md", "report.html", "rd_pesq_wb.png", "rd_stoi.png", "rd_dwer.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert (tmp_path / "rd_stoi.png").read_bytes()[:4] == b"\x89PNG"
    assert len((tmp_path / "results.csv").read_text().strip().splitlines()) == 5
    assert "<td>broken (FAILED)</td>" in (tmp_path / "report.html").read_text()


# ----------------------------------------------------------------------------- the runner


@pytest.fixture(scope="module")
def data_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench_data")
    voices = {"a": "en-us", "b": "en-gb"}
    texts = ["the green garden was quiet", "a green garden", "green and quiet"]
    train = [(f"{s}_{i}", s, voices[s], texts[i]) for s in "ab" for i in range(3)]
    test = [("a_t", "a", "en-us", "the garden is green"), ("b_t", "b", "en-gb", "a quiet garden")]
    return data_dir(root / "test", test), data_dir(root / "train", train)


def _config(out: Path, test: Path, train: Path, systems, **changes) -> runner.BenchConfig:
    base = dict(test_dir=str(test), train_dir=str(train), out_dir=str(out), systems=list(systems), asr=False,
                metrics=["pesq_wb", "pesq_nb", "stoi", "si_sdr", "mel_distance", "speaker_similarity"],
                swuggy_words=2, num_samples=1, threads=1, progress=False,
                probe=ProbeConfig(dim=16, attention_hidden=8, lstm_hidden=16, lstm_layers=1, conv_channels=16,
                                  asr_steps=3, speaker_steps=3, batch_size=2),
                lm_model=LMConfig(dim=16, layers=1, heads=2, context=32, steps=3, batch_size=2))
    base.update(changes)
    return runner.BenchConfig(**base)


def test_runner_known_answers_failure_and_cache(tmp_path, data_dirs, tiny_codec_dir, monkeypatch):
    test, train = data_dirs
    systems = ["identity", f"vtk:{tiny_codec_dir}@name=noise", f"vtk:{tmp_path}/missing", "codec2_3200"]
    rows = runner.run_benchmark(_config(tmp_path / "out", test, train, systems))
    gt, noise, missing, codec2 = rows
    assert gt["status"] == noise["status"] == codec2["status"] == "ok"
    assert missing["status"] == "failed" and missing["error"].startswith("load: BadConfigError") \
        and "not a checkpoint folder" in missing["error"]
    # identity is the best possible score on every metric; the untrained codec is far worse
    assert gt["pesq_wb"] > 4.5 and gt["stoi"] > 0.99 and gt["si_sdr"] > 100 and gt["mel_distance"] < 1e-6
    assert gt["speaker_similarity"] > 0.99 and gt["kbps"] == pytest.approx(384)
    for metric in ("pesq_wb", "pesq_nb", "stoi", "si_sdr", "speaker_similarity"):
        assert codec2[metric] < gt[metric], metric
        # the untrained codec's output is so unlike speech that resemblyzer finds no voice in it
        assert noise[metric] < codec2[metric] or (metric == "speaker_similarity" and math.isnan(noise[metric]))
    assert noise["mel_distance"] > codec2["mel_distance"] > 0.1
    assert codec2["kbps"] == pytest.approx(3.2, rel=0.05) and "probe_wer" not in codec2  # no tokens
    assert noise["kbps"] == pytest.approx(0.9, rel=0.02) and noise["tokens_per_s"] == pytest.approx(75, rel=0.02)
    for key in ("probe_wer", "probe_cer", "probe_spk_acc", "lm_ppl", "lm_bits_per_s", "swuggy", "usage_q0"):
        assert math.isfinite(noise[key]), key
    out = tmp_path / "out"
    saved, meta = load_results(out)
    assert [r["system"] for r in saved] == ["identity", "noise", "missing", "codec2_3200"]
    assert len(meta["swuggy_pairs"]) == 2
    assert "missing (FAILED)" in (out / "report.md").read_text()
    assert (out / "systems" / "noise" / "samples" / "a_t.wav").is_file()
    assert len((out / "per_utterance.csv").read_text().strip().splitlines()) == 7  # 3 systems x 2 utts

    # A re-run computes nothing that is cached, and only the probes when only their budget changes.
    calls = []
    for stage in ("_stage_reconstruction", "_stage_train_tokens", "_stage_probe_asr", "_stage_probe_speaker", "_stage_lm"):
        real = getattr(runner, stage)
        monkeypatch.setattr(runner, stage, lambda *a, _real=real, _name=stage, **k: calls.append(_name) or _real(*a, **k))
    again = runner.run_benchmark(_config(tmp_path / "out", test, train, systems))
    assert calls == [] and again[1]["probe_wer"] == noise["probe_wer"] and again[1]["pesq_wb"] == noise["pesq_wb"]
    changed = _config(tmp_path / "out", test, train, systems[:2])
    changed.probe.speaker_steps = 4
    runner.run_benchmark(changed)
    assert calls == ["_stage_probe_asr", "_stage_probe_speaker"]


def test_config_is_checked_before_anything_runs(tmp_path, data_dirs):
    test, train = data_dirs
    with pytest.raises(BadConfigError, match="named"):
        runner.run_benchmark(_config(tmp_path, test, train, ["codec2_1200", "identity@name=codec2_1200"]))
    with pytest.raises(BadConfigError, match="metric"):
        runner.run_benchmark(_config(tmp_path, test, train, ["identity"], metrics=["mos"]))
    with pytest.raises(BadConfigError, match="'probe.stepz'"):
        runner.BenchConfig.from_mapping({"test_dir": "t", "out_dir": "o", "probe": {"stepz": 1}})


def test_recipe_config_matches_the_defaults():
    from hydra import compose, initialize_config_dir

    from voxtok.recipes.bench import bench_config

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("bench", overrides=["out_dir=x", 'systems=[identity,"vtk:exp/m/model@n_q=1"]'])
    bench = bench_config(cfg)
    assert bench.systems == ["identity", "vtk:exp/m/model@n_q=1"]
    assert bench.probe == ProbeConfig() and bench.lm_model == LMConfig()  # yaml and dataclasses agree


def test_cli_run_and_report(tmp_path, data_dirs, capsys):
    import argparse

    from voxtok.cli import bench
    from voxtok.cli.common import _Formatter

    parser = argparse.ArgumentParser(prog="voxtok", formatter_class=_Formatter)
    bench.add_commands(parser.add_subparsers(dest="command", required=True))
    test, _ = data_dirs
    out = tmp_path / "cli"
    args = parser.parse_args(["bench", "run", "--data", str(test), "--systems", "identity", "--no-asr",
                              "--threads", "1", "--quiet", "-o", str(out)])
    assert args.handler(args) == 0
    (out / "report.md").unlink()
    args = parser.parse_args(["bench", "report", str(out)])
    assert args.handler(args) == 0 and "| identity |" in (out / "report.md").read_text()
    assert "1 of 1 systems evaluated" in capsys.readouterr().out
