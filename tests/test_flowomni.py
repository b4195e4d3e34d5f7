"""Flow-Omni-style TTS: flow head, state stream, frame steps, sampling, errors, config sizes."""

from pathlib import Path

import pytest
import torch
import yaml

from voxtok.errors import BadAudioError, BadConfigError, BadTextError, VoxTokError
from voxtok.tts.flowomni import (
    IGNORE_INDEX, STATE_GENERATING, STATE_PAD, STATE_START, STATE_STOP, FlowHead, FlowOmniTTS, frames_to_steps,
    state_targets, steps_to_frames,
)
from voxtok.registry import load

from flowomni_fixtures import N_MELS, VOCAB, make_batch, micro_config, micro_model

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "tts"


# ----------------------------------------------------------------------------- flow head


def test_flow_head_learns_a_label_conditioned_mixture():
    torch.manual_seed(0)
    dim, n_labels = 8, 4
    means = torch.sign(torch.randn(n_labels, dim)) * 1.5
    head = FlowHead(dim, n_labels, width=64, depth=2)
    opt = torch.optim.Adam(head.parameters(), lr=3e-3)
    losses = []
    for _ in range(150):
        labels = torch.randint(0, n_labels, (128,))
        x1 = means[labels] + 0.1 * torch.randn(128, dim)
        loss = head.loss(x1, torch.nn.functional.one_hot(labels, n_labels).float(), noise_draws=4)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    first, last = sum(losses[:10]) / 10, sum(losses[-20:]) / 20
    assert last < 0.35 * first, (first, last)
    # Samples land on the mode of their own label, not on the others.
    cond = torch.eye(n_labels).repeat_interleave(200, dim=0)
    samples = head.sample(cond, torch.randn(len(cond), dim), n_steps=10, schedule="cosine")
    centers = samples.reshape(n_labels, 200, dim).mean(1)
    assert (centers - means).abs().max() < 0.3
    assert samples.reshape(n_labels, 200, dim).std(1).mean() < 0.3  # the noise (std 1) was transported
    assert torch.cdist(centers, means).argmin(1).tolist() == list(range(n_labels))


def test_zero_initialised_modulation_starts_on_the_skip_path():
    torch.manual_seed(0)
    head = FlowHead(16, 8, width=32, depth=3)
    x, t, c = torch.randn(5, 16), torch.rand(5), torch.randn(5, 8)
    # Every block is the identity (gate = 0), so the trunk is the input projection alone ...
    h, cond = head.trunk(x, t, c)
    assert torch.equal(h, head.input_proj(x))
    for block in head.blocks:
        assert torch.equal(block(h, cond), h)
    # ... and the zero output layer makes the first velocity exactly 0 for any input.
    assert torch.equal(head(x, t, c), torch.zeros(5, 16))
    # The zero layers still get gradients: one step moves the head off zero.
    opt = torch.optim.SGD(head.parameters(), lr=0.1)
    head.loss(torch.randn(5, 16), c).backward()
    opt.step()
    assert head(x, t, c).abs().sum() > 0


# ----------------------------------------------------------------------------- layout


def test_state_targets_pad_start_generating_stop_and_ignore():
    targets = state_targets(torch.tensor([3, 2]), torch.tensor([4, 1]), size=7)
    P, S, G, E, X = STATE_PAD, STATE_START, STATE_GENERATING, STATE_STOP, IGNORE_INDEX
    assert targets.tolist() == [[P, P, S, G, G, G, E], [P, S, E, X, X, X, X]]


def test_stop_position_holds_the_last_frame_and_start_predicts_the_first():
    model = micro_model(r=2)
    batch = make_batch(text_lengths=(6, 3), mel_lengths=(9, 4))
    inp = model.teacher_forced_inputs(batch)
    # [spk] + text + [start]
    assert inp.prefix_lengths.tolist() == [8, 5]
    assert inp.step_lengths.tolist() == [5, 2]
    assert inp.lengths.tolist() == [13, 7]
    targets = state_targets(inp.prefix_lengths, inp.step_lengths, inp.embeds.shape[1])
    for b in range(2):
        stop = int((targets[b] == STATE_STOP).nonzero())
        start = int((targets[b] == STATE_START).nonzero())
        last_step = model.frame_proj(inp.steps[b, inp.step_lengths[b] - 1])
        assert torch.allclose(inp.embeds[b, stop], last_step, atol=1e-6)
        assert torch.equal(inp.embeds[b, start], model.start_embedding.detach())
        assert int(inp.cond_index()[b, 0]) == start
        assert (targets[b, inp.lengths[b]:] == IGNORE_INDEX).all()
        assert (targets[b, :start] == STATE_PAD).all()


