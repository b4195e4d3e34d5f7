"""`voxtok convert cosyvoice`: a CosyVoice-300M release folder -> a VoxTok TTS folder that `voxtok tts synth
--exp`, `voxtok.load` and the demo use (the end-to-end check of issue 20).

The release folder is the reduced, random-weight one of tests/reduced_release_folder.py (`make_release`).
Prompts are checked against CosyVoice v1's frontend (cosyvoice/cli/frontend.py `frontend_zero_shot`,
`frontend_cross_lingual`, `frontend_sft` and `_extract_*`, computed here with whisper, torchaudio's Kaldi
fbank and onnxruntime as that code calls them): every prompt token, the whole prompt mel, the CAM++
x-vector for the LLM and the flow. The parts' parity with the reference is proven by
tests/test_cosyvoice_{llm,flow,hift,frontend}.py, tests/test_campplus.py and tests/test_s3_onnx.py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx", reason="exporting the stand-in ONNX models needs the onnx package")
pytest.importorskip("whisper", reason="the whisper_bpe text frontend needs openai-whisper")

from reduced_release_folder import SPEAKERS, convert_release, make_release  # noqa: E402

import voxtok  # noqa: E402
from voxtok.cli import main  # noqa: E402
from voxtok.errors import BadConfigError  # noqa: E402

TEXT = "Hello there, how are you?"
PROMPT_TEXT = "She sells sea shells by the sea shore."


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Path:
    return make_release(tmp_path_factory.mktemp("cv") / "CosyVoice-300M-SFT")


@pytest.fixture(scope="module")
def converted(release, tmp_path_factory) -> Path:
    return convert_release(release, tmp_path_factory.mktemp("converted") / "cosyvoice_300m")


@pytest.fixture(scope="module")
def prompt_wav(speech, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("prompt") / "ref.wav"
    sf.write(path, speech, 16000, subtype="FLOAT")  # float: the reference path below reads the same samples
    return path


def synth(exp: Path, out: Path, *args: str) -> np.ndarray:
    """`voxtok tts synth --exp EXP` (2 flow steps) -> the audio it wrote, checked to be 22.05 kHz."""
    assert main(["tts", "synth", "--exp", str(exp), "--text", TEXT, "--steps", "2", "-o", str(out), *args]) == 0
    audio, rate = sf.read(out)
    assert rate == 22050 and audio.ndim == 1 and len(audio) > 0 and np.isfinite(audio).all()
    return audio


def test_the_reduced_parts_fit_one_another(release):
    from voxtok.convert.cosyvoice_yaml import read_cosyvoice_yaml

    config = read_cosyvoice_yaml(release / "cosyvoice.yaml")
    llm, flow, hift = config["llm"].args, config["flow"].args, config["hift"].args
    assert llm["speech_token_size"] == flow["vocab_size"] == 64
    assert llm["spk_embed_dim"] == flow["spk_embed_dim"] == 192
    assert flow["output_size"] == hift["in_channels"] == config["feat_extractor"].args["num_mels"] == 80
    assert hift["sampling_rate"] == config["feat_extractor"].args["sampling_rate"] == 22050


def test_conversion_writes_the_exp_dir_layout_with_every_part(release, converted, capsys):
    from voxtok.registry import read_metadata
    from voxtok.tts.manifest import read_manifest

    spec = read_manifest(converted / "tts" / "cosyvoice.yaml")
    assert spec["model"] == "cosyvoice" and Path(spec["speaker_encoder"]) == converted / "speaker" / "campplus.onnx"
    kinds = {part: (read_metadata(spec[part])["kind"], read_metadata(spec[part])["name"])
             for part in ("llm", "flow", "vocoder", "tokenizer")}
    assert kinds == {"llm": ("tts", "llm"), "flow": ("tts", "flow"), "vocoder": ("tts", "hift"),
                     "tokenizer": ("codec", "s3_onnx")}
    llm, flow = read_metadata(spec["llm"])["extra"], read_metadata(spec["flow"])["extra"]
    s3_hash = read_metadata(spec["tokenizer"])["weights_hash"]
    assert llm["frontend"]["kind"] == "whisper_bpe" and llm["tokens"]["checkpoint_hash"] == s3_hash
    assert flow["tokens"] == llm["tokens"] and flow["prompt_framing"] == "reference"
    assert llm["converted_from"]["checkpoint"] == "llm.pt"
    provenance = json.loads((converted / "conversion.json").read_text())
    assert provenance["voices"] == list(SPEAKERS) and provenance["voices_left_out"] == ["my_zero_shot_voice"]
    assert main(["tts", "speakers", "--exp", str(converted)]) == 0
    assert capsys.readouterr().out.split() == list(SPEAKERS)
    pipe = voxtok.load(converted / "tts" / "cosyvoice.yaml")
    spk2info = torch.load(release / "spk2info.pt", weights_only=True)
    for name in SPEAKERS:
        assert torch.equal(pipe.speakers.embedding(name), spk2info[name]["embedding"].reshape(-1))


def test_synth_in_every_mode_and_streaming(converted, prompt_wav, tmp_path):
    zero_shot = synth(converted, tmp_path / "zs.wav", "--prompt-wav", str(prompt_wav), "--prompt-text", PROMPT_TEXT)
    synth(converted, tmp_path / "cl.wav", "--mode", "cross_lingual", "--prompt-wav", str(prompt_wav))
    sft = [synth(converted, tmp_path / f"sft{i}.wav", "--mode", "sft", "--speaker", s) for i, s in enumerate(SPEAKERS)]
    streamed = synth(converted, tmp_path / "stream.wav", "--stream", "--prompt-wav", str(prompt_wav),
                     "--prompt-text", PROMPT_TEXT)
    assert len(streamed) == len(zero_shot)  # same seed, same tokens: the chunks tile the whole utterance
    assert not np.array_equal(sft[0][: len(sft[1])], sft[1][: len(sft[0])])  # each stored voice is its own


def test_same_seed_same_audio_from_the_cli_the_api_and_the_demo(converted, prompt_wav, tmp_path):
    from voxtok.audio import load_audio
    from voxtok.demo import DemoBackend

    cli = synth(converted, tmp_path / "cli.wav", "--prompt-wav", str(prompt_wav), "--prompt-text", PROMPT_TEXT,
                "--seed", "3")
    pipe = voxtok.load(converted / "tts" / "cosyvoice.yaml")
    wav, rate = load_audio(prompt_wav, None)
    api = pipe.synthesize(TEXT, pipe.prepare_prompt(wav, rate, PROMPT_TEXT), n_steps=2, seed=3)
    demo = DemoBackend(converted, work_dir=tmp_path / "demo")
    assert list(demo.tts_manifests()) == ["cosyvoice"] and demo.stored_voices("cosyvoice") == list(SPEAKERS)
    assert "CosyVoice-style ready" in demo.overview() and "`s3`" in demo.overview()
    done = demo.clone(TEXT, str(prompt_wav), PROMPT_TEXT, "cosyvoice", "zero-shot", n_steps=2, seed=3)
    assert done.ok, done.message
    assert np.array_equal(sf.read(done.get("audio"))[0], cli)
    assert np.allclose(api[0].numpy(), cli, atol=1 / 32768)  # the files hold 16-bit samples
    streamed = demo.clone(TEXT, None, None, "cosyvoice", "stored speaker", speaker=SPEAKERS[1], n_steps=2, seed=3,
                          streaming=True)
    assert streamed.ok and "first audio chunk" in streamed.message
    cli_stream = synth(converted, tmp_path / "s.wav", "--mode", "sft", "--speaker", SPEAKERS[1], "--seed", "3",
                       "--stream")
    assert np.array_equal(sf.read(streamed.get("audio"))[0], cli_stream)


def test_the_demo_server_clones_with_the_converted_folder(converted, prompt_wav, tmp_path):
    """The same request through the demo as users start it (gradio client against demo/app.py)."""
    pytest.importorskip("gradio_client", reason="the demo extra (gradio) is not installed")
    from demo_server import DemoServer, start_demo, wait_until_ready
    from gradio_client import Client, handle_file

    proc, url = start_demo(converted, tmp_path / "server.log")
    server = DemoServer(url, converted, prompt_wav, proc, tmp_path / "server.log")
    try:
        wait_until_ready(server)
        client = Client(url, verbose=False, download_files=str(tmp_path / "downloads"))
        audio, message = client.predict(text=TEXT, reference=handle_file(str(prompt_wav)), reference_text=PROMPT_TEXT,
                                        model="cosyvoice", mode="zero_shot", speaker=None, steps=2, cfg=0.7, seed=3,
                                        streaming=False, api_name="/clone")
    finally:
        server.stop()
    cli = synth(converted, tmp_path / "cli.wav", "--prompt-wav", str(prompt_wav), "--prompt-text", PROMPT_TEXT,
                "--seed", "3")
    assert "from CosyVoice-style (zero-shot, 2 steps, seed 3)" in message
    assert np.array_equal(sf.read(audio)[0], cli)


class _Spy:
    """Wraps a bound method, recording the arguments of every call."""

    def __init__(self, method):
        self.method, self.calls = method, []

    def __call__(self, *args, **kw):
        self.calls.append((args, kw))
        return self.method(*args, **kw)


def reference_prompt(release: Path, wav16: np.ndarray, prompt_text: str | None) -> dict:
    """What CosyVoice v1's frontend_zero_shot hands the model for a 16 kHz prompt (its _extract_* calls)."""
    import onnxruntime
    import torchaudio.compliance.kaldi as kaldi
    import whisper

    speech = torch.from_numpy(wav16)[None]
    feat = kaldi.fbank(speech, num_mel_bins=80, dither=0, sample_frequency=16000)
    campplus = onnxruntime.InferenceSession(str(release / "campplus.onnx"))
    embedding = campplus.run(None, {campplus.get_inputs()[0].name: (feat - feat.mean(0, keepdim=True))[None].numpy()})[0]
    mel = whisper.log_mel_spectrogram(speech, n_mels=128)
    s3 = onnxruntime.InferenceSession(str(release / "speech_tokenizer_v1.onnx"))
    tokens = s3.run(None, {s3.get_inputs()[0].name: mel.numpy(),
                           s3.get_inputs()[1].name: np.array([mel.shape[2]], dtype=np.int32)})[0]
    return {"embedding": torch.from_numpy(embedding).reshape(-1), "tokens": torch.from_numpy(tokens).reshape(-1).long(),
            "mel_frames": int(round(len(wav16) * 22050 / 16000)) // 256}  # matcha's uncentred mel: T // hop frames


def test_prompts_reach_the_llm_and_flow_as_cosyvoice_v1_frontend_gives_them(converted, release, speech):
    from voxtok.tts.whisper_bpe import WhisperBPE

    pipe = voxtok.load(converted / "tts" / "cosyvoice.yaml")
    want = reference_prompt(release, speech, PROMPT_TEXT)
    prompt = pipe.prepare_prompt(torch.from_numpy(speech)[None], 16000, PROMPT_TEXT)
    assert torch.allclose(prompt.spk_emb, want["embedding"], atol=1e-4 * max(1.0, float(want["embedding"].abs().max())))
    assert torch.equal(prompt.tokens, want["tokens"]) and len(want["tokens"]) == 100  # every token (2 s at 50 Hz)
    assert prompt.mel.shape == (80, want["mel_frames"]) == (80, 172)  # the whole mel, not cut to 100 tokens
    pipe.llm.generate, pipe.flow.synthesize = _Spy(pipe.llm.generate), _Spy(pipe.flow.synthesize)
    bpe = WhisperBPE()
    for mode, has_llm_prompt in (("zero_shot", True), ("cross_lingual", False), ("sft", False)):
        speaker = "spk_a" if mode == "sft" else None
        pipe.synthesize(TEXT, None if mode == "sft" else prompt, mode, speaker, n_steps=1)
        (text_ids, spk, p_text, p_tokens), _ = pipe.llm.generate.calls[-1]
        (_, _, flow_spk, flow_tokens, flow_mel), _ = pipe.flow.synthesize.calls[-1]
        embedding = want["embedding"] if mode != "sft" else pipe.speakers.embedding("spk_a")
        assert torch.allclose(spk[0], flow_spk[0]) and torch.allclose(spk[0], embedding, atol=1e-4)
        assert text_ids[0].tolist() == bpe.encode(pipe.frontend.normalize(TEXT))
        if has_llm_prompt:
            assert p_text[0].tolist() == bpe.encode(pipe.frontend.normalize(PROMPT_TEXT))
            assert torch.equal(p_tokens[0], want["tokens"])
        else:
            assert p_text is None and p_tokens is None
        if mode == "sft":
            assert flow_tokens is None and flow_mel is None
        else:
            assert torch.equal(flow_tokens[0], want["tokens"]) and flow_mel.shape[-1] == want["mel_frames"]


def test_streaming_hift_carries_its_excitation_between_chunks(converted):
    from voxtok.tts.pipeline import StreamingVocoder, load_vocoder

    hift = load_vocoder(converted / "tts" / "vocoder" / "model")
    spy = _Spy(hift.synthesize)
    hift.synthesize = spy
    mel = torch.randn(80, 30, generator=torch.Generator().manual_seed(0)) - 5.0
    stream = StreamingVocoder(hift, context_frames=4)
    first = stream.push(mel[:, :12], keep_frames=10)
    second = stream.push(mel[:, 10:30], keep_frames=20)
    assert first.numel() == 10 * 256 and second.numel() == 20 * 256
    (_, kw), (_, kw2) = spy.calls
    assert kw["cache_source"] is None
    _, source = hift.synthesize.method(mel[None, :, :12])  # the first chunk's excitation (same noise seed)
    assert torch.equal(kw2["cache_source"], source[..., 6 * 256:10 * 256])  # of the 4 context frames


@pytest.mark.parametrize("damage, message", [
    ("cosyvoice2", "this is a CosyVoice 2 release (cosyvoice2.yaml); supported: CosyVoice-300M v1"),
    ("qwen2_llm", "'llm' is cosyvoice.llm.llm.Qwen2LM, a CosyVoice 2 part; supported: CosyVoice-300M v1"),
    ("instruct", "CosyVoice-300M-Instruct is not supported"),
    ("missing_hift", "the release folder lacks hift.pt (the HiFT vocoder)"),
    ("corrupt_llm", "llm.pt: cannot read a CosyVoice-300M llm.pt"),
    ("foreign_llm", "llm.pt: checkpoint does not fit CosyVoice v1's TransformerLM"),
    ("bad_spk2info", "spk2info.pt: speaker 'spk_a' has a (1, 256) embedding; the models take 192-d x-vectors"),
])
def test_bad_release_folders_are_one_line_errors_and_write_nothing(release, tmp_path, capsys, damage, message):
    folder = tmp_path / ("CosyVoice-300M-Instruct" if damage == "instruct" else "CosyVoice-300M")
    shutil.copytree(release, folder)
    if damage == "cosyvoice2":
        (folder / "cosyvoice.yaml").rename(folder / "cosyvoice2.yaml")
    elif damage == "qwen2_llm":
        text = (folder / "cosyvoice.yaml").read_text().replace("cosyvoice.llm.llm.TransformerLM", "cosyvoice.llm.llm.Qwen2LM")
        (folder / "cosyvoice.yaml").write_text(text)
    elif damage == "missing_hift":
        (folder / "hift.pt").unlink()
    elif damage == "corrupt_llm":
        (folder / "llm.pt").write_bytes(b"not a checkpoint" * 10)
    elif damage == "foreign_llm":
        shutil.copyfile(folder / "flow.pt", folder / "llm.pt")
    elif damage == "bad_spk2info":
        torch.save({"spk_a": {"embedding": torch.zeros(1, 256)}}, folder / "spk2info.pt")
    out = tmp_path / "out"
    assert main(["convert", "cosyvoice", "--checkpoint", str(folder), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and message in err, err
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == [folder.name]  # no temp folder left


def test_only_an_earlier_conversion_is_replaced(release, converted, tmp_path, capsys):
    foreign = tmp_path / "exp"
    (foreign / "tts").mkdir(parents=True)
    (foreign / "tts" / "cosyvoice.yaml").write_text("model: cosyvoice\n")  # e.g. a recipe's exp dir
    assert main(["convert", "cosyvoice", "--checkpoint", str(release), "-o", str(foreign)]) == 2
    assert "refusing to replace it" in capsys.readouterr().err
    assert (foreign / "tts" / "cosyvoice.yaml").read_text() == "model: cosyvoice\n"
    again = tmp_path / "again"
    shutil.copytree(converted, again)
    (again / "stale.txt").write_text("from an earlier run")
    assert main(["convert", "cosyvoice", "--checkpoint", str(release), "-o", str(again)]) == 0
    assert not (again / "stale.txt").exists() and (again / "tts" / "cosyvoice.yaml").is_file()


def test_manifests_that_do_not_fit_are_one_line_errors(converted, tmp_path):
    from voxtok.tts.manifest import read_manifest, write_manifest

    spec = {k: v for k, v in read_manifest(converted / "tts" / "cosyvoice.yaml").items()}
    pipe = voxtok.load(write_manifest(tmp_path / "no_encoder.yaml", {**spec, "speaker_encoder": None}))
    with pytest.raises(BadConfigError, match="takes 192-d speaker vectors but resemblyzer .* gives 256-d"):
        pipe.prepare_prompt(torch.randn(1, 16000) * 0.1, 16000, "hello")
    with pytest.raises(BadConfigError, match="checkpoint holds tts 'llm', not a vocoder \\(hift, mel_vocoder\\)"):
        voxtok.load(write_manifest(tmp_path / "llm_vocoder.yaml", {**spec, "vocoder": spec["llm"]}))
    with pytest.raises(BadConfigError, match="unknown config key 'manifest.speaker_encodr'"):
        voxtok.load(write_manifest(tmp_path / "typo.yaml", {**spec, "speaker_encodr": spec["speaker_encoder"]}))


def test_training_takes_spk_dim_from_the_speaker_store():
    from voxtok.recipes.train_tts import complete_model_config
    from voxtok.tts.frontend import TextFrontend

    frontend = TextFrontend("char")
    cfg = complete_model_config({"spk_dim": 256, "text_vocab_size": None}, frontend, None,
                                {"model": "campplus", "dim": 192})
    assert cfg == {"spk_dim": 192, "text_vocab_size": frontend.vocab_size}
    assert complete_model_config({"spk_dim": 256}, frontend, None, None) == {"spk_dim": 256}
    assert complete_model_config({"vocab_size": 8}, frontend, None, {"dim": 192}) == {"vocab_size": 8}
