"""Flow-Omni from a pretrained Hugging Face Qwen2 folder (`backbone.init_from`) and its BPE frontend
(`hf_bpe`), against a tiny random Qwen2ForCausalLM and a BPE tokenizer trained and saved here."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from voxtok.errors import BadConfigError, VoxTokError
from voxtok.recipes import CONFIG_DIR
from voxtok.tts.flowomni import FlowOmniTTS
from voxtok.tts.frontend import TextFrontend
from voxtok.tts.hf_init import backbone_frontend, qwen2_sizes, resolve_init_from

SENTENCES = ["hello world, the cat sat on the mat.", "Good morning to you!", "a dog ran away",
             "the quick brown fox jumps over the lazy dog."]
ROWS = 320  # the model's token rows: more than the tokenizer's ids, as Qwen2 pads its table
SIZES = dict(hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=64, max_positions=256,
             rope_theta=1.0e6, rms_norm_eps=1.0e-5, attention_dropout=0.0)


def save_tiny_qwen2(folder: Path, seed: int = 0, **save_kw) -> Path:
    """A random Qwen2ForCausalLM (tied embeddings, non-default RoPE theta and norm epsilon, as
    Qwen2-0.5B) and a byte-level BPE trained on SENTENCES, saved as a Hugging Face folder."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(SENTENCES * 4, trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>").save_pretrained(folder)
    torch.manual_seed(seed)
    config = Qwen2Config(vocab_size=ROWS, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, rope_theta=1.0e6,
                         rms_norm_eps=1.0e-5, tie_word_embeddings=True)
    Qwen2ForCausalLM(config).save_pretrained(folder, **save_kw)
    return folder


@pytest.fixture(scope="module")
def qwen2(tmp_path_factory) -> Path:
    return save_tiny_qwen2(tmp_path_factory.mktemp("hf") / "qwen2")


def flowomni_config(folder, **overrides) -> dict:
    cfg = {"frames_per_step": 2, "backbone": {"kind": "qwen2", "init_from": str(folder)}, "head": {"width": 240, "depth": 2},
           "inference": {"n_steps": 2}, "max_frame_text_ratio": 4.0}
    return {**cfg, **overrides}


def hf_model(folder: Path):
    from transformers import Qwen2ForCausalLM

    return Qwen2ForCausalLM.from_pretrained(folder, local_files_only=True).eval()


def one_line_error(err_type, fn, *args, match: str, **kw) -> str:
    with pytest.raises(err_type, match=match) as info:
        fn(*args, **kw)
    assert issubclass(info.type, VoxTokError) and "\n" not in str(info.value)
    return str(info.value)


# ----------------------------------------------------------------------------- parity


@pytest.mark.parametrize("layout", ["single", "sharded"])
def test_backbone_and_text_embedding_are_the_hf_model_and_compute_its_hidden_states(qwen2, tmp_path, layout):
    folder = qwen2 if layout == "single" else save_tiny_qwen2(tmp_path / "sharded", max_shard_size="20KB")
    if layout == "sharded":
        assert (folder / "model.safetensors.index.json").is_file() and not (folder / "model.safetensors").exists()
    reference = hf_model(folder)
    model = FlowOmniTTS(flowomni_config(folder)).eval()
    # Sizes (RoPE theta and norm epsilon included) come from config.json; the stored config has no path.
    assert model.to_config()["backbone"] == {"kind": "qwen2", **SIZES}
    assert model.to_config()["text_vocab_size"] == ROWS and model.init_from == folder
    # Every backbone weight is the HF model's, and the text embedding is its token table.
    hf_state = reference.model.state_dict()
    ours = model.backbone.state_dict()
    assert set(ours) == set(hf_state) - {"embed_tokens.weight"}
    for key, value in ours.items():
        assert torch.equal(value, hf_state[key]), key
    assert torch.equal(model.text_embedding.weight, reference.model.embed_tokens.weight)
    # Same hidden states on the same ids (a padded batch: the mask is honoured the same way).
    ids = torch.tensor([[5, 40, 77, 120, 299, 3], [9, 250, 31, 0, 0, 0]])
    mask = torch.tensor([[1] * 6, [1, 1, 1, 0, 0, 0]])
    with torch.no_grad():
        want = reference.model(input_ids=ids, attention_mask=mask).last_hidden_state
        got = model.backbone(inputs_embeds=model.text_embedding(ids), attention_mask=mask).last_hidden_state
    valid = mask.bool()
    assert torch.allclose(got[valid], want[valid], atol=1e-5), float((got - want)[valid].abs().max())


