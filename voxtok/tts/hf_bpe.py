"""The BPE tokenizer of a local Hugging Face model folder (e.g. Qwen2-0.5B's), for the `hf_bpe` text frontend.

The folder is read with transformers' `AutoTokenizer` (local files only, never the network), so the
text pipeline is exactly the one transformers applies to that model (for Qwen2 it rebuilds the
pre-tokenizer and NFC normaliser itself, whatever tokenizer.json says). What is kept is that fast
tokenizer's own serialisation (`tokenizers.Tokenizer.to_str()`, the JSON of tokenizer.json): it
travels inside a trained model's metadata, so loading the model needs neither the original folder
nor transformers.

    bpe = HFBPE.from_folder("/data/Qwen2-0.5B")
    ids = bpe.encode("Hello world")            # the ids AutoTokenizer gives (no special tokens added)
    bpe.vocab_size                             # 151936: the model's token rows (config.json)
    HFBPE.from_json(bpe.to_json(), bpe.vocab_size).encode("Hello world") == ids
"""

from __future__ import annotations

import os
import re
from typing import Iterable

from voxtok.errors import BadConfigError, BadTextError
from voxtok.tts.hf_folder import hf_folder, read_hf_config
from voxtok.tts.whisper_bpe import split_at


def _first_line(err: Exception) -> str:
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0][:200]}" if lines else type(err).__name__


class HFBPE:
    """Text <-> ids of a Hugging Face fast tokenizer; its added tokens ("<|im_end|>") written in the
    text become their ids, as in `tokenizer.encode(text, add_special_tokens=False)`.

    Args:
        backend: the `tokenizers.Tokenizer` (a transformers fast tokenizer's `backend_tokenizer`).
        rows: rows of the model's token table (config.json `vocab_size`; Qwen2 pads it past the
            tokenizer's ids: 151,936 rows for 151,646 ids); None: the tokenizer's id count.
        source: where it was read from (shown in messages only).
    """

    def __init__(self, backend, rows: int | None = None, source: str = ""):
        self.backend, self.source = backend, source
        ids = int(backend.get_vocab_size(with_added_tokens=True))
        if rows is not None and int(rows) < ids:
            raise BadConfigError(f"the tokenizer has {ids} ids but the model's token table only {rows} rows "
                                 "(config.json vocab_size)", source or None)
        self._vocab_size = ids if rows is None else int(rows)
        added = sorted({t.content for t in backend.get_added_tokens_decoder().values()}, key=len, reverse=True)
        self.specials = frozenset(added)
        self._added = re.compile("|".join(re.escape(t) for t in added)) if added else None

    @classmethod
    def from_folder(cls, path: str | os.PathLike) -> "HFBPE":
        """Read the tokenizer of a local model folder (tokenizer.json, or vocab.json + merges.txt)
        through `AutoTokenizer`; the table rows come from the folder's config.json when it has one."""
        folder = hf_folder(path, "the hf_bpe frontend's path")
        if not ((folder / "tokenizer.json").is_file()
                or ((folder / "vocab.json").is_file() and (folder / "merges.txt").is_file())):
            raise BadConfigError("no Hugging Face tokenizer here (tokenizer.json, or vocab.json + merges.txt)", folder)
        from transformers import AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        except Exception as err:  # transformers raises many kinds; the user needs one line
            raise BadConfigError(f"cannot read its tokenizer ({_first_line(err)})", folder) from None
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is None:
            raise BadConfigError(f"its tokenizer ({type(tokenizer).__name__}) is not a fast (tokenizers) BPE", folder)
        rows = read_hf_config(folder, required=False).get("vocab_size")
        return cls(backend, int(rows) if isinstance(rows, int) else None, str(folder))

    @classmethod
    def from_json(cls, text: str, rows: int | None = None, source: str = "") -> "HFBPE":
        """Inverse of `to_json` (a saved model's tokenizer); a corrupt text is a BadConfigError."""
        from tokenizers import Tokenizer

        try:
            backend = Tokenizer.from_str(text)
        except Exception as err:
            raise BadConfigError(f"saved hf_bpe tokenizer is unreadable ({_first_line(err)})") from None
        return cls(backend, rows, source)

    def to_json(self) -> str:
        """The whole tokenizer (vocabulary, merges, normaliser, pre-tokenizer, added tokens) as JSON text."""
        return self.backend.to_str()

    @property
    def vocab_size(self) -> int:
        """Rows an embedding table needs for these ids (the model's table when known, >= the id count)."""
        return self._vocab_size

    def split_specials(self, text: str) -> list[tuple[str, bool]]:
        """Text -> [(piece, is_added_token)]: the tokenizer's added tokens apart from the text between them."""
        if self._added is None:
            return [(text, False)] if text else []
        return split_at(text, self._added.finditer(text))

    def encode(self, text: str) -> list[int]:
        """Text -> ids [N], as `AutoTokenizer(folder).encode(text, add_special_tokens=False)`."""
        return list(self.backend.encode(text, add_special_tokens=False).ids)

    def decode(self, ids: Iterable[int]) -> str:
        """Ids -> text (added tokens written out); an id the tokenizer lacks is a BadTextError."""
        ids = [int(i) for i in ids]
        size = int(self.backend.get_vocab_size(with_added_tokens=True))
        bad = [i for i in ids if not 0 <= i < size]
        if bad:
            raise BadTextError(f"id {bad[0]} is outside the tokenizer's vocabulary (size {size})")
        return self.backend.decode(ids, skip_special_tokens=False)

    def pieces(self, ids: Iterable[int]) -> list[str]:
        """Ids -> the text of each token (a token holding part of a UTF-8 character shows U+FFFD)."""
        return [self.decode([i]) for i in ids]
