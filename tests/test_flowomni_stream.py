"""Flow-Omni streaming (frames in chunks as decoded, vocoded with CosyVoice's chunk / cross-fade rule)
and classifier-free guidance on the flow head (condition dropout in training, strength per call)."""

from __future__ import annotations

import pytest
import torch
import yaml

from voxtok.errors import BadConfigError, BadTextError
from voxtok.registry import load
from voxtok.tts.flowomni import FlowHead, FlowOmniTTS
from voxtok.tts.flowomni_pipeline import FlowOmniPipeline
from voxtok.tts.pipeline import SpeakerTable

from flowomni_fixtures import N_MELS, make_batch, micro_model
from tts_fixtures import model_config, save_flowomni_exp, tiny_tts_parts

TEXT = torch.tensor([3, 1, 4, 1, 5, 9, 2, 6])


def cfg_model(r: int = 2, dropout: float = 0.3, seed: int = 0) -> FlowOmniTTS:
    """A micro model trained-looking enough for CFG to matter: a head that depends on its input and a
    null condition far from the LM's hidden states. min = max frame/text ratio: 48 frames for TEXT
    (a random state head would stop anywhere)."""
    model = micro_model(r, seed, cfm={"cond_dropout": dropout}, min_frame_text_ratio=6.0, max_frame_text_ratio=6.0)
    if model.null_cond is not None:
        with torch.no_grad():
            model.null_cond.normal_(0.0, 1.0)
    return model


# ----------------------------------------------------------------------------- frames


