"""Check of chapter 1's exercise: add-one smoothed bigram probabilities from token ids.

The reference is the closed form ``P[h, w] = (c(h w) + 1) / (c(h) + V)`` with the pair counts taken
here by scattering ones at ``(ids[t], ids[t + 1])``; ``c(h)`` counts ``h`` as the first token of a
pair (the row sums). Messages show the counts behind the first wrong probability.
"""

from __future__ import annotations

import torch

from . import Case, Check, NotebookChecks, definitions_only, describe, randint, shape


def bigram_counts(ids: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """c(h w): how often token w follows token h in ``ids``, as a (V, V) float64 table."""
    counts = torch.zeros(vocab_size, vocab_size, dtype=torch.float64)
    ones = torch.ones(max(len(ids) - 1, 0), dtype=torch.float64)
    return counts.index_put_((ids[:-1], ids[1:]), ones, accumulate=True)


def cases(generator: torch.Generator) -> list[Case]:
    fixed = [([0], 3), ([0, 1, 1, 2], 3), ([2, 0, 2, 1, 0], 4)]
    found = [Case("bigram_add_one", (torch.tensor(ids), V), f"bigram_add_one(torch.tensor({ids}), {V})") for ids, V in fixed]
    for V, n in [(randint(generator, 5, 10), randint(generator, 40, 80)), (65, 3000)]:
        weights = torch.rand(V, generator=generator) ** 3  # some tokens common, some rare or absent
        ids = torch.multinomial(weights, n, replacement=True, generator=generator)
        found.append(Case("bigram_add_one", (ids, V), f"bigram_add_one(ids, {V}) with {n} ids drawn unevenly from {V} tokens"))
    return found


def _same(got: torch.Tensor, table: torch.Tensor) -> bool:
    return bool(torch.isclose(got, table, rtol=1e-5, atol=1e-8, equal_nan=True).all())


def judge(case: Case, got) -> str | None:
    ids, V = case.args
    counts = bigram_counts(ids, V)  # (V, V)
    history = counts.sum(dim=1, keepdim=True)  # (V, 1): c(h)
    expected = (counts + 1) / (history + V)
    if not isinstance(got, torch.Tensor):
        return f"bigram_add_one should return a tensor of shape ({V}, {V}); it returned {describe(got)}"
    if got.shape != expected.shape:
        return f"your table has shape {shape(got)}; expected ({V}, {V}): row h holds P(w | h) for every w"
    if not got.is_floating_point():
        return f"your table has dtype {got.dtype}: probabilities need a floating dtype (divide with /, not //)"
    got = got.double()
    wrong = ~torch.isclose(got, expected, rtol=1e-5, atol=1e-8, equal_nan=True)
    if not wrong.any():
        return None
    h, w = (int(i) for i in wrong.nonzero()[0])
    message = (f"P[{h}, {w}] is {got[h, w].item():.6g}; expected (c({h} {w}) + 1) / (c({h}) + V) = "
               f"({int(counts[h, w])} + 1) / ({int(history[h])} + {V}) = {expected[h, w].item():.6g}")
    every = torch.bincount(ids, minlength=V).double()[:, None]  # (V, 1): h anywhere, the last id too
    reversed_counts = counts.T  # the pairs counted as (next, previous)
    transposed = "your table is transposed: row h must hold the distribution of the token that follows h"
    mistakes = [(expected.T, transposed),
                ((reversed_counts + 1) / (reversed_counts.sum(dim=1, keepdim=True) + V),
                 f"{transposed}, so count the pair (ids[t], ids[t + 1]) in row ids[t]"),
                (counts / history, "it equals the unsmoothed c(h w) / c(h): add 1 to every count and V to every c(h)"),
                ((counts + 1) / (history + 1), "add V to c(h), not 1: each of the V possible next tokens got one extra count"),
                ((counts + 1) / (every + V), "c(h) must count h as the first token of a pair: the last id starts no pair, "
                                            "so count over ids[:-1] (or sum the rows of the pair counts)")]
    hints = [hint for variant, hint in mistakes if _same(got, variant)]
    return f"{hints[0]}; {message}" if hints else message


CHECKS = NotebookChecks([Check("bigram_add_one_tests", cases, judge)], setup=definitions_only)
