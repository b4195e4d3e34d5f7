"""The demo's API through gradio_client against a real server (python demo/app.py) on 127.0.0.1,
with tiny random models: cloning in every mode, the codec lab, token files, the report, and
bad inputs that must come back as messages, never tracebacks."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

gradio_client = pytest.importorskip("gradio_client", reason="the demo extra (gradio) is not installed")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from demo_server import MAX_TEXT_CHARS, shared_demo_server  # noqa: E402


@pytest.fixture(scope="module")
def server(request, tmp_path_factory, speech):
    return shared_demo_server(request.config, tmp_path_factory, speech)


@pytest.fixture(scope="module")
def client(server):
    return Client(server.url, verbose=False, download_files=str(server.exp.parent / "downloads"))


def clone(client, reference, **kw):
    args = dict(text="hello there", reference=handle_file(str(reference)) if reference else None, reference_text="she sells sea shells",
                model="cosyvoice", mode="zero_shot", speaker=None, steps=2, cfg=0.7, seed=0, streaming=False)
    args.update(kw)
    return client.predict(**args, api_name="/clone")


def assert_message_only(result, *fragments):
    """A failed request: no audio, a message with `fragments`, and no traceback."""
    audio, message = result[0], result[-1]
    assert audio is None
    for fragment in fragments:
        assert fragment in message, message
    assert "Traceback" not in message and 'File "' not in message


def test_clone_cosyvoice_zero_shot_and_streaming(server, client):
    audio, message = clone(client, server.reference)
    wav, sr = sf.read(audio)
    assert sr == 22050 and wav.ndim == 1 and len(wav) > 0 and np.isfinite(wav).all()
    assert "s of speech in the reference voice from CosyVoice-style (zero-shot, 2 steps, seed 0)" in message
    streamed, message = clone(client, server.reference, streaming=True, mode="cross_lingual", reference_text="")
    assert "first audio chunk after" in message and "cross-lingual" in message
    assert len(sf.read(streamed)[0]) > 0


def test_clone_flowomni_with_a_stored_voice(server, client):
    dropdown, cfg, streaming = client.predict("flowomni", api_name="/voices")
    assert [c[1] if isinstance(c, (list, tuple)) else c for c in dropdown["choices"]] == ["spk1"]
    assert cfg["interactive"] is True and streaming["interactive"] is True
    audio, message = clone(client, None, model="flowomni", mode="sft", speaker="spk1")
    assert len(sf.read(audio)[0]) > 0
    assert "voice `spk1` from Flow-Omni (stored speaker" in message and "does not apply" not in message
    streamed, message = clone(client, None, model="flowomni", mode="sft", speaker="spk1", streaming=True)
    assert "first audio chunk after" in message and len(sf.read(streamed)[0]) > 0
    assert_message_only(clone(client, server.reference, mode="sft", speaker="nobody"), "unknown speaker 'nobody'")


def test_codec_lab_round_trip_and_token_file(server, client):
    audio, picture, n_tokens, kbps, tokens, message = client.predict(
        handle_file(str(server.reference)), "codec_rvq", 3, api_name="/codec")
    wav, sr = sf.read(audio)
    assert sr == 16000 and len(wav) == 32000  # 2 s in, trimmed back to the input length
    frames = 100  # 50 Hz for 2 s
    assert n_tokens == 3 * frames and kbps == pytest.approx(3 * 8 * 50 / 1000)
    assert f"3 codebook(s) x {frames} frames" in message
    assert picture.endswith(".png") and tokens.endswith(".vtk")
    decoded, message = client.predict(handle_file(tokens), api_name="/decode_tokens")
    assert "with `codec_rvq`" in message
    assert np.array_equal(sf.read(decoded)[0], wav)  # the .vtk holds exactly the codes that made `audio`


def test_s3_codec_gives_tokens_and_says_why_there_is_no_audio(server, client):
    audio, picture, n_tokens, kbps, tokens, message = client.predict(
        handle_file(str(server.reference)), "s3", 1, api_name="/codec")
    assert audio is None and n_tokens > 0 and tokens.endswith(".vtk") and picture.endswith(".png")
    assert "semantic" in message and "no audio decoder" in message


def test_benchmark_shows_the_table_and_plots(client):
    markdown, plots, message = client.predict(api_name="/benchmark")
    assert "| rvq | 3.20 | 1.10 |" in markdown
    assert len(plots) == 1 and "bench/table.md" in message


def test_bad_inputs_come_back_as_messages(server, client, tmp_path):
    assert_message_only(clone(client, server.reference, text="word " * 40), f"> {MAX_TEXT_CHARS}", "too long")
    assert_message_only(clone(client, server.reference, text="  "), "type the text to speak")
    assert_message_only(clone(client, server.reference, reference_text=""), "needs the reference transcript")
    assert_message_only(clone(client, None), "needs reference audio")
    not_audio = tmp_path / "notes.wav"
    not_audio.write_text("this is not audio")
    assert_message_only(clone(client, not_audio), "notes.wav: cannot read audio")
    long_wav = tmp_path / "long.wav"
    sf.write(long_wav, 0.1 * np.random.default_rng(0).standard_normal(31 * 16000), 16000)
    assert_message_only(clone(client, long_wav), "long.wav: audio is too long (31.0 s > 30.0 s)")
    assert_message_only(client.predict(handle_file(str(not_audio)), "codec_rvq", 1, api_name="/codec"),
                        "cannot read audio")
    assert_message_only(client.predict(handle_file(str(server.reference)), "codec_rvq", 9, api_name="/codec"),
                        "codec_rvq has 8 quantizer(s); asked for 9")
    fake_tokens = tmp_path / "fake.vtk"
    fake_tokens.write_bytes(b"not a token file")
    assert_message_only(client.predict(handle_file(str(fake_tokens)), api_name="/decode_tokens"), "fake.vtk")
    with pytest.raises(AppError, match="Invalid file type"):  # gradio itself refuses a non-.vtk upload
        client.predict(handle_file(str(server.reference)), api_name="/decode_tokens")


def test_an_exp_dir_without_models_says_what_to_train(server, client):
    with server.models_hidden():
        assert_message_only(clone(client, server.reference), "no CosyVoice-style model", "yet", "./run.sh --stage")
        assert_message_only(client.predict(handle_file(str(server.reference)), "codec_rvq", 1, api_name="/codec"),
                            "no codec checkpoints", "yet")
        markdown, plots, message = client.predict(api_name="/benchmark")
        assert "No benchmark report" in message and plots == []
    assert clone(client, server.reference)[0] is not None  # models back: served again without a restart
