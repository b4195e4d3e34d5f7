"""CosyVoice-style text-to-token LLM: layout, loss masking, KV-cache / batched decoding, length
limits, TTS dataset + collate, the training recipe and the paper-size configuration."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from voxtok.errors import BadConfigError, BadDataDirError, BadTextError, BadTokenFileError
from voxtok.recipes import CONFIG_DIR
from voxtok.tts.frontend import TextFrontend
from voxtok.tts.llm import IGNORE_INDEX, TextToTokenLM, SamplingConfig, build_causal_backbone

from tts_llm_fixtures import SMALL, TEXTS, V, make_corpus, small_model


def toy_batch(seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return dict(text_ids=torch.randint(3, 40, (3, 6), generator=g), text_lengths=torch.tensor([6, 3, 5]),
                speech_tokens=torch.randint(0, V, (3, 9), generator=g), token_lengths=torch.tensor([9, 4, 6]),
                spk_emb=torch.randn(3, 8, generator=g))


def test_backbone_builder_kinds_and_errors():
    for kind in ("qwen2", "llama"):
        net = build_causal_backbone(dict(kind=kind, hidden_size=32, num_layers=1, num_heads=4, intermediate_size=48))
        assert net.embed_tokens is None  # inputs come as embeddings: no unused token table
        assert net(inputs_embeds=torch.randn(2, 5, 32)).last_hidden_state.shape == (2, 5, 32)
    with pytest.raises(BadConfigError, match="kind"):
        build_causal_backbone(dict(kind="gpt9", hidden_size=32, num_layers=1, num_heads=4, intermediate_size=48))
    with pytest.raises(BadConfigError, match="divide"):
        build_causal_backbone(dict(hidden_size=30, num_layers=1, num_heads=4, intermediate_size=48))
    with pytest.raises(BadConfigError, match="unknown"):
        TextToTokenLM.from_config({**SMALL, "n_layers": 3})


def test_sequence_layout_sos_spk_text_task_prompt_speech():
    model = small_model()
    b = toy_batch()
    prompt, prompt_len = torch.randint(0, V, (3, 4)), torch.tensor([4, 0, 2])
    with torch.no_grad():
        x, lay = model.build_inputs(b["text_ids"], b["text_lengths"], b["spk_emb"], prompt, prompt_len,
                                    b["speech_tokens"], b["token_lengths"])
        text = model.text_encoder(b["text_ids"], b["text_lengths"])
        spk = model.spk_proj(F.normalize(b["spk_emb"], dim=-1))
    L, N = b["text_lengths"], b["token_lengths"]
    assert lay.sos.tolist() == [0, 0, 0] and lay.spk.tolist() == [1, 1, 1] and lay.text.tolist() == [2, 2, 2]
    assert lay.task.tolist() == (2 + L).tolist() and lay.prompt.tolist() == (3 + L).tolist()
    assert lay.speech.tolist() == (3 + L + prompt_len).tolist()
    assert lay.lengths.tolist() == (3 + L + prompt_len + N).tolist() and x.shape[1] == int(lay.lengths.max())
    emb = model.speech_embedding.weight
    for i in range(3):
        torch.testing.assert_close(x[i, 0], model.special.weight[0])
        torch.testing.assert_close(x[i, 1], spk[i])
        torch.testing.assert_close(x[i, 2:2 + L[i]], text[i, :L[i]])
        torch.testing.assert_close(x[i, lay.task[i]], model.special.weight[1])
        torch.testing.assert_close(x[i, lay.prompt[i]:lay.speech[i]], emb[prompt[i, :prompt_len[i]]])
        torch.testing.assert_close(x[i, lay.speech[i]:lay.lengths[i]], emb[b["speech_tokens"][i, :N[i]]])
        assert x[i, lay.lengths[i]:].abs().sum() == 0


def test_loss_only_on_speech_tokens_and_eos_pads_ignored():
    model = small_model()
    b = toy_batch()
    with torch.no_grad():
        logits, targets, lay = model.forward_logits(b)
        loss, stats = model.loss_from_logits(logits, targets)
    # Targets: token j at [task + j], EOS after the last token, nothing else.
    for i in range(3):
        n, t = int(b["token_lengths"][i]), int(lay.task[i])
        assert targets[i, t:t + n].tolist() == b["speech_tokens"][i, :n].tolist() and targets[i, t + n] == V
        assert (targets[i, :t] == IGNORE_INDEX).all() and (targets[i, t + n + 1:] == IGNORE_INDEX).all()
    # Logits where nothing is predicted (text side, pads) do not matter.
    noisy = torch.where((targets == IGNORE_INDEX)[..., None], torch.randn_like(logits) * 50, logits)
    assert torch.allclose(model.loss_from_logits(noisy, targets)[0], loss)
    assert 0 <= float(stats["acc"]) <= 1 and float(stats["loss"]) == pytest.approx(float(loss))
    # Pad values are irrelevant, and the batch loss is the token-weighted mean of the items' losses.
    junk = dict(b, text_ids=b["text_ids"].clone(), speech_tokens=b["speech_tokens"].clone())
    for i in range(3):
        junk["text_ids"][i, b["text_lengths"][i]:] = 7
        junk["speech_tokens"][i, b["token_lengths"][i]:] = 3
    with torch.no_grad():
        assert torch.allclose(model.forward_loss(junk)[0], loss, atol=1e-5)
        single = []
        for i in range(3):
            n, l = int(b["token_lengths"][i]), int(b["text_lengths"][i])
            one = dict(text_ids=b["text_ids"][i:i + 1, :l], text_lengths=b["text_lengths"][i:i + 1],
                       speech_tokens=b["speech_tokens"][i:i + 1, :n], token_lengths=b["token_lengths"][i:i + 1],
                       spk_emb=b["spk_emb"][i:i + 1])
            single.append(float(model.forward_loss(one)[0]) * (n + 1))
    assert float(loss) == pytest.approx(sum(single) / float((b["token_lengths"] + 1).sum()), rel=1e-4)


def test_kv_cache_decoding_equals_full_recompute():
    model = small_model(min_token_text_ratio=0.0)
    texts = [torch.tensor([5, 6, 7, 8, 9]), torch.tensor([10, 11, 12])]
    spk = torch.randn(2, 8)
    steps = list(model.decode_steps(texts, spk, sampling=SamplingConfig.greedy(), max_tokens=10))
    tokens = [[int(s.token[i]) for s in steps if s.active[i]] for i in range(2)]
    speech = [[t for t in toks if t != V] for toks in tokens]
    assert all(len(s) > 0 for s in speech)
    lengths = torch.tensor([len(s) for s in speech])
    batch = dict(text_ids=torch.nn.utils.rnn.pad_sequence(texts, batch_first=True), text_lengths=torch.tensor([5, 3]),
                 speech_tokens=torch.nn.utils.rnn.pad_sequence([torch.tensor(s) for s in speech], batch_first=True),
                 token_lengths=lengths, spk_emb=spk)
    with torch.no_grad():
        logits, _, lay = model.forward_logits(batch)
    for i in range(2):
        for j, step in enumerate(s for s in steps if s.active[i]):
            full = logits[i, lay.task[i] + j]
            torch.testing.assert_close(step.logits[i], full, atol=1e-4, rtol=1e-4)
            assert int(full.argmax()) == tokens[i][j]  # greedy = argmax of the recomputed logits


def test_batch_generation_equals_single_generation_with_seeds():
    model = small_model(seed=1)
    texts = [torch.tensor([5, 6, 7, 8, 9, 10]), torch.tensor([11, 12, 13]), torch.tensor([14, 15, 16, 17])]
    spk = torch.randn(3, 8)
    prompt_text = [torch.tensor([20, 21]), torch.tensor([22]), torch.tensor([23, 24, 25])]
    prompt_tokens = [torch.tensor([1, 2, 3]), torch.tensor([4]), torch.tensor([5, 6])]
    batched = model.generate(texts, spk, prompt_text, prompt_tokens, seed=3)  # item i: seed 3 + i
    for i in range(3):
        alone = model.generate(texts[i], spk[i], prompt_text[i], prompt_tokens[i], seed=3 + i)[0]
        assert batched[i].tolist() == alone.tolist()
    chunks = list(model.stream_generate(texts[0], spk[0], prompt_text[0], prompt_tokens[0], seed=3, chunk_size=4,
                                        first_chunk_size=2))
    assert len(chunks[0]) <= 2 and all(len(c) <= 4 for c in chunks[1:])
    assert torch.cat(chunks).tolist() == batched[0].tolist()
    assert model.generate(texts, spk, seed=[7, 8, 9])[1].tolist() != model.generate(texts, spk, seed=[7, 99, 9])[1].tolist()


def test_min_and_max_length_follow_text_length():
    model = small_model(min_token_text_ratio=2.0, max_token_text_ratio=5.0)
    texts = [torch.tensor([5, 6, 7]), torch.tensor([8, 9, 10, 11, 12])]
    spk = torch.randn(2, 8)
    with torch.no_grad():
        model.head.bias[V] = 100.0  # EOS always wins once allowed
    assert [len(t) for t in model.generate(texts, spk, seed=0)] == [6, 10]
    with torch.no_grad():
        model.head.bias[V] = -100.0  # EOS never sampled
    assert [len(t) for t in model.generate(texts, spk, seed=0)] == [15, 25]
    assert [len(t) for t in model.generate(texts, spk, seed=0, max_tokens=8)] == [8, 8]


def test_repetition_aware_sampling_redraws_repeated_tokens():
    model = small_model()
    logits = torch.full((V + 1,), -30.0)
    logits[4] = 10.0  # the nucleus is token 4 alone
    ras = SamplingConfig(top_p=0.8, top_k=25, win_size=10, tau_r=0.1)
    assert model.sample(logits, [1, 2, 3], ras, torch.Generator().manual_seed(0)) == 4
    # 4 already in the window: redrawn from the full distribution, still almost surely 4 here,
    # so flatten it to see the redraw pick other tokens.
    flat = torch.zeros(V + 1)
    flat[4] = 3.0
    picks = {model.sample(flat, [4] * 10, SamplingConfig(top_p=0.1, top_k=1, win_size=10, tau_r=0.1),
                          torch.Generator().manual_seed(s)) for s in range(30)}
    assert len(picks) > 1
    no_ras = SamplingConfig(top_p=0.1, top_k=1, win_size=0)
    assert {model.sample(flat, [4] * 10, no_ras, torch.Generator().manual_seed(s)) for s in range(10)} == {4}


def test_bad_inputs_are_clear_errors():
    model = small_model()
    with pytest.raises(BadTextError, match="empty"):
        model.generate(torch.tensor([], dtype=torch.long), torch.randn(8))
    with pytest.raises(BadTextError, match="vocabulary"):
        model.generate(torch.tensor([5, 400]), torch.randn(8))
    with pytest.raises(BadTokenFileError, match="tokenizer"):
        model.generate(torch.tensor([5, 6]), torch.randn(8), prompt_tokens=torch.tensor([V + 3]))
    with pytest.raises(BadConfigError, match="speaker embedding"):
        model.generate(torch.tensor([5, 6]), torch.randn(5))
    b = toy_batch()
    b["text_lengths"] = torch.tensor([6, 0, 5])
    with pytest.raises(BadTextError, match="empty"):
        model.forward_loss(b)


# ----------------------------------------------------------------------------- data


def test_dataset_items_collate_and_errors(tmp_path):
    from voxtok.tts.dataset import TTSDataset, collate_tts

    data, tokens, emb = make_corpus(tmp_path)
    frontend = TextFrontend("char")
    ds = TTSDataset(data / "train", frontend, tokens / "train", emb / "train", mel_config="cosyvoice")
    assert len(ds) == 4 and ds.lengths() == [2 * len(frontend.encode(TEXTS[u])) for u in ds.utts]
    item = ds[0]
    assert item["text_ids"].tolist() == frontend.encode(TEXTS[item["utt"]]) and item["spk"] == "a"
    assert item["speech_tokens"].dtype == torch.long and item["spk_emb"].shape == (256,)
    assert item["mel"].shape == (80, int(0.3 * 22050) // 256)
    batch = collate_tts([ds[i] for i in range(4)])
    n = [2 * len(frontend.encode(TEXTS[u])) for u in batch["utt"]]
    assert batch["text_ids"].shape == (4, max(n) // 2) and batch["text_lengths"].tolist() == [k // 2 for k in n]
    assert batch["speech_tokens"].shape == (4, max(n)) and batch["token_lengths"].tolist() == n
    assert batch["mel"].shape[:2] == (4, 80) and batch["mel_lengths"].tolist() == [ds[i]["mel"].shape[1] for i in range(4)]
    assert batch["spk_emb"].shape == (4, 256)
    # The LLM consumes the batch as it is.
    model = small_model(text_vocab_size=frontend.vocab_size, speech_vocab_size=32, spk_dim=256)
    assert torch.isfinite(model.forward_loss(batch)[0])
    assert len(TTSDataset(data / "train", frontend, tokens / "train", max_seconds=0.45)) == 1  # only "the cat sat" (22 tokens)

    # Clear errors: an utterance missing from the token store, an empty text, a missing embedding.
    (data / "train" / "text").write_text((data / "train" / "text").read_text() + "c_1 new words\n")
    (data / "train" / "utt2spk").write_text((data / "train" / "utt2spk").read_text() + "c_1 c\n")
    with pytest.raises(BadDataDirError, match="c_1: not in the token store"):
        TTSDataset(data / "train", frontend, tokens / "train")
    with pytest.raises(BadDataDirError, match="c_1: no speaker embedding"):
        TTSDataset(data / "train", frontend, embeddings_dir=emb / "train", max_seconds=None)
    assert TTSDataset(data / "train", frontend, tokens / "train", skip_bad=True).skipped.keys() == {"c_1"}
    (data / "dev" / "text").write_text((data / "dev" / "text").read_text().replace("hello world.", "..."))
    with pytest.raises(BadDataDirError, match="a_1: .*empty"):
        TTSDataset(data / "dev", frontend, tokens / "dev")


def test_recipe_trains_toy_mapping_exports_and_loads(tmp_path):
    from hydra import compose, initialize_config_dir
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from voxtok.recipes.train_tts import train
    from voxtok.registry import load

    data, tokens, emb = make_corpus(tmp_path)
    exp = tmp_path / "exp"
    small = ["tts.model.text_embed_dim=32", "tts.model.text_encoder.dim=48", "tts.model.text_encoder.layers=1",
             "tts.model.text_encoder.ffn_dim=96", "tts.model.backbone.hidden_size=48", "tts.model.backbone.num_layers=2",
             "tts.model.backbone.intermediate_size=96", "tts.optim.lr=3e-3", "tts.optim.warmup_steps=0",
             "tts.data.batch_size=4", "trainer.max_steps=40", "trainer.log_every_n_steps=1",
             "trainer.val_every_n_steps=1000", "trainer.limit_val_batches=1", "trainer.checkpoint_every_n_steps=1000"]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train_tts", overrides=[f"data_dir={data}", f"token_dir={tokens}", f"embedding_dir={emb}",
                                              f"exp_dir={exp}", f"hydra_dir={exp}/hydra", *small])
    out = train(cfg)
    acc = EventAccumulator(str(exp / "tensorboard"))
    acc.Reload()
    losses = [e.value for e in acc.Scalars("train/loss")]
    assert len(losses) == 40 and np.mean(losses[-5:]) < 0.6 * np.mean(losses[:5])
    model = load(out)
    frontend = TextFrontend.from_dict(model.extra["frontend"])
    assert model.extra["tokens"]["codec"] == "s3" and model.config.tokenizer["frame_rate"] == 50.0
    assert model.config.speech_vocab_size == 32 and model.config.text_vocab_size == frontend.vocab_size
    tokens_out = model.generate(torch.tensor(frontend.encode("the cat sat")), torch.ones(256), seed=0, max_tokens=30)[0]
    assert 0 < len(tokens_out) <= 30 and int(tokens_out.max()) < 32


# ----------------------------------------------------------------------------- configs


def published_cosyvoice_llm_params() -> int:
    """CosyVoice-300M TransformerLM (conf/cosyvoice.yaml): ESPnet blocks with rel-pos attention
    (4 biased projections + linear_pos + pos_bias_u/v), FFN d->4096->d, two LayerNorms."""
    d, ff, text_in, text_vocab, speech, spk = 1024, 4096, 512, 51866, 4096, 192
    block = 4 * (d * d + d) + d * d + 2 * d + (d * ff + ff + ff * d + d) + 2 * 2 * d
    text_encoder = (text_in * d + d + 2 * d) + 6 * block + 2 * d
    llm = (d * d + d + 2 * d) + 14 * block + 2 * d
    return (text_vocab * text_in + text_encoder + (d * d + d) + 2 * d + llm + (d * (speech + 1) + speech + 1)
            + speech * d + (spk * d + d))


def our_llm_params(cfg: dict) -> int:
    """Analytic count of TextToTokenLM for a config dict (Qwen2 backbone)."""
    e, enc, bb = cfg["text_embed_dim"], cfg["text_encoder"], cfg["backbone"]
    de, ffe, D, ff = enc["dim"], enc["ffn_dim"], bb["hidden_size"], bb["intermediate_size"]
    kv = D // bb["num_heads"] * bb.get("num_kv_heads", bb["num_heads"])
    enc_layer = (3 * de * de + 3 * de) + (de * de + de) + (de * ffe + ffe) + (ffe * de + de) + 4 * de
    text = cfg["text_vocab_size"] * e + (e * de + de + 2 * de) + enc["layers"] * enc_layer + 2 * de + (de * D + D)
    qwen_layer = (D * D + D) + 2 * (D * kv + kv) + D * D + 3 * D * ff + 2 * D
    V_ = cfg["speech_vocab_size"]
    return text + (cfg["spk_dim"] * D + D) + 2 * D + V_ * D + bb["num_layers"] * qwen_layer + D + (D * (V_ + 1) + V_ + 1)


def test_paper_config_parameter_count_and_forward():
    cfg = yaml.safe_load((CONFIG_DIR / "tts" / "llm_300m_paper.yaml").read_text())
    model_cfg = cfg["model"]
    assert cfg["name"] == "llm"
    assert (model_cfg["text_encoder"]["dim"], model_cfg["text_encoder"]["layers"], model_cfg["text_encoder"]["heads"],
            model_cfg["text_encoder"]["ffn_dim"]) == (1024, 6, 16, 4096)
    bb = model_cfg["backbone"]
    assert (bb["hidden_size"], bb["num_layers"], bb["num_heads"], model_cfg["speech_vocab_size"]) == (1024, 14, 16, 4096)
    with torch.device("meta"):  # 288 M parameters: count without allocating or initialising them
        big = TextToTokenLM.from_config(model_cfg)
    count = sum(p.numel() for p in big.parameters())
    assert count == our_llm_params(model_cfg) == 288_575_489
    published = published_cosyvoice_llm_params()
    assert published == 310_718_465 and abs(count - published) / published < 0.08
    # One forward at the published widths (one layer of each stack keeps the test fast).
    short = {**model_cfg, "text_vocab_size": 100, "text_encoder": {**model_cfg["text_encoder"], "layers": 1},
             "backbone": {**bb, "num_layers": 1}}
    torch.manual_seed(0)
    model = TextToTokenLM.from_config(short).eval()
    assert sum(p.numel() for p in model.parameters()) == our_llm_params(short)
    b = dict(text_ids=torch.randint(3, 100, (2, 7)), text_lengths=torch.tensor([7, 4]),
             speech_tokens=torch.randint(0, 4096, (2, 10)), token_lengths=torch.tensor([10, 6]), spk_emb=torch.randn(2, 256))
    with torch.no_grad():
        loss, _ = model.forward_loss(b)
    assert abs(float(loss) - np.log(4097)) < 1.5


def test_tiny_config_builds_small():
    cfg = yaml.safe_load((CONFIG_DIR / "tts" / "llm_tiny.yaml").read_text())
    model_cfg = {**cfg["model"], "text_vocab_size": TextFrontend(cfg["frontend"]["kind"]).vocab_size, "speech_vocab_size": 512}
    model = TextToTokenLM.from_config(model_cfg)
    count = sum(p.numel() for p in model.parameters())
    assert count == our_llm_params({**model_cfg, "backbone": model_cfg["backbone"]}) and count < 4_000_000
