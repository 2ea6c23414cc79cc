"""Check of chapter 7's exercise: encoding one pre-tokenised piece with BPE merge ranks.

The ranks are learned afresh at each grading from a random slice of Tiny Shakespeare (the
package's ``ByteLevelBPE.train``), and the reference ids are that tokenizer's own encoding, which
replays its merges by merge rank rather than looking up the ranks of joined bytes. Pieces: the
empty one, single bytes, repeated letters (where the same pair occurs twice), accented letters,
Chinese and emoji, pieces of another slice, and for each known wrong rule a piece on which that
rule gives other ids. Hints replay the wrong rules: the rightmost of two equal pairs first, the
leftmost mergeable pair first, the highest rank first.
"""

from __future__ import annotations

import torch

from ...data import load_text
from ...tokenizers import ByteLevelBPE, pretokenize
from . import Case, Check, NotebookChecks, definitions_only, describe, randint

NUM_MERGES = 150
FIXED_PIECES = ["", "a", "lllll", " eeeeee", "!!!!", " the", "naïve", " café", "你好", "🤖", " thee"]


def _shakespeare(generator: torch.Generator, length: int) -> str:
    text = load_text("tinyshakespeare")
    start = randint(generator, 0, len(text) - length)
    return text[start:start + length]


def cases(generator: torch.Generator) -> list[Case]:
    tokenizer = ByteLevelBPE.train(_shakespeare(generator, 20_000), num_merges=NUM_MERGES, progress=False)
    ranks = tokenizer.mergeable_ranks()
    others = sorted(set(pretokenize(_shakespeare(generator, 300))), key=lambda p: (len(p.encode()), p))
    chosen = [others[int(i)] for i in torch.randperm(len(others), generator=generator)[:6]]
    chosen += _revealing(tokenizer, ranks)
    pieces = sorted({p for p in FIXED_PIECES + chosen if pretokenize(p) == [p] or p == ""}, key=lambda p: (len(p.encode()), p))
    what = f"the ranks of {len(ranks)} tokens learned from 20,000 characters of Shakespeare"
    return [Case("bpe_encode", (p.encode("utf-8"), ranks), f"bpe_encode({p.encode('utf-8')!r}, ranks) with {what}",
                 {"tokenizer": tokenizer}) for p in pieces]


def _replay(piece: bytes, ranks: dict, choose) -> list[int] | None:
    """The ids a wrong merging rule gives: ``choose`` picks one of the (rank, position) candidates."""
    parts = [piece[i:i + 1] for i in range(len(piece))]
    while len(parts) > 1:
        candidates = [(ranks[a + b], i) for i, (a, b) in enumerate(zip(parts, parts[1:])) if a + b in ranks]
        if not candidates:
            break
        i = choose(candidates)
        parts[i:i + 2] = [parts[i] + parts[i + 1]]
    return [ranks[p] for p in parts] if all(p in ranks for p in parts) else None


WRONG_RULES = [  # the most specific first: on some pieces two rules give the same ids
    (lambda found: max(found, key=lambda c: (-c[0], c[1]))[1],
     "when the pair of lowest rank occurs more than once, merge the leftmost one first"),
    (lambda found: found[0][1],
     "you merged the leftmost pair that has a rank: merge the pair whose joined bytes have the lowest rank, wherever it is"),
    (lambda found: max(found, key=lambda c: (c[0], -c[1]))[1],
     "you merged the pair of highest rank first: merge the pair whose joined bytes have the lowest rank"),
]


def _revealing(tokenizer: ByteLevelBPE, ranks: dict) -> list[str]:
    """For each wrong rule, a piece of three bytes on which it gives other ids than the right rule:
    ``xyz`` where both ``xy`` and ``yz`` are merges (``xxx`` when ``xx`` is one), so that no
    grading can miss a known mistake by chance."""
    singles = [(left, right) for left, right in tokenizer.merges if len(left) == len(right) == 1]
    candidates = sorted({x + y + z for x, y in singles for y2, z in singles if y == y2})
    found = []
    for rule, _ in WRONG_RULES:
        for piece in candidates:
            try:
                text = piece.decode("utf-8")
            except UnicodeDecodeError:
                continue
            if pretokenize(text) == [text] and _replay(piece, ranks, rule) != tokenizer.encode_ordinary(text):
                found.append(text)
                break
    return found


def judge(case: Case, got) -> str | None:
    piece, ranks = case.args
    tokenizer = case.info["tokenizer"]
    expected = tokenizer.encode_ordinary(piece.decode("utf-8"))
    if isinstance(got, tuple):
        got = list(got)
    if isinstance(got, list) and got and all(isinstance(p, bytes) for p in got):
        return f"return the ranks of the final parts (ints), not their bytes; expected {expected}"
    if not isinstance(got, list) or not all(type(i) is int for i in got):
        return f"bpe_encode should return a list of ints; it returned {describe(got)}"
    if got == expected:
        return None
    token = {rank: token for token, rank in ranks.items()}
    message = f"expected the ids {expected} (parts {[token[i] for i in expected]}); yours are {got}"
    if all(i in token for i in got):
        message += f" (parts {[token[i] for i in got]})"
    hints = [hint for rule, hint in WRONG_RULES if _replay(piece, ranks, rule) == got]
    return f"{hints[0]}; {message}" if hints else message


CHECKS = NotebookChecks([Check("bpe_encode_tests", cases, judge)], setup=definitions_only)
