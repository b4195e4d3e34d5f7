"""Seeded English sentence generator and number verbalizer for the synthetic mini corpus.

Each sentence comes in two forms, like a LibriTTS utterance: the *original* text with digits
("He bought 3 apples in 1998.") and the *normalized* text with every number written out
("He bought three apples in nineteen ninety eight."). Numbers are spelled the way LibriTTS
normalized text spells them: lower case, no hyphens, no "and" after "hundred", years read in
pairs ("nineteen o five", "twenty twenty four", but "two thousand five"), times as
"seven thirty" / "nine o'clock".

`number_to_words`, `ordinal_to_words`, `year_to_words` and `time_to_words` are shared with the
TTS text frontend, so they are strict: anything outside their documented range is a
BadTextError rather than a guess.
"""

from __future__ import annotations

import random

from voxtok.errors import BadTextError

# ----------------------------------------------------------------------------- number words

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = ((10**9, "billion"), (10**6, "million"), (1000, "thousand"))
_MAX_CARDINAL = 10**12 - 1
_IRREGULAR_ORDINALS = {
    "one": "first", "two": "second", "three": "third", "five": "fifth",
    "eight": "eighth", "nine": "ninth", "twelve": "twelfth",
}


def _check_int(n, what: str, low: int, high: int) -> int:
    # bool is an int subclass; True would silently read as "one".
    if isinstance(n, bool) or not isinstance(n, int):
        raise BadTextError(f"{what} must be an integer, got {n!r}")
    if not low <= n <= high:
        raise BadTextError(f"{what} {n} is outside the supported range {low}..{high}")
    return n


def _below_thousand(n: int) -> list[str]:
    words: list[str] = []
    hundreds, rest = divmod(n, 100)
    if hundreds:
        words += [_ONES[hundreds], "hundred"]
    if rest >= 20:
        tens, ones = divmod(rest, 10)
        words.append(_TENS[tens])
        if ones:
            words.append(_ONES[ones])
    elif rest or not words:
        words.append(_ONES[rest])
    return words


def number_to_words(n: int) -> str:
    """Cardinal number in words: 0 -> "zero", 105 -> "one hundred five", 21 -> "twenty one".

    Supports -999,999,999,999 .. 999,999,999,999 (negatives read "minus ...").
    """
    _check_int(n, "number", -_MAX_CARDINAL, _MAX_CARDINAL)
    if n < 0:
        return "minus " + number_to_words(-n)
    if n == 0:
        return "zero"
    words: list[str] = []
    for value, name in _SCALES:
        count, n = divmod(n, value)
        if count:
            words += _below_thousand(count) + [name]
    if n:
        words += _below_thousand(n)
    return " ".join(words)


