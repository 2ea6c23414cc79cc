"""Check of the speedrun section's exercise: the Newton–Schulz iteration of Muon.

The reference is an independent computation: the iteration acts on singular values only, so for
``M = U diag(s) Vᵀ`` the result is ``U diag(p⁽ᵏ⁾(s / ‖s‖)) Vᵀ`` with the scalar polynomial
``p(σ) = aσ + bσ³ + cσ⁵`` applied ``k`` times — computed here from ``torch.linalg.svd`` in float64,
not from the student's kind of loop. Hints recompute the usual slips: no normalisation by the
Frobenius norm, a cubic instead of a quintic (``A`` for ``A²``), one iteration too few or many,
and the coefficients (a, b, c) in another order.
"""

from __future__ import annotations

import torch

from ...train.muon import NS_COEFFICIENTS
from . import Case, Check, NotebookChecks, close, compare_tensor, definitions_only, describe, randint, shape


def by_svd(matrix: torch.Tensor, steps: int, coefficients=NS_COEFFICIENTS, normalise: bool = True) -> torch.Tensor:
    """The iteration's result computed on the singular values (float64)."""
    a, b, c = coefficients
    u, s, vh = torch.linalg.svd(matrix.double(), full_matrices=False)
    x = s / s.norm() if normalise else s.clone()
    for _ in range(steps):
        x = a * x + b * x**3 + c * x**5
    return ((u * x) @ vh).to(matrix.dtype)


def _loop(matrix: torch.Tensor, steps: int, quintic: bool = True) -> torch.Tensor:
    a, b, c = NS_COEFFICIENTS
    x = matrix.double() / matrix.double().norm()
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * (gram @ gram if quintic else gram)) @ x
    return x.to(matrix.dtype)


def cases(generator: torch.Generator) -> list[Case]:
    m, n = randint(generator, 3, 9), randint(generator, 10, 16)
    found = []
    for size, steps in [((1, 1), 1), ((2, 3), 1), ((4, 4), 2), ((m, n), 5), ((n, m), 5), ((5, 8), 0), ((6, 3), 7)]:
        matrix = torch.randn(*size, generator=generator, dtype=torch.float64)
        found.append(Case("newton_schulz_by_hand", (matrix, steps),
                          f"newton_schulz_by_hand(matrix, {steps}) with a matrix of shape {shape(matrix)} (float64)"))
    return found


def judge(case: Case, got) -> str | None:
    matrix, steps = case.args
    expected = by_svd(matrix, steps)
    message = compare_tensor(got, expected, "your result")
    if message is None:
        return None
    if not isinstance(got, torch.Tensor):
        return f"newton_schulz_by_hand should return a tensor of the matrix's shape; it returned {describe(got)}"
    a, b, c = NS_COEFFICIENTS
    slips = [(lambda: by_svd(matrix, steps, normalise=False),
              "divide the matrix by its Frobenius norm first, so every singular value starts at most 1"),
             (lambda: _loop(matrix, steps, quintic=False), "the quintic term needs A @ A (A = X Xᵀ), not A"),
             (lambda: by_svd(matrix, steps - 1) if steps else None, "run exactly `steps` iterations: one is missing"),
             (lambda: by_svd(matrix, steps + 1), "run exactly `steps` iterations: one too many"),
             (lambda: by_svd(matrix, steps, (a, c, b)), "the coefficients are (a, b, c) = NS_COEFFICIENTS in this order")]
    for variant, hint in slips:
        candidate = variant()
        if candidate is not None and got.shape == candidate.shape and close(got, candidate):
            return f"{hint}; {message}"
    return message


CHECKS = NotebookChecks([Check("newton_schulz_tests", cases, judge)], setup=definitions_only)
