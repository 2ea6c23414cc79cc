"""Check of chapter 9's exercise: a log-softmax that never overflows.

The reference is ``torch.log_softmax`` in float64, compared in the input's dtype with the
notebook's tolerances (float16 loosely). Inputs include logits of ±10⁴ in float32, rows of equal
values far below another row's maximum, float16 near its largest value, −∞ logits (masked
tokens) and 1-D and 3-D tensors. Hints name an overflow, the maximum of the whole tensor
subtracted instead of each row's, a softmax without the log, and the wrong dimension.
"""

from __future__ import annotations

import torch

from . import Case, Check, NotebookChecks, compare_tensor, definitions_only, describe, dtype_name, shape

TOLERANCE = {torch.float16: 2e-2, torch.bfloat16: 2e-2, torch.float32: 1e-5, torch.float64: 1e-10}


def cases(generator: torch.Generator) -> list[Case]:
    def rand(*size, scale=1.0, dtype=torch.float32):
        return (torch.randn(*size, generator=generator, dtype=torch.float64) * scale).to(dtype)

    inf = float("inf")
    inputs = [(torch.tensor([[0.0]]), "x = [[0.]]"), (rand(5), "x of shape (5,)"),
              (torch.tensor([[0.0, -inf, 1.0]]), "x = [[0, -inf, 1]] (a masked logit)"),
              (rand(4, 10, scale=10.0), "x of shape (4, 10)"), (rand(3, 7, scale=100.0, dtype=torch.float64), "x of shape (3, 7)"),
              (rand(2, 3, 5, scale=5.0, dtype=torch.float64), "x of shape (2, 3, 5)"),
              (torch.tensor([[1e4, 0.0, -1e4], [-5e3, -5e3, -5e3]]), "x = [[1e4, 0, -1e4], [-5e3, -5e3, -5e3]]"),
              (torch.tensor([[60000.0, 59968.0, 0.0]], dtype=torch.float16), "x = [[60000, 59968, 0]]"),
              (rand(6, 11, scale=3000.0, dtype=torch.float16), "x of shape (6, 11) with logits in the thousands")]
    return [Case("stable_log_softmax", (x,), f"stable_log_softmax(x) with {label} ({dtype_name(x.dtype)})") for x, label in inputs]


def _same(got: torch.Tensor, expected: torch.Tensor, tolerance: float) -> bool:
    return bool(torch.isclose(got.double(), expected.double(), rtol=tolerance, atol=tolerance, equal_nan=True).all())


def judge(case: Case, got) -> str | None:
    (x,) = case.args
    expected = torch.log_softmax(x.double(), dim=-1)
    if not isinstance(got, torch.Tensor):
        return f"stable_log_softmax should return a tensor of shape {shape(x)}; it returned {describe(got)}"
    if got.shape != x.shape:
        return f"your output has shape {shape(got)}; expected the input's shape {shape(x)} (keepdim=True keeps the rows apart)"
    if got.dtype != x.dtype:
        return f"your output has dtype {got.dtype}; expected the input's dtype {x.dtype}"
    tolerance = TOLERANCE.get(x.dtype, 1e-5)
    message = compare_tensor(got.double(), expected, tolerance=(tolerance, tolerance))
    if message is None:
        return None
    whole = x.max()  # one maximum for the whole tensor instead of one per row
    hints = [(((x - whole) - torch.log(torch.exp(x - whole).sum(dim=-1, keepdim=True))),
              "you subtracted the maximum of the whole tensor: a row far below it underflows to log(0) = -inf; "
              "subtract each row's own maximum, x.max(dim=-1, keepdim=True)"),
             (torch.softmax(x.double(), dim=-1), "it equals softmax(x): return its logarithm"),
             (torch.log_softmax(x.double(), dim=0), "it equals a log-softmax over the first dimension: take it over the last (dim=-1)")]
    for variant, hint in hints:
        if x.dim() > 0 and _same(got, variant, tolerance):
            return f"{hint}; {message}"
    if not torch.isfinite(got[torch.isfinite(expected)]).all():
        return f"exp overflowed or log got 0: subtract the row maximum before exponentiating; {message}"
    return message


CHECKS = NotebookChecks([Check("stable_log_softmax_tests", cases, judge)], setup=definitions_only)
