"""Input checks and file helpers shared by the tokenizers (private)."""

from __future__ import annotations

import json
import operator
import os
from collections.abc import Iterable, Sequence
from pathlib import Path


def check_text(text: object, name: str = "text") -> str:
    """``text`` must be a ``str``."""
    if not isinstance(text, str):
        hint = " (decode bytes with .decode('utf-8') first)" if isinstance(text, (bytes, bytearray)) else ""
        raise TypeError(f"{name} must be a str, got {type(text).__name__}{hint}")
    return text


def check_special_tokens(special_tokens: object) -> tuple[str, ...]:
    """A list or tuple of distinct, non-empty strings such as ``["<pad>", "<mask>"]``."""
    if isinstance(special_tokens, str) or not isinstance(special_tokens, Sequence):
        raise TypeError(
            f"special_tokens must be a list of str such as ['<|endoftext|>'], got {special_tokens!r}"
        )
    for token in special_tokens:
        if not isinstance(token, str) or not token:
            raise ValueError(f"each special token must be a non-empty str, got {token!r}")
    duplicates = sorted({token for token in special_tokens if special_tokens.count(token) > 1})
    if duplicates:
        raise ValueError(f"special_tokens lists {duplicates} more than once")
    return tuple(special_tokens)


def as_token_ids(ids: object, vocab_size: int) -> list[int]:
    """``ids`` (a list, tuple, 1-D tensor or array of ints) as a list of ints in ``[0, vocab_size)``."""
    if isinstance(ids, (str, bytes)) or not isinstance(ids, Iterable):
        raise TypeError(f"ids must be a sequence of int token ids, got {type(ids).__name__}")
    if getattr(ids, "ndim", 1) != 1:
        raise ValueError(f"ids must be one-dimensional (one sequence), got shape {tuple(ids.shape)}")
    values = ids.tolist() if hasattr(ids, "tolist") else list(ids)
    try:
        token_ids = [operator.index(value) for value in values]
    except TypeError:
        bad = next(value for value in values if not hasattr(value, "__index__"))
        raise TypeError(f"ids must hold ints, got {bad!r} ({type(bad).__name__})") from None
    out_of_range = [i for i in token_ids if not 0 <= i < vocab_size]
    if out_of_range:
        raise ValueError(
            f"token id {out_of_range[0]} is outside [0, {vocab_size}) (vocab_size={vocab_size}). "
            "Were these ids made by a different tokenizer?"
        )
    return token_ids


def write_json(path: str | os.PathLike, content: dict) -> Path:
    """Write ``content`` as UTF-8 JSON, readable by eye (non-ASCII kept, one list item a line)."""
    path = Path(path)
    path.write_text(json.dumps(content, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return path


def read_text_file(path: str | os.PathLike, what: str) -> str:
    """The UTF-8 text of ``path``; a missing or binary file is an error naming it and ``what`` it should be."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no {what} at {path}")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"{path} is not UTF-8 text (byte {error.start} cannot be decoded); is it really {what}?") \
            from error


def parse_json_file(path: str | os.PathLike, what: str) -> object:
    """The JSON content of ``path``; a syntax error names the file, the line and ``what`` was expected."""
    try:
        return json.loads(read_text_file(path, what))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON (line {error.lineno}, column {error.colno}: {error.msg}); "
                         f"is it really {what}?") from error


def read_json(path: str | os.PathLike, file_format: str, version: int) -> dict:
    """Read a file written by :func:`write_json` and check its ``format`` and ``version`` fields."""
    path = Path(path)
    content = parse_json_file(path, "tokenizer file")
    if not isinstance(content, dict) or content.get("format") != file_format:
        found = content.get("format") if isinstance(content, dict) else type(content).__name__
        raise ValueError(f"{path} is not a {file_format} file (its format field is {found!r})")
    if content.get("version") != version:
        raise ValueError(f"{path} has version {content.get('version')!r}; this code reads version {version}")
    return content
