"""Tokenizers: how text becomes the integers a language model reads.

- :class:`CharTokenizer` (:mod:`.char`): one id per character of a fixed alphabet.
- :class:`ByteLevelBPE` (:mod:`.bpe`): GPT-2's byte-level byte-pair encoding, trained here
  (:mod:`.bpe_training`) or loaded from GPT-2's own files; equal to tiktoken given the same merges.
- :mod:`.pretokenize`: GPT-2's pre-tokenisation pattern; :mod:`.byte_alphabet`: the printable
  stand-in character of each byte used in GPT-2's files.
"""

from __future__ import annotations

from .bpe import ByteLevelBPE
from .char import CharTokenizer
from .pretokenize import GPT2_SPLIT_PATTERN, pretokenize

__all__ = ["GPT2_SPLIT_PATTERN", "ByteLevelBPE", "CharTokenizer", "pretokenize"]
