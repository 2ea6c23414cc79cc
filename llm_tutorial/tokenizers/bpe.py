"""Byte-level byte-pair encoding (BPE), the tokenizer of GPT-2.

A language model reads integers, so text must become a sequence of token ids. Three ideas make
GPT-2's tokenizer work, and this module implements each one in the open.

**Why bytes.** A vocabulary of characters or words always meets something it has never seen (a
rare Chinese character, an emoji, a typo) and must fall back to an "unknown" token, which loses
the text. Byte-level BPE starts from the 256 possible byte values of UTF-8: *every* string is a
sequence of such bytes, so every string can be encoded and decoded back exactly. There is no
unknown token.

**Why merges.** Bytes alone make sequences long (a Chinese character is three bytes). BPE learns
to merge frequent neighbours into new tokens: first ``" " + "t"``, then ``" t" + "h"``, later
``" th" + "e"``, ... Each merge adds one token to the vocabulary; after 50,000 merges common words
are single tokens while rare ones are spelled from pieces. Training is in
:mod:`llm_tutorial.tokenizers.bpe_training`.

**Why pre-tokenisation.** Merges happen only inside the pieces that a regular expression cuts
from the text (:mod:`llm_tutorial.tokenizers.pretokenize`), so the vocabulary is spent on words
and word pieces rather than on ``"dog."``, ``"dog!"`` and ``"dog?"``.

**Why ranks.** To encode a piece we replay the training: start from its bytes and repeatedly
merge the adjacent pair that was learned *earliest* (the lowest *rank*), until no adjacent pair is
a learned merge. Merge ``k`` creates token id ``256 + k``, so a token's id is also its rank, and
:meth:`ByteLevelBPE.mergeable_ranks` hands our vocabulary to tiktoken in its own form.

**When tiktoken gives the same ids — a condition, not a given.** The two encoders rank different
things. We merge an adjacent *pair of tokens* only if that pair is a learned merge, at the merge's
rank. tiktoken merges any two adjacent parts whose *joined bytes* are a token, at that token's rank,
and it returns a piece that is a whole token as that one token without merging at all. Both rules
agree when every token is reached through its own merge. They can differ otherwise: with the merges
``[(b"b", b"c"), (b"a", b"b"), (b"ab", b"c")]`` we encode ``"abc"`` as ``[97, 256]`` (``a``, ``bc``;
the pair ``(a, bc)`` was never learned) while tiktoken, built from the same ranks, gives ``[258]``
(``a`` + ``bc`` joins to the token ``abc``). A *necessary* condition, checked by
:meth:`ByteLevelBPE.tokens_not_encoding_to_themselves`: our encoder turns every token's own bytes
into that single token — tiktoken always does, by its whole-token shortcut. It holds for GPT-2's
50,000 merges and for merges :meth:`ByteLevelBPE.train` learns (training merges only pairs that its
own segmentation produced), and on those vocabularies the two agree on every text tested
(``tests/test_tokenizers_bpe.py``); we have not proved the condition sufficient, but a random search
over thousands of small vocabularies that meet it found no disagreement.

**Special tokens** such as ``<|endoftext|>`` get the ids after the merges. ``encode`` matches them
before anything else and emits one id each, never splitting them, but only where the caller
allows it (as tiktoken does): text from users must not smuggle control tokens into a prompt.

Example::

    tok = ByteLevelBPE.train(text, vocab_size=512, special_tokens=["<|endoftext|>"])
    ids = tok.encode("To be, or not to be")
    [tok.id_to_bytes(i) for i in ids]     # the token pieces, as bytes
    tok.decode(ids)                       # 'To be, or not to be'
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence, Set
from pathlib import Path
from typing import Literal

from .._checks import check_choice, check_int
from ._common import (
    as_token_ids,
    check_special_tokens,
    check_text,
    parse_json_file,
    read_json,
    read_text_file,
    write_json,
)
from .bpe_training import count_pretokens, learn_merges, merge_pair
from .byte_alphabet import bytes_to_chars, chars_to_bytes
from .pretokenize import GPT2_SPLIT_PATTERN, compile_pattern, pretokenize_bytes, split_special_tokens

_NUM_BYTES = 256
_FILE_FORMAT = "llm_tutorial.ByteLevelBPE"
_FILE_VERSION = 1
_CACHE_LIMIT = 100_000  # pieces remembered by the encoder before its cache is emptied
_NOT_A_MERGE = float("inf")
_DECODE_ERRORS = ("replace", "strict", "ignore", "backslashreplace")

SpecialSet = Literal["all"] | Set[str]


class ByteLevelBPE:
    """A byte-level BPE tokenizer: 256 byte tokens, then one token per merge, then special tokens.

    Usually built with :meth:`train`, :meth:`load` or :meth:`from_gpt2_files`. The constructor takes
    the learned merges directly:

    Args:
        merges: the merges in the order they were learned, each the ``(left, right)`` bytes of the
            two tokens it joins; merge ``k`` creates token id ``256 + k``.
        special_tokens: strings that get one id each, after the merges, in this order.
        pattern: the pre-tokenisation regular expression (GPT-2's by default).
        byte_order: the byte value of each of the ids 0–255 (GPT-2 numbers bytes in its own order;
            a tokenizer we train uses ``range(256)``, so that id ``b`` is byte ``b``).
    """

    def __init__(
        self,
        merges: Sequence[tuple[bytes, bytes]] = (),
        special_tokens: Sequence[str] = (),
        *,
        pattern: str = GPT2_SPLIT_PATTERN,
        byte_order: Sequence[int] = range(_NUM_BYTES),
    ):
        compile_pattern(pattern)
        self._pattern = pattern
        self._token_bytes = [bytes([b]) for b in _check_byte_order(byte_order)]
        self._byte_to_id = {b: token_id for token_id, (b,) in enumerate(self._token_bytes)}
        self._merges: list[tuple[bytes, bytes]] = []
        self._merge_ranks: dict[tuple[int, int], int] = {}
        self._id_of_bytes = {token: token_id for token_id, token in enumerate(self._token_bytes)}
        for merge in merges:
            self._add_merge(merge)
        specials = check_special_tokens(special_tokens)
        first_special = len(self._token_bytes)
        self._special_tokens = {token: first_special + j for j, token in enumerate(specials)}
        self._all_token_bytes = self._token_bytes + [token.encode("utf-8") for token in specials]
        self._cache: dict[bytes, tuple[int, ...]] = {}

    def _add_merge(self, merge: tuple[bytes, bytes]) -> None:
        rank = len(self._merges)
        if not (isinstance(merge, (tuple, list)) and len(merge) == 2 and all(isinstance(m, bytes) for m in merge)):
            raise TypeError(f"merge {rank} must be a pair of bytes such as (b' t', b'he'), got {merge!r}")
        left, right = merge
        for part in (left, right):
            if part not in self._id_of_bytes:
                raise ValueError(f"merge {rank} {merge!r} joins {part!r}, which no earlier merge created")
        if left + right in self._id_of_bytes:
            raise ValueError(f"merge {rank} {merge!r} creates {left + right!r}, which is a token already")
        self._merge_ranks[(self._id_of_bytes[left], self._id_of_bytes[right])] = rank
        self._id_of_bytes[left + right] = len(self._token_bytes)
        self._token_bytes.append(left + right)
        self._merges.append((left, right))

    # ----------------------------------------------------------------------------- building

    @classmethod
    def train(
        cls,
        texts: str | Iterable[str],
        *,
        vocab_size: int | None = None,
        num_merges: int | None = None,
        special_tokens: Sequence[str] = (),
        pattern: str = GPT2_SPLIT_PATTERN,
        progress: bool = True,
    ) -> ByteLevelBPE:
        """Learn a tokenizer from a text or an iterable of texts (pre-tokens never span two texts).

        Give either ``vocab_size`` (= 256 bytes + merges + special tokens) or ``num_merges``.
        Ties between equally frequent pairs go to the smallest ``(left bytes, right bytes)``; see
        :mod:`llm_tutorial.tokenizers.bpe_training`. If the text runs out of pairs first, training
        stops early with a warning and the vocabulary is smaller. ``progress=False`` hides the bar.
        """
        if isinstance(texts, str):
            texts = [texts]
        elif not isinstance(texts, Iterable):
            raise TypeError(f"texts must be a str or an iterable of str, got {type(texts).__name__}")
        specials = check_special_tokens(special_tokens)
        merges_wanted = _resolve_num_merges(vocab_size, num_merges, len(specials))
        counts = count_pretokens(texts, pattern, specials)
        merges = learn_merges(counts, merges_wanted, progress=progress)
        return cls(merges, specials, pattern=pattern)

    @classmethod
    def from_gpt2_files(cls, vocab_json: str | os.PathLike, merges_txt: str | os.PathLike) -> ByteLevelBPE:
        """GPT-2's own tokenizer, from its ``vocab.json`` (a.k.a. ``encoder.json``) and
        ``merges.txt`` (a.k.a. ``vocab.bpe``). Tokens in both files are written in GPT-2's byte
        alphabet (:mod:`llm_tutorial.tokenizers.byte_alphabet`); vocabulary entries after the
        merges (``<|endoftext|>`` = 50256) become special tokens. The ids equal tiktoken's ``gpt2``."""
        swapped = " (vocab.json comes first, merges.txt second: were they swapped?)"
        vocab = parse_json_file(vocab_json, f"GPT-2's vocab.json{swapped}")
        if not isinstance(vocab, dict) or not all(isinstance(i, int) and not isinstance(i, bool) for i in vocab.values()):
            raise ValueError(f"{vocab_json} must hold a JSON object mapping each token to its integer id")
        merge_lines = read_text_file(merges_txt, f"GPT-2's merges.txt{swapped}").splitlines()
        try:
            merges = [_parse_merge_line(line, number) for number, line in enumerate(merge_lines, 1)
                      if line and not line.startswith("#version")]
        except ValueError as error:
            raise ValueError(f"{merges_txt}: {error}; is it GPT-2's merges.txt{swapped}") from error
        tokens_by_id = sorted(vocab, key=vocab.get)
        byte_order = [chars_to_bytes(token)[0] for token in tokens_by_id[:_NUM_BYTES]]
        specials = tokens_by_id[_NUM_BYTES + len(merges):]
        tokenizer = cls(merges, specials, pattern=GPT2_SPLIT_PATTERN, byte_order=byte_order)
        tokenizer._check_matches_gpt2_vocab(vocab)
        return tokenizer

    def _check_matches_gpt2_vocab(self, vocab: dict[str, int]) -> None:
        ours = {bytes_to_chars(token): token_id for token_id, token in enumerate(self._token_bytes)}
        ours.update(self._special_tokens)
        if ours != vocab:
            mismatch = next((token for token in vocab if ours.get(token) != vocab[token]), None)
            detail = (f"vocab.json gives {mismatch!r} id {vocab[mismatch]}, the merges give it id "
                      f"{ours.get(mismatch)}" if mismatch else f"the merges make {len(ours)} tokens, "
                      f"vocab.json has {len(vocab)}")
            raise ValueError(f"vocab.json and merges.txt disagree: {detail}. Are both files from the same model?")

    # ----------------------------------------------------------------------------- vocabulary

    @property
    def vocab_size(self) -> int:
        """Number of token ids: 256 bytes + merges + special tokens."""
        return len(self._all_token_bytes)

    @property
    def merges(self) -> list[tuple[bytes, bytes]]:
        """The merges in learned order; merge ``k`` creates token id ``256 + k``."""
        return list(self._merges)

    @property
    def special_tokens(self) -> dict[str, int]:
        """Special token → its id."""
        return dict(self._special_tokens)

    @property
    def pattern(self) -> str:
        """The pre-tokenisation regular expression."""
        return self._pattern

    def id_to_bytes(self, token_id: int) -> bytes:
        """The bytes token ``token_id`` stands for (a special token: its UTF-8 text)."""
        (checked,) = as_token_ids([token_id], self.vocab_size)
        return self._all_token_bytes[checked]

    def mergeable_ranks(self) -> dict[bytes, int]:
        """Token bytes → rank (= id) for every non-special token, the form tiktoken builds an
        ``Encoding`` from: ``tiktoken.Encoding(name, pat_str=tok.pattern,
        mergeable_ranks=tok.mergeable_ranks(), special_tokens=tok.special_tokens)``."""
        return {token: token_id for token_id, token in enumerate(self._token_bytes)}

    def tokens_not_encoding_to_themselves(self) -> list[int]:
        """Ids of merged tokens whose own bytes this encoder does *not* encode as that one token.

        Empty means the merges pass the necessary condition for tiktoken (which ranks joined bytes,
        not pairs) to give the same ids as this encoder: see the module docstring. A token listed
        here is a piece on which the two disagree, since tiktoken encodes a whole token as itself.
        """
        return [token_id for token_id in range(_NUM_BYTES, len(self._token_bytes))
                if self._encode_piece(self._token_bytes[token_id]) != (token_id,)]

    # ----------------------------------------------------------------------------- encoding

    def encode(
        self,
        text: str,
        *,
        allowed_special: SpecialSet = frozenset(),
        disallowed_special: SpecialSet = "all",
    ) -> list[int]:
        """Token ids of ``text``.

        As in tiktoken: special tokens in ``allowed_special`` (a set, or ``"all"``) become their
        one id; any special token of ``disallowed_special`` (by default every one not allowed)
        found in the text raises ``ValueError``; a special token in neither is encoded as ordinary
        text.
        """
        check_text(text)
        allowed = self._special_set(allowed_special, "allowed_special")
        if disallowed_special == "all":
            disallowed = set(self._special_tokens) - allowed
        else:
            disallowed = self._special_set(disallowed_special, "disallowed_special")
        found = sorted(token for token in disallowed if token in text)
        if found:
            raise ValueError(
                f"text contains the special token {found[0]!r}, which this call does not allow. Pass "
                f"allowed_special={{{found[0]!r}}} (or 'all') to encode it as its one id, or "
                "disallowed_special=set() to encode it as ordinary text."
            )
        ids: list[int] = []
        for piece, is_special in split_special_tokens(text, allowed):
            if is_special:
                ids.append(self._special_tokens[piece])
            else:
                ids.extend(self.encode_ordinary(piece))
        return ids

    def encode_ordinary(self, text: str) -> list[int]:
        """Token ids of ``text`` with no special-token handling at all."""
        check_text(text)
        ids: list[int] = []
        for piece in pretokenize_bytes(text, self._pattern):
            ids.extend(self._encode_piece(piece))
        return ids

    def encode_lines(
        self,
        lines: Iterable[str],
        *,
        allowed_special: SpecialSet = frozenset(),
        disallowed_special: SpecialSet = "all",
    ) -> Iterator[list[int]]:
        """Lazily encode an iterable of texts (a file, a generator): a generator of id lists, one per
        line, each made only when asked for. Line endings are kept, as in the text."""
        if isinstance(lines, str) or not isinstance(lines, Iterable):
            raise TypeError(
                f"lines must be an iterable of str such as an open file, got {type(lines).__name__}; "
                "to encode one text, call encode()"
            )
        options = {"allowed_special": allowed_special, "disallowed_special": disallowed_special}
        return (self.encode(line, **options) for line in lines)

    def _special_set(self, specials: SpecialSet, name: str) -> set[str]:
        if specials == "all":
            return set(self._special_tokens)
        if isinstance(specials, str) or not isinstance(specials, (Set, Sequence)):
            raise TypeError(f"{name} must be 'all' or a set of special tokens, got {specials!r}")
        unknown = sorted(set(specials) - set(self._special_tokens))
        if unknown:
            raise ValueError(
                f"{name} names {unknown}, which are not special tokens of this tokenizer "
                f"(it has {sorted(self._special_tokens) or 'none'})"
            )
        return set(specials)

    def _encode_piece(self, piece: bytes) -> tuple[int, ...]:
        ids = self._cache.get(piece)
        if ids is None:
            ids = tuple(self._apply_merges([self._byte_to_id[b] for b in piece]))
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[piece] = ids
        return ids

    def _apply_merges(self, ids: list[int]) -> list[int]:
        """Replay training on one piece: merge the adjacent pair of lowest rank, until none is a merge."""
        while len(ids) > 1:
            best = min(zip(ids, ids[1:]), key=lambda pair: self._merge_ranks.get(pair, _NOT_A_MERGE))
            rank = self._merge_ranks.get(best)
            if rank is None:
                break
            ids = merge_pair(ids, best, _NUM_BYTES + rank)
        return ids

    # ----------------------------------------------------------------------------- decoding

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """The bytes that ``ids`` stand for, joined."""
        return b"".join(self._all_token_bytes[i] for i in as_token_ids(ids, self.vocab_size))

    def decode(self, ids: Iterable[int], errors: str = "replace") -> str:
        """The text of ``ids``. A slice of ids can end inside a multi-byte character, so the bytes
        need not be valid UTF-8; by default such bytes decode to U+FFFD (``errors="replace"``),
        ``"strict"`` raises instead (any of Python's ``bytes.decode`` error handlers)."""
        check_choice(errors, "errors", _DECODE_ERRORS)
        return self.decode_bytes(ids).decode("utf-8", errors=errors)

    # ----------------------------------------------------------------------------- files

    def save(self, path: str | os.PathLike) -> Path:
        """Write the tokenizer as readable JSON: the pattern, the 256 byte tokens and the merges
        written in GPT-2's byte alphabet (``"Ġ t"`` is the merge of ``b" "`` and ``b"t"``), and the
        special tokens with their ids."""
        return write_json(path, {
            "format": _FILE_FORMAT,
            "version": _FILE_VERSION,
            "pattern": self._pattern,
            "byte_tokens": [bytes_to_chars(token) for token in self._token_bytes[:_NUM_BYTES]],
            "merges": [f"{bytes_to_chars(left)} {bytes_to_chars(right)}" for left, right in self._merges],
            "special_tokens": self._special_tokens,
        })

    @classmethod
    def load(cls, path: str | os.PathLike) -> ByteLevelBPE:
        """Read a tokenizer written by :meth:`save`."""
        content = read_json(path, _FILE_FORMAT, _FILE_VERSION)
        merges = [_parse_merge_line(line, number) for number, line in enumerate(content["merges"], 1)]
        byte_order = [chars_to_bytes(token)[0] for token in content["byte_tokens"]]
        specials = sorted(content["special_tokens"], key=content["special_tokens"].get)
        tokenizer = cls(merges, specials, pattern=content["pattern"], byte_order=byte_order)
        if tokenizer.special_tokens != content["special_tokens"]:
            raise ValueError(f"{path}: special token ids must follow the merges, got {content['special_tokens']}")
        return tokenizer

    def __repr__(self) -> str:
        return (f"ByteLevelBPE(vocab_size={self.vocab_size}, merges={len(self._merges)}, "
                f"special_tokens={list(self._special_tokens)})")


def _check_byte_order(byte_order: Sequence[int]) -> list[int]:
    order = list(byte_order)
    if sorted(order) != list(range(_NUM_BYTES)):
        raise ValueError("byte_order must list each byte value 0–255 exactly once")
    return order


def _parse_merge_line(line: str, number: int) -> tuple[bytes, bytes]:
    parts = line.split(" ")
    if len(parts) != 2 or not all(parts):
        raise ValueError(f"merge line {number} must be two tokens separated by one space, got {line!r}")
    return chars_to_bytes(parts[0]), chars_to_bytes(parts[1])


def _resolve_num_merges(vocab_size: int | None, num_merges: int | None, num_special: int) -> int:
    if (vocab_size is None) == (num_merges is None):
        raise ValueError("give exactly one of vocab_size and num_merges")
    if num_merges is not None:
        return num_merges  # learn_merges checks it
    smallest = _NUM_BYTES + num_special
    check_int(vocab_size, "vocab_size", smallest, hint=f" (256 byte tokens + {num_special} special tokens)")
    return vocab_size - smallest
