"""TTS text frontend: English normalisation, then characters, espeak-ng phonemes or a BPE, then ids.

    frontend = TextFrontend("phoneme")
    frontend.normalize("Dr. Smith paid $5.")   # "doctor smith paid five dollars."
    frontend.tokenize("Dr. Smith paid $5.")    # ["d", "ˈ", "ɑː", "k", "t", "ɚ", " ", ...]
    frontend.encode("Dr. Smith paid $5.")      # [ids], 0 is never used for a symbol

Ids: 0 = <pad>, 1 = <bos>, 2 = <eos> (reserved for models that want sentence marks; `encode`
adds them only when asked), symbols from 3 on in the mode's fixed inventory order. The
inventories are built in, never read from a corpus, so the same text always gets the same ids
and a saved model's vocabulary (`to_dict`, stored with the model) stays valid.

- "char": a-z, apostrophe, space and the pause marks , . ? ! (text is lower-cased, digits and
  symbols are spelled out, accents are folded: "café" -> "cafe").
- "phoneme": espeak-ng (`espeak-ng -q --ipa -v en-us --sep=_`) phonemes, e.g. "aɪ", "tʃ", "ɑːɹ"
  as single symbols, the stress marks ˈ ˌ as symbols of their own, a space between words and
  the same pause marks. The inventory is every phoneme espeak-ng 1.51 produced for en-us on a
  21,700-word English vocabulary plus foreign names and loanwords (67 phonemes).

- "whisper_bpe": the Whisper multilingual BPE of CosyVoice-300M (voxtok/tts/whisper_bpe.py; 51,866
  ids, specials included; ids come from the BPE, so 0/1/2 are ordinary tokens there and
  `add_bos_eos` is refused). Text in Latin script is normalised as English (as above: lower-cased,
  numbers, abbreviations and symbols spelled out, accents folded); a piece of text with letters of
  any other script (Chinese, Japanese, Korean, Cyrillic, ...) goes to the BPE unchanged, as do
  punctuation-only pieces. Special tags written in the text ("<|en|>", "<|endoftext|>") become their
  special ids, as in CosyVoice (`allowed_special="all"`); the text between tags is normalised piece
  by piece.
- "hf_bpe": the BPE tokenizer of a local Hugging Face model folder (`path`; e.g. Qwen2-0.5B for a
  Flow-Omni backbone initialised from it), read through transformers' AutoTokenizer
  (voxtok/tts/hf_bpe.py). Text is normalised as for "whisper_bpe" (Latin-script pieces as English,
  the tokenizer's added tokens such as "<|im_end|>" and other scripts unchanged), then ids are
  exactly the tokenizer's `encode(text, add_special_tokens=False)`. `vocab_size` is the rows of the
  folder model's token table (config.json `vocab_size`, >= the tokenizer's ids). `to_dict` holds
  the whole tokenizer, so a saved model needs neither the folder nor transformers.

There is no <unk> in "char" and "phoneme": a symbol outside the inventory (a character such as "~" or "α", or a phoneme
espeak-ng emits that the inventory lacks) is a `UnknownSymbolError` naming the symbols, because
silently dropping sounds gives a model audio it cannot explain from its text.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import unicodedata
from collections import OrderedDict
from typing import Any, Iterable, Sequence

from voxtok.data.textgen import number_to_words, ordinal_to_words, time_to_words, year_to_words
from voxtok.errors import BadConfigError, BadTextError, MissingVoiceError

PAD, BOS, EOS = "<pad>", "<bos>", "<eos>"
SPECIALS = (PAD, BOS, EOS)
PAD_ID, BOS_ID, EOS_ID = 0, 1, 2
KINDS = ("char", "phoneme", "whisper_bpe", "hf_bpe")
DEFAULT_MAX_CHARS = 400
FORMAT_VERSION = 1

PAUSE_MARKS = (",", ".", "?", "!")
WORD_SEPARATOR = " "
CHAR_SYMBOLS = (WORD_SEPARATOR, "'", *PAUSE_MARKS, *"abcdefghijklmnopqrstuvwxyz")
STRESS_MARKS = ("ˈ", "ˌ")
ESPEAK_VOICE = "en-us"
ESPEAK_PHONEMES = (
    # vowels, diphthongs and r-coloured vowels
    "ɐ", "ɑː", "ɑːɹ", "ɑ̃", "æ", "aɪ", "aɪɚ", "aɪə", "aʊ", "ɔ", "ɔː", "ɔːɹ", "ɔɪ", "ə", "əl", "ɚ",
    "eɪ", "ɛ", "ɛɹ", "ɜː", "i", "iː", "iːː", "iə", "ɪ", "ɪɹ", "ᵻ", "o", "oː", "oːɹ", "oʊ", "ʊ",
    "ʊɹ", "uː", "ʌ",
    # consonants
    "b", "ç", "d", "dʒ", "ð", "f", "ɡ", "ɡʲ", "h", "j", "k", "l", "m", "n", "n̩", "nʲ", "ŋ", "p",
    "r", "ɹ", "ɾ", "s", "ʃ", "t", "tʃ", "θ", "v", "w", "x", "z", "ʒ", "ʔ",
)
PHONEME_SYMBOLS = (WORD_SEPARATOR, *PAUSE_MARKS, *STRESS_MARKS, *ESPEAK_PHONEMES)


class UnknownSymbolError(BadTextError):
    """Text (or its phonemes) contains symbols outside the frontend's fixed inventory."""