def test_a_bare_qwen2model_folder_loads_too(tmp_path):
    from transformers import Qwen2Model

    source = hf_model(save_tiny_qwen2(tmp_path / "causal")).model
    folder = tmp_path / "bare"
    source.save_pretrained(folder)  # keys without the "model." prefix
    assert isinstance(source, Qwen2Model)
    model = FlowOmniTTS(flowomni_config(folder))
    assert torch.equal(model.backbone.layers[1].mlp.up_proj.weight, source.layers[1].mlp.up_proj.weight)
    assert torch.equal(model.text_embedding.weight, source.embed_tokens.weight)


def test_released_qwen2_config_json_maps_to_the_paper_sizes(tmp_path):
    # Qwen2-0.5B's config.json as published (transformers 4.x layout: rope_theta at the top level).
    released = {"architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643,
                "eos_token_id": 151643, "hidden_act": "silu", "hidden_size": 896, "initializer_range": 0.02,
                "intermediate_size": 4864, "max_position_embeddings": 131072, "max_window_layers": 24,
                "model_type": "qwen2", "num_attention_heads": 14, "num_hidden_layers": 24, "num_key_value_heads": 2,
                "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "sliding_window": 131072, "tie_word_embeddings": True,
                "torch_dtype": "bfloat16", "use_cache": True, "use_sliding_window": False, "vocab_size": 151936}
    (tmp_path / "config.json").write_text(json.dumps(released))
    sizes, rows = qwen2_sizes(tmp_path)
    assert rows == 151936 and sizes["rope_theta"] == 1e6 and sizes["max_positions"] == 131072
    # The paper config's sizes agree with it, so only init_from is needed beside them.
    paper = yaml.safe_load((CONFIG_DIR / "tts" / "flowomni_paper.yaml").read_text())["model"]
    backbone = {**paper["backbone"], "init_from": str(tmp_path)}
    cfg, folder = resolve_init_from({**paper, "backbone": backbone}, paper["text_vocab_size"])
    assert folder == tmp_path and cfg["text_vocab_size"] == 151936
    assert cfg["backbone"] == {"kind": "qwen2", **sizes} and "init_from" not in cfg["backbone"]


# ----------------------------------------------------------------------------- frontend


def test_hf_bpe_frontend_encodes_as_the_hf_tokenizer_and_saves_whole(qwen2):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(qwen2, local_files_only=True)
    frontend = TextFrontend("hf_bpe", path=qwen2)
    assert frontend.vocab_size == ROWS >= len(tokenizer)
    for text in SENTENCES + ["Hello there<|im_end|>the cat", "naïve café, two  spaces"]:
        norm = frontend.normalize(text)
        assert frontend.encode(text) == tokenizer.encode(norm, add_special_tokens=False), text
    # Text that is already normal goes to the tokenizer unchanged; added tokens keep their ids.
    assert frontend.encode("the cat sat.") == tokenizer.encode("the cat sat.", add_special_tokens=False)
    assert frontend.encode("the cat<|im_end|>")[-1] == tokenizer.convert_tokens_to_ids("<|im_end|>")
    # English normalisation first, as for CosyVoice's BPE (numbers and abbreviations spelled out).
    assert frontend.normalize("Dr. Smith paid $5.") == "doctor Smith paid five dollars."
    assert frontend.decode(frontend.encode("the cat sat.")) == "the cat sat."
    assert "".join(frontend.tokenize("the cat sat.")) == "the cat sat."
    with pytest.raises(VoxTokError, match="bos"):
        frontend.encode("the cat", add_bos_eos=True)
    # The saved form holds the whole tokenizer: it rebuilds without the folder (through JSON, as
    # in metadata.json) and encodes identically.
    saved = json.loads(json.dumps(frontend.to_dict()))
    assert saved["kind"] == "hf_bpe" and saved["vocab_size"] == ROWS and saved["source"] == str(qwen2)
    restored = TextFrontend.from_dict(saved)
    assert restored.vocab_size == ROWS and restored.to_dict() == saved
    for text in SENTENCES:
        assert restored.encode(text) == frontend.encode(text)


