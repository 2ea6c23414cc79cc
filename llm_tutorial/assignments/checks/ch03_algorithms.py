"""Check of chapter 3's exercise: causal attention block by block, with an online softmax.

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

from . import Case, Check, NotebookChecks, close, compare_tensor, definitions_only, dtype_name, randint, shape, tolerances


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


CHECKS = NotebookChecks([Check("causal_blockwise_attention_tests", cases, judge)], setup=definitions_only)