# ----------------------------------------------------------------------------- normalisation

# Titles: always followed by a name, so their period never ends a sentence.
_TITLES = {
    "Mr": "mister", "Mrs": "missus", "Ms": "miz", "Dr": "doctor", "Prof": "professor",
    "Capt": "captain", "Col": "colonel", "Gen": "general", "Lt": "lieutenant", "Sgt": "sergeant",
    "Rev": "reverend", "Hon": "honorable", "Gov": "governor", "Sen": "senator", "Mt": "mount",
    "Ft": "fort",
}
# Abbreviations that may end a sentence: the period stays when a new sentence follows.
_TRAILING = {
    "Jr": "junior", "Sr": "senior", "Inc": "incorporated", "Ltd": "limited", "Co": "company",
    "Corp": "corporation", "Bros": "brothers", "Ave": "avenue", "etc": "et cetera",
    "vs": "versus", "approx": "approximately",
}
# Month abbreviations only before a day number: "Jan." alone may be a name ending a sentence.
_MONTHS = {
    "Jan": "january", "Feb": "february", "Mar": "march", "Apr": "april", "Jun": "june", "Jul": "july",
    "Aug": "august", "Sept": "september", "Sep": "september", "Oct": "october", "Nov": "november",
    "Dec": "december",
}
_LATIN = {"e.g.": "for example", "i.e.": "that is"}
_CURRENCIES = {"$": ("dollar", "dollars", "cent", "cents"), "£": ("pound", "pounds", "penny", "pence"),
               "€": ("euro", "euros", "cent", "cents")}
_SYMBOL_WORDS = {"&": " and ", "@": " at ", "+": " plus ", "=": " equals ", "%": " percent ",
                 "#": " number ", "/": " slash ", "°": " degrees "}
_LETTER_FOLDS = {"ß": "ss", "æ": "ae", "Æ": "ae", "œ": "oe", "Œ": "oe", "ø": "o", "Ø": "o",
                 "ł": "l", "Ł": "l", "đ": "d", "Đ": "d", "þ": "th", "ð": "th", "ı": "i"}
