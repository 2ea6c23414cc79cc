"""Check of chapter 6's exercise: the best answer span of extractive QA.

The grader judges each span by its definition rather than by matching one answer: it must be
allowed at both ends, satisfy ``i ≤ j < i + max_answer_length``, and score ``s_i + e_j`` as high
as the best such span (found here by brute force in float64; a tie may go either way). Messages
name the row, the rule broken, and the best span.
"""

from __future__ import annotations

import torch

from . import Case, Check, NotebookChecks, definitions_only, describe, randint

SCORE_TOLERANCE = 1e-5  # float32 logits summed in another order may differ in the last bits


def cases(generator: torch.Generator) -> list[Case]:
    sizes = [(1, 1, 1, 1.0), (2, 3, 1, 1.0), (3, 6, 2, 0.7), (4, 9, 3, 0.5), (4, randint(generator, 15, 31), randint(generator, 2, 7), 0.6),
             (3, 8, 40, 0.7)]
    found = []
    for number, (B, T, max_length, density) in enumerate(sizes):
        start, end = torch.randn(2, B, T, generator=generator)
        allowed = torch.rand(B, T, generator=generator) < density
        allowed[:, 0] = True
        if number == 3:  # a row with one allowed position: the only span is (T-1, T-1)
            allowed[1] = False
            allowed[1, T - 1] = True
        found.append(Case("best_span_loop", (start, end, allowed, max_length),
                          f"best_span_loop(start_logits, end_logits, allowed, {max_length}) with {B} rows of {T} positions"))
        if number == 1:
            found.append(_traps(generator))
    return found


def _traps(generator: torch.Generator, T: int = 8, max_length: int = 2) -> Case:
    """Three rows whose highest s_i + e_j breaks one rule each: too long, backwards, not allowed."""
    start, end = torch.randn(2, 3, T, generator=generator) * 0.1
    allowed = torch.ones(3, T, dtype=torch.bool)
    i = randint(generator, 0, T - max_length)
    start[0, i], end[0, i + max_length] = 5.0, 5.0  # j = i + max_length: one token too many
    i = randint(generator, 1, T)
    start[1, i], end[1, i - 1] = 5.0, 5.0  # j = i - 1: ends before it starts
    i = randint(generator, 0, T - 1)
    start[2, i], end[2, i + 1], allowed[2, i + 1] = 5.0, 5.0, False  # (i, i + 1), but it may not end at i + 1
    return Case("best_span_loop", (start, end, allowed, max_length),
                f"best_span_loop(start_logits, end_logits, allowed, {max_length}) with 3 rows of {T} positions whose "
                "highest s_i + e_j is a span that breaks a rule")


def _spans(got, rows: int) -> list[tuple[int, int]] | str:
    """The spans as (i, j) ints, or what is wrong with their form."""
    if isinstance(got, torch.Tensor) and not got.is_floating_point() and got.dim() == 2 and got.shape[1] == 2:
        got = got.tolist()
    if not isinstance(got, (list, tuple)):
        return f"best_span_loop should return a list of (i, j) pairs, one per row; it returned {describe(got)}"
    if len(got) != rows:
        return f"expected {rows} spans, one per row; yours gave {len(got)}"
    spans = []
    for span in got:
        if isinstance(span, torch.Tensor) and span.numel() == 2 and not span.is_floating_point():
            span = span.tolist()
        if not (isinstance(span, (list, tuple)) and len(span) == 2):
            return f"each span should be a pair of ints (i, j); yours include {describe(span)}"
        odd = [p for p in span if not (type(p) is int or _whole(p))]
        if odd:
            return f"each span should be a pair of ints (i, j); yours include {describe(odd[0])}"
        spans.append((int(span[0]), int(span[1])))
    return spans


def _whole(value) -> bool:
    return isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_floating_point() and value.dtype != torch.bool


def judge(case: Case, got) -> str | None:
    start, end, allowed, max_length = case.args
    spans = _spans(got, start.shape[0])
    if isinstance(spans, str):
        return spans
    T = start.shape[1]
    for row, (i, j) in enumerate(spans):
        s, e, ok = start[row].double(), end[row].double(), allowed[row]
        if not (0 <= i < T and 0 <= j < T):
            return f"row {row}: your span ({i}, {j}) lies outside the {T} positions 0..{T - 1}"
        if j < i:
            return f"row {row}: your span ({i}, {j}) ends before it starts; a span needs i ≤ j"
        if j >= i + max_length:
            return (f"row {row}: your span ({i}, {j}) has {j - i + 1} tokens; max_answer_length = {max_length} allows "
                    f"at most {max_length} (j < i + max_answer_length)")
        for position in (i, j):
            if not ok[position]:
                return f"row {row}: your span ({i}, {j}) uses position {position}, where allowed[{row}, {position}] is False"
        width = torch.arange(T)[None, :] - torch.arange(T)[:, None]  # (T, T): j − i
        valid = (width >= 0) & (width < max_length) & ok[:, None] & ok[None, :]
        total = (s[:, None] + e[None, :]).masked_fill(~valid, float("-inf"))  # (T, T): s_i + e_j
        best = int(total.argmax())
        bi, bj = divmod(best, T)
        if total[i, j] < total[bi, bj] - SCORE_TOLERANCE:
            return (f"row {row}: your span ({i}, {j}) scores s_{i} + e_{j} = {total[i, j].item():.4f}; the best allowed span "
                    f"is ({bi}, {bj}) with {total[bi, bj].item():.4f}")
    return None


CHECKS = NotebookChecks([Check("best_span_loop_tests", cases, judge)], setup=definitions_only)
