"""Checks of the chapter-5 assignment: a stable softmax in PyTorch, then in a Triton kernel.

The reference is ``torch.softmax``. The kernel is called through the notebook's launcher
``triton_softmax`` on the notebook's device (Triton's interpreter on a CPU).
"""

from __future__ import annotations

import torch

from ..transport import View
from . import Case, Check, NotebookChecks, close, compare_tensor, shape

OVERFLOW_HINT = "exp overflowed: subtract the row maximum before exponentiating"


def _softmax_judge(case: Case, got) -> str | None:
    x = case.args[0]
    expected = torch.softmax(x, dim=-1)
    message = compare_tensor(got, expected)
    if message is None:
        return None
    if isinstance(got, torch.Tensor) and got.shape == expected.shape and not torch.isfinite(got).all():
        return f"{OVERFLOW_HINT}; {message}"
    if x.dim() > 1 and close(got, torch.softmax(x, dim=0)):
        return f"it equals a softmax over the first dimension: take it over the last (dim=-1); {message}"
    if case.info.get("padded") and isinstance(got, torch.Tensor) and got.shape == expected.shape:
        block = case.info["padded"]
        padded = torch.cat([x, x.new_zeros(x.shape[0], block - x.shape[1])], dim=1)
        if close(got, torch.softmax(padded, dim=-1)[:, : x.shape[1]]):
            return f"the positions past the end of the row took part as zeros: load them with other=-inf; {message}"
    return message


def reference_cases(generator: torch.Generator) -> list[Case]:
    def rand(*size):
        return torch.randn(*size, generator=generator)

    xs = [(rand(1, 1), "one row of one number"), (rand(4, 10), "x of shape (4, 10)"),
          (rand(2, 3, 5) * 3, "x of shape (2, 3, 5)"),
          (torch.tensor([[1000.0, 1001.0, 999.0]]), "x = [[1000, 1001, 999]]"),
          (torch.tensor([[-1000.0, -1001.0]]), "x = [[-1000, -1001]]")]
    return [Case("softmax_rows", (x, ), label) for x, label in xs]


def _kernel_cases(generator: torch.Generator, shapes, scale=1.0, shift=0.0, what="") -> list[Case]:
    cases = []
    for rows, cols in shapes:
        x = torch.randn(rows, cols, generator=generator) * scale + shift
        block = 1 << max(cols - 1, 0).bit_length()
        cases.append(Case("triton_softmax", (x,), f"triton_softmax(x) with x of shape {shape(x)}{what}",
                          {"padded": block if block != cols else 0}))
    return cases


def power_of_two_cases(generator: torch.Generator) -> list[Case]:
    return _kernel_cases(generator, [(1, 16), (6, 32)]) + _kernel_cases(generator, [(3, 128)], scale=4.0, what=", scaled by 4")


def any_length_cases(generator: torch.Generator) -> list[Case]:
    cases = _kernel_cases(generator, [(7, 1), (2, 33), (3, 65), (5, 100)])
    base = torch.randn(4, 50, generator=generator)
    view = Case("triton_softmax", (View(base, [(1, 0, 37)]),),
                "triton_softmax(x) with rows of length 37 that are not contiguous (row stride 50)", {"padded": 64})
    return cases + [view]


def stability_cases(generator: torch.Generator) -> list[Case]:
    return (_kernel_cases(generator, [(3, 16)], shift=200.0, what=", values around 200")
            + _kernel_cases(generator, [(2, 40)], scale=50.0, shift=1000.0, what=", values around 1000"))


def kernel_judge(case: Case, got) -> str | None:
    if isinstance(case.args[0], View):  # judge the view the kernel saw
        case = Case(case.function, (case.args[0].value,), case.label, case.info)
    return _softmax_judge(case, got)


CHECKS = NotebookChecks([
    Check("reference_softmax_tests", reference_cases, _softmax_judge),
    Check("kernel_power_of_two_tests", power_of_two_cases, kernel_judge, on_device=True),
    Check("kernel_any_length_tests", any_length_cases, kernel_judge, on_device=True),
    Check("kernel_stability_tests", stability_cases, kernel_judge, on_device=True),
])
