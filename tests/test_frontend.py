"""TTS text frontend: normalisation, char and phoneme symbols, ids, errors, persistence."""

import json

import pytest

from voxtok.data.textgen import SentenceGenerator
from voxtok.errors import BadTextError
from voxtok.tts.frontend import (
    CHAR_SYMBOLS, ESPEAK_PHONEMES, PAD_ID, PHONEME_SYMBOLS, SPECIALS, TextFrontend, UnknownSymbolError,
    normalize_text, phonemize_chunks,
)


@pytest.mark.parametrize("text, expected", [
    ("Dr. Smith paid $5 on March 3rd, 1999 at 10:30",
     "doctor smith paid five dollars on march third, nineteen ninety nine at ten thirty"),
    ("Mr. and Mrs. Jones live on Baker St. in London. St. Paul is near.",
     "mister and missus jones live on baker street in london. saint paul is near."),
    ("It cost $1.50, or £2 million; 50% off!", "it cost one dollar fifty cents, or two million pounds, fifty percent off!"),
    ("In the 1990s, 1,500 men came.", "in the nineteen nineties, one thousand five hundred men came."),
    ("Meet me at 5 p.m. Then we go.", "meet me at five p m. then we go."),
    ("It fell to -5 degrees; pi is 3.14.", "it fell to minus five degrees, pi is three point one four."),
    ("Apples, pears, etc. were sold in 2005", "apples, pears, et cetera were sold in two thousand five"),
    ("\u201cHello,\u201d she said \u2014 \u2018quietly\u2019\u2026 don't!", "hello, she said, quietly. don't!"),
    ("The 21st-century caf\u00e9 (in Room No. 7)", "the twenty first century cafe, in room number seven"),
    ("Pages 5-6 & 12 @ home", "pages five to six and twelve at home"),
])
def test_normalize_examples(text, expected):
    assert normalize_text(text) == expected


def test_char_round_trip_and_fixed_vocabulary():
    frontend = TextFrontend("char")
    text = "Dr. Smith paid $5 on March 3rd, 1999 at 10:30!"
    ids = frontend.encode(text)
    assert min(ids) >= len(SPECIALS) and max(ids) < frontend.vocab_size
    assert frontend.decode(ids) == frontend.normalize(text)
    assert frontend.tokenize(text) == list(frontend.normalize(text))
    assert frontend.vocab_size == len(SPECIALS) + len(CHAR_SYMBOLS) == 35
    assert frontend.encode("ab", add_bos_eos=True) == [1, frontend.encode("a")[0], frontend.encode("b")[0], 2]
    assert frontend.decode([PAD_ID, *ids, PAD_ID]) == frontend.normalize(text)


def test_phoneme_round_trip():
    frontend = TextFrontend("phoneme")
    tokens = frontend.tokenize("The quick brown fox, Dr. Smith!")
    assert "".join(tokens) == "ðə kwˈɪk bɹˈaʊn fˈɑːks, dˈɑːktɚ smˈɪθ!"
    assert "aʊ" in tokens and "ɑː" in tokens and "ˈ" in tokens  # diphthongs and long vowels are one symbol
    ids = frontend.encode("The quick brown fox, Dr. Smith!")
    assert frontend.decode(ids) == "".join(tokens)
    assert frontend.vocab_size == len(SPECIALS) + len(PHONEME_SYMBOLS) == len(SPECIALS) + 7 + len(ESPEAK_PHONEMES)


def test_phoneme_batch_matches_single_and_covers_corpus_text():
    frontend = TextFrontend("phoneme")
    texts = [original for original, _ in SentenceGenerator(3).sentences(40)]
    batch = frontend.encode_batch(texts)  # one espeak-ng call; every phoneme is in the inventory
    assert [frontend.encode(t) for t in texts[:3]] == batch[:3]
    assert phonemize_chunks(["the quick brown fox"]) == phonemize_chunks(["a b c", "the quick brown fox"])[1:]


def test_unknown_symbols_are_named():
    frontend = TextFrontend("char")
    with pytest.raises(UnknownSymbolError, match=r"'α' \(U\+03B1\)") as err:
        frontend.encode("alpha is α and beta is β")
    assert "'β'" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(UnknownSymbolError, match="'\\^'"):
        TextFrontend("phoneme").encode("two ^ three")
    with pytest.raises(BadTextError, match="outside the vocabulary"):
        frontend.decode([frontend.vocab_size])


@pytest.mark.parametrize("text", ["", "   ", "...", "\u2014 ( ) !"])
def test_empty_text_is_refused(text):
    with pytest.raises(BadTextError, match="empty after normalisation"):
        TextFrontend("char").encode(text)


def test_too_long_text_is_refused():
    frontend = TextFrontend("char", max_chars=30)
    frontend.encode("a" * 30)
    with pytest.raises(BadTextError, match="too long"):
        frontend.encode("a" * 31)
    with pytest.raises(BadTextError, match="too long"):
        frontend.encode("It cost $5,555,555.")  # short as typed, long once spelled out
    with pytest.raises(BadTextError, match="kind"):
        TextFrontend("bpe")


def test_to_dict_from_dict_keeps_ids():
    for kind in ("char", "phoneme"):
        frontend = TextFrontend(kind, max_chars=123)
        data = json.loads(json.dumps(frontend.to_dict()))
        restored = TextFrontend.from_dict(data)
        assert restored.max_chars == 123 and restored.vocab_size == frontend.vocab_size
        assert restored.encode("Hello there, 42 friends.") == frontend.encode("Hello there, 42 friends.")
    # A saved inventory is honoured even if the built-in one later changes.
    data = TextFrontend("char").to_dict()
    data["symbols"] = list(reversed(data["symbols"]))
    assert TextFrontend.from_dict(data).encode("a") != TextFrontend("char").encode("a")
