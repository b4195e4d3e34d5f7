"""The CosyVoice-style pipeline end to end with tiny random parts: modes, batch, streaming, errors, CLI."""

from __future__ import annotations

import pytest
import torch

from voxtok.errors import BadAudioError, BadConfigError, BadTextError, UnknownSpeakerError
from voxtok.tts.cosyvoice import CosyVoicePipeline
from voxtok.tts.pipeline import SpeakerTable, timed_stream

from tts_fixtures import save_cosyvoice_exp, save_flowomni_exp, tiny_flowomni, tiny_tts_parts


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    return tiny_tts_parts(tmp_path_factory.mktemp("spk"))


@pytest.fixture(scope="module")
def pipe(parts):
    frontend, tokenizer, llm, flow, vocoder, speakers_dir = parts
    return CosyVoicePipeline(llm, flow, vocoder, tokenizer, frontend, SpeakerTable(speakers_dir))


@pytest.fixture(scope="module")
def prompt(pipe, speech):
    return pipe.prepare_prompt(torch.from_numpy(speech)[None], 16000, "she sells sea shells")


def test_prompt_tokens_and_mel_line_up(pipe, prompt):
    assert prompt.spk_emb.shape == (256,)
    assert prompt.mel.shape[0] == 80
    assert prompt.mel.shape[1] == int(pipe.flow.frames_for_tokens(prompt.tokens.numel()))


def test_batch_equals_single_and_modes(pipe, prompt):
    batch = pipe.synthesize_batch(["good day", "hello there"], [prompt, prompt], seed=3)
    single = pipe.synthesize("hello there", prompt, seed=4)
    assert batch[1].shape == single.shape and batch[1].shape[0] == 1
    assert torch.allclose(batch[1], single, atol=1e-5)
    cross = pipe.synthesize("hello there", prompt, mode="cross_lingual", seed=1)
    sft = pipe.synthesize("hello there", None, mode="sft", speaker="spk1", seed=1)
    for audio in (cross, sft):
        assert audio.dim() == 2 and audio.shape[-1] % pipe.vocoder.hop_length == 0 and torch.isfinite(audio).all()


def test_stream_has_the_length_of_one_shot_synthesis(pipe, prompt):
    full = pipe.synthesize("the cat sat on the mat", prompt, seed=7)
    audio, first = timed_stream(pipe.stream("the cat sat on the mat", prompt, seed=7, first_chunk_tokens=3))
    assert audio.shape == full.shape
    assert first >= 0


def test_bad_inputs_give_clear_errors(pipe, prompt):
    with pytest.raises(BadTextError):
        pipe.synthesize("   ", prompt)
    with pytest.raises(BadTextError):
        pipe.synthesize("word " * 40, prompt)
    with pytest.raises(BadAudioError, match="silent"):
        pipe.prepare_prompt(torch.zeros(1, 32000), 16000, "nothing")
    with pytest.raises(UnknownSpeakerError, match="spk1"):
        pipe.synthesize("hello", None, mode="sft", speaker="nobody")
    with pytest.raises(BadConfigError, match="transcript"):
        pipe.synthesize("hello", prompt.__class__(**{**prompt.__dict__, "text": None}))


def test_cli_synthesizes_from_a_manifest(parts, tmp_path, speech, capsys):
    from voxtok.audio import load_audio, save_audio
    from voxtok.cli import main

    manifest = save_cosyvoice_exp(parts, tmp_path)
    save_audio(tmp_path / "ref.wav", torch.from_numpy(speech)[None], 16000)
    out = tmp_path / "out.wav"
    assert main(["tts", "synth", "--exp", str(tmp_path), "--text", "hello there", "--prompt-wav",
                 str(tmp_path / "ref.wav"), "--prompt-text", "she sells sea shells", "--stream",
                 "--steps", "2", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "first chunk after" in printed and "RTF" in printed
    wav, sr = load_audio(out, check=False)
    assert sr == parts.vocoder.sample_rate and wav.shape[-1] > 0
    assert main(["tts", "speakers", "--pipeline", str(manifest)]) == 0
    assert "spk1" in capsys.readouterr().out
    assert main(["tts", "synth", "--pipeline", str(manifest), "--text", "", "--mode", "sft",
                 "--speaker", "spk1", "-o", str(tmp_path / "x.wav")]) == 2


def test_flowomni_pipeline_modes_and_cli(parts, tmp_path, speech, capsys):
    from voxtok.audio import save_audio
    from voxtok.cli import main
    from voxtok.tts.flowomni_pipeline import FlowOmniPipeline

    frontend, _, _, _, vocoder, speakers_dir = parts
    model = tiny_flowomni(frontend)
    pipe = FlowOmniPipeline(model, vocoder, frontend, SpeakerTable(speakers_dir))
    prompt = pipe.prepare_prompt(torch.from_numpy(speech)[None], 16000, "she sells sea shells")
    batch = pipe.synthesize_batch(["good day", "hi there"], [prompt, prompt], seed=5, n_steps=2)
    assert torch.allclose(batch[1], pipe.synthesize("hi there", prompt, seed=6, n_steps=2), atol=1e-5)
    assert pipe.synthesize("hi", None, mode="sft", speaker="spk1", n_steps=2).shape[-1] > 0
    assert pipe.synthesize("hi", prompt, mode="cross_lingual", n_steps=2).shape[-1] > 0
    assert pipe.cfg and pipe.synthesize("hi", prompt, cfg_strength=0.7, n_steps=2).shape[-1] > 0

    save_flowomni_exp(model, parts, tmp_path)
    save_audio(tmp_path / "ref.wav", torch.from_numpy(speech)[None], 16000)
    args = ["tts", "synth", "--exp", str(tmp_path), "--model", "flowomni", "--text", "hi", "--prompt-wav",
            str(tmp_path / "ref.wav"), "--prompt-text", "she sells", "--steps", "2", "-o", str(tmp_path / "o.wav")]
    assert main(args) == 0 and (tmp_path / "o.wav").is_file()
    assert main(args + ["--stream"]) == 0
    assert "first chunk after" in capsys.readouterr().out
