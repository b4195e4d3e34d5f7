"""Classical baselines through the real codec2 / opus-tools binaries: lengths, measured bitrates,
quality ordering, delay compensation, clean-up and clear errors."""

import tempfile

import numpy as np
import pytest
import torch

from voxtok.audio import resample
from voxtok.bench import baselines as B
from voxtok.bench.metrics import pesq_wb, stoi
from voxtok.errors import BadConfigError, VoxTokError

SR = 16000
# Codec2 frames carry a fixed number of bits, so the payload rate is exact up to the frames that
# pad the clip end and flush the delay (~2 % on 2 s). Opus is VBR: its payload wanders with the
# content (within 10 % in our runs; ±40 % would also absorb the Ogg container, not counted here).
TOLERANCE = {"codec2": 0.05, "opus": 0.15}


@pytest.fixture(scope="module")
def results(speech) -> dict:
    """Every registered codec run once on the clip: {name: (CodecRun, PESQ-WB, STOI)}."""
    out = {}
    for name, codec in B.CLASSICAL_CODECS.items():
        run = codec.run_detailed(speech, SR)
        out[name] = (run, pesq_wb(speech, run.recon, SR), stoi(speech, run.recon, SR))
    return out


@pytest.mark.parametrize("name", sorted(B.CLASSICAL_CODECS))
def test_round_trip_length_and_bitrate(results, speech, name):
    run, pesq, intelligibility = results[name]
    codec = B.CLASSICAL_CODECS[name]
    assert run.recon.shape == speech.shape and run.recon.dtype == np.float32
    assert np.isfinite(run.recon).all() and np.abs(run.recon).max() > 0.01
    tolerance = TOLERANCE[name.split("_")[0]]
    assert run.bitrate == pytest.approx(codec.nominal_bitrate, rel=tolerance)
    assert run.file_bitrate >= run.bitrate
    assert pesq > 1.0 and intelligibility > 0.5  # recognisably the same speech


def test_codec2_700c_packs_28_bit_frames_into_4_bytes(results):
    run = results["codec2_700c"][0]
    assert run.file_bitrate == pytest.approx(run.bitrate * 32 / 28)


def test_quality_follows_bitrate(results):
    score = {name: value[2] for name, value in results.items()}  # STOI
    assert score["codec2_3200"] >= score["codec2_700c"]
    assert score["opus_12k"] >= score["opus_6k"]
    assert results["opus_12k"][1] > results["opus_6k"][1]  # PESQ-WB
    assert results["codec2_3200"][1] > results["codec2_700c"][1]


def test_codec2_delay_is_compensated(speech):
    """Leaving the 20 ms delay in costs intelligibility: STOI drops when the delay is re-added."""
    codec = B.CLASSICAL_CODECS["codec2_3200"]
    recon, _ = codec.run(speech, SR)
    shift = codec.delay * SR // codec.sample_rate
    late = np.concatenate([np.zeros(shift, np.float32), recon])[: len(recon)]
    assert stoi(speech, recon, SR) > stoi(speech, late, SR) + 0.03


def test_run_keeps_the_input_type_and_rate(speech):
    codec = B.CLASSICAL_CODECS["opus_12k"]
    x24 = resample(speech, SR, 24000)
    recon, bitrate = codec.run(x24, 24000)
    assert isinstance(recon, torch.Tensor) and recon.shape == x24.shape
    assert bitrate == pytest.approx(12000, rel=0.15)


def test_no_files_are_left_behind(speech, monkeypatch, tmp_path):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    B.CLASSICAL_CODECS["codec2_1200"].run(speech, SR)
    B.CLASSICAL_CODECS["opus_6k"].run(speech, SR)
    assert list(tmp_path.iterdir()) == []


def test_missing_tool_is_a_clear_error(speech, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(VoxTokError, match=r"codec2 is not installed .*make setup"):
        B.CLASSICAL_CODECS["codec2_3200"].run(speech, SR)
    with pytest.raises(VoxTokError, match=r"opus-tools is not installed"):
        B.check_tool("opusenc")


def test_tool_failure_quotes_its_stderr(speech, monkeypatch, tmp_path):
    fake = tmp_path / "c2enc"
    fake.write_text("#!/bin/sh\necho 'Error: cannot open input' >&2\necho second line >&2\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    with pytest.raises(VoxTokError, match=r"^c2enc failed \(exit 3\): Error: cannot open input$"):
        B.CLASSICAL_CODECS["codec2_3200"].run(speech, SR)


def test_ogg_payload_parser_rejects_non_ogg(tmp_path):
    bad = tmp_path / "x.opus"
    bad.write_bytes(b"not an ogg file at all, just bytes" * 4)
    with pytest.raises(VoxTokError, match="not an Ogg stream"):
        B.ogg_opus_payload_bytes(bad)


def test_unknown_codec_name():
    assert B.get_classical_codec("opus_6k").nominal_bitrate == 6000
    with pytest.raises(BadConfigError, match="unknown classical codec"):
        B.get_classical_codec("mp3_8k")
