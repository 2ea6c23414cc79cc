"""Checks of chapter 3's exercises: causal attention block by block, with an online softmax; XLNet's
query-stream mask; T5's span corruption under a given noise mask.

The masks are judged against a brute-force walk along the order (not the package's function); span
corruption against a construction from the runs of the noise mask. Hints name the usual slips:
the content mask instead of the query mask, the order used where its inverse (the ranks) belongs,
a transposed mask; one sentinel per dropped token, one sentinel for every span, no final sentinel.

The reference is PyTorch's ``F.scaled_dot_product_attention(..., is_causal=True)``. The check
judges the values only: it cannot see which key blocks a function read, so skipping the blocks in
the future is the student's to do, not the grader's to verify. Hints name the masks that common
mistakes build (positions counted inside each block, the diagonal hidden, past blocks skipped)
and say which query block the first wrong row belongs to.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from . import (
    Case,
    Check,
    NotebookChecks,
    close,
    compare_tensor,
    definitions_only,
    describe,
    dtype_name,
    randint,
    shape,
    tolerances,
)


def _attention(q, k, v, allowed=None, scale=None):
    """softmax(q kᵀ · scale, where ``allowed``) v in float64: what common mistakes compute."""
    scores = q.double() @ k.double().transpose(-2, -1) * (1 / math.sqrt(q.shape[-1]) if scale is None else scale)
    if allowed is not None:
        scores = scores.masked_fill(~allowed, float("-inf"))
    return (torch.softmax(scores, dim=-1) @ v.double()).to(q.dtype)


def cases(generator: torch.Generator) -> list[Case]:
    sizes = [((1, 1, 1, 4), 1, torch.float64), ((1, 1, 5, 4), 8, torch.float64), ((2, 7, 3), 2, torch.float64),
             ((2, 2, 19, 8), 64, torch.float64), ((3, 1, 50, 12), 1, torch.float64), ((4, 23, 16), 5, torch.float64),
             ((2, 3, randint(generator, 20, 41), 16), randint(generator, 3, 10), torch.float64),
             ((1, 2, 33, 16), 8, torch.float32)]
    found = []
    for size, block, dtype in sizes:
        q, k, v = (torch.randn(*size, generator=generator, dtype=dtype) for _ in range(3))
        found.append(Case("causal_blockwise_attention", (q, k, v, block),
                          f"causal_blockwise_attention(q, k, v, {block}) with q, k, v of shape {shape(q)} ({dtype_name(dtype)})"))
    return found


def judge(case: Case, got) -> str | None:
    q, k, v, block = case.args
    expected = F.scaled_dot_product_attention(q.double(), k.double(), v.double(), is_causal=True).to(q.dtype)
    message = compare_tensor(got, expected)
    if message is None:
        return None
    N = q.shape[-2]
    i, j = torch.arange(N)[:, None], torch.arange(N)[None, :]  # query and key positions
    mistakes = [(_attention(q, k, v, (j // block <= i // block) & (j % block <= i % block)),
                 "it equals a mask that compares positions inside each block: compare absolute positions "
                 "(k_start + column with q_start + row)"),
                (_attention(q, k, v, (j // block == i // block) & (j <= i)),
                 "it equals attention over the query's own block only: read every key block up to the diagonal one"),
                (_attention(q, k, v, j < i), "a query must see its own key: hide only the keys after it (j > i)"),
                (_attention(q, k, v), "it equals attention without the causal mask: hide the keys after each query"),
                (_attention(q, k, v, j <= i, scale=1.0), "it equals causal attention without the scale: multiply the scores by 1/√D")]
    hints = [hint for variant, hint in mistakes if close(got, variant)]
    if hints:
        return f"{hints[0]}; {message}"
    if isinstance(got, torch.Tensor) and got.shape == expected.shape and got.dtype == expected.dtype:
        rtol, atol = tolerances(expected.dtype)
        wrong = ~torch.isclose(got, expected, rtol=rtol, atol=atol, equal_nan=True)  # (..., N, D)
        rows = wrong.flatten(0, -3).any(0).any(-1)  # (N,): the query positions with a wrong output
        first = int(rows.nonzero()[0])
        start = first // block * block
        where = (f"the first wrong row is query {first}, in query block {first // block} "
                 f"(positions {start}..{min(start + block, N) - 1})")
        if not torch.isfinite(got).all():
            where += "; your output has nan or inf: does every row of every block keep a finite running maximum?"
        return f"{where}; {message}"
    return message


# ---- XLNet's query-stream mask ---------------------------------------------------------------


def _walk_masks(order: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Content and query masks by walking the order: the token at step t sees the steps ≤ t (< t)."""
    T = len(order)
    content, query = torch.zeros(T, T, dtype=torch.bool), torch.zeros(T, T, dtype=torch.bool)
    for t, i in enumerate(order):
        for s in range(t + 1):
            content[i, order[s]] = True
            query[i, order[s]] = s < t
    return content, query


def mask_cases(generator: torch.Generator) -> list[Case]:
    found = []
    for T in (1, 2, 5, randint(generator, 6, 12), 17):
        order = torch.randperm(T, generator=generator)
        found.append(Case("query_stream_mask", (order,), f"query_stream_mask(torch.tensor({order.tolist()}))"))
    return found


