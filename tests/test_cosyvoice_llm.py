"""CosyVoice-300M's LLM in VoxTok: a released llm.pt computes in `TextToTokenLM` what it computes in
the reference `TransformerLM`, and decodes by the reference's rules.

Fixture: tests/fixtures/cosyvoice_llm/, made once from the reference repository FunAudioLLM/CosyVoice at
commit ace7c47f41bbd303aa6bf1ea80e6f9fbd595cd40 (a snapshot archived to /tmp, outside this repository;
no reference code is committed). The script (kept outside the repository) imported the snapshot's
cosyvoice.llm.llm / cosyvoice.transformer.* / cosyvoice.utils.common (the flow, HiFT and cli.model
modules that cosyvoice.utils.class_utils imports were stubbed: TransformerLM does not use them) and:
- wrote `cosyvoice.yaml`: the `# fixed params` and `llm:` block of examples/libritts/cosyvoice/conf/
  cosyvoice.yaml with reduced sizes and the release's options otherwise (text vocab 100, speech vocab
  64, text embedding 32, text Conformer 2 blocks x 48 / 4 heads / FFN 96, LM 2 blocks x 64 / 4 heads /
  FFN 128, 192-d speaker vectors, RAS 0.8 / 25 / 10 / 0.1);
- built `TransformerLM` from it with hyperpyyaml under torch.manual_seed(0), moved every parameter off
  its initialisation (vectors + 0.2 N, matrices x (1 + 0.2 N)), scaled `llm_decoder.weight` x 4 (peaked
  next-token distributions, so tokens repeat, RAS redraws and EOS comes before the maximum) and saved
  the state_dict with torch.save as `llm.pt` (the release's format);
- saved in `parity.safetensors`: a padded batch of 2 (text_ids / text_lengths [7, 4], speech_tokens /
  token_lengths [9, 5], spk_emb [2, 192], from torch.Generator seed 1) and the reference's teacher-forced
  `logits` [2, 19, 65] (TransformerLM.forward's own steps, encode -> pad_unpad_sequence -> llm ->
  llm_decoder; `lm_lengths` [19, 12]); a zero-shot item (prompt_text_ids 3, tts_text_ids 5,
  prompt_tokens 4, spk_emb_one) decoded by `TransformerLM.inference` (KV cache through forward_chunk,
  ras_sampling, min/max ratios 2 / 20) after torch.manual_seed(1234): `inference_tokens` (18, EOS not
  included; 8 RAS redraws) and the `llm_decoder` output of every step, the EOS step included
  (`inference_logits` [19, 65]); and 40 steps of `ras_sampling` alone after torch.manual_seed(99) on
  peaked log-probabilities (`ras_scores`, `ras_tokens`), each step's history being the earlier picks.

Parity: logits max |diff| <= 1e-4 x max(1, peak); the same seed gives the same tokens. Measured here:
teacher forcing 0.0 (bit-identical), decoding steps <= 2e-6.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

import voxtok
from voxtok.convert.cosyvoice_llm import RULES, llm_config_from_reference, llm_from_reference, load_reference_llm
from voxtok.convert.cosyvoice_yaml import read_cosyvoice_yaml
from voxtok.convert.keymap import read_state_dict
from voxtok.errors import BadConfigError
from voxtok.recipes import CONFIG_DIR
from voxtok.tts.llm import SamplingConfig, TextToTokenLM

FIXTURE = Path(__file__).parent / "fixtures" / "cosyvoice_llm"
YAML, CHECKPOINT = FIXTURE / "cosyvoice.yaml", FIXTURE / "llm.pt"
V = 64  # the fixture's speech vocabulary; EOS = V
# TransformerLM built from the release's cosyvoice.yaml `llm:` block (hyperpyyaml, meta device) with the
# reference code at ace7c47, counted outside this repository.
REFERENCE_PARAMETERS = 310_718_465


@pytest.fixture(scope="module")
def reference():
    return load_file(str(FIXTURE / "parity.safetensors"))


@pytest.fixture(scope="module")
def model():
    return load_reference_llm(YAML, CHECKPOINT)


def tolerance(expected: torch.Tensor) -> float:
    return 1e-4 * max(1.0, float(expected.abs().max()))


def test_teacher_forced_logits_equal_the_reference(model, reference):
    batch = {k: reference[k] for k in ("text_ids", "text_lengths", "speech_tokens", "token_lengths", "spk_emb")}
    with torch.no_grad():
        logits, targets, layout = model.forward_logits(batch)
    assert layout.lengths.tolist() == reference["lm_lengths"].tolist() == [19, 12]
    for b, n in enumerate(reference["lm_lengths"].tolist()):
        expected = reference["logits"][b, :n]
        assert (logits[b, :n] - expected).abs().max() <= tolerance(expected)
    # The reference's targets: IGNORE for sos, spk, text; then the tokens and EOS from [task] on.
    assert targets[1, layout.task[1]:12].tolist() == reference["speech_tokens"][1, :5].tolist() + [V]


def test_decoding_gives_the_reference_tokens_for_the_same_seed(model, reference):
    steps = list(model.decode_steps(reference["tts_text_ids"], reference["spk_emb_one"],
                                    reference["prompt_text_ids"], reference["prompt_tokens"], seed=1234))
    tokens = [int(s.token[0]) for s in steps]
    assert tokens == reference["inference_tokens"].tolist() + [V]  # EOS ends it, as in the reference
    got = torch.stack([s.logits[0] for s in steps])
    expected = reference["inference_logits"]
    assert (got - expected).abs().max() <= tolerance(expected)
    streamed = torch.cat(list(model.stream_generate(reference["tts_text_ids"], reference["spk_emb_one"],
                                                    reference["prompt_text_ids"], reference["prompt_tokens"],
                                                    seed=1234, chunk_size=5, first_chunk_size=2)))
    assert streamed.tolist() == reference["inference_tokens"].tolist()


def test_ras_draws_what_the_reference_draws(model, reference):
    generator, history = torch.Generator().manual_seed(99), []
    for scores in reference["ras_scores"]:
        history.append(model.sample(scores, history, SamplingConfig(), generator))
    assert history == reference["ras_tokens"].tolist()


def test_ras_redraw_excludes_the_repeated_token(model):
    logits = torch.full((V + 1,), -3.0)
    logits[7] = 6.0  # the nucleus is token 7 alone, and 7 is in the window: always redrawn
    picks = [model.sample(logits, [7], SamplingConfig(), torch.Generator().manual_seed(s)) for s in range(40)]
    assert 7 not in picks and len(set(picks)) > 5
    only = torch.full((V + 1,), -float("inf"))
    only[7] = 0.0  # nothing else is possible: the repeat stands
    assert model.sample(only, [7], SamplingConfig(), torch.Generator().manual_seed(0)) == 7


def test_min_and_max_tokens_follow_the_target_text_length(model, reference):
    text, spk = reference["tts_text_ids"], reference["spk_emb_one"]  # 5 text tokens: 10 to 100 speech tokens
    with torch.no_grad():
        bias = model.head.bias[V].item()
        try:
            model.head.bias[V] = 100.0  # EOS wins as soon as it is allowed
            prompted = model.generate(text, spk, reference["prompt_text_ids"], reference["prompt_tokens"], seed=0)
            assert len(prompted[0]) == 10
            model.head.bias[V] = -100.0  # never
            assert len(model.generate(text, spk, seed=0)[0]) == 100
        finally:
            model.head.bias[V] = bias


def test_batched_decoding_with_the_cached_rel_pos_lm_equals_one_by_one_and_full_recompute(model, reference):
    texts = [reference["tts_text_ids"], reference["text_ids"][1, :4]]
    spk = torch.stack([reference["spk_emb_one"], reference["spk_emb"][1]])
    prompts_text = [reference["prompt_text_ids"], reference["text_ids"][0, :2]]
    prompts = [reference["prompt_tokens"], reference["speech_tokens"][0, :7]]
    batched = model.generate(texts, spk, prompts_text, prompts, seed=5)  # left-padded prefixes of 16 and 14
    for i in range(2):
        alone = model.generate(texts[i], spk[i], prompts_text[i], prompts[i], seed=5 + i)[0]
        assert batched[i].tolist() == alone.tolist() and len(alone) >= 8
    # The cached steps' logits are the logits of the whole sequence recomputed at once.
    greedy = list(model.decode_steps(texts[1], spk[1], prompts_text[1], prompts[1], SamplingConfig.greedy(),
                                     max_tokens=12))
    generated = torch.tensor([int(s.token[0]) for s in greedy if int(s.token[0]) != V])
    batch = dict(text_ids=torch.cat([prompts_text[1], texts[1]])[None], text_lengths=torch.tensor([6]),
                 speech_tokens=torch.cat([prompts[1], generated])[None],
                 token_lengths=torch.tensor([7 + len(generated)]), spk_emb=spk[1:])
    with torch.no_grad():
        logits, _, layout = model.forward_logits(batch)
    full = logits[0, int(layout.task[0]) + 7:][:len(greedy)]
    got = torch.stack([s.logits[0] for s in greedy])
    assert (got - full).abs().max() <= tolerance(full)


def test_incremental_rel_pos_lm_equals_the_whole_sequence_and_left_pads_do_not_leak():
    from voxtok.nn.masks import causal_mask
    from voxtok.tts.cosyvoice_lm import RelPositionLM

    assert causal_mask(2, keys=4).tolist() == [[True, True, True, False], [True, True, True, True]]
    torch.manual_seed(0)
    lm = RelPositionLM(32, 2, 4, 48).eval()
    x = torch.randn(2, 9, 32)
    with torch.no_grad():
        whole = lm(inputs_embeds=x).last_hidden_state
        out = lm(inputs_embeds=x[:, :4], use_cache=True)  # a prefix, then 2 + 3 new positions
        parts = [out.last_hidden_state]
        for start, end in ((4, 6), (6, 9)):
            out = lm(inputs_embeds=x[:, start:end], attention_mask=torch.ones(2, end),
                     past_key_values=out.past_key_values, use_cache=True)
            parts.append(out.last_hidden_state)
        assert torch.allclose(torch.cat(parts, 1), whole, atol=1e-5)
        # Item 1 left-padded by 3 (as batched decoding aligns prefixes): its real positions are unchanged.
        padded = torch.cat([torch.randn(1, 3, 32), x[1:, :6]], 1)
        mask = torch.tensor([[False] * 3 + [True] * 6])
        shifted = lm(inputs_embeds=padded, attention_mask=mask).last_hidden_state
        assert torch.isfinite(shifted).all() and torch.allclose(shifted[0, 3:], whole[1, :6], atol=1e-5)


def test_converted_model_saves_loads_and_trains(model, reference, tmp_path):
    out = model.save_pretrained(tmp_path / "llm")
    loaded = voxtok.load(out)
    assert isinstance(loaded, TextToTokenLM) and loaded.to_config() == model.to_config()
    batch = {k: reference[k] for k in ("text_ids", "text_lengths", "speech_tokens", "token_lengths", "spk_emb")}
    with torch.no_grad():
        assert torch.equal(loaded.eval().forward_logits(batch)[0], model.forward_logits(batch)[0])
    loaded.train()
    loss, stats = loaded.forward_loss(batch)
    loss.backward()
    unused = [n for n, p in loaded.named_parameters() if p.grad is None]
    assert torch.isfinite(loss) and not unused  # every parameter trains (DDP needs no unused-parameter search)


def test_release_config_reads_into_the_shipped_config_and_counts_the_reference_parameters():
    shipped = yaml.safe_load((CONFIG_DIR / "tts" / "llm_cosyvoice_300m.yaml").read_text())
    with torch.device("meta"):  # 310 M parameters: count without allocating them
        big = TextToTokenLM.from_config(shipped["model"])
    assert sum(p.numel() for p in big.parameters()) == REFERENCE_PARAMETERS
    # The fixture's YAML is the release's llm block at other sizes: scaling them back gives the shipped config.
    small = llm_config_from_reference(read_cosyvoice_yaml(YAML))
    assert small["text_encoder"] == {"kind": "conformer", "dim": 48, "layers": 2, "heads": 4, "ffn_dim": 96,
                                     "dropout": 0.1, "attn_dropout": 0.0, "causal": True, "layer_norm_eps": 1e-12}
    assert small["backbone"] == {"kind": "espnet", "hidden_size": 64, "num_layers": 2, "num_heads": 4,
                                 "intermediate_size": 128, "dropout": 0.1, "attention_dropout": 0.0,
                                 "activation": "relu", "input_relu": True, "layer_norm_eps": 1e-12}
    released = {**small, "text_vocab_size": 51866, "speech_vocab_size": 4096, "text_embed_dim": 512,
                "text_encoder": {**small["text_encoder"], "dim": 1024, "layers": 6, "heads": 16, "ffn_dim": 4096},
                "backbone": {**small["backbone"], "hidden_size": 1024, "num_layers": 14, "num_heads": 16,
                             "intermediate_size": 4096}}
    assert released == shipped["model"]


def _release_yaml(tmp_path: Path, old: str, new: str) -> Path:
    text = YAML.read_text()
    assert old in text
    path = tmp_path / "cosyvoice.yaml"
    path.write_text(text.replace(old, new))
    return path


@pytest.mark.parametrize("old, new, message", [
    ("llm: !new:cosyvoice.llm.llm.TransformerLM", "llm: !new:cosyvoice.llm.llm.Qwen2LM",
     "'llm' is cosyvoice.llm.llm.Qwen2LM; supported: TransformerLM"),
    ("use_cnn_module: False", "use_cnn_module: True", "llm.text_encoder.use_cnn_module is True"),
    ("input_layer: 'linear_legacy'", "input_layer: 'conv2d'", "llm.llm.input_layer is 'conv2d'"),
    ("'rel_selfattn'\n        static_chunk_size: 1\n    sampling",  # the LM's (the text encoder's is followed
     "'rel_selfattn'\n        static_chunk_size: 0\n    sampling",  # by more options)
     "llm.llm.static_chunk_size is 0"),
    ("        macaron_style: False\n", "        macaron_stile: False\n", "does not know: ['macaron_stile']"),
    ("!name:cosyvoice.utils.common.ras_sampling", "!name:cosyvoice.utils.common.nucleus_sampling",
     "llm.sampling is cosyvoice.utils.common.nucleus_sampling"),
])
def test_unsupported_release_configs_are_one_line_errors(tmp_path, old, new, message):
    with pytest.raises(BadConfigError) as err:
        load_reference_llm(_release_yaml(tmp_path, old, new), CHECKPOINT)
    assert message in str(err.value) and "cosyvoice.yaml" in str(err.value) and "\n" not in str(err.value)


def test_checkpoints_that_do_not_fit_are_one_line_errors(tmp_path):
    state = read_state_dict(CHECKPOINT, "llm.pt")
    config = read_cosyvoice_yaml(YAML)
    cases = {
        "missing": {k: v for k, v in state.items() if not k.startswith("llm.encoders.1.")},
        "unexpected": {**state, "llm.encoders.2.norm1.weight": torch.ones(64)},
        "shape": {**state, "speech_embedding.weight": torch.zeros(65, 64)},
        # a CosyVoice 2 llm.pt (Qwen2LM) next to a v1 cosyvoice.yaml
        "v2": {"llm.model.model.embed_tokens.weight": torch.zeros(4, 4), "llm_decoder.weight": torch.zeros(3, 4)},
    }
    for name, bad in cases.items():
        with pytest.raises(BadConfigError) as err:
            llm_from_reference(bad, config, "llm.pt")
        text = str(err.value)
        assert text.startswith("llm.pt: checkpoint does not fit CosyVoice v1's TransformerLM"), name
        assert "\n" not in text
        assert "the file has" in text
    with pytest.raises(BadConfigError, match="not found"):
        load_reference_llm(YAML, tmp_path / "llm.pt")
    (tmp_path / "llm.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(BadConfigError, match="cannot read"):
        load_reference_llm(YAML, tmp_path / "llm.pt")


def test_every_reference_key_has_a_rule():
    import re

    state = read_state_dict(CHECKPOINT, "llm.pt")
    patterns = [re.compile(p) for p, _ in RULES]
    assert all(any(p.fullmatch(k) for p in patterns) for k in state)