def test_backbone_frontend_is_the_init_from_folders_tokenizer(qwen2):
    tts = {"name": "flowomni", "model": {"backbone": {"kind": "qwen2", "init_from": str(qwen2)}}}
    char = TextFrontend("char", max_chars=123)
    chosen = backbone_frontend(tts, char)
    assert chosen.kind == "hf_bpe" and chosen.max_chars == 123 and chosen.vocab_size == ROWS
    assert backbone_frontend({**tts, "frontend": {"max_chars": 123}}, char).kind == "hf_bpe"
    given = TextFrontend("hf_bpe", path=qwen2)
    assert backbone_frontend({**tts, "frontend": {"kind": "hf_bpe", "path": str(qwen2)}}, given) is given
    # Without init_from the config's own frontend stays.
    assert backbone_frontend({"model": {"backbone": {"kind": "qwen2", "hidden_size": 8}}}, char) is char
    one_line_error(BadConfigError, backbone_frontend, {**tts, "frontend": {"kind": "char"}}, char,
                   match="tokenizer; leave out the frontend block")


# ----------------------------------------------------------------------------- the recipe


def test_recipe_fine_tunes_from_the_folder_and_the_export_loads_without_it(qwen2, tmp_path):
    from hydra import compose, initialize_config_dir

    from tts_llm_fixtures import make_corpus
    from voxtok.recipes.train_tts import train
    from voxtok.registry import load

    folder = shutil.copytree(qwen2, tmp_path / "Qwen2-tiny")
    data, tokens, emb = make_corpus(tmp_path)
    exp = tmp_path / "exp"
    overrides = [f"data_dir={data}", f"embedding_dir={emb}", f"exp_dir={exp}", f"hydra_dir={exp}/hydra", "tts=flowomni_tiny",
                 "~tts.frontend", "~tts.model.backbone", f"+tts.model.backbone={{kind:qwen2,init_from:'{folder}'}}", "tts.model.head.width=240",
                 "tts.model.frames_per_step=2", "tts.optim.warmup_steps=0", "tts.data.batch_size=4",
                 "trainer.max_steps=2", "trainer.val_every_n_steps=1000", "trainer.limit_val_batches=1",
                 "trainer.checkpoint_every_n_steps=1000"]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train_tts", overrides=overrides)
    out = train(cfg)
    # The exported config holds the folder's sizes but not its path; the frontend holds its tokenizer.
    stored = yaml.safe_load((out / "config.yaml").read_text())
    assert stored["backbone"] == {"kind": "qwen2", **SIZES} and stored["text_vocab_size"] == ROWS
    assert "init_from" not in (out / "config.yaml").read_text()
    reference = TextFrontend("hf_bpe", path=folder)
    folder.rename(tmp_path / "gone")  # loading must not need the original folder
    model = load(out)
    frontend = TextFrontend.from_dict(model.extra["frontend"])
    assert frontend.kind == "hf_bpe" and frontend.encode("the cat sat") == reference.encode("the cat sat")
    assert model.init_from is None
    # Training moved the weights away from the pretrained ones, and the loaded model is the trained one.
    pretrained = hf_model(tmp_path / "gone")
    assert not torch.equal(model.text_embedding.weight, pretrained.model.embed_tokens.weight)
    mel, lengths = model.synthesize(torch.tensor(frontend.encode("the cat sat")), spk_emb=torch.ones(1, 256) / 16,
                                    max_frames=6, n_steps=2, seed=0)
    assert mel.shape[:2] == (1, 80) and 2 <= int(lengths[0]) <= 6 and torch.isfinite(mel).all()


def test_paper_configs_fine_tune_from_qwen2_dir_or_train_from_scratch(qwen2, monkeypatch):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    def composed(name: str) -> dict:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            return OmegaConf.to_container(compose("train_tts", overrides=[f"tts={name}"]), resolve=True)["tts"]

    monkeypatch.setenv("QWEN2_DIR", str(qwen2))
    paper = composed("flowomni_paper")
    assert paper["model"]["backbone"]["init_from"] == str(qwen2)
    assert "frontend" not in paper and float(paper["optim"]["lr"]) == 1e-4
    scratch = composed("flowomni_scratch_paper")
    assert "init_from" not in scratch["model"]["backbone"] and scratch["frontend"] == {"kind": "phoneme"}
    assert float(scratch["optim"]["lr"]) == 1e-3
    # Same model otherwise: the sizes written beside init_from are the scratch backbone's.
    assert {k: v for k, v in paper["model"]["backbone"].items() if k != "init_from"}.items() \
        <= scratch["model"]["backbone"].items()
    same = ("mel", "mel_mean", "mel_std", "frames_per_step", "use_spk_emb", "head", "cfm", "loss", "inference")
    assert all(paper["model"][k] == scratch["model"][k] for k in same)
    # The tiny folder is not Qwen2-0.5B: the paper sizes beside init_from say so in one line.
    one_line_error(BadConfigError, FlowOmniTTS, paper["model"], match="backbone.hidden_size is 896, but the init_from")
    # QWEN2_DIR unset: init_from is empty, a one-line error that names the way out.
    monkeypatch.delenv("QWEN2_DIR")
    paper = composed("flowomni_paper")
    assert paper["model"]["backbone"]["init_from"] == ""
    message = one_line_error(BadConfigError, FlowOmniTTS, paper["model"], match="init_from is empty")
    assert "QWEN2_DIR" in message and "flowomni_scratch_paper" in message
    with pytest.raises(BadConfigError, match="init_from is empty"):
        backbone_frontend(paper, TextFrontend("char"))


