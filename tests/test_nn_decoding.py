"""Shared sampling building blocks: the per-item seed rule, the KV-cached decoding loop (against a
naive loop that recomputes the whole sequence every step), and outputs of the CosyVoice-style LLM
and Flow-Omni pinned from the code before the loop was shared (the refactor must not move them)."""

import numpy as np
import pytest
import torch

from flowomni_fixtures import N_MELS, micro_model
from tts_llm_fixtures import small_model
from voxtok.errors import BadConfigError
from voxtok.nn.decoding import StepOutput, decode_with_kv_cache, right_align
from voxtok.nn.sampling import item_generators, item_seeds
from voxtok.tts.llm import build_causal_backbone

# ----------------------------------------------------------------------------- seeds


def test_item_seeds_give_item_i_seed_plus_i_or_one_seed_each():
    assert item_seeds(5, 3) == [5, 6, 7]
    assert item_seeds(np.int64(5), 2) == [5, 6]
    assert item_seeds([9, 2, 4], 3) == [9, 2, 4]
    with pytest.raises(BadConfigError, match="2 seeds for a batch of 3"):
        item_seeds([1, 2], 3)


def test_no_seed_draws_fresh_seeds_repeatable_under_the_global_seed():
    torch.manual_seed(0)
    fresh = item_seeds(None, 4)
    assert len(set(fresh)) == 4 and all(isinstance(s, int) for s in fresh)
    assert item_seeds(None, 4) != fresh
    torch.manual_seed(0)
    assert item_seeds(None, 4) == fresh


def test_item_generators_are_seeded_by_the_rule():
    draws = [torch.randn(3, generator=g) for g in item_generators(10, 2)]
    assert torch.equal(draws[1], torch.randn(3, generator=torch.Generator().manual_seed(11)))
    assert not torch.equal(draws[0], draws[1])


# ----------------------------------------------------------------------------- the decoding loop

WIDTH, VOCAB, EOS = 16, 12, 0


def toy_token_model():
    """A random causal backbone with a token table and an output head (greedy decoding)."""
    torch.manual_seed(0)
    backbone = build_causal_backbone(dict(kind="qwen2", hidden_size=WIDTH, num_layers=2, num_heads=4, num_kv_heads=2,
                                          intermediate_size=32)).eval()
    embed, head = torch.nn.Embedding(VOCAB, WIDTH), torch.nn.Linear(WIDTH, VOCAB)
    with torch.no_grad():
        head.bias[EOS] += 1.5  # EOS wins at some steps: items end at different times
    return backbone, embed, head


def greedy_step(embed, head, calls: list):
    """Step function: argmax token (EOS masked before the minimum); records what it was given."""
    def step(index, hidden, active, may_stop):
        calls.append((index, active.clone(), may_stop.clone()))
        logits = head(hidden)
        logits[~may_stop, EOS] = -float("inf")
        token = torch.where(active, logits.argmax(-1), torch.full_like(active, EOS, dtype=torch.long))
        return StepOutput(emitted=active, ended=token == EOS, feed=embed(token), value=token)
    return step


def naive_greedy(backbone, embed, head, prefix: torch.Tensor, min_steps: int, max_steps: int) -> list[int]:
    """One item without a cache: the whole sequence goes through the backbone at every step."""
    seq, tokens = prefix, []
    for index in range(max_steps):
        logits = head(backbone(inputs_embeds=seq[None]).last_hidden_state[0, -1])
        if index < min_steps:
            logits[EOS] = -float("inf")
        tokens.append(int(logits.argmax()))
        if tokens[-1] == EOS:
            break
        seq = torch.cat([seq, embed.weight[tokens[-1]][None]])
    return tokens


@torch.no_grad()
def test_cached_batch_decoding_equals_a_naive_loop_per_item():
    backbone, embed, head = toy_token_model()
    lengths = torch.tensor([5, 2, 7, 4])
    g = torch.Generator().manual_seed(1)
    prefixes = [torch.randn(int(n), WIDTH, generator=g) for n in lengths]
    embeds = torch.nn.utils.rnn.pad_sequence(prefixes, batch_first=True)  # right-padded
    min_steps, max_steps = torch.tensor([0, 3, 1, 0]), torch.tensor([9, 6, 1, 9])
    calls: list = []
    steps = list(decode_with_kv_cache(backbone, embeds, lengths, greedy_step(embed, head, calls), min_steps, max_steps))
    got = [[int(s.value[b]) for s in steps if s.emitted[b]] for b in range(4)]
    want = [naive_greedy(backbone, embed, head, p, int(lo), int(hi)) for p, lo, hi in zip(prefixes, min_steps, max_steps)]
    assert got == want
    # An EOS, an EOS held back by the minimum, the maximum, an EOS at once: every way to end.
    assert got == [[11, EOS], [3, 7, 8, EOS], [7], [EOS]]
    for index, active, may_stop in calls:
        assert torch.equal(may_stop, index >= min_steps)
        assert not bool((active & (index >= max_steps)).any())  # no step past an item's maximum
        for b in range(4):  # and none after an item's EOS
            assert bool(active[b]) == (index < len(want[b]))