# Typography that NFKC leaves alone: curly quotes, dashes, ellipsis.
_TYPOGRAPHY = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201b": "'", "\u2032": "'", "`": "'",
                             "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u00ab": '"', "\u00bb": '"',
                             "\u2013": " - ", "\u2014": " - ", "\u2015": " - ", "\u2212": "-",
                             "\u2026": "..."})
_NUMBER = r"\d{1,3}(?:,\d{3})+|\d+"  # 1,234,567 or 1234567
_SCALES = "thousand|million|billion|trillion"


def _keeps_period(text: str, end: int) -> bool:
    """True when the period at text[end - 1] also ends a sentence (end of text or a capital next)."""
    rest = text[end:]
    return not rest.strip() or bool(re.match(r"\s+[\"']?[A-Z]", rest))


def _int(digits: str) -> int:
    return int(digits.replace(",", ""))


def _cardinal(digits: str) -> str:
    """Digits (commas allowed) in words; leading zeros and huge numbers are read digit by digit."""
    plain = digits.replace(",", "")
    if (len(plain) > 1 and plain.startswith("0")) or len(plain) > 12:
        return " ".join(number_to_words(int(d)) for d in plain)
    return number_to_words(int(plain))


def _digits(digits: str) -> str:
    return " ".join(number_to_words(int(d)) for d in digits)


def _plural(words: str) -> str:
    """'nineteen ninety' -> 'nineteen nineties' (decades)."""
    head, _, last = words.rpartition(" ")
    last = last[:-1] + "ies" if last.endswith("y") else last + "s"
    return f"{head} {last}".strip()


def _expand_abbreviations(text: str) -> str:
    for written, spoken in _LATIN.items():
        text = re.sub(rf"(?i)(?<![\w.]){re.escape(written)}", f" {spoken}, ", text)

    def title(m: re.Match) -> str:
        return _TITLES[m.group(1)]

    text = re.sub(rf"\b({'|'.join(_TITLES)})\.(?=\s*\S)", title, text)

    def street_or_saint(m: re.Match) -> str:
        before = text[: m.start()].rstrip()
        previous = before.split()[-1] if before.split() else ""
        # "Baker St." / "12 St." name a street; "St. Paul" at any other place names a saint.
        after_name = previous[:1].isupper() and not before.endswith((".", "!", "?")) or previous.isdigit()
        word = "street" if after_name else "saint"
        return word + ("." if word == "street" and _keeps_period(text, m.end()) else "")

    text = re.sub(r"\bSt\.", street_or_saint, text)

    def trailing(m: re.Match) -> str:
        return _TRAILING[m.group(1)] + ("." if _keeps_period(text, m.end()) else "")

    text = re.sub(rf"\b({'|'.join(sorted(_TRAILING, key=len, reverse=True))})\.", trailing, text)
    months = "|".join(sorted(_MONTHS, key=len, reverse=True))
    text = re.sub(rf"\b({months})\.?(?=\s*\d)", lambda m: _MONTHS[m.group(1)], text)
    text = re.sub(r"\bNo\.(?=\s*\d)", "number", text)
    return text


def _money(m: re.Match) -> str:
    one, many, sub_one, sub_many = _CURRENCIES[m.group(1)]
    whole, fraction, scale = m.group(2), m.group(3), m.group(4)
    if scale:  # "$1.5 million" -> "one point five million dollars"
        amount = _cardinal(whole) + (f" point {_digits(fraction)}" if fraction else "")
        return f" {amount} {scale.lower()} {many} "
    units, cents = _int(whole), int(fraction.ljust(2, "0")[:2]) if fraction else 0
    parts = []
    if units or not cents:
        parts.append(f"{_cardinal(whole)} {one if units == 1 else many}")
    if cents:
        parts.append(f"{number_to_words(cents)} {sub_one if cents == 1 else sub_many}")
    return " " + " ".join(parts) + " "


def _clock(hour: int, minute: int | None, meridiem: str | None, keeps_period: bool) -> str:
    words = number_to_words(hour) if minute is None else time_to_words(hour, minute)
    if meridiem:
        words += f" {meridiem.lower()} m"
    return f" {words}{'.' if keeps_period else ''} "


def _number(sign: str | None, whole: str, fraction: str | None) -> str:
    if fraction is not None:
        words = f"{_cardinal(whole)} point {_digits(fraction)}"
    elif not sign and "," not in whole and len(whole) == 4 and 1000 <= int(whole) <= 2099:
        # Unformatted four-digit numbers in this range are read as years, as LibriTTS does;
        # counts are written with a thousands comma ("1,500 men").
        words = year_to_words(int(whole))
    else:
        words = _cardinal(whole)
    return f" {'minus ' if sign else ''}{words} "


def _expand_numbers(text: str) -> str:
    text = re.sub(r"(?<=\d)\s*-\s*(?=\d)", " to ", text)  # "1990-1995", "5-6 items"
    text = re.sub(rf"([$£€])\s?({_NUMBER})(?:\.(\d+))?(?:\s?({_SCALES})\b)?", _money, text)

    def clock(m: re.Match) -> str:
        minute = None if m.group(2) is None else int(m.group(2))
        period = m.group(0).endswith(".") and _keeps_period(m.string, m.end())
        return _clock(int(m.group(1)), minute, m.group(3), period)

    text = re.sub(r"\b([01]?\d|2[0-3]):([0-5]\d)\b(?:\s?([AaPp])\.?[Mm]\b\.?)?", clock, text)
    text = re.sub(r"\b(1[0-2]|[1-9])\s?([AaPp])\.?[Mm]\b\.?", lambda m: _clock(
        int(m.group(1)), None, m.group(2), m.group(0).endswith(".") and _keeps_period(m.string, m.end())), text)
    text = re.sub(rf"({_NUMBER}(?:\.\d+)?)\s?%", lambda m: f"{m.group(1)} percent", text)
    text = re.sub(rf"\b({_NUMBER})(?:st|nd|rd|th)\b", lambda m: f" {ordinal_to_words(_int(m.group(1)))} ", text,
                  flags=re.IGNORECASE)
    text = re.sub(r"\b(1\d|20)(\d)0s\b", lambda m: f" {_plural(year_to_words(int(m.group(1) + m.group(2) + '0')))} ",
                  text)
    text = re.sub(r"(?<!\w)'?([1-9])0s\b", lambda m: f" {_plural(number_to_words(int(m.group(1)) * 10))} ", text)
    # A minus sign only at the start of a word: in "5-6" the dash is a range, read as a pause.
    return re.sub(rf"(?:(?<![^\s(\"'])(-))?({_NUMBER})(?:\.(\d+))?",
                  lambda m: _number(m.group(1), m.group(2), m.group(3)), text)


def _fold_letters(text: str, keep_case: bool = False) -> str:
    text = "".join(_LETTER_FOLDS.get(ch, ch) for ch in text)
    decomposed = unicodedata.normalize("NFKD", text)
    folded = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return folded if keep_case else folded.lower()


def _pause_marks(text: str) -> str:
    for symbol, words in _SYMBOL_WORDS.items():
        text = text.replace(symbol, words)
    text = re.sub(r"[;:()\[\]{}]", ",", text)
    text = re.sub(r"\.{2,}", ".", text)
    text = re.sub(r"(?:^|\s)-+(?:\s|$)", ", ", text)  # a spaced dash is a pause
    text = text.replace("-", " ")  # "well-known" -> "well known"
    text = text.replace('"', " ")
    text = re.sub(r"[*_~|]", " ", text)  # emphasis and footnote marks carry no sound
    # An apostrophe belongs to a word inside it ("don't") or after a plural s ("the boys'");
    # every other one is a quote.
    return re.sub(r"(?<![a-z])'|(?<=[a-rt-z])'(?![a-z])", " ", text)


def _tidy(text: str) -> str:
    text = re.sub(r"\s+", " ", text)
    text = re.sub(r"\s+([,.?!])", r"\1", text)
    # Several marks in a row become the strongest one: "?!" -> "?", ",." -> ".".
    text = re.sub(r"[,.?!]{2,}", lambda m: next(c for c in "?!.," if c in m.group(0)), text)
    text = re.sub(r"([,.?!])(?=[^\s,.?!])", r"\1 ", text)
    text = re.sub(r"^[\s,.?!]+|[\s,]+$", "", text)  # no pause before speech or trailing comma
    return text.strip()


def normalize_text(text: str, keep_case: bool = False) -> str:
    """English text -> lower-case words and pause marks (, . ? !), everything spoken spelled out.

    `keep_case` keeps upper-case letters (the Whisper BPE frontend: CosyVoice's English normaliser
    keeps case, and the BPE gives cased words other ids).

    Numbers ("21" -> "twenty one", "1,500", "3.14", "-5"), ordinals ("3rd"), years (four
    unformatted digits 1000-2099: "1999" -> "nineteen ninety nine"), decades ("1990s"), times
    ("10:30", "5 p.m."), money ($ £ €, cents, "$2 million"), percent, common abbreviations
    (Mr. Mrs. Dr. St. Jr. etc. e.g. ...) and symbols (& @ + = # / °). Semicolons, colons,
    brackets and spaced dashes become commas; quotes and hyphens become spaces. Symbols it does
    not know are left in place for `TextFrontend.tokenize` to report.
    """
    if not isinstance(text, str):
        raise BadTextError(f"text must be a string, got {type(text).__name__}")
    text = unicodedata.normalize("NFKC", text).translate(_TYPOGRAPHY)
    text = _expand_abbreviations(text)
    text = _expand_numbers(text)
    return _tidy(_pause_marks(_fold_letters(text, keep_case)))


# ----------------------------------------------------------------------------- espeak-ng

_PHONEME_CACHE: "OrderedDict[tuple[str, str], tuple[str, ...]]" = OrderedDict()
_CACHE_SIZE = 200_000
_LANGUAGE_SWITCH = re.compile(r"\([a-z]{2,3}(?:-[a-z0-9]+)*\)")


def _parse_espeak_line(line: str) -> tuple[str, ...]:
    """One `--sep=_` output line -> phonemes with stress marks split off and " " between words."""
    tokens: list[str] = []
    for word in _LANGUAGE_SWITCH.sub(" ", line.replace("\u200d", "")).split():
        if tokens:
            tokens.append(WORD_SEPARATOR)
        for phone in word.split("_"):
            while phone[:1] in STRESS_MARKS:
                tokens.append(phone[0])
                phone = phone[1:]
            if phone:
                tokens.append(phone)
    return tuple(tokens)


def _run_espeak(lines: Sequence[str], voice: str) -> list[str]:
    if shutil.which("espeak-ng") is None:
        raise MissingVoiceError("espeak-ng is not installed (the phoneme frontend needs it: apt install espeak-ng)")
    proc = subprocess.run(["espeak-ng", "-q", "--ipa", "-v", voice, "--sep=_"], input="\n".join(lines) + "\n",
                          capture_output=True, text=True, encoding="utf-8")
    err = proc.stderr.strip()
    if proc.returncode != 0 or "error" in err.lower():
        raise MissingVoiceError(f"espeak-ng -v {voice} failed: {err or f'exit status {proc.returncode}'}")
    return proc.stdout.splitlines()


def phonemize_chunks(chunks: Sequence[str], voice: str = ESPEAK_VOICE) -> list[tuple[str, ...]]:
    """Phonemes of pause-free text chunks ("the quick brown fox"), one espeak-ng call for all.

    Results are cached per (voice, chunk). espeak-ng prints one line per input line; should a
    chunk ever produce a different number of lines, the chunks are redone one call each so no
    phonemes are attributed to the wrong chunk.
    """
    todo = sorted({c for c in chunks if (voice, c) not in _PHONEME_CACHE})
    if todo:
        lines = _run_espeak(todo, voice)
        if len(lines) != len(todo):
            lines = [" ".join(_run_espeak([c], voice)) for c in todo]
        for chunk, line in zip(todo, lines):
            _PHONEME_CACHE[(voice, chunk)] = _parse_espeak_line(line)
        while len(_PHONEME_CACHE) > _CACHE_SIZE:
            _PHONEME_CACHE.popitem(last=False)
    return [_PHONEME_CACHE[(voice, c)] for c in chunks]


# ----------------------------------------------------------------------------- the frontend


def _latin_script(text: str) -> bool:
    """True when every letter of `text` is a Latin-script letter (vacuously true without letters)."""
    return all(unicodedata.name(ch, "").startswith("LATIN") for ch in text if ch.isalpha())


def _describe(symbols: Iterable[str]) -> str:
    return ", ".join(f"{s!r} (U+{ord(s[0]):04X})" if len(s) == 1 else repr(s) for s in sorted(set(symbols)))


class TextFrontend:
    """Text -> normalised text -> symbols (characters or phonemes) -> ids, and back.

    Args:
        kind: "char", "phoneme", "whisper_bpe" or "hf_bpe".
        max_chars: longest normalised text accepted (longer text is a BadTextError: split it
            into sentences first).
        symbols: the symbol inventory (ids 3..); default the built-in one of `kind`. Only
            `from_dict` passes it, to restore a saved model's vocabulary exactly.
        path: "hf_bpe" only: the local Hugging Face model folder whose tokenizer to use (`from_dict`
            passes the restored `voxtok.tts.hf_bpe.HFBPE` itself).
    """

    def __init__(self, kind: str = "char", max_chars: int = DEFAULT_MAX_CHARS,
                 symbols: Sequence[str] | None = None, voice: str = ESPEAK_VOICE, path: Any = None):
        if kind not in KINDS:
            raise BadTextError(f"unknown text frontend kind '{kind}' (choose from {list(KINDS)})")
        if int(max_chars) < 1:
            raise BadTextError(f"max_chars must be >= 1, got {max_chars}")
        self.kind = kind
        self.max_chars = int(max_chars)
        self.voice = voice
        self._bpe = None
        if kind == "whisper_bpe":
            from voxtok.tts.whisper_bpe import WhisperBPE

            # The BPE is its own inventory: no symbol list, no specials of ours.
            self._bpe, symbols = WhisperBPE(), ()
        elif kind == "hf_bpe":
            from voxtok.tts.hf_bpe import HFBPE

            if path is None:
                raise BadConfigError("the hf_bpe frontend needs path: a local Hugging Face model folder")
            self._bpe, symbols = (path if isinstance(path, HFBPE) else HFBPE.from_folder(path)), ()
        elif path is not None:
            raise BadConfigError(f"path is an hf_bpe frontend setting, not one of the {kind} frontend")
        default = CHAR_SYMBOLS if kind == "char" else PHONEME_SYMBOLS
        self.symbols = tuple(symbols) if symbols is not None else default
        if len(set(self.symbols)) != len(self.symbols) or set(self.symbols) & set(SPECIALS):
            raise BadTextError("frontend symbols must be unique and must not include the specials")
        self._ids = {s: i + len(SPECIALS) for i, s in enumerate(self.symbols)}
        self._id_to_symbol = list(SPECIALS) + list(self.symbols)

    # -- sizes
    @property
    def vocab_size(self) -> int:
        """Number of ids, specials included (an embedding table needs this many rows)."""
        return self._bpe.vocab_size if self._bpe is not None else len(self._id_to_symbol)

    pad_id, bos_id, eos_id = PAD_ID, BOS_ID, EOS_ID

    # -- text -> symbols
    def normalize(self, text: str) -> str:
        """Normalised text (see `normalize_text`); empty or too long -> BadTextError."""
        if isinstance(text, str) and len(text) > 4 * self.max_chars:
            # Refused before any work: normalising never shrinks text this much.
            raise BadTextError(f"text is too long ({len(text)} characters > {self.max_chars}); split it into sentences")
        norm = self._normalize_bpe_text(text) if self._bpe is not None else normalize_text(text)
        if not any(ch.isalpha() for ch in norm):
            raise BadTextError(f"text is empty after normalisation: {text[:60]!r}")
        if len(norm) > self.max_chars:
            raise BadTextError(f"text is too long ({len(norm)} characters after normalisation > "
                               f"{self.max_chars}); split it into sentences")
        return norm

    def _normalize_bpe_text(self, text: str) -> str:
        """Whisper BPE input: Latin-script pieces normalised as English, tags and other scripts kept."""
        if not isinstance(text, str):
            raise BadTextError(f"text must be a string, got {type(text).__name__}")
        pieces = self._bpe.split_specials(text.strip())
        out = []
        for i, (piece, special) in enumerate(pieces):
            if special or not any(ch.isalnum() for ch in piece) or not _latin_script(piece):
                out.append(piece)
                continue
            norm = normalize_text(piece, keep_case=True)
            # Keep a word break that stood next to a tag ("<|en|> Hello" -> "<|en|> hello").
            lead = " " if out and piece[:1].isspace() else ""
            trail = " " if i + 1 < len(pieces) and piece[-1:].isspace() else ""
            out.append(lead + norm + trail if norm else lead)
        return "".join(out)

    def _check_chars(self, norm: str) -> None:
        unknown = {ch for ch in norm if ch not in CHAR_SYMBOLS}
        if unknown:
            raise UnknownSymbolError(f"text has symbols the {self.kind} frontend cannot speak: "
                                     f"{_describe(unknown)} in {norm[:60]!r}")

    def tokenize(self, text: str) -> list[str]:
        """Symbols of one text: characters, or phonemes with stress marks, spaces and pause marks."""
        return self.tokenize_batch([text])[0]

    def tokenize_batch(self, texts: Sequence[str]) -> list[list[str]]:
        """`tokenize` for many texts; the phoneme mode calls espeak-ng once for all of them."""
        if self._bpe is not None:
            return [self._bpe.pieces(ids) for ids in self.encode_batch(texts)]
        norms = [self.normalize(t) for t in texts]
        for norm in norms:
            self._check_chars(norm)
        if self.kind == "char":
            out = [list(norm) for norm in norms]
        else:
            pieces = [re.findall(r"[^,.?!]+|[,.?!]", norm) for norm in norms]
            chunks = [p.strip() for ps in pieces for p in ps if p not in PAUSE_MARKS and p.strip()]
            phones = dict(zip(chunks, phonemize_chunks(chunks, self.voice)))
            out = []
            for ps in pieces:
                tokens: list[str] = []
                for p in ps:
                    if p in PAUSE_MARKS:
                        tokens.append(p)
                    elif p.strip():
                        if tokens:
                            tokens.append(WORD_SEPARATOR)
                        tokens.extend(phones[p.strip()])
                out.append(tokens)
        for tokens, norm in zip(out, norms):
            unknown = {s for s in tokens if s not in self._ids}
            if unknown:
                raise UnknownSymbolError(f"{self.kind} symbols outside the inventory: {_describe(unknown)} "
                                         f"in {norm[:60]!r}")
        return out

    # -- symbols <-> ids
    def encode(self, text: str, add_bos_eos: bool = False) -> list[int]:
        """Ids of one text (each >= 3; with `add_bos_eos`, wrapped in 1 ... 2)."""
        return self.encode_batch([text], add_bos_eos)[0]

    def encode_batch(self, texts: Sequence[str], add_bos_eos: bool = False) -> list[list[int]]:
        """`encode` for many texts (one espeak-ng call in phoneme mode)."""
        if self._bpe is not None:
            if add_bos_eos:
                raise BadTextError(f"the {self.kind} frontend has no <bos>/<eos> ids of its own (its ids are the BPE's)")
            return [self._bpe.encode(self.normalize(t)) for t in texts]
        out = []
        for tokens in self.tokenize_batch(texts):
            ids = [self._ids[s] for s in tokens]
            out.append([BOS_ID, *ids, EOS_ID] if add_bos_eos else ids)
        return out

    def decode(self, ids: Iterable[int]) -> str:
        """Ids -> the symbol string (pad/bos/eos skipped): normalised text, or IPA with spaces
        (whisper_bpe / hf_bpe: the BPE's text, special tags included)."""
        if self._bpe is not None:
            return self._bpe.decode(ids)
        symbols = []
        for i in ids:
            i = int(i)
            if not 0 <= i < self.vocab_size:
                raise BadTextError(f"id {i} is outside the vocabulary (size {self.vocab_size})")
            if i >= len(SPECIALS):
                symbols.append(self._id_to_symbol[i])
        return "".join(symbols)

    # -- persistence
    def to_dict(self) -> dict[str, Any]:
        """Everything needed to rebuild this frontend with identical ids (store it with a model)."""
        if self.kind == "hf_bpe":
            # The whole tokenizer (a few MB for Qwen2): a trained model must load without its source folder.
            return {"kind": self.kind, "max_chars": self.max_chars, "vocab_size": self.vocab_size,
                    "source": self._bpe.source, "tokenizer": self._bpe.to_json(), "format": FORMAT_VERSION}
        if self._bpe is not None:
            return {"kind": self.kind, "max_chars": self.max_chars, "vocab_size": self.vocab_size,
                    "format": FORMAT_VERSION}
        return {"kind": self.kind, "max_chars": self.max_chars, "voice": self.voice,
                "specials": list(SPECIALS), "symbols": list(self.symbols), "format": FORMAT_VERSION}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TextFrontend":
        """Inverse of `to_dict`."""
        if list(data.get("specials", SPECIALS)) != list(SPECIALS):
            raise BadTextError(f"saved frontend has specials {data.get('specials')}, expected {list(SPECIALS)}")
        if int(data.get("format", FORMAT_VERSION)) > FORMAT_VERSION:
            raise BadTextError(f"saved frontend format {data['format']} is newer than this VoxTok ({FORMAT_VERSION})")
        if data.get("kind") == "whisper_bpe":
            frontend = cls("whisper_bpe", int(data.get("max_chars", DEFAULT_MAX_CHARS)))
            if int(data.get("vocab_size", frontend.vocab_size)) != frontend.vocab_size:
                raise BadTextError(f"saved whisper_bpe frontend has {data['vocab_size']} ids, the installed "
                                   f"openai-whisper vocabulary {frontend.vocab_size}")
            return frontend
        if data.get("kind") == "hf_bpe":
            from voxtok.tts.hf_bpe import HFBPE

            if not isinstance(data.get("tokenizer"), str) or not isinstance(data.get("vocab_size"), int):
                raise BadTextError("saved hf_bpe frontend lacks its tokenizer or vocab_size")
            bpe = HFBPE.from_json(data["tokenizer"], data["vocab_size"], str(data.get("source", "")))
            return cls("hf_bpe", int(data.get("max_chars", DEFAULT_MAX_CHARS)), path=bpe)
        return cls(data["kind"], int(data.get("max_chars", DEFAULT_MAX_CHARS)), data.get("symbols"),
                   data.get("voice", ESPEAK_VOICE))

    def __repr__(self) -> str:
        return f"TextFrontend(kind={self.kind!r}, vocab_size={self.vocab_size}, max_chars={self.max_chars})"
