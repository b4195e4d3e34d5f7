"""Whisper's multilingual BPE: CosyVoice-300M's text tokens (51,866 ids, 1,609 of them special).

The vocabulary ships in the openai-whisper package (whisper/assets/multilingual.tiktoken) and is read
offline through the call CosyVoice-300M's cosyvoice.yaml makes:
`whisper.tokenizer.get_tokenizer(multilingual=True, num_languages=100, language="en", task="transcribe")`.
CosyVoice encodes with `allowed_special="all"`, so a special tag written in the text ("<|en|>",
"<|endoftext|>") becomes its special id; everything else goes through the byte-level BPE unchanged.

    bpe = WhisperBPE()
    bpe.encode("<|en|>Hello world")       # [50259, 15947, 1002]
    bpe.split_specials("<|en|>Hello")     # [("<|en|>", True), ("Hello", False)]
"""

from __future__ import annotations

import functools
import re
from typing import Iterable

from voxtok.errors import BadConfigError, BadTextError

NUM_LANGUAGES = 100  # Whisper large-v3's language list: 51,866 ids in all, as CosyVoice v1's text_token_size
VOCAB_SIZE = 51866
_TAG = re.compile(r"<\|[^<>|]+\|>")


@functools.lru_cache(maxsize=4)
def _whisper_encoding(num_languages: int):
    try:
        from whisper.tokenizer import get_tokenizer
    except ImportError:
        raise BadConfigError("the whisper_bpe text frontend needs the openai-whisper package (its vocabulary "
                             "ships there): pip install 'voxtok[cosyvoice]'") from None
    return get_tokenizer(multilingual=True, num_languages=num_languages, language="en", task="transcribe").encoding



def split_at(text: str, matches: Iterable[re.Match]) -> list[tuple[str, bool]]:
    """Text -> [(piece, is_match)]: the matched spans (in order, not overlapping) apart from the text
    between them; empty text pieces are left out."""
    pieces: list[tuple[str, bool]] = []
    start = 0
    for match in matches:
        if match.start() > start:
            pieces.append((text[start:match.start()], False))
        pieces.append((match.group(0), True))
        start = match.end()
    if start < len(text):
        pieces.append((text[start:], False))
    return pieces

class WhisperBPE:
    """Text <-> Whisper multilingual BPE ids (tiktoken), specials written as "<|tag|>" allowed.

    Args:
        num_languages: how many language tags the special block holds (100 for CosyVoice v1:
            51,866 ids; 99 gives Whisper large-v2's 51,865).
    """

    def __init__(self, num_languages: int = NUM_LANGUAGES):
        self.num_languages = int(num_languages)
        self.encoding = _whisper_encoding(self.num_languages)
        self.specials = frozenset(self.encoding.special_tokens_set)

    @property
    def vocab_size(self) -> int:
        """Number of ids, the specials included (51,866 with 100 languages)."""
        return int(self.encoding.n_vocab)

    def split_specials(self, text: str) -> list[tuple[str, bool]]:
        """Text -> [(piece, is_special)]: known "<|tag|>" specials apart from the text between them.

        An unknown tag ("<|foo|>") stays inside its text piece, as tiktoken treats it.
        """
        return split_at(text, (m for m in _TAG.finditer(text) if m.group(0) in self.specials))

    def encode(self, text: str) -> list[int]:
        """Text -> ids [N] exactly as CosyVoice's `tokenizer.encode(text, allowed_special="all")`."""
        return self.encoding.encode(text, allowed_special="all")

    def decode(self, ids: Iterable[int]) -> str:
        """Ids -> text (special ids written as their tags); an id outside the vocabulary is a BadTextError."""
        ids = [int(i) for i in ids]
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise BadTextError(f"id {bad[0]} is outside the vocabulary (size {self.vocab_size})")
        return self.encoding.decode(ids)

    def pieces(self, ids: Iterable[int]) -> list[str]:
        """Ids -> the text of each token (a token holding part of a UTF-8 character shows U+FFFD)."""
        return [self.encoding.decode([int(i)]) for i in ids]