@torch.no_grad()
def test_decoding_stops_when_a_step_emits_nothing_or_at_the_longest_maximum():
    backbone, embed, _ = toy_token_model()
    embeds, lengths = torch.randn(2, 3, WIDTH), torch.tensor([3, 2])

    def silent(index, hidden, active, may_stop):
        return StepOutput(emitted=torch.zeros_like(active), ended=active, feed=None)

    assert list(decode_with_kv_cache(backbone, embeds, lengths, silent, torch.zeros(2), torch.full((2,), 5))) == []

    def never_ends(index, hidden, active, may_stop):
        return StepOutput(emitted=active, ended=torch.zeros_like(active), feed=hidden, value=active)

    steps = list(decode_with_kv_cache(backbone, embeds, lengths, never_ends, torch.zeros(2), torch.tensor([2, 4])))
    assert [s.value.tolist() for s in steps] == [[True, True], [True, True], [False, True], [False, True]]


def test_right_align_moves_each_row_to_the_end():
    x = torch.arange(1, 7, dtype=torch.float32).reshape(2, 3, 1)
    assert right_align(x, torch.tensor([2, 3]))[..., 0].tolist() == [[0, 1, 2], [4, 5, 6]]


# ----------------------------------------------------------------------------- pinned model outputs

LLM_TEXTS = [torch.tensor([5, 6, 7, 8, 9, 10]), torch.tensor([11, 12, 13]), torch.tensor([14, 15, 16, 17])]


def test_llm_tokens_are_unchanged_and_an_int_seed_gives_item_i_seed_plus_i():
    model = small_model(seed=1)
    spk = torch.randn(3, 8, generator=torch.Generator().manual_seed(2))
    prompt_text = [torch.tensor([20, 21]), torch.tensor([22]), torch.tensor([23, 24, 25])]
    prompt_tokens = [torch.tensor([1, 2, 3]), torch.tensor([4]), torch.tensor([5, 6])]
    out = [t.tolist() for t in model.generate(LLM_TEXTS, spk, prompt_text, prompt_tokens, seed=[3, 4, 5])]
    # Re-pinned when RAS's redraw began to exclude the repeated token (CosyVoice's rule): items 0 and 2
    # used to redraw 15 and 19 again at step 13 / 12; the same draws now pick 14 and 12.
    assert out == [[11, 2, 9, 16, 2, 3, 7, 10, 19, 8, 6, 15, 11, 14, 1, 17],
                   [0, 7, 18, 3, 11, 15, 18, 6, 5, 4, 7, 13],
                   [4, 1, 11, 15, 2, 7, 6, 4, 19, 2, 18, 16, 12, 0, 11, 16]]
    assert [t.tolist() for t in model.generate(LLM_TEXTS, spk, prompt_text, prompt_tokens, seed=3)] == out
    sampling = dict(top_p=0.95, top_k=10, win_size=4, tau_r=0.5, temperature=1.3)  # RAS redraws, an early EOS
    assert [t.tolist() for t in model.generate(LLM_TEXTS, spk, seed=[10, 11, 12], sampling=sampling)] == [
        [6, 2, 12, 3, 9, 4, 5, 4, 15, 2, 2, 7, 0, 11, 16, 18, 1, 11, 16, 19, 15, 8, 17, 5],
        [19, 0, 8, 3, 18, 4, 15, 9, 7, 17, 8, 8],
        [8, 2, 18, 12]]


def test_flowomni_frames_are_unchanged():
    model = micro_model(r=2, inference={"n_steps": 3, "stop_threshold": 0.3})
    with torch.no_grad():
        model.state_head.bias.copy_(torch.tensor([0.0, 0.0, 0.0, -1.2]))  # stops before the maximum
    g = torch.Generator().manual_seed(2)
    torch.randn(3, 8, generator=g)  # the generator state the values were pinned with
    texts = [torch.tensor([1, 2, 3, 4, 5]), torch.tensor([6, 7]), torch.tensor([8, 9, 10])]
    prompt_text = [torch.tensor([11, 12]), torch.tensor([13]), torch.tensor([14, 15, 16])]
    prompt_mel = [torch.randn(N_MELS, n, generator=g) - 5 for n in (6, 3, 9)]
    spk = torch.randn(3, 256, generator=g)
    mel, lengths = model.synthesize(texts, prompt_text_ids=prompt_text, prompt_mel=prompt_mel, spk_emb=spk,
                                    seed=[7, 8, 9])
    assert lengths.tolist() == [12, 8, 8] and mel.shape == (3, N_MELS, 12)  # max frames 20, 8, 12
    m = mel.double()
    weights = torch.arange(m.shape[-1], dtype=torch.float64)
    sums = [float(m.sum()), float((m * weights).sum()), float(m[:, ::7, ::3].pow(2).sum())]
    assert sums == pytest.approx([-19737.155853271484, -124199.30641722679, 8381.732594375546], rel=1e-5)
    again, _ = model.synthesize(texts, prompt_text_ids=prompt_text, prompt_mel=prompt_mel, spk_emb=spk, seed=7)
    assert torch.equal(again, mel)
