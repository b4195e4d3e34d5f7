"""The one model contract: registry, checkpoint format 2, `voxtok.load`, and the layouts written before it."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from safetensors.torch import save_file

import voxtok
from tts_fixtures import model_config, tiny_flowomni, tiny_tts_parts
from voxtok.errors import BadConfigError
from voxtok.registry import FORMAT_VERSION, build, file_hash, lookup, read_metadata, register, registered


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    return tiny_tts_parts(tmp_path_factory.mktemp("spk"))


def every_model(parts):
    """One tiny model of every registered codec and TTS kind."""
    codec = build("codec", "wavtokenizer", model_config("codec/wavtokenizer_tiny.yaml"))
    return {("codec", "wavtokenizer"): codec, ("codec", "s3"): parts.tokenizer, ("tts", "llm"): parts.llm,
            ("tts", "flow"): parts.flow, ("tts", "mel_vocoder"): parts.vocoder,
            ("tts", "flowomni"): tiny_flowomni(parts.frontend)}


def test_builtin_models_are_registered_under_their_kind():
    assert {"wavtokenizer", "dmcodec", "fusecodec", "s3"} <= set(registered("codec"))
    assert {"llm", "flow", "flowomni", "mel_vocoder"} <= set(registered("tts"))
    assert {"cosyvoice", "flowomni"} <= set(registered("pipeline"))
    with pytest.raises(BadConfigError, match="unknown codec 'wavtokeniser'.*registered: .*wavtokenizer"):
        lookup("codec", "wavtokeniser")
    with pytest.raises(BadConfigError, match="unknown model kind 'vocoder'"):
        registered("vocoder")


def test_a_name_cannot_be_registered_twice_for_another_class(monkeypatch):
    from voxtok import registry

    monkeypatch.setitem(registry._REGISTRY, "tts", dict(registry._REGISTRY["tts"]))  # undone after the test

    @register("tts", "_test_twice")
    class First:
        pass

    register("tts", "_test_twice")(First)  # the same class again (a module re-import) is fine
    with pytest.raises(BadConfigError, match="registered twice"):
        @register("tts", "_test_twice")
        class Second:
            pass


def test_every_kind_round_trips_through_save_pretrained_and_voxtok_load(parts, tmp_path):
    for (kind, name), model in every_model(parts).items():
        model.eval()
        out = model.save_pretrained(tmp_path / name, extra={"note": name})
        meta = json.loads((out / "metadata.json").read_text())
        assert meta["kind"] == kind and meta["name"] == name and meta["format"] == FORMAT_VERSION
        assert meta["weights_hash"] == file_hash(out / "model.safetensors") == model.checkpoint_hash
        assert meta["voxtok_version"] and meta["extra"] == {"note": name}
        assert yaml.safe_load((out / "config.yaml").read_text()) == model.to_config()
        loaded = voxtok.load(out)
        assert type(loaded) is type(model) and not loaded.training
        assert loaded.checkpoint_hash == model.checkpoint_hash and loaded.extra == {"note": name}
        for key, value in model.state_dict().items():
            assert torch.equal(loaded.state_dict()[key], value), (name, key)


def test_codec_metadata_carries_its_rates_for_readers_that_do_not_load_weights(parts, tmp_path):
    out = parts.tokenizer.save_pretrained(tmp_path / "s3")
    info = read_metadata(out)["info"]
    assert info == {"sample_rate": 16000, "frame_rate": parts.tokenizer.frame_rate, "n_q": 1,
                    "codebook_size": parts.tokenizer.codebook_size}


def test_from_pretrained_checks_the_class_and_load_checks_the_kind(parts, tmp_path):
    from voxtok.tts.flow import FlowDecoder
    from voxtok.tts.llm import TextToTokenLM

    out = parts.flow.save_pretrained(tmp_path / "flow")
    assert isinstance(FlowDecoder.from_pretrained(out), FlowDecoder)
    with pytest.raises(BadConfigError, match="holds tts 'flow', not 'llm'"):
        TextToTokenLM.from_pretrained(out)
    with pytest.raises(BadConfigError, match="holds a tts .*not a codec"):
        voxtok.load(out, kind="codec")


def test_folders_written_before_format_2_keep_loading(parts, tmp_path):
    # A format-1 codec folder: metadata.json {codec, checkpoint_hash, rates}.
    codec = parts.tokenizer
    new = codec.save_pretrained(tmp_path / "new_codec")
    old = tmp_path / "old_codec"
    old.mkdir()
    for name in ("config.yaml", "model.safetensors"):
        (old / name).write_bytes((new / name).read_bytes())
    (old / "metadata.json").write_text(json.dumps({"codec": "s3", "checkpoint_hash": "abc123", "sample_rate": 16000,
                                                   "frame_rate": 50.0, "n_q": 1, "codebook_size": 32, "format": 1}))
    loaded = voxtok.load(old)
    assert loaded.registry_name == "s3" and loaded.checkpoint_hash == "abc123"
    assert read_metadata(old)["info"]["frame_rate"] == 50.0

    # A format-1 TTS folder: config.yaml {name, model, **extra}, no metadata.json.
    llm_old = tmp_path / "old_llm"
    llm_old.mkdir()
    save_file({k: v.contiguous() for k, v in parts.llm.state_dict().items()}, str(llm_old / "model.safetensors"))
    (llm_old / "config.yaml").write_text(yaml.safe_dump(
        {"name": "llm", "model": parts.llm.to_config(), "frontend": parts.frontend.to_dict()}))
    loaded = voxtok.load(llm_old)
    assert loaded.registry_name == "llm" and loaded.extra == {"frontend": parts.frontend.to_dict()}
    assert loaded.checkpoint_hash == file_hash(llm_old / "model.safetensors")


def test_bad_checkpoint_folders_give_one_line_errors(parts, tmp_path):
    with pytest.raises(BadConfigError, match="no such directory"):
        voxtok.load(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadConfigError, match="not a VoxTok checkpoint folder.*re-export it"):
        voxtok.load(tmp_path / "empty")
    out = parts.vocoder.save_pretrained(tmp_path / "voc")
    meta = json.loads((out / "metadata.json").read_text())
    (out / "metadata.json").write_text(json.dumps(meta | {"format": FORMAT_VERSION + 1}))
    with pytest.raises(BadConfigError, match="newer than this VoxTok reads"):
        voxtok.load(out)
    (out / "metadata.json").write_text(json.dumps(meta | {"name": "hifigan"}))
    with pytest.raises(BadConfigError, match="unknown tts 'hifigan'"):
        voxtok.load(out)
    (out / "metadata.json").write_text("{not json")
    with pytest.raises(BadConfigError, match="not valid JSON"):
        voxtok.load(out)
    (out / "metadata.json").write_text(json.dumps(meta))
    state = {k: v.contiguous() for k, v in parts.vocoder.state_dict().items()}
    state.pop(next(iter(state)))
    save_file(state, str(out / "model.safetensors"))
    with pytest.raises(BadConfigError, match="weights do not fit its config") as err:
        voxtok.load(out)
    assert "\n" not in str(err.value)


def test_a_model_that_is_not_registered_cannot_be_saved(tmp_path):
    from voxtok.registry import SavesPretrained

    class Loose(SavesPretrained, torch.nn.Module):
        pass

    with pytest.raises(BadConfigError, match="not a registered model"):
        Loose().save_pretrained(tmp_path / "x")
    assert not (tmp_path / "x").exists()