# ----------------------------------------------------------------------------- errors


def test_bad_folders_and_settings_are_one_line_errors(qwen2, tmp_path):
    def build(folder, **overrides):
        return FlowOmniTTS(flowomni_config(folder, **overrides))

    one_line_error(BadConfigError, build, tmp_path / "absent", match="no such folder")
    one_line_error(BadConfigError, build, "  ", match="init_from is empty")
    empty = tmp_path / "empty"
    empty.mkdir()
    one_line_error(BadConfigError, build, empty, match="no config.json")
    hf_config = json.loads((qwen2 / "config.json").read_text())

    def folder_with(name: str, weights: bool = False, **changes) -> Path:
        folder = tmp_path / name
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps({**hf_config, **changes}))
        if weights:
            shutil.copy(qwen2 / "model.safetensors", folder)
        return folder

    one_line_error(BadConfigError, build, folder_with("llama", model_type="llama"), match="'llama' model.*Qwen2")
    one_line_error(BadConfigError, build, folder_with("noweights"), match="no model.safetensors")
    one_line_error(BadConfigError, build, folder_with("window", use_sliding_window=True, sliding_window=16),
                   match="use_sliding_window")
    one_line_error(BadConfigError, build, folder_with("gelu", hidden_act="gelu"), match="hidden_act 'gelu'")
    # Weights that do not fit the sizes config.json claims.
    one_line_error(BadConfigError, build, folder_with("wider", weights=True, intermediate_size=128),
                   match="does not fit a Qwen2 backbone")
    (folder_with("broken") / "config.json").write_text("{not json")
    one_line_error(BadConfigError, build, tmp_path / "broken", match="not valid JSON")
    # Settings beside init_from must agree with the folder.
    one_line_error(BadConfigError, build, qwen2, match=r"backbone.num_layers is 3, but the init_from model has 2",
                   backbone={"kind": "qwen2", "init_from": str(qwen2), "num_layers": 3})
    one_line_error(BadConfigError, build, qwen2, match="kind is 'llama'",
                   backbone={"kind": "llama", "init_from": str(qwen2)})
    one_line_error(BadConfigError, build, qwen2, match="text_vocab_size is 34.*hf_bpe", text_vocab_size=34)
    one_line_error(BadConfigError, build, qwen2, match="unknown config key 'flowomni.backbone.init_form'",
                   backbone={"kind": "qwen2", "init_form": str(qwen2)})
    # Agreeing sizes (and null ones) are accepted.
    assert build(qwen2, backbone={"kind": "qwen2", "init_from": str(qwen2), "num_layers": 2, "rope_theta": 1e6,
                                  "hidden_size": None}).width == 32
    # The frontend: no tokenizer in the folder, no path, a path for another kind.
    one_line_error(BadConfigError, TextFrontend, "hf_bpe", path=folder_with("notok"), match="no Hugging Face tokenizer")
    one_line_error(BadConfigError, TextFrontend, "hf_bpe", match="needs path")
    one_line_error(BadConfigError, TextFrontend, "hf_bpe", path=tmp_path / "absent", match="no such folder")
    one_line_error(BadConfigError, TextFrontend, "char", path=qwen2, match="hf_bpe frontend setting")
    saved = TextFrontend("hf_bpe", path=qwen2).to_dict()
    one_line_error(BadConfigError, TextFrontend.from_dict, {**saved, "tokenizer": "{]"}, match="unreadable")
    one_line_error(BadConfigError, TextFrontend.from_dict, {**saved, "vocab_size": 10}, match="only 10 rows")
