"""CosyVoice-300M's flow.pt in VoxTok: parity with the reference, the 300M config, one-line refusals.

Fixtures (tests/fixtures/cosyvoice_flow/), made once outside the repository from a snapshot of
FunAudioLLM/CosyVoice at commit ace7c47 (with shivammehta25/Matcha-TTS 108906c as its
third_party/Matcha-TTS; diffusers 0.42.1, conformer 0.3.2, hyperpyyaml 1.2.3 on the project venv's torch):
- cosyvoice.yaml: the release's cosyvoice.yaml entries for the flow (same classes and keys) at a
  reduced size: encoder 32 wide x 2 blocks, 2 heads; regulator with 2 convs; U-Net channels
  [32, 48] (one down/up level), 1 transformer block per level, 2 mid blocks, 2 heads x 16; 64 tokens.
- flow.pt: the state_dict of the reference `MaskedDiffWithXvec` that `hyperpyyaml` built from that
  file (the release's flow.pt layout), after torch.manual_seed(20) and perturbing every parameter
  (norm scales 1 + 0.2 N(0, 1), everything else + 0.05 N(0, 1)) so that no weight keeps its init.
- io.pt: two cases run through the reference `MaskedDiffWithXvec.inference` (10 Euler steps, CFG 0.7,
  flow_cache empty), each {token [1, N], prompt_token [1, Np], prompt_feat [1, Tp, 80], embedding
  [1, 192], noise: the z [1, 80, Tp + T] its ConditionalCFM drew (recorded by wrapping
  torch.randn_like), mel: the output [1, 80, T] with the prompt frames cut}: "prompt" (12 prompt
  tokens, 20 prompt frames, 45 tokens: more than 40, so the reference interpolates a 20-token head
  and tail apart; 97 frames, odd) and "no_prompt" (30 tokens, 51 frames). Inputs from
  torch.Generator seed 7.
- cosyvoice_300m_flow.yaml: the release's own flow entries (examples/libritts/cosyvoice/conf/cosyvoice.yaml).
- flow_300m_shapes.json: key -> shape of the reference module built from those entries on the
  meta device (1,185 tensors, 104,874,752 parameters).
Tolerance: 1e-4 x max(1, peak). Measured: max |diff| 2.2e-6 (prompt, peak 8.0) and 2.8e-6 (no_prompt, peak 6.0).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

import voxtok
from voxtok.convert.cosyvoice_flow import CHECKPOINT_WHAT, flow_config_from_reference, flow_from_reference, flow_rules
from voxtok.convert.cosyvoice_yaml import read_cosyvoice_yaml
from voxtok.convert.keymap import read_state_dict, rename
from voxtok.errors import BadConfigError, VoxTokError
from voxtok.recipes import CONFIG_DIR
from voxtok.registry import build
from voxtok.tts.flow import FlowDecoder, merge_config

FIXTURES = Path(__file__).parent / "fixtures" / "cosyvoice_flow"
REFERENCE_300M_PARAMS = 104_874_752  # the reference MaskedDiffWithXvec at the release's sizes


def tolerance(reference: torch.Tensor) -> float:
    return 1e-4 * max(1.0, float(reference.abs().max()))


@pytest.fixture(scope="module")
def converted() -> FlowDecoder:
    state = read_state_dict(FIXTURES / "flow.pt", CHECKPOINT_WHAT)
    return flow_from_reference(state, read_cosyvoice_yaml(FIXTURES / "cosyvoice.yaml"), FIXTURES / "flow.pt")


@pytest.fixture(scope="module")
def cases() -> dict:
    return torch.load(FIXTURES / "io.pt", weights_only=True)


def synthesize(flow: FlowDecoder, case: dict) -> torch.Tensor:
    prompt = {}
    if case["prompt_token"].shape[1]:
        prompt = {"prompt_tokens": case["prompt_token"], "prompt_mel": case["prompt_feat"].transpose(1, 2)}
    mel, lengths = flow.synthesize(case["token"], None, case["embedding"], noise=case["noise"], n_steps=10, **prompt)
    assert lengths.tolist() == [mel.shape[-1]]
    return mel


@pytest.mark.parametrize("name", ["prompt", "no_prompt"])
def test_converted_flow_computes_the_reference_mel(converted, cases, name):
    case = cases[name]
    mel = synthesize(converted, case)
    # Same frame count (int(N / 50 * 22050 / 256)), prompt frames cut as the reference cuts them.
    assert mel.shape == case["mel"].shape
    assert float((mel - case["mel"]).abs().max()) <= tolerance(case["mel"])


def test_a_padded_batch_gives_each_item_the_reference_mel(converted, cases):
    a, b = cases["prompt"], cases["no_prompt"]
    n = a["token"].shape[1]
    tokens = torch.zeros(2, n, dtype=torch.long)
    tokens[0], tokens[1, : b["token"].shape[1]] = a["token"][0], b["token"][0]
    prompt_tokens = torch.zeros(2, a["prompt_token"].shape[1], dtype=torch.long)
    prompt_tokens[0] = a["prompt_token"][0]
    prompt_mel = torch.zeros(2, 80, a["prompt_feat"].shape[1])
    prompt_mel[0] = a["prompt_feat"][0].T
    noise = torch.zeros(2, 80, a["noise"].shape[-1])
    noise[0], noise[1, :, : b["noise"].shape[-1]] = a["noise"][0], b["noise"][0]
    mel, lengths = converted.synthesize(
        tokens, torch.tensor([n, b["token"].shape[1]]), torch.cat([a["embedding"], b["embedding"]]),
        prompt_tokens=prompt_tokens, prompt_mel=prompt_mel, noise=noise, n_steps=10,
        prompt_token_lengths=torch.tensor([a["prompt_token"].shape[1], 0]),
        prompt_mel_lengths=torch.tensor([a["prompt_feat"].shape[1], 0]))
    assert lengths.tolist() == [a["mel"].shape[-1], b["mel"].shape[-1]]
    for i, case in enumerate((a, b)):
        got = mel[i : i + 1, :, : case["mel"].shape[-1]]
        assert float((got - case["mel"]).abs().max()) <= tolerance(case["mel"])


def test_reference_settings_become_config(converted):
    # LayerNorm eps 1e-12 inside the Conformer blocks, 1e-5 at its input and output (as WeNet's).
    assert {layer.norm_mha.eps for layer in converted.encoder.layers} == {1e-12}
    assert converted.encoder.input_norm.eps == converted.encoder.after_norm.eps == 1e-5
    # The reference's 20-token head and tail (InterpolateRegulator.inference) for more than 40 tokens.
    assert converted.target_segments(45, 77) == ([20, 5, 20], [34, 9, 34])
    assert converted.target_segments(40, 68) == ([40], [68])
    with torch.device("meta"):
        default = FlowDecoder()
    assert default.target_segments(45, 77) == ([45], [77])  # VoxTok's default: one segment
    assert converted.cfm["train_t_scheduler"] == "cosine"
    assert converted.inference_defaults == {"n_steps": 10, "cfg_strength": 0.7, "temperature": 1.0}


def test_the_release_yaml_gives_the_shipped_300m_config():
    release = flow_config_from_reference(read_cosyvoice_yaml(FIXTURES / "cosyvoice_300m_flow.yaml"))
    shipped = yaml.safe_load((CONFIG_DIR / "tts" / "flow_cosyvoice_300m.yaml").read_text())
    assert merge_config(release) == merge_config(shipped["model"])


def test_the_300m_config_has_the_reference_parameters_key_for_key():
    cfg = yaml.safe_load((CONFIG_DIR / "tts" / "flow_cosyvoice_300m.yaml").read_text())
    with torch.device("meta"):  # count without allocating 105 M parameters
        flow = build("tts", cfg["name"], cfg["model"])
    assert sum(p.numel() for p in flow.parameters()) == REFERENCE_300M_PARAMS
    reference = json.loads((FIXTURES / "flow_300m_shapes.json").read_text())
    assert sum(torch.Size(s).numel() for s in reference.values()) == REFERENCE_300M_PARAMS
    shapes = {k: torch.zeros(s, device="meta") for k, s in reference.items()}
    mapped = {k: list(v.shape) for k, v in rename(shapes, flow_rules(4), keep_unmatched=True).items()}
    assert mapped == {k: list(v.shape) for k, v in flow.state_dict().items()}


def test_a_converted_flow_saves_and_loads_as_a_voxtok_folder(converted, cases, tmp_path):
    converted.save_pretrained(tmp_path / "flow")
    loaded = voxtok.load(tmp_path / "flow")
    case = cases["prompt"]
    assert torch.equal(synthesize(loaded, case), synthesize(converted, case))


def _yaml_with(text: str, tmp_path: Path) -> Path:
    path = tmp_path / "cosyvoice.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("old, new, message", [
    ("cosyvoice.flow.flow.MaskedDiffWithXvec", "cosyvoice.flow.flow.CausalMaskedDiffWithXvec",
     "supported: MaskedDiffWithXvec"),
    ("use_cnn_module: False", "use_cnn_module: True", "use_cnn_module"),
    ("act_fn: 'gelu'", "act_fn: 'snake'", "act_fn"),
    ("t_scheduler: 'cosine'", "t_scheduler: 'linear'", "t_scheduler"),
    ("fmax: 8000", "fmax: 11025", "feat_extractor"),
    ("num_blocks: 2", "num_blockz: 2", "num_blockz"),
])
def test_a_config_voxtok_does_not_compute_is_one_line(tmp_path, old, new, message):
    text = (FIXTURES / "cosyvoice.yaml").read_text()
    assert old in text
    path = _yaml_with(text.replace(old, new), tmp_path)
    with pytest.raises(BadConfigError) as err:
        flow_config_from_reference(read_cosyvoice_yaml(path), path)
    assert message in str(err.value) and "\n" not in str(err.value) and str(path) in str(err.value)


def test_a_checkpoint_that_does_not_fit_is_one_line():
    config = read_cosyvoice_yaml(FIXTURES / "cosyvoice.yaml")
    state = read_state_dict(FIXTURES / "flow.pt", CHECKPOINT_WHAT)
    # Another model's file (the 300M sizes' keys, or an extra CosyVoice 2 module) is named, not crashed on.
    wrong = dict(state)
    wrong["encoder.pre_lookahead_layer.conv1.weight"] = torch.zeros(1)
    del wrong["decoder.estimator.final_proj.weight"]
    with pytest.raises(BadConfigError) as err:
        flow_from_reference(wrong, config, "flow.pt")
    text = str(err.value)
    assert "estimator.final_proj.weight" in text and "pre_lookahead_layer" in text and "\n" not in text
    big = read_cosyvoice_yaml(FIXTURES / "cosyvoice_300m_flow.yaml")
    with pytest.raises(BadConfigError, match="shape"):
        flow_from_reference(state, big, "flow.pt")


def test_a_chunk_takes_its_own_columns_of_given_noise(converted, cases):
    # Chunk [10, 30) with all earlier tokens as context and no overlap sees what a full decode of
    # tokens [0, 30) sees, so it must return exactly that decode's frames [F(10), F(30)): the given
    # noise (over the utterance's prompt + output frames) is sliced to the same columns.
    case = cases["prompt"]
    prompt = {"prompt_tokens": case["prompt_token"], "prompt_mel": case["prompt_feat"].transpose(1, 2)}
    mel, lengths = converted.synthesize_chunk(case["token"], None, case["embedding"], 10, 30, noise=case["noise"],
                                              n_steps=10, context_tokens=10, overlap_tokens=0, **prompt)
    f0, f1 = converted.frames_for_tokens(10), converted.frames_for_tokens(30)
    assert lengths.tolist() == [f1 - f0]
    head, _ = converted.synthesize(case["token"][:, :30], None, case["embedding"], noise=case["noise"],
                                   n_steps=10, **prompt)
    assert torch.allclose(mel, head[:, :, f0:f1], atol=1e-5)


def test_given_noise_must_cover_prompt_and_output_frames(converted, cases):
    case = cases["prompt"]
    with pytest.raises(VoxTokError, match=r"noise must be \[1, 80, >= 97\]"):
        converted.synthesize(case["token"], None, case["embedding"], noise=case["noise"][:, :, :96],
                             prompt_tokens=case["prompt_token"], prompt_mel=case["prompt_feat"].transpose(1, 2))