@pytest.mark.parametrize("r,chunk,first", [(1, 5, 2), (2, 6, None), (3, 4, 1)])
def test_stream_frames_are_the_one_shot_frames_in_chunks(r, chunk, first):
    model = cfg_model(r)
    spk = torch.randn(256)
    kw = dict(spk_emb=spk, n_steps=2, seed=7, cfg_strength=0.5)
    mel, lengths = model.synthesize(TEXT, **kw)
    chunks = list(model.stream_frames(TEXT, chunk_frames=chunk, first_chunk_frames=first, **kw))
    total = int(lengths[0])
    assert total > 2 * chunk  # several chunks
    step_chunk, step_first = -(-chunk // r) * r, -(-(first or chunk) // r) * r  # whole steps of r frames
    sizes = [c.shape[-1] for c in chunks]
    assert sizes[0] == step_first and all(s == step_chunk for s in sizes[1:-1]) and 0 < sizes[-1] <= step_chunk
    assert all(c.shape[0] == N_MELS for c in chunks)
    assert torch.equal(torch.cat(chunks, dim=-1), mel[0, :, :total])
    # Another seed gives other frames: the equality above is not a constant.
    other = torch.cat(list(model.stream_frames(TEXT, chunk_frames=chunk, **{**kw, "seed": 8})), dim=-1)
    assert not torch.equal(other[:, :4], mel[0, :, :4])


def test_stream_frames_with_a_prompt_and_bad_requests():
    model = cfg_model(2)
    spk, prompt_mel = torch.randn(1, 256), torch.randn(N_MELS, 9) - 5
    kw = dict(prompt_text_ids=torch.tensor([2, 2, 7]), prompt_mel=prompt_mel, spk_emb=spk, n_steps=2, seed=3)
    mel, lengths = model.synthesize(TEXT, **kw)
    streamed = torch.cat(list(model.stream_frames(TEXT, chunk_frames=4, **kw)), dim=-1)
    assert torch.equal(streamed, mel[0, :, : int(lengths[0])])
    with pytest.raises(BadTextError, match="stream_frames takes one text, got a batch of 2"):
        next(model.stream_frames(torch.stack([TEXT, TEXT]), spk_emb=spk))
    with pytest.raises(BadConfigError, match="chunk_frames must be a whole number of mel frames >= 1, got 0"):
        next(model.stream_frames(TEXT, spk_emb=spk, chunk_frames=0))


# ----------------------------------------------------------------------------- CFG


def test_guidance_formula_and_zero_strength_is_the_plain_conditional_flow():
    torch.manual_seed(0)
    head = FlowHead(6, 4, width=16, depth=1)
    with torch.no_grad():
        for p in head.parameters():
            p.normal_(0.0, 0.3)
    cond, null, x0 = torch.randn(3, 4), torch.randn(4), torch.randn(3, 6)
    t = torch.zeros(3)
    v_c, v_u = head(x0, t, cond), head(x0, t, null.expand(3, 4))
    one_step = head.sample(cond, x0, n_steps=1, uncond=null, cfg_strength=2.0)
    assert torch.allclose(one_step, x0 + (3.0 * v_c - 2.0 * v_u), atol=1e-5)  # (1 + w) v_c - w v_u
    assert torch.equal(head.sample(cond, x0, n_steps=3, uncond=null, cfg_strength=0.0),
                       head.sample(cond, x0, n_steps=3))
    with pytest.raises(BadConfigError, match="null condition"):
        head.sample(cond, x0, n_steps=1, cfg_strength=1.0)


def test_cfg_strength_changes_the_output_and_zero_equals_a_model_without_cfg():
    model = cfg_model(2)
    spk = torch.randn(1, 256)
    kw = dict(spk_emb=spk, n_steps=3, seed=1, max_frames=8)
    plain = model.synthesize(TEXT, cfg_strength=0.0, **kw)[0]
    assert torch.equal(model.synthesize(TEXT, **kw)[0], plain)  # the config's default strength is 0
    guided = model.synthesize(TEXT, cfg_strength=1.5, **kw)[0]
    assert guided.shape == plain.shape and (guided - plain).abs().max() > 1e-2
    assert (model.synthesize(TEXT, cfg_strength=3.0, **kw)[0] - guided).abs().max() > 1e-2
    # The same weights without the null condition (a model trained without dropout) give the plain output.
    bare = FlowOmniTTS(model.to_config() | {"cfm": {**model.config["cfm"], "cond_dropout": 0.0}}).eval()
    bare.load_state_dict({k: v for k, v in model.state_dict().items() if k != "null_cond"}, strict=True)
    assert torch.equal(bare.synthesize(TEXT, **kw)[0], plain)


def test_condition_dropout_trains_the_null_condition():
    model = cfg_model(2, dropout=0.5).train()
    batch = make_batch(text_lengths=(6, 5), mel_lengths=(30, 26))
    torch.manual_seed(0)
    loss, stats = model.forward_loss(batch)
    assert 0.2 < float(stats["cond_dropped"]) < 0.8  # 28 frame steps, each dropped with p = 0.5
    loss.backward()
    assert model.null_cond.grad is not None and model.null_cond.grad.abs().sum() > 0
    # In eval mode nothing is dropped: the loss is the conditional flow's.
    model.eval()
    _, stats = model.forward_loss(batch)
    assert float(stats["cond_dropped"]) == 0.0
    rows = torch.randn(1000, model.width)
    model.train()
    dropped_rows, dropped = model.drop_condition(rows)
    assert torch.equal(dropped_rows[dropped], model.null_cond.detach().expand(int(dropped.sum()), -1))
    assert torch.equal(dropped_rows[~dropped], rows[~dropped]) and 400 < int(dropped.sum()) < 600
    # Without dropout there is no null condition and no stat for it.
    plain = micro_model(2).train()
    assert plain.null_cond is None and "cond_dropped" not in plain.forward_loss(batch)[1]


def test_a_model_without_dropout_refuses_cfg_in_one_line_and_old_checkpoints_load(tmp_path):
    model = micro_model(2)
    assert not model.supports_cfg
    with pytest.raises(BadConfigError) as err:
        model.synthesize(TEXT, spk_emb=torch.randn(256), cfg_strength=0.7)
    assert "\n" not in str(err.value) and "trained with condition dropout (cfm.cond_dropout > 0)" in str(err.value)
    model.synthesize(TEXT, spk_emb=torch.randn(256), cfg_strength=0.0, max_frames=2)  # 0 = off: allowed
    with pytest.raises(BadConfigError, match="inference.cfg_strength 0.5 needs a Flow-Omni model trained with"):
        micro_model(2, inference={"n_steps": 3, "cfg_strength": 0.5})
    with pytest.raises(BadConfigError, match=r"cfg_strength must be finite and >= 0"):
        cfg_model(2).synthesize(TEXT, spk_emb=torch.randn(256), cfg_strength=-1.0)
    with pytest.raises(BadConfigError, match=r"cfm.cond_dropout must be in \[0, 1\)"):
        micro_model(2, cfm={"cond_dropout": 1.0})

    # A checkpoint saved before CFG existed (no cond_dropout / cfg_strength / streaming keys) loads strictly.
    folder = model.save_pretrained(tmp_path / "old")
    config_file = next(p for p in folder.iterdir() if p.suffix == ".yaml")
    saved = yaml.safe_load(config_file.read_text())
    block = saved.get("model", saved)
    del block["cfm"]["cond_dropout"], block["inference"]["cfg_strength"], block["streaming"]
    config_file.write_text(yaml.safe_dump(saved))
    old = load(folder, kind="tts")
    assert not old.supports_cfg and old.config["streaming"] == {"chunk_frames": 44, "overlap_frames": 8}
    # ... and one trained with dropout keeps its null condition through a round trip.
    guided = cfg_model(2)
    back = load(guided.save_pretrained(tmp_path / "new"), kind="tts")
    assert back.supports_cfg and torch.equal(back.null_cond, guided.null_cond)


# ----------------------------------------------------------------------------- pipeline, CLI


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    return tiny_tts_parts(tmp_path_factory.mktemp("flowomni_stream") / "spk")


def tiny_model(frontend, dropout: float = 0.1) -> FlowOmniTTS:
    """The tiny config (r = 4) with a head that depends on its input and a non-trivial null condition."""
    torch.manual_seed(0)
    cfg = model_config("tts/flowomni_tiny.yaml") | {"text_vocab_size": frontend.vocab_size,
                                                      "max_frame_text_ratio": 4.0, "min_frame_text_ratio": 4.0}
    cfg["cfm"] = {**cfg["cfm"], "cond_dropout": dropout}
    model = FlowOmniTTS.from_config(cfg).eval()
    with torch.no_grad():
        for p in model.head.parameters():
            if not p.any():
                p.normal_(0.0, 0.05)
        if model.null_cond is not None:
            model.null_cond.normal_(0.0, 1.0)
    return model


def test_stream_audio_has_the_one_shot_length_and_matches_it_away_from_the_seams(parts):
    pipe = FlowOmniPipeline(tiny_model(parts.frontend), parts.vocoder, parts.frontend, SpeakerTable(parts.speakers_dir))
    assert (pipe.streaming, pipe.cfg) == (True, True)
    kw = dict(n_steps=2, seed=4, cfg_strength=0.5)
    text = "a short line of text"  # 20 characters -> 80 frames (min = max ratio 4)
    one = pipe.synthesize(text, None, "sft", "spk1", **kw)[0]
    hop = parts.vocoder.hop_length
    assert one.shape[-1] == 80 * hop
    for chunk, first, overlap in ((12, 8, 4), (20, None, 0), (16, 4, 8)):
        chunks = list(pipe.stream(text, None, "sft", "spk1", chunk_tokens=chunk, first_chunk_tokens=first,
                                  overlap_tokens=overlap, **kw))
        frames = [c.numel() // hop for c in chunks]
        assert all(c.numel() % hop == 0 and c.dtype == torch.float32 for c in chunks)
        assert frames[0] == (first or chunk) and all(f == chunk for f in frames[1:-1])
        audio = torch.cat(chunks)
        assert audio.shape == one.shape  # the one-shot length
        # Away from the seams the vocoder saw the same frames: the audio is one-shot's. A seam: the
        # look-ahead audio cross-faded into the next chunk and the frame before the join; without
        # look-ahead the last ~5 frames before a join, which the vocoder made without right context
        # (its ISTFT window alone spans 4 hops).
        seams, near = torch.cumsum(torch.tensor(frames[:-1]), 0).tolist(), torch.zeros(80, dtype=torch.bool)
        for b in seams:
            near[max(b - (2 if overlap else 6), 0): b + max(overlap, 1)] = True
        away = (~near).repeat_interleave(hop)
        assert (audio - one)[away].abs().max() <= 1e-2 * one.abs().max()
        assert (audio - one)[~away].abs().max() < one.abs().max()  # the seams differ, but stay bounded


def test_pipeline_cfg_is_per_instance(parts):
    bare = FlowOmniPipeline(tiny_model(parts.frontend, dropout=0.0), parts.vocoder, parts.frontend,
                            SpeakerTable(parts.speakers_dir))
    assert FlowOmniPipeline.cfg and not bare.cfg
    for call in (lambda: bare.synthesize("hi", None, "sft", "spk1", cfg_strength=0.7),
                 lambda: bare.stream("hi", None, "sft", "spk1", cfg_strength=0.0)):
        with pytest.raises(BadConfigError, match=r"^this Flow-Omni model was trained without condition dropout "
                                                 r"\(cfm.cond_dropout 0\), so it has no classifier-free guidance"):
            call()
    assert bare.synthesize("hi", None, "sft", "spk1", n_steps=2).shape[-1] > 0


def test_cli_streams_and_guides_a_flowomni_manifest(parts, tmp_path, capsys):
    from voxtok.audio import load_audio
    from voxtok.cli import main

    manifest = save_flowomni_exp(tiny_model(parts.frontend), parts, tmp_path)
    base = ["tts", "synth", "--pipeline", str(manifest), "--mode", "sft", "--speaker", "spk1", "--text",
            "hello there", "--steps", "2"]
    assert main(base + ["--stream", "--first-chunk-tokens", "8", "--cfg", "0.7", "-o", str(tmp_path / "s.wav")]) == 0
    assert "first chunk after" in capsys.readouterr().out
    assert main(base + ["--cfg", "0.7", "-o", str(tmp_path / "o.wav")]) == 0
    streamed, sr = load_audio(tmp_path / "s.wav", check=False)
    whole, _ = load_audio(tmp_path / "o.wav", check=False)
    assert sr == parts.vocoder.sample_rate and streamed.shape == whole.shape  # 11 characters x 4 frames x hop
    assert streamed.shape[-1] == 44 * parts.vocoder.hop_length
    assert main(base + ["--cfg", "0", "-o", str(tmp_path / "p.wav")]) == 0
    plain, _ = load_audio(tmp_path / "p.wav", check=False)
    assert (plain - whole).abs().max() > 1e-3  # the strength reached the model

    bare = save_flowomni_exp(tiny_model(parts.frontend, dropout=0.0), parts, tmp_path / "bare")
    args = ["tts", "synth", "--pipeline", str(bare), "--mode", "sft", "--speaker", "spk1", "--text", "hi",
            "--cfg", "0.7", "-o", str(tmp_path / "x.wav")]
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "no classifier-free guidance" in err and len(err.splitlines()) == 1


def test_demo_streams_flowomni_and_applies_cfg_only_where_the_model_has_it(parts, tmp_path):
    from voxtok.demo import DemoBackend

    exp = tmp_path / "exp"
    save_flowomni_exp(tiny_model(parts.frontend), parts, exp)
    backend = DemoBackend(exp, work_dir=tmp_path / "out")
    outcome = backend.clone("hello", None, None, "flowomni", "sft", speaker="spk1", n_steps=2, cfg_strength=0.7,
                            streaming=True)
    assert outcome.ok, outcome.message
    assert "first audio chunk after" in outcome.message and "does not apply" not in outcome.message

    bare = tmp_path / "bare"
    save_flowomni_exp(tiny_model(parts.frontend, dropout=0.0), parts, bare)
    outcome = DemoBackend(bare, work_dir=tmp_path / "out2").clone("hello", None, None, "flowomni", "sft",
                                                                  speaker="spk1", n_steps=2, cfg_strength=0.7)
    assert outcome.ok and "CFG strength does not apply to this Flow-Omni model" in outcome.message


def test_a_flowomni_manifest_takes_a_hift_vocoder(parts, tmp_path):
    """Any registered vocoder on the model's mel settings (here HiFT, as a converted CosyVoice folder has)."""
    from voxtok.tts.hift import HiFT
    from voxtok.tts.manifest import read_manifest, write_manifest

    torch.manual_seed(0)
    hift = HiFT(model_config("tts/hift_tiny.yaml")).eval()
    manifest = save_flowomni_exp(tiny_model(parts.frontend), parts, tmp_path / "exp")
    hift.save_pretrained(tmp_path / "hift")
    spec = dict(read_manifest(manifest)) | {"vocoder": str(tmp_path / "hift")}
    pipe = load(write_manifest(tmp_path / "exp" / "tts" / "flowomni_hift.yaml", spec))
    assert isinstance(pipe.vocoder, HiFT) and pipe.sample_rate == 22050
    audio = pipe.synthesize("a short line", None, "sft", "spk1", n_steps=2, seed=1)
    assert audio.shape[-1] % hift.hop_length == 0 and torch.isfinite(audio).all()
