"""GPT-2's byte alphabet: one visible Unicode character for each of the 256 byte values.

GPT-2's tokenizer files (``vocab.json`` and ``merges.txt``) store byte-level tokens as *text*. A
token such as the bytes ``b" the"`` cannot be written as-is: a space separates the two halves of a
merge in ``merges.txt``, and control bytes or the halves of a multi-byte UTF-8 character are not
printable. So GPT-2 gives every byte a stand-in character:

- the 188 bytes that are printable Latin-1 characters (``!`` … ``~``, ``¡`` … ``¬``, ``®`` … ``ÿ``)
  stand for themselves;
- the other 68 (control bytes, the space, DEL, NBSP, soft hyphen, ...) are given the characters
  ``chr(256)``, ``chr(257)``, ... in increasing byte order.

That is why the space shows up as ``Ġ`` (byte 32 is the 33rd non-printable byte: ``chr(256 + 32)``)
and a newline as ``Ċ`` in GPT-2's files. The mapping is pure presentation: the tokenizer itself
works on bytes.
"""

from __future__ import annotations


def _printable_latin1_bytes() -> list[int]:
    """The byte values whose Latin-1 character is visible and not a space."""
    return [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]


def _build_byte_to_char() -> dict[int, str]:
    byte_to_char = {b: chr(b) for b in _printable_latin1_bytes()}
    shifted = (b for b in range(256) if b not in byte_to_char)
    for offset, b in enumerate(shifted):
        byte_to_char[b] = chr(256 + offset)
    return byte_to_char


BYTE_TO_CHAR: dict[int, str] = _build_byte_to_char()
"""Byte value (0–255) → its stand-in character in GPT-2's files."""

CHAR_TO_BYTE: dict[str, int] = {char: b for b, char in BYTE_TO_CHAR.items()}
"""The inverse of :data:`BYTE_TO_CHAR`."""


def bytes_to_chars(token: bytes) -> str:
    """Write ``token`` in GPT-2's byte alphabet, e.g. ``b" the"`` → ``"Ġthe"``."""
    if not isinstance(token, (bytes, bytearray)):
        raise TypeError(f"token must be bytes, got {type(token).__name__}")
    return "".join(BYTE_TO_CHAR[b] for b in token)


def chars_to_bytes(token: str) -> bytes:
    """Read a token written in GPT-2's byte alphabet back into bytes, e.g. ``"Ġthe"`` → ``b" the"``."""
    if not isinstance(token, str):
        raise TypeError(f"token must be a str in GPT-2's byte alphabet, got {type(token).__name__}")
    try:
        return bytes(CHAR_TO_BYTE[char] for char in token)
    except KeyError as err:
        char = err.args[0]
        raise ValueError(
            f"{token!r} is not written in GPT-2's byte alphabet: character {char!r} (U+{ord(char):04X}) "
            "stands for no byte. Is this a GPT-2-style vocab.json/merges.txt file?"
        ) from None
