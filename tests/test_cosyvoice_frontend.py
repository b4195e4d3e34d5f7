"""CosyVoice-300M text tokens: the "whisper_bpe" text frontend gives the reference frontend's ids.

Fixture tests/fixtures/cosyvoice_frontend/text_ids.json was made once from FunAudioLLM/CosyVoice at
commit ace7c47 (a snapshot outside this repository): a script read the `get_tokenizer` and
`allowed_special` entries of examples/libritts/cosyvoice/conf/cosyvoice.yaml with hyperpyyaml
(`!name:whisper.tokenizer.get_tokenizer` multilingual, 100 languages, en, transcribe; "all") and encoded
six sentences (numbers, punctuation, Chinese, a language tag, accents, an already normalised one) as
cosyvoice/cli/frontend.py `_extract_text_token` does: `tokenizer.encode(text, allowed_special=...)`.
It also stored the vocabulary size and a few special ids. cosyvoice_300m_tokenizer.yaml holds those
two entries of that cosyvoice.yaml, verbatim (lines 157-162), for the release-config reader.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("whisper", reason="the whisper_bpe frontend needs openai-whisper (the cosyvoice extra)")

from voxtok.errors import BadConfigError, BadTextError  # noqa: E402
from voxtok.tts.frontend import TextFrontend  # noqa: E402
from voxtok.tts.whisper_bpe import WhisperBPE  # noqa: E402

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "cosyvoice_frontend" / "text_ids.json").read_text())


@pytest.fixture(scope="module")
def frontend():
    return TextFrontend("whisper_bpe")


def test_vocabulary_and_specials_match_the_reference(frontend):
    assert frontend.vocab_size == FIXTURE["n_vocab"] == 51866
    bpe = WhisperBPE()
    for tag, ident in FIXTURE["special_ids"].items():
        assert bpe.encode(tag) == [ident], tag


@pytest.mark.parametrize("item", FIXTURE["sentences"], ids=lambda item: item["text"][:20])
def test_bpe_ids_equal_the_reference_frontend(item):
    assert WhisperBPE().encode(item["text"]) == item["ids"]


def test_english_is_normalised_before_the_bpe(frontend):
    # The reference ids of the normalised sentence are what our frontend gives for the raw one.
    normalised = FIXTURE["sentences"][5]
    assert frontend.encode("doctor smith paid $5, didn't he?") == normalised["ids"]
    # Case is kept, as CosyVoice's English normaliser does (the BPE gives cased words other ids).
    assert frontend.normalize("On March 3rd, it cost $5.50") == "On March third, it cost five dollars fifty cents"


def test_other_scripts_and_tags_pass_through(frontend):
    chinese = FIXTURE["sentences"][2]
    assert frontend.encode(chinese["text"]) == chinese["ids"]  # unchanged, digits and punctuation included
    tagged = frontend.encode("<|en|>Said 42 times.")
    assert tagged[0] == FIXTURE["special_ids"]["<|en|>"]
    assert frontend.decode(tagged) == "<|en|>Said forty two times."
    assert frontend.normalize("<|zh|>你好 2") == "<|zh|>你好 2"


def test_saved_frontend_keeps_its_ids(frontend):
    data = json.loads(json.dumps(frontend.to_dict()))
    assert data["kind"] == "whisper_bpe" and data["vocab_size"] == 51866
    restored = TextFrontend.from_dict(data)
    assert restored.encode("Hello there, 42 friends.") == frontend.encode("Hello there, 42 friends.")
    with pytest.raises(BadTextError, match="51866"):
        TextFrontend.from_dict({**data, "vocab_size": 51865})


def test_bad_requests_are_one_line_errors(frontend, monkeypatch):
    with pytest.raises(BadTextError, match="bos"):
        frontend.encode("hello", add_bos_eos=True)
    with pytest.raises(BadTextError, match="empty"):
        frontend.encode("  ...  ")
    with pytest.raises(BadTextError, match="outside the vocabulary"):
        frontend.decode([51866])
    from voxtok.tts import whisper_bpe

    whisper_bpe._whisper_encoding.cache_clear()
    monkeypatch.setitem(sys.modules, "whisper.tokenizer", None)
    try:
        with pytest.raises(BadConfigError, match="openai-whisper"):
            TextFrontend("whisper_bpe")
    finally:
        whisper_bpe._whisper_encoding.cache_clear()


def test_release_config_gives_the_whisper_bpe_frontend(tmp_path):
    from voxtok.convert.cosyvoice_frontend import text_frontend_from_reference
    from voxtok.convert.cosyvoice_yaml import read_cosyvoice_yaml

    release = (Path(__file__).parent / "fixtures" / "cosyvoice_frontend" / "cosyvoice_300m_tokenizer.yaml").read_text()
    sizes = "llm: !new:cosyvoice.llm.llm.TransformerLM\n    text_token_size: 51866\n    speech_token_size: 4096\n"
    path = tmp_path / "cosyvoice.yaml"
    path.write_text(release + sizes)
    frontend = text_frontend_from_reference(read_cosyvoice_yaml(path), path)
    assert frontend.kind == "whisper_bpe" and frontend.encode("<|en|>Hi")[0] == FIXTURE["special_ids"]["<|en|>"]
    refused = {  # CosyVoice-300M-25Hz's own BPE, CosyVoice 2's Qwen tokenizer, other settings
        "cosyvoice.tokenizer.tokenizer.get_tokenizer": release.replace("whisper.tokenizer.get_tokenizer",
                                                                       "cosyvoice.tokenizer.tokenizer.get_tokenizer"),
        "get_qwen_tokenizer": "get_tokenizer: !name:cosyvoice.tokenizer.tokenizer.get_qwen_tokenizer\n"
                              "    token_path: x\n    skip_special_tokens: True\n",
        "num_languages 99": release.replace("num_languages: 100", "num_languages: 99"),
        "allowed_special": release.replace("allowed_special: 'all'", "allowed_special: 'none_raise'"),
        "text_token_size 60515": release + sizes.replace("51866", "60515"),
    }
    for match, text in refused.items():
        path.write_text(text)
        with pytest.raises(BadConfigError, match=match) as err:
            text_frontend_from_reference(read_cosyvoice_yaml(path), path)
        assert "\n" not in str(err.value) and str(path) in str(err.value)
