"""The character tokenizer: one token per character of a fixed alphabet.

The simplest way to turn text into integers: list the distinct characters of a corpus, sort them,
and number them. Tiny Shakespeare has 65 of them, so a model over it needs only 65 output classes
— ideal for a first model that trains in minutes. The price: sequences are as long as the text,
and a character missing from the training corpus cannot be encoded at all (byte-level BPE, in
:mod:`llm_tutorial.tokenizers.bpe`, has neither problem).

Special tokens (``"<pad>"``, ``"<mask>"``, ``"<cls>"``, ``"<sep>"`` for BERT-style objectives)
take the ids after the characters. ``encode`` never produces them from text: code that builds
training examples inserts their ids (:meth:`CharTokenizer.token_to_id`) where it needs them.

Example::

    tok = CharTokenizer.from_text(text, special_tokens=["<pad>", "<mask>"])
    tok.encode("hi")                        # [46, 47]
    tok.decode([46, 47, tok.token_to_id("<mask>")])   # 'hi<mask>'
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from ._common import as_token_ids, check_special_tokens, check_text, read_json, write_json

_FILE_FORMAT = "llm_tutorial.CharTokenizer"
_FILE_VERSION = 1


class CharTokenizer:
    """Characters ``chars[i]`` ↔ ids ``i``, then ``special_tokens[j]`` ↔ ids ``len(chars) + j``.

    Args:
        chars: the alphabet, in id order (a str or a sequence of one-character strings, distinct).
        special_tokens: extra tokens that get the ids after the characters.
    """

    def __init__(self, chars: str | Sequence[str], special_tokens: Sequence[str] = ()):
        alphabet = _check_alphabet(chars)
        specials = check_special_tokens(special_tokens)
        clashing = [token for token in specials if token in alphabet]
        if clashing:
            raise ValueError(f"special tokens {clashing} are also characters of the alphabet; pick other names")
        self._chars = "".join(alphabet)
        self._id_of_char = {char: i for i, char in enumerate(alphabet)}
        self._special_tokens = {token: len(alphabet) + j for j, token in enumerate(specials)}
        self._tokens = [*alphabet, *specials]

    @classmethod
    def from_text(cls, text: str, special_tokens: Sequence[str] = ()) -> CharTokenizer:
        """The tokenizer whose alphabet is the sorted distinct characters of ``text``."""
        check_text(text)
        if not text:
            raise ValueError("text is empty: a character tokenizer needs a text to take its alphabet from")
        return cls(sorted(set(text)), special_tokens)

    @property
    def vocab_size(self) -> int:
        """Number of ids: characters + special tokens."""
        return len(self._tokens)

    @property
    def chars(self) -> str:
        """The alphabet, in id order."""
        return self._chars

    @property
    def special_tokens(self) -> dict[str, int]:
        """Special token → its id."""
        return dict(self._special_tokens)

    def token_to_id(self, token: str) -> int:
        """The id of a character or a special token."""
        token_id = self._id_of_char.get(token, self._special_tokens.get(token))
        if token_id is None:
            raise KeyError(
                f"{token!r} is neither a character of the alphabet nor a special token "
                f"(special tokens: {sorted(self._special_tokens) or 'none'})"
            )
        return token_id

    def encode(self, text: str) -> list[int]:
        """One id per character of ``text``."""
        check_text(text)
        try:
            return [self._id_of_char[char] for char in text]
        except KeyError as err:
            char = err.args[0]
            raise ValueError(
                f"character {char!r} (U+{ord(char):04X}) is not in the vocabulary of {len(self._chars)} "
                "characters. Build the tokenizer from a text that contains it "
                "(CharTokenizer.from_text(text)), or use ByteLevelBPE, which encodes any string."
            ) from None

    def decode(self, ids: Iterable[int]) -> str:
        """The text of ``ids``; special tokens appear as their names, e.g. ``"<mask>"``."""
        return "".join(self._tokens[i] for i in as_token_ids(ids, self.vocab_size))

    def save(self, path: str | os.PathLike) -> Path:
        """Write the alphabet and the special tokens as JSON."""
        return write_json(path, {
            "format": _FILE_FORMAT,
            "version": _FILE_VERSION,
            "chars": self._chars,
            "special_tokens": list(self._special_tokens),
        })

    @classmethod
    def load(cls, path: str | os.PathLike) -> CharTokenizer:
        """Read a tokenizer written by :meth:`save`."""
        content = read_json(path, _FILE_FORMAT, _FILE_VERSION)
        return cls(content["chars"], content["special_tokens"])

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size}, special_tokens={list(self._special_tokens)})"


def _check_alphabet(chars: str | Sequence[str]) -> list[str]:
    if not isinstance(chars, (str, Sequence)):
        raise TypeError(f"chars must be a str or a sequence of characters, got {type(chars).__name__}")
    alphabet = list(chars)
    for char in alphabet:
        if not isinstance(char, str) or len(char) != 1:
            raise ValueError(f"each entry of chars must be a single character, got {char!r}")
    if len(set(alphabet)) != len(alphabet):
        repeated = sorted({char for char in alphabet if alphabet.count(char) > 1})
        raise ValueError(f"chars must be distinct; {repeated} appear more than once")
    if not alphabet:
        raise ValueError("chars is empty: the alphabet needs at least one character")
    return alphabet
