"""Number verbalization and the seeded sentence generator."""

import re

import pytest

from voxtok.data.textgen import (
    SentenceGenerator,
    number_to_words,
    ordinal_suffix,
    ordinal_to_words,
    time_to_words,
    year_to_words,
)
from voxtok.errors import BadTextError, VoxTokError


@pytest.mark.parametrize("n, words", [
    (0, "zero"), (7, "seven"), (13, "thirteen"), (20, "twenty"), (21, "twenty one"),
    (99, "ninety nine"), (100, "one hundred"), (105, "one hundred five"),
    (110, "one hundred ten"), (999, "nine hundred ninety nine"), (1000, "one thousand"),
    (1001, "one thousand one"), (2024, "two thousand twenty four"),
    (12500, "twelve thousand five hundred"), (100000, "one hundred thousand"),
    (999999, "nine hundred ninety nine thousand nine hundred ninety nine"),
    (1000000, "one million"), (-5, "minus five"),
])
def test_number_to_words(n, words):
    assert number_to_words(n) == words


@pytest.mark.parametrize("n, words", [
    (0, "zeroth"), (1, "first"), (2, "second"), (3, "third"), (4, "fourth"), (5, "fifth"),
    (8, "eighth"), (9, "ninth"), (11, "eleventh"), (12, "twelfth"), (13, "thirteenth"),
    (20, "twentieth"), (21, "twenty first"), (22, "twenty second"), (23, "twenty third"),
    (100, "one hundredth"), (101, "one hundred first"), (1000, "one thousandth"),
])
def test_ordinal_to_words(n, words):
    assert ordinal_to_words(n) == words


@pytest.mark.parametrize("n, written", [(1, "1st"), (2, "2nd"), (3, "3rd"), (4, "4th"),
                                        (11, "11th"), (12, "12th"), (13, "13th"), (21, "21st"),
                                        (22, "22nd"), (101, "101st"), (111, "111th")])
def test_ordinal_suffix(n, written):
    assert ordinal_suffix(n) == written


@pytest.mark.parametrize("year, words", [
    (1000, "one thousand"), (1066, "ten sixty six"), (1100, "eleven hundred"),
    (1900, "nineteen hundred"), (1905, "nineteen o five"), (1998, "nineteen ninety eight"),
    (2000, "two thousand"), (2005, "two thousand five"), (2010, "twenty ten"),
    (2024, "twenty twenty four"), (2099, "twenty ninety nine"),
])
def test_year_to_words(year, words):
    assert year_to_words(year) == words


def test_time_to_words():
    assert time_to_words(7, 30) == "seven thirty"
    assert time_to_words(9, 0) == "nine o'clock"
    assert time_to_words(6, 5) == "six o five"
    assert time_to_words(0, 15) == "twelve fifteen"


@pytest.mark.parametrize("call", [
    lambda: number_to_words(10**12), lambda: number_to_words(1.5), lambda: number_to_words(True),
    lambda: ordinal_to_words(-1), lambda: year_to_words(999), lambda: year_to_words(2100),
    lambda: time_to_words(24, 0),
])
def test_out_of_range_is_a_one_line_error(call):
    with pytest.raises(BadTextError) as info:
        call()
    assert isinstance(info.value, VoxTokError) and "\n" not in str(info.value)


def test_all_cardinals_below_a_million_are_well_formed():
    vocabulary = set(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
        "fifteen sixteen seventeen eighteen nineteen twenty thirty forty fifty sixty seventy "
        "eighty ninety hundred thousand".split())
    seen = set()
    for n in range(0, 1_000_000, 7):
        words = number_to_words(n)
        assert set(words.split()) <= vocabulary, words
        assert words not in seen  # distinct numbers never read the same
        seen.add(words)
    for year in range(1000, 2100):
        assert year_to_words(year).split()[-1] in vocabulary


def test_generator_is_deterministic_per_seed():
    first = SentenceGenerator(3).sentences(50)
    assert SentenceGenerator(3).sentences(50) == first
    assert SentenceGenerator(4).sentences(50) != first


def test_sentences_are_5_to_20_words_and_well_punctuated():
    for original, normalized in SentenceGenerator(0).sentences(500):
        assert 5 <= len(original.split()) <= 20, original
        assert original[-1] in ".?!" and normalized[-1] == original[-1]
        assert normalized[0].isupper()
        assert "  " not in original and " ," not in original


def _spoken_form(token: str) -> str:
    """Verbalize one written token the way the generator's numbers are written."""
    word = token.rstrip(",.?!")
    if re.fullmatch(r"\$\d+", word):
        n = int(word[1:])
        return f"{number_to_words(n)} {'dollar' if n == 1 else 'dollars'}"
    if re.fullmatch(r"\d+(st|nd|rd|th)", word):
        return ordinal_to_words(int(word[:-2]))
    if re.fullmatch(r"\d{1,2}:\d\d", word):
        hour, minute = word.split(":")
        return time_to_words(int(hour), int(minute))
    if re.fullmatch(r"\d[\d,]*", word):
        return number_to_words(int(word.replace(",", "")))
    return word


def test_digits_and_words_agree():
    found = {"digit": 0, "year": 0, "ordinal": 0, "time": 0}
    for original, normalized in SentenceGenerator(11).sentences(400):
        assert not re.search(r"\d", normalized), normalized
        if re.search(r"\d", original):
            found["digit"] += 1
        expected = []
        for i, token in enumerate(original.split()):
            word = token.rstrip(",.?!")
            prev = original.split()[i - 1] if i else ""
            # Years follow "in" in the generator; everything else is a plain quantity.
            if re.fullmatch(r"1\d{3}|20\d\d", word) and prev.lower() == "in":
                spoken = year_to_words(int(word))
                found["year"] += 1
            else:
                spoken = _spoken_form(token)
                found["ordinal"] += bool(re.fullmatch(r"\d+(st|nd|rd|th)", word))
                found["time"] += ":" in word
            expected.append(spoken + token[len(word):])
        sentence = " ".join(expected)
        assert sentence[0].upper() + sentence[1:] == normalized, (original, normalized)
    assert min(found.values()) > 5, found