def mask_judge(case: Case, got) -> str | None:
    (order,) = case.args
    content, expected = _walk_masks(order.tolist())
    if not isinstance(got, torch.Tensor):
        return f"expected a boolean tensor of shape {tuple(expected.shape)}, got {type(got).__name__}"
    if got.shape != expected.shape:
        return f"expected shape {tuple(expected.shape)} (T, T), got {tuple(got.shape)}"
    if got.dtype != torch.bool:
        return f"expected a boolean mask (True = may attend), got dtype {dtype_name(got.dtype)}"
    if torch.equal(got, expected):
        return None
    T = len(order)
    by_order = order[None, :] < order[:, None]  # the order's values compared as if they were ranks
    mistakes = [(torch.ones(T, T, dtype=torch.bool).tril(-1), "that is the causal mask without its diagonal, the "
                                                               "identity order's mask: index by the ranks of this order"),
                (content, "that is the content-stream mask: the query stream must not see its own position "
                          "(use < between ranks, not <=)"),
                (expected.T, "the mask is transposed: row i is the position that attends, column j the one it reads"),
                (by_order, "you compared the order's entries as if they were ranks: rank is the inverse "
                           "permutation, rank[order[t]] = t")]
    hints = [hint for variant, hint in mistakes if torch.equal(got, variant)]
    if hints:  # on short orders two slips can give the same mask: name both
        return f"{' — or '.join(hints)}; for order {order.tolist()} expected\n{expected.int().tolist()}"
    wrong = (got != expected).nonzero()[0].tolist()
    return (f"entry [{wrong[0]}, {wrong[1]}] is {bool(got[wrong[0], wrong[1]])}, expected "
            f"{bool(expected[wrong[0], wrong[1]])} for order {order.tolist()}")


# ---- T5's span corruption under a given noise mask ----------------------------------------------


def _runs(mask: list[bool]) -> list[tuple[int, int]]:
    found, start = [], None
    for i, value in enumerate([*mask, False]):
        if value and start is None:
            start = i
        elif not value and start is not None:
            found.append((start, i))
            start = None
    return found


def _corrupt(ids: list[int], mask: list[bool], sentinels: list[int], *, per_token=False, same=False, final=True,
             after=False):
    """Span corruption built from the runs of the mask, with switches for the usual slips."""
    spans = [(i, i + 1) for i in range(len(ids)) if mask[i]] if per_token else _runs(mask)
    inputs, targets, previous = [], [], 0
    for k, (start, end) in enumerate(spans):
        sentinel = sentinels[0] if same else sentinels[k]
        inputs += ids[previous:start] + [sentinel]
        targets += ids[start:end] + [sentinel] if after else [sentinel] + ids[start:end]
        previous = end
    inputs += ids[previous:]
    if final:
        targets.append(sentinels[0] if same else sentinels[len(spans)])
    return inputs, targets


def span_cases(generator: torch.Generator) -> list[Case]:
    from ...data.span_corruption import random_spans_noise_mask

    found = []
    sentinels = [90 + i for i in range(12)]
    fixed = ["01", "0110", "1001110", "0000000000000000001", "111000111000111"]
    for text_mask in fixed:
        ids = torch.randint(0, 60, (len(text_mask),), generator=generator)
        mask = torch.tensor([c == "1" for c in text_mask])
        found.append(Case("corrupt_spans", (ids, mask, sentinels), f"corrupt_spans(ids of length {len(ids)}, "
                          f"noise_mask {text_mask}, sentinel_ids {sentinels[:4]}…)"))
    for length in (randint(generator, 20, 40), 64):
        ids = torch.randint(0, 60, (length,), generator=generator)
        mask = random_spans_noise_mask(length, generator=generator)
        found.append(Case("corrupt_spans", (ids, mask, sentinels),
                          f"corrupt_spans(ids of length {length}, a T5 noise mask, sentinel_ids {sentinels[:4]}…)"))
    return found


def span_judge(case: Case, got) -> str | None:
    ids, mask, sentinels = case.args
    ids_list, mask_list = ids.tolist(), mask.tolist()
    expected = _corrupt(ids_list, mask_list, sentinels)
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        return f"expected a pair (inputs, targets), got {describe(got)}"
    try:
        mine = tuple(torch.as_tensor(part).tolist() for part in got)
    except (TypeError, ValueError, RuntimeError):
        return f"inputs and targets must be 1-D tensors (or lists) of token ids, got {describe(got)}"
    if mine == expected:
        return None
    mistakes = [(dict(per_token=True), "you put one sentinel per dropped token: one sentinel stands for a whole run "
                                       "of consecutive dropped tokens"),
                (dict(same=True), "every span got the same sentinel: the k-th span takes sentinel_ids[k], in order"),
                (dict(final=False), "the target must end with one more sentinel after the last span"),
                (dict(after=True), "in the target each span comes after its sentinel, not before it")]
    for switches, hint in mistakes:
        if mine == _corrupt(ids_list, mask_list, sentinels, **switches):
            return f"{hint}; expected inputs {expected[0]} and targets {expected[1]}"
    for name, a, b in (("inputs", mine[0], expected[0]), ("targets", mine[1], expected[1])):
        if a != b:
            return f"{name} should be {b}, got {a}"
    return None


CHECKS = NotebookChecks([Check("causal_blockwise_attention_tests", cases, judge),
                         Check("query_stream_mask_tests", mask_cases, mask_judge),
                         Check("corrupt_spans_tests", span_cases, span_judge)], setup=definitions_only)
