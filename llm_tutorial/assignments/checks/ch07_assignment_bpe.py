"""Checks of the chapter-7 assignment: pair counts, merging, BPE training and encoding.

References: plain Python for the counts and the merge, the package's ``ByteLevelBPE`` (whose ids
equal tiktoken's) for training and encoding. Texts are random slices of Tiny Shakespeare.
"""

from __future__ import annotations

import warnings
from collections import Counter

import torch

from ...data import load_text
from ...tokenizers import ByteLevelBPE, pretokenize
from . import Case, Check, NotebookChecks, describe


def _randint(generator: torch.Generator, low: int, high: int) -> int:
    return int(torch.randint(low, high, (1,), generator=generator))


def _random_word(generator: torch.Generator, alphabet: bytes = b"abc") -> tuple:
    return tuple(bytes([alphabet[_randint(generator, 0, len(alphabet))]]) for _ in range(_randint(generator, 1, 7)))


def _shakespeare(generator: torch.Generator, length: int) -> str:
    text = load_text("tinyshakespeare")
    start = _randint(generator, 0, len(text) - length)
    return text[start:start + length]


def _short(value, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


# Exercise 1 --------------------------------------------------------------------------------------

def _pairs_reference(words: dict) -> Counter:
    counts = Counter()
    for word, count in words.items():
        for i in range(len(word) - 1):
            counts[word[i], word[i + 1]] += count
    return counts


def pair_cases(generator: torch.Generator) -> list[Case]:
    fixed = [{}, {(b"l", b"o", b"w"): 3}, {(b"a", b"a", b"a"): 2, (b"a",): 5}]
    cases = [Case("count_pairs", (words,), f"count_pairs({_short(words)})") for words in fixed]
    words = {_random_word(generator): _randint(generator, 1, 9) for _ in range(40)}
    return cases + [Case("count_pairs", (words,), f"count_pairs(words) on {len(words)} random words of a, b and c")]


def judge_pairs(case: Case, got) -> str | None:
    expected = _pairs_reference(case.args[0])
    if not isinstance(got, dict):
        return f"count_pairs should return a Counter; it returned {describe(got)}"
    got = Counter({k: v for k, v in got.items() if v != 0})
    for pair in sorted(set(expected) | set(got), key=repr):
        if got.get(pair, 0) != expected.get(pair, 0):
            if pair not in expected:
                return f"your counts include {pair!r}, which never occurs"
            return f"pair {pair!r} occurs {expected[pair]} times; your count is {got.get(pair, 0)}"
    return None


# Exercise 2 --------------------------------------------------------------------------------------

def _merge_reference(word: tuple, pair: tuple) -> tuple:
    merged, i = [], 0
    while i < len(word):
        if i + 1 < len(word) and (word[i], word[i + 1]) == pair:
            merged.append(word[i] + word[i + 1])
            i += 2
        else:
            merged.append(word[i])
            i += 1
    return tuple(merged)


def merge_cases(generator: torch.Generator) -> list[Case]:
    fixed = [((b"x",), (b"x", b"y")), ((b"l", b"o", b"w"), (b"l", b"o")), ((b"a", b"a", b"a"), (b"a", b"a")),
             ((b"a", b"b", b"a", b"b"), (b"a", b"b")), ((b"a", b"a", b"a", b"a"), (b"a", b"a"))]
    for _ in range(5):
        word = _random_word(generator, b"ab") * 2
        fixed.append((word, (word[0], word[1])) if len(word) > 1 else (word, (b"a", b"b")))
    return [Case("merge_word", (word, pair), f"merge_word({_short(word)}, {pair!r})") for word, pair in fixed]


def judge_merge(case: Case, got) -> str | None:
    expected = _merge_reference(*case.args)
    if got == expected:
        return None
    if isinstance(got, list) and tuple(got) == expected:
        return "return a tuple, not a list"
    return f"expected {expected!r}; yours gave {_short(got, 120)}"


# Exercise 3 --------------------------------------------------------------------------------------

def train_cases(generator: torch.Generator) -> list[Case]:
    cases = [Case("train_bpe", ("", 3), "train_bpe('', 3)"), Case("train_bpe", ("ab", 10), "train_bpe('ab', 10)"),
             Case("train_bpe", ("low lower lowest newer wider", 2), "train_bpe('low lower lowest newer wider', 2)")]
    text = _shakespeare(generator, 20_000)
    return cases + [Case("train_bpe", (text, 60), "train_bpe(text, 60) on 20,000 characters of Shakespeare")]


def _counts_after(text: str, merges: list) -> Counter:
    """Pair counts of ``text`` after the given merges: to explain a tie."""
    words = Counter(tuple(bytes([b]) for b in piece.encode("utf-8")) for piece in pretokenize(text))
    for pair in merges:
        words = Counter({_merge_reference(word, pair): count for word, count in words.items()})
    return _pairs_reference(words)


def judge_train(case: Case, got) -> str | None:
    text, num_merges = case.args
    with warnings.catch_warnings():  # "only 1 of the 10 requested merges exist": a case, not a problem
        warnings.simplefilter("ignore", UserWarning)
        expected = ByteLevelBPE.train(text, num_merges=num_merges, progress=False).merges
    if not isinstance(got, list):
        return f"train_bpe should return a list of pairs; it returned {describe(got)}"
    got = [tuple(m) if isinstance(m, (tuple, list)) else m for m in got]
    for i, (mine, theirs) in enumerate(zip(got, expected)):
        if mine != theirs:
            message = f"merge {i + 1} should be {theirs!r}; yours is {_short(mine)}"
            counts = _counts_after(text, expected[:i])
            if isinstance(mine, tuple) and counts.get(mine) == counts[theirs]:
                message += (f" — both occur {counts[theirs]} times at that step: on a tie, take the smallest pair "
                            "(compare the pairs as tuples of bytes)")
            return message
    if len(got) != len(expected):
        hint = "; stop when no pair is left" if len(got) > len(expected) else ""
        return f"expected {len(expected)} merges, yours gave {len(got)}{hint}"
    return None


# Exercise 4 --------------------------------------------------------------------------------------

def encode_cases(generator: torch.Generator) -> list[Case]:
    small = ByteLevelBPE.train("low lower lowest newer wider", num_merges=5, progress=False)
    big = ByteLevelBPE.train(_shakespeare(generator, 50_000), num_merges=200, progress=False)
    cases = [Case("encode", ("lowest", small.merges), "encode('lowest', merges learned from 'low lower lowest newer wider')",
                  {"tokenizer": small}),
             Case("encode", ("", big.merges), "encode('', merges)", {"tokenizer": big})]
    for text, label in [("naïve café — 你好, world! 🤖", "'naïve café — 你好, world! 🤖'"),
                        ("  spaces   and\ttabs\n", "'  spaces   and\\ttabs\\n'"),
                        (_shakespeare(generator, 2_000), "2,000 characters of Shakespeare")]:
        cases.append(Case("encode", (text, big.merges), f"encode({label}, 200 merges learned from Shakespeare)",
                          {"tokenizer": big}))
    return cases


def judge_encode(case: Case, got) -> str | None:
    text, _ = case.args
    tokenizer = case.info["tokenizer"]
    expected = tokenizer.encode(text)
    if not isinstance(got, list) or not all(type(i) is int for i in got):
        return f"encode should return a list of ints; it returned {describe(got)}"
    for i, (mine, theirs) in enumerate(zip(got, expected)):
        if mine != theirs:
            return (f"id number {i} should be {theirs} (token {tokenizer.decode_bytes([theirs])!r}); "
                    f"yours is {mine}")
    if len(got) != len(expected):
        return f"expected {len(expected)} ids, yours gave {len(got)}"
    return None


CHECKS = NotebookChecks([
    Check("pair_counts_tests", pair_cases, judge_pairs),
    Check("merge_word_tests", merge_cases, judge_merge),
    Check("train_bpe_tests", train_cases, judge_train),
    Check("encode_tests", encode_cases, judge_encode),
])