def test_loss_ignores_padding():
    model = micro_model(r=3).train()
    batch = make_batch(text_lengths=(6, 3), mel_lengths=(10, 4))
    noisy = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    noisy["text_ids"][1, 3:] = VOCAB - 1           # text padding
    # Item 1 has 4 frames, r = 3: frames 4-5 pad its last, partial step, frames 6-9 whole steps.
    noisy["mel"][1, :, 4:] = 7.0
    torch.manual_seed(5)
    loss, stats = model.forward_loss(batch)
    torch.manual_seed(5)
    loss_noisy, _ = model.forward_loss(noisy)
    assert torch.isfinite(loss) and float(loss.detach()) > 0
    assert torch.allclose(loss, loss_noisy)
    assert set(stats) == {"loss", "ce", "cfm", "stop_acc"}


# ----------------------------------------------------------------------------- frame steps


@pytest.mark.parametrize("r,total,lengths", [(1, 7, [7, 5]), (3, 7, [7, 4]), (4, 8, [8, 8])])
def test_frame_steps_shapes_padding_and_inverse(r, total, lengths):
    frames = torch.randn(2, total, N_MELS)
    lengths = torch.tensor(lengths)
    steps, step_lengths, mask = frames_to_steps(frames, lengths, r)
    n_steps = -(-total // r)
    assert steps.shape == (2, n_steps, r * N_MELS) and mask.shape == steps.shape
    assert step_lengths.tolist() == [-(-int(n) // r) for n in lengths]
    back = steps_to_frames(steps, r, N_MELS)
    for b, n in enumerate(lengths.tolist()):
        assert torch.equal(back[b, :n], frames[b, :n])
        frame_mask = mask[b].reshape(-1, N_MELS)[:, 0]
        assert frame_mask.tolist() == [1.0] * n + [0.0] * (n_steps * r - n)
        assert (back[b, n:] == 0).all()  # padded frames are zeros, not the next item's data


@pytest.mark.parametrize("r", [1, 3])
def test_feedback_loop_shapes(r):
    model = micro_model(r=r)
    loss, _ = model.train().forward_loss(make_batch(mel_lengths=(10, 5)))
    loss.backward()
    assert model.frame_proj.weight.grad is not None and model.head.output_proj.weight.grad.abs().sum() > 0
    mel, lengths = model.eval().synthesize(torch.tensor([1, 2, 3]), spk_emb=torch.randn(256), max_frames=7)
    assert mel.shape == (1, N_MELS, -(-7 // r) * r)
    assert int(lengths[0]) % r == 0 and 0 < int(lengths[0]) <= mel.shape[-1]


# ----------------------------------------------------------------------------- sampling


def test_sampling_is_deterministic_with_a_seed():
    model = micro_model(r=2)
    text, spk = torch.tensor([3, 4, 5, 6]), torch.randn(1, 256)
    a, la = model.synthesize(text, spk_emb=spk, seed=11)
    b, lb = model.synthesize(text, spk_emb=spk, seed=11)
    c, _ = model.synthesize(text, spk_emb=spk, seed=12, max_frames=int(la[0]))
    assert torch.equal(a, b) and torch.equal(la, lb)
    assert not torch.allclose(a[..., :int(la[0])], c[..., :int(la[0])])
    # temperature 0 integrates from x0 = 0: the seed no longer matters.
    d, _ = model.synthesize(text, spk_emb=spk, seed=1, temperature=0.0)
    e, _ = model.synthesize(text, spk_emb=spk, seed=2, temperature=0.0)
    assert torch.equal(d, e)


def test_batch_equals_one_by_one():
    model = micro_model(r=2, inference={"n_steps": 3, "stop_threshold": 0.3})
    texts = [torch.tensor([1, 2, 3, 4, 5]), torch.tensor([6, 7]), torch.tensor([8, 9, 10])]
    prompt_text = [torch.tensor([11, 12]), torch.tensor([13]), torch.tensor([14, 15, 16])]
    g = torch.Generator().manual_seed(0)
    prompt_mel = [torch.randn(N_MELS, n, generator=g) - 5 for n in (6, 3, 9)]
    spk = torch.randn(3, 256, generator=g)
    mel, lengths = model.synthesize(texts, prompt_text_ids=prompt_text, prompt_mel=prompt_mel, spk_emb=spk, seed=7)
    assert mel.shape[0] == 3 and lengths.tolist()
    for b in range(3):
        one, n = model.synthesize(texts[b], prompt_text_ids=prompt_text[b], prompt_mel=prompt_mel[b],
                                  spk_emb=spk[b], seed=7 + b)
        assert int(n[0]) == int(lengths[b])
        assert torch.allclose(one[0, :, :int(n[0])], mel[b, :, :int(n[0])], rtol=1e-4, atol=1e-4)
        assert (mel[b, :, int(n[0]):] == model.silence).all()  # padded with the log floor
    # Padded [B, L] + lengths is the same as a list of items.
    padded = torch.nn.utils.rnn.pad_sequence(texts, batch_first=True)
    again, _ = model.synthesize(padded, text_lengths=torch.tensor([5, 2, 3]), prompt_text_ids=prompt_text,
                                prompt_mel=prompt_mel, spk_emb=spk, seed=7)
    assert torch.equal(again, mel)


def test_prompt_conditions_the_output_and_is_cut_to_whole_steps():
    model = micro_model(r=3)  # stop_threshold 1: every call runs to max_frames, outputs line up
    text, spk = torch.tensor([1, 2, 3]), torch.randn(1, 256)
    prompt = torch.randn(N_MELS, 8) - 5
    with_prompt, n = model.synthesize(text, prompt_text_ids=torch.tensor([4, 5]), prompt_mel=prompt, spk_emb=spk,
                                      seed=0, max_frames=6, stop_threshold=1.0)
    without, _ = model.synthesize(text, spk_emb=spk, seed=0, max_frames=6, stop_threshold=1.0)
    assert with_prompt.shape == without.shape and not torch.allclose(with_prompt, without)
    # 8 frames with r = 3: the first 2 are dropped so the speech continues after the last frame.
    cut, _ = model.synthesize(text, prompt_text_ids=torch.tensor([4, 5]), prompt_mel=prompt[:, 2:], spk_emb=spk,
                              seed=0, max_frames=6, stop_threshold=1.0)
    assert torch.equal(cut, with_prompt)
    # One prompt (and speaker) serves a whole batch.
    batch, lengths = model.synthesize([text, text], prompt_text_ids=torch.tensor([4, 5]), prompt_mel=prompt,
                                      spk_emb=spk, seed=[0, 0], max_frames=6, stop_threshold=1.0)
    assert torch.allclose(batch[1], with_prompt[0], rtol=1e-4, atol=1e-4) and lengths.tolist() == [int(n[0])] * 2


def test_speaker_token_is_switchable_and_checkpoints_round_trip(tmp_path):
    plain = micro_model(r=2, use_spk_emb=False)
    assert plain.spk_proj is None
    assert plain.teacher_forced_inputs(make_batch()).prefix_lengths.tolist() == [7, 4]
    mel, _ = plain.synthesize(torch.tensor([1, 2, 3]), seed=3)  # no speaker needed
    saved = plain.save_pretrained(tmp_path / "flowomni")
    loaded = load(saved)
    assert loaded.registry_name == "flowomni" and loaded.to_config()["use_spk_emb"] is False
    assert torch.equal(loaded.synthesize(torch.tensor([1, 2, 3]), seed=3)[0], mel)


# ----------------------------------------------------------------------------- errors


def test_clear_errors():
    model = micro_model(r=2)
    spk = torch.randn(1, 256)
    good_prompt = torch.randn(N_MELS, 6) - 5
    with pytest.raises(BadTextError, match="empty"):
        model.synthesize(torch.tensor([], dtype=torch.long), spk_emb=spk)
    with pytest.raises(BadTextError, match="empty"):
        model.synthesize(torch.tensor([[1, 2], [3, 4]]), text_lengths=torch.tensor([2, 0]), spk_emb=spk)
    with pytest.raises(BadTextError, match="vocabulary"):
        model.synthesize(torch.tensor([1, VOCAB]), spk_emb=spk)
    with pytest.raises(BadAudioError, match="80"):
        model.synthesize(torch.tensor([1, 2]), prompt_mel=torch.randn(100, 6), spk_emb=spk)
    nan_prompt = good_prompt.clone()
    nan_prompt[3, 2] = float("nan")
    with pytest.raises(BadAudioError, match="NaN"):
        model.synthesize(torch.tensor([1, 2]), prompt_mel=nan_prompt, spk_emb=spk)
    with pytest.raises(BadAudioError, match="prompt mel"):
        model.synthesize(torch.tensor([1, 2]), prompt_text_ids=torch.tensor([3]), spk_emb=spk)
    with pytest.raises(BadConfigError, match="spk_emb"):
        model.synthesize(torch.tensor([1, 2]))
    for r in (0, -2):
        with pytest.raises(BadConfigError, match="frames_per_step"):
            FlowOmniTTS(micro_config(r=r))
    with pytest.raises(BadConfigError, match="unknown"):
        FlowOmniTTS(micro_config(head={"widht": 32}))
    with pytest.raises(BadConfigError, match="head.width"):
        FlowOmniTTS(micro_config(r=3, head={"width": 128}))
    with pytest.raises(BadConfigError, match="schedule"):
        FlowOmniTTS(micro_config(inference={"t_schedule": "quadratic"}))
    with pytest.raises(BadAudioError, match="mel"):
        model.forward_loss({**make_batch(), "mel": torch.randn(2, 100, 9)})
    for err in (BadTextError, BadAudioError, BadConfigError):
        assert issubclass(err, VoxTokError)


# ----------------------------------------------------------------------------- configs


def _head_params(dim: int, cond: int, width: int, depth: int, ratio: float = 1.0, freq: int = 256) -> int:
    hidden = int(width * ratio)
    block = (width * hidden + hidden) + (hidden * width + width) + (width * 3 * width + 3 * width)
    return ((dim * width + width) + (cond * width + width) + (freq * width + width) + (width * width + width)
            + depth * block + (width * 2 * width + 2 * width) + (width * dim + dim))


def paper_model_config(name: str, text_vocab_size: int) -> dict:
    """The `model:` block of a paper config with the text rows the recipe would fill in and without
    backbone.init_from (the pretrained folder fixes no size the block does not state)."""
    cfg = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())["model"]
    backbone = {k: v for k, v in cfg["backbone"].items() if k != "init_from"}
    return {**cfg, "text_vocab_size": text_vocab_size, "backbone": backbone}


# flowomni_paper: Qwen2-0.5B's 151,936 token rows; flowomni_scratch_paper: the phoneme frontend's 77 ids.
@pytest.mark.parametrize("name,vocab,count", [("flowomni_paper", 151936, 514_350_164),
                                              ("flowomni_scratch_paper", 77, 378_284_500)])
def test_paper_config_has_the_qwen2_0_5b_backbone_and_derived_size(name, vocab, count):
    with torch.device("meta"):
        model = FlowOmniTTS(paper_model_config(name, vocab))
    d, layers, kv, ffn = 896, 24, 2 * 64, 4864
    per_layer = (d * d + d) + 2 * (d * kv + kv) + d * d + 3 * d * ffn + 2 * d  # q/k/v with bias, o, SwiGLU, norms
    backbone = layers * per_layer + d
    assert sum(p.numel() for p in model.backbone.parameters()) == backbone
    # Backbone + token table = Qwen2-0.5B's published 494,032,768 (tied embeddings).
    assert backbone + 151936 * d == 494_032_768
    head = _head_params(N_MELS, d, 1024, 3)
    assert sum(p.numel() for p in model.head.parameters()) == head == 20_239_440
    # + start, frame in, state head, the CFG null condition (cond_dropout > 0)
    total = backbone + vocab * d + d + (N_MELS * d + d) + (d * 4 + 4) + head + d
    assert model.null_cond.shape == (d,)
    assert sum(p.numel() for p in model.parameters()) == total == count


def test_paper_widths_run_a_short_forward():
    cfg = paper_model_config("flowomni_paper", VOCAB)
    cfg = {**cfg, "backbone": {**cfg["backbone"], "num_layers": 1}}
    torch.manual_seed(0)
    model = FlowOmniTTS(cfg)
    batch = make_batch(text_lengths=(4, 2), mel_lengths=(3, 2))
    loss, stats = model.forward_loss(batch)
    assert torch.isfinite(loss)
    mel, lengths = model.eval().synthesize(torch.tensor([1, 2]), max_frames=2, n_steps=2)
    assert mel.shape == (1, N_MELS, int(lengths[0])) and int(lengths[0]) >= 1


def test_tiny_config_overfits_a_batch():
    cfg = yaml.safe_load((CONFIGS / "flowomni_tiny.yaml").read_text())
    assert cfg["name"] == "flowomni"
    model_cfg = {**cfg["model"], "text_vocab_size": VOCAB}
    torch.manual_seed(0)
    model = FlowOmniTTS(model_cfg).train()
    assert 3_000_000 < sum(p.numel() for p in model.parameters()) < 5_000_000
    batch = make_batch(text_lengths=(8, 5), mel_lengths=(24, 13))
    opt = torch.optim.AdamW(model.parameters(), lr=float(cfg["optim"]["lr"]))
    losses = []
    for _ in range(25):
        loss, _ = model.forward_loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert sum(losses[-5:]) / 5 < 0.6 * sum(losses[:3]) / 3, losses