def ordinal_to_words(n: int) -> str:
    """Ordinal in words: 1 -> "first", 21 -> "twenty first", 100 -> "one hundredth".

    Supports 0 .. 999,999,999,999 (0 -> "zeroth").
    """
    _check_int(n, "ordinal", 0, _MAX_CARDINAL)
    *head, last = number_to_words(n).split()
    if last in _IRREGULAR_ORDINALS:
        last = _IRREGULAR_ORDINALS[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return " ".join(head + [last])


def year_to_words(year: int) -> str:
    """A year as it is read aloud, 1000..2099.

    1998 -> "nineteen ninety eight", 2024 -> "twenty twenty four", 1905 -> "nineteen o five",
    1900 -> "nineteen hundred", 2000 -> "two thousand", 2005 -> "two thousand five",
    1066 -> "ten sixty six".
    """
    _check_int(year, "year", 1000, 2099)
    if year % 1000 == 0 or 2000 < year < 2010:
        # Nobody says "twenty o five": the first decade of a millennium is read as a cardinal.
        return number_to_words(year)
    high, low = divmod(year, 100)
    head = number_to_words(high)
    if low == 0:
        return f"{head} hundred"
    if low < 10:
        return f"{head} o {_ONES[low]}"
    return f"{head} {number_to_words(low)}"


def time_to_words(hour: int, minute: int) -> str:
    """A clock time (12-hour reading): 7:30 -> "seven thirty", 9:00 -> "nine o'clock",
    6:05 -> "six o five". Hours 0..23 are read on a 12-hour dial (0 and 12 are "twelve")."""
    _check_int(hour, "hour", 0, 23)
    _check_int(minute, "minute", 0, 59)
    head = number_to_words(hour % 12 or 12)
    if minute == 0:
        return f"{head} o'clock"
    if minute < 10:
        return f"{head} o {_ONES[minute]}"
    return f"{head} {number_to_words(minute)}"


def ordinal_suffix(n: int) -> str:
    """Written ordinal: 1 -> "1st", 12 -> "12th", 23 -> "23rd"."""
    _check_int(n, "ordinal", 0, _MAX_CARDINAL)
    if n % 100 in (11, 12, 13):
        return f"{n}th"
    return str(n) + {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")


# ----------------------------------------------------------------------------- vocabulary

_NAMES = (
    "Anna Thomas Margaret Henry Clara Arthur Alice Walter Edith George Mary Samuel Helen "
    "Robert Lucy Charles Emma Frederick Ruth Daniel Grace Edward Martha James Rose William "
    "Laura Peter Jane Oliver Sarah Hugh Nora Philip Agnes Albert Ellen Joseph Maud Paul"
).split()
# Lower case: `_render` capitalises whatever starts the sentence ("I" is the exception).
_PRONOUNS = ("he", "she", "they", "we", "I")
_CITIES = (
    "London Boston Paris Chicago Dublin Edinburgh Lisbon Vienna Denver Bristol York Madrid "
    "Geneva Oxford Seattle Berlin Quebec Naples Sydney Toronto"
).split()
_MONTHS = (
    "January February March April May June July August September October November December"
).split()
_DAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()

# (singular, plural): things that can be counted, carried and described.
_NOUNS = [
    (w, w + "s") for w in (
        "apple book letter horse basket candle chair coat cup door drawer egg flower garden "
        "hat key lamp map nail orange pencil picture plate ring rope shoe stone table ticket "
        "tree wagon window bottle blanket bell bird boat bridge button card coin desk dog "
        "feather field flag gate gift glove hill jar kettle lantern mirror needle road river "
        "shirt spoon star stick string sword tower trunk wheel"
    ).split()
] + [
    ("box", "boxes"), ("glass", "glasses"), ("dish", "dishes"), ("brush", "brushes"),
    ("knife", "knives"),
    ("loaf", "loaves"), ("mouse", "mice"), ("goose", "geese"), ("peach", "peaches"),
    ("church", "churches"), ("fox", "foxes"), ("penny", "pennies"), ("story", "stories"),
    ("cherry", "cherries"), ("pony", "ponies"),
    ("sheep", "sheep"),
]
# Places a thing or person can be at ("near the mill").
_PLACES = (
    "mill market station church harbour bridge river garden kitchen library school village "
    "forest valley shore orchard cottage castle square meadow chapel inn farm yard hall"
).split()
_ADJECTIVES = (
    "old small large red green blue yellow heavy light quiet bright dark warm cold wooden "
    "golden silver broken clean dusty empty famous gentle happy little narrow new pale "
    "plain proud rough round simple soft strange tall tiny tired young careful curious "
    "distant early fine fresh grey honest kind lonely lucky modest patient polite rare "
    "shy steady"
).split()
_ADVERBS = (
    "quietly slowly quickly carefully suddenly gently happily finally softly early "
    "patiently bravely calmly eagerly nearly politely rarely seldom silently warmly"
).split()
_PREPOSITIONS = ("near", "behind", "beside", "inside", "across", "beyond", "under", "by")
# (base, past, participle) for verbs that take an object.
_TRANSITIVE = [
    tuple(v.split("/")) for v in (
        "buy/bought/bought find/found/found carry/carried/carried see/saw/seen "
        "paint/painted/painted sell/sold/sold bring/brought/brought keep/kept/kept "
        "hide/hid/hidden mend/mended/mended count/counted/counted clean/cleaned/cleaned "
        "open/opened/opened lose/lost/lost take/took/taken wash/washed/washed "
        "hold/held/held borrow/borrowed/borrowed order/ordered/ordered send/sent/sent "
        "lift/lifted/lifted fetch/fetched/fetched gather/gathered/gathered "
        "polish/polished/polished drop/dropped/dropped pack/packed/packed"
    ).split()
]
# (base, past) for verbs with no object.
_INTRANSITIVE = [
    tuple(v.split("/")) for v in (
        "walk/walked wait/waited sleep/slept sing/sang laugh/laughed rest/rested "
        "work/worked travel/travelled arrive/arrived listen/listened smile/smiled "
        "stay/stayed pause/paused run/ran sit/sat read/read write/wrote speak/spoke"
    ).split()
]
_CONNECTIVES = ("and", "but", "so", "while")
_VOWELS = "aeiou"


class SentenceGenerator:
    """Seeded generator of (original, normalized) English sentence pairs, 5-20 words each.

    The same seed always yields the same sequence of sentences on any machine (only
    `random.Random` with an integer seed is used).
    """

    MIN_WORDS = 5
    MAX_WORDS = 20

    def __init__(self, seed: int = 0):
        self.rng = random.Random(seed)
        self._templates = (
            self._bought, self._walked_to, self._described, self._on_date, self._in_year,
            self._there_were, self._paid, self._nth_time, self._did_question,
            self._where_question, self._how_many_question, self._why_question,
            self._at_time, self._compound, self._exclaim,
        )

    # -- public API

    def sentence(self) -> tuple[str, str]:
        """The next sentence as (original text with digits, normalized text in words)."""
        while True:
            tokens = self.rng.choice(self._templates)()
            n_words = sum(1 for written, _ in tokens if written[0].isalnum() or written[0] == "$")
            if self.MIN_WORDS <= n_words <= self.MAX_WORDS:
                return _render(tokens, 0), _render(tokens, 1)

    def sentences(self, count: int) -> list[tuple[str, str]]:
        """`count` consecutive sentences."""
        return [self.sentence() for _ in range(count)]

    # -- building blocks: each returns a list of (written, spoken) tokens

    def _subject(self) -> list[tuple[str, str]]:
        pick = self.rng.random()
        if pick < 0.55:
            return _words(self.rng.choice(_NAMES))
        if pick < 0.85:
            return _words(self.rng.choice(_PRONOUNS))
        adjective = self.rng.choice(("old", "young", "tall", "kind", "tired", "proud"))
        person = self.rng.choice(("man", "woman", "lady", "farmer", "sailor", "teacher"))
        return _words(f"the {adjective} {person}")

    def _noun_phrase(self) -> list[tuple[str, str]]:
        noun = self.rng.choice(_NOUNS)[0]
        adjectives = self.rng.sample(_ADJECTIVES, k=self.rng.choice((0, 1, 1, 2)))
        body = " ".join(adjectives + [noun])
        article = self.rng.choice(("the", "a", "a", "this", "that", "my", "his", "her"))
        if article == "a" and body[0] in _VOWELS:
            article = "an"
        return _words(f"{article} {body}")

    def _quantity(self) -> int:
        pick = self.rng.random()
        if pick < 0.55:
            return self.rng.randint(2, 12)
        if pick < 0.8:
            return self.rng.randint(13, 99)
        if pick < 0.93:
            return self.rng.randint(100, 999)
        return self.rng.randint(1, 60) * self.rng.choice((50, 100, 250, 1000))

    def _counted(self) -> list[tuple[str, str]]:
        n = self._quantity()
        adjective = [self.rng.choice(_ADJECTIVES)] if self.rng.random() < 0.4 else []
        return [_number(n)] + _words(" ".join(adjective + [self.rng.choice(_NOUNS)[1]]))

    def _year(self) -> int:
        pick = self.rng.random()
        if pick < 0.75:
            return self.rng.randint(1850, 2030)
        if pick < 0.9:
            return self.rng.randint(1600, 1849)
        return self.rng.randint(1000, 1599)

    def _place(self) -> list[tuple[str, str]]:
        if self.rng.random() < 0.3:
            return _words(f"in {self.rng.choice(_CITIES)}")
        adjective = f"{self.rng.choice(_ADJECTIVES)} " if self.rng.random() < 0.3 else ""
        return _words(f"{self.rng.choice(_PREPOSITIONS)} the {adjective}{self.rng.choice(_PLACES)}")

    def _time_phrase(self) -> list[tuple[str, str]]:
        pick = self.rng.random()
        if pick < 0.3:
            return _words("in") + [_year_token(self._year())]
        if pick < 0.5:
            return _words("at") + [self._clock()]
        if pick < 0.7:
            return _words(f"on {self.rng.choice(_DAYS)}")
        if pick < 0.85:
            return self._date()
        return _words(self.rng.choice(("that morning", "in the evening", "last week",
                                       "after supper", "before dawn", "that winter")))

    def _clock(self) -> tuple[str, str]:
        hour = self.rng.randint(1, 12)
        minute = self.rng.choice((0, 0, 5, 10, 15, 20, 30, 30, 45, 50, self.rng.randint(1, 59)))
        return f"{hour}:{minute:02d}", time_to_words(hour, minute)

    def _date(self) -> list[tuple[str, str]]:
        day = self.rng.randint(1, 28)
        return _words("on the") + [(ordinal_suffix(day), ordinal_to_words(day))] + \
            _words(f"of {self.rng.choice(_MONTHS)}")

    def _maybe(self, builder, p: float = 0.5) -> list[tuple[str, str]]:
        return builder() if self.rng.random() < p else []

    def _adverb(self) -> list[tuple[str, str]]:
        return _words(self.rng.choice(_ADVERBS))

    # -- templates

    def _bought(self):
        verb = self.rng.choice(_TRANSITIVE)[1]
        obj = self._counted() if self.rng.random() < 0.6 else self._noun_phrase()
        return (self._subject() + _words(verb) + obj + self._maybe(self._place)
                + self._maybe(self._time_phrase) + [(".", ".")])

    def _walked_to(self):
        verb = self.rng.choice(("walked", "drove", "travelled", "rode", "hurried", "sailed"))
        return (self._subject() + self._maybe(self._adverb, 0.3) + _words(verb)
                + _words(f"to {self.rng.choice(_CITIES)}") + self._time_phrase() + [(".", ".")])

    def _described(self):
        noun = self.rng.choice(_NOUNS)[0]
        verb = self.rng.choice(("was", "looked", "seemed"))
        return (_words(f"the {noun} {verb} {self.rng.choice(_ADJECTIVES)}")
                + self._maybe(lambda: _words(f"and {self.rng.choice(_ADJECTIVES)}"))
                + self._maybe(self._place) + self._maybe(self._time_phrase, 0.3) + [(".", ".")])

    def _on_date(self):
        verb = self.rng.choice(_INTRANSITIVE)[1]
        return (self._date() + [(",", ",")] + self._subject() + _words(verb)
                + self._maybe(self._adverb) + self._maybe(self._place) + [(".", ".")])

    def _in_year(self):
        what = self.rng.choice(("moved to", "lived in", "visited", "left", "returned to"))
        return (_words("in") + [_year_token(self._year()), (",", ",")] + self._subject()
                + _words(f"{what} {self.rng.choice(_CITIES)}") + [(".", ".")])

    def _there_were(self):
        place = self.rng.choice(_PLACES)
        return (_words("there were") + self._counted()
                + _words(f"{self.rng.choice(_PREPOSITIONS)} the {place}")
                + self._maybe(self._time_phrase, 0.3) + [(".", ".")])

    def _paid(self):
        dollars = self.rng.choice((self.rng.randint(1, 20), self.rng.randint(21, 500)))
        unit = "dollar" if dollars == 1 else "dollars"
        noun = self._noun_phrase()[1:]  # the price clause wants "for the ...", not "for a ..."
        return (self._subject() + _words("paid") + [(f"${dollars}", f"{number_to_words(dollars)} {unit}")]
                + _words("for the") + noun + self._maybe(self._time_phrase, 0.3) + [(".", ".")])

    def _nth_time(self):
        n = self.rng.randint(2, 31)
        participle = self.rng.choice(_TRANSITIVE)[2]
        return (_words("it was the") + [(ordinal_suffix(n), ordinal_to_words(n))]
                + _words("time that") + self._subject() + _words(f"had {participle}")
                + self._noun_phrase() + [(".", ".")])

    def _did_question(self):
        base = self.rng.choice(_TRANSITIVE)[0]
        return (_words("did") + self._subject() + _words(base) + self._noun_phrase()
                + self._maybe(self._place) + self._maybe(self._time_phrase, 0.3) + [("?", "?")])

    def _where_question(self):
        base = self.rng.choice(_TRANSITIVE)[0]
        return (_words(f"where did {self.rng.choice(_NAMES)} {base}") + _words("the")
                + self._counted() + self._maybe(self._time_phrase, 0.3) + [("?", "?")])

    def _how_many_question(self):
        base = self.rng.choice(_TRANSITIVE)[0]
        noun = self.rng.choice(_NOUNS)[1]
        return (_words(f"how many {noun} did") + self._subject() + _words(base)
                + _words("in") + [_year_token(self._year())] + [("?", "?")])

    def _why_question(self):
        noun = self.rng.choice(_NOUNS)[0]
        return (_words(f"why was the {noun} so {self.rng.choice(_ADJECTIVES)}")
                + self._maybe(self._time_phrase) + [("?", "?")])

    def _at_time(self):
        verb = self.rng.choice(_INTRANSITIVE)[1]
        return (_words("at") + [self._clock(), (",", ",")] + _words(self.rng.choice(_NAMES))
                + _words(f"and {self.rng.choice(_NAMES)} {verb}") + self._maybe(self._adverb)
                + self._maybe(self._place) + [(".", ".")])

    def _compound(self):
        first = self._subject() + _words(self.rng.choice(_INTRANSITIVE)[1]) + self._maybe(self._adverb)
        second = (self._subject() + _words(self.rng.choice(_TRANSITIVE)[1]) + self._counted()
                  + self._maybe(self._place) + self._maybe(self._time_phrase, 0.3))
        return first + [(",", ",")] + _words(self.rng.choice(_CONNECTIVES)) + second + [(".", ".")]

    def _exclaim(self):
        body = " ".join(self.rng.sample(_ADJECTIVES, k=self.rng.choice((1, 2))) +
                        [self.rng.choice(_NOUNS)[0]])
        article = "an" if body[0] in _VOWELS else "a"
        return _words(f"what {article} {body} that was,") + _words(self.rng.choice(_NAMES)) \
            + _words("said") + self._maybe(self._adverb) + [("!", "!")]


def _words(text: str) -> list[tuple[str, str]]:
    """Plain words, identical in both forms; a trailing comma becomes its own token."""
    tokens = []
    for word in text.split():
        if word.endswith(","):
            tokens += [(word[:-1], word[:-1]), (",", ",")]
        else:
            tokens.append((word, word))
    return tokens


def _number(n: int) -> tuple[str, str]:
    return f"{n:,}", number_to_words(n)


def _year_token(year: int) -> tuple[str, str]:
    return str(year), year_to_words(year)


def _render(tokens: list[tuple[str, str]], side: int) -> str:
    text = ""
    for token in tokens:
        piece = token[side]
        if piece in ",.?!" or not text:
            text += piece
        else:
            text += " " + piece
    return text[0].upper() + text[1:]
