"""Pre-tokenisation: cut text into word-like pieces before byte-pair encoding.

BPE merges frequent neighbours. Run on raw text, it would happily learn tokens such as
``"dog."``, ``"dog!"`` and ``"dog?"`` and spend vocabulary on every punctuation variant of every
word. GPT-2 first splits the text with a regular expression and lets merges happen only *inside*
a piece, never across two. The pattern, alternative by alternative:

- ``'s|'t|'re|'ve|'m|'ll|'d``: common English contractions become pieces of their own;
- `` ?\\p{L}+``: a run of letters (any script), with at most one leading space;
- `` ?\\p{N}+``: a run of digits or other numbers, with at most one leading space;
- `` ?[^\\s\\p{L}\\p{N}]+``: a run of punctuation and symbols, with at most one leading space;
- ``\\s+(?!\\S)``: whitespace, leaving its last character to the word that follows;
- ``\\s+``: whatever whitespace is left (at the end of the text).

The leading space is part of the word (``" the"``), so a word mid-sentence and at the start of a
line are different tokens. Special tokens such as ``<|endoftext|>`` are cut out *before* the
pattern runs, so no merge ever crosses them and they are never split.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Iterator

import regex

GPT2_SPLIT_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
"""The pre-tokenisation pattern of GPT-2 (Radford et al., 2019), as released with its encoder."""


@functools.lru_cache(maxsize=16)
def compile_pattern(pattern: str) -> regex.Pattern:
    """Compile a pre-tokenisation pattern with the ``regex`` package (which knows ``\\p{L}``)."""
    if not isinstance(pattern, str):
        raise TypeError(f"pattern must be a str (a regular expression), got {type(pattern).__name__}")
    try:
        return regex.compile(pattern)
    except regex.error as err:
        raise ValueError(f"pattern {pattern!r} is not a valid regular expression: {err}") from None


def pretokenize(text: str, pattern: str = GPT2_SPLIT_PATTERN) -> list[str]:
    """Split ``text`` into the pieces BPE works on, e.g. ``"I'm here"`` → ``["I", "'m", " here"]``."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    return compile_pattern(pattern).findall(text)


@functools.lru_cache(maxsize=16)
def _special_token_regex(special_tokens: tuple[str, ...]) -> regex.Pattern:
    # Longest first, so that a special token that begins with another one wins.
    ordered = sorted(special_tokens, key=len, reverse=True)
    return regex.compile("(" + "|".join(regex.escape(token) for token in ordered) + ")")


def split_special_tokens(text: str, special_tokens: Collection[str]) -> Iterator[tuple[str, bool]]:
    """Cut ``text`` around every occurrence of a special token.

    Yields ``(piece, is_special)`` in order; the ordinary pieces are non-empty, and joining all
    pieces gives ``text`` back. With no special tokens the whole text is one ordinary piece.
    """
    if not special_tokens:
        if text:
            yield text, False
        return
    pieces = _special_token_regex(tuple(sorted(special_tokens))).split(text)
    for index, piece in enumerate(pieces):
        is_special = index % 2 == 1  # split() with one capturing group puts the matches at odd indices
        if piece or is_special:
            yield piece, is_special


def pretokenize_bytes(text: str, pattern: str = GPT2_SPLIT_PATTERN) -> list[bytes]:
    """The pieces of :func:`pretokenize`, each encoded as UTF-8: what byte-level BPE merges."""
    pieces = pretokenize(text, pattern)
    try:
        return [piece.encode("utf-8") for piece in pieces]
    except UnicodeEncodeError as err:
        char = err.object[err.start]
        raise ValueError(
            f"text contains U+{ord(char):04X}, a lone surrogate, which UTF-8 cannot encode. "
            "Such strings come from decoding bytes with errors='surrogateescape'; decode with "
            "errors='replace' instead."
        ) from None
