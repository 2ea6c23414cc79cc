"""How the grader judges each exercise of the book's assignments, in the grader's own process.

A :class:`Check` belongs to one graded exercise (the ``grade_id`` of its test cell). It makes the
*cases* — calls of the student's functions on inputs drawn afresh at each grading, smallest
first — and *judges* what each call returned against an independent reference computed here
(PyTorch's own functions, or the package's), never against anything the student's kernel said.
A judge returns ``None`` when the result is right, else a message a student can act on: what was
expected and what came, on that (small) input, with a hint when the result matches a known mistake.

Partial credit: an exercise scores its points when every case is right, and zero otherwise. Each
exercise is graded with the reference solutions of the other exercises in place of the student's
own (see :mod:`..runner`), so a mistake costs only the points of the exercise where it is made.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from ..transport import Unreadable


@dataclass
class Case:
    """One call of a student's function: ``function(*args)``, described to the student by ``label``."""

    function: str
    args: tuple
    label: str
    info: dict = field(default_factory=dict)  # what the judge needs to know; never sent to the kernel


@dataclass
class Check:
    """The grader's side of one exercise."""

    grade_id: str
    cases: Callable[[torch.Generator], list[Case]]
    judge: Callable[[Case, Any], str | None]
    on_device: bool = False  # move tensor inputs to the notebook's ``device`` (a GPU when there is one)


class NotebookChecks:
    """Every check of one notebook, by the ``grade_id`` of the exercise's test cell."""

    def __init__(self, checks: list[Check]):
        self.checks = {check.grade_id: check for check in checks}


CHECKED_NOTEBOOKS = ("ch03_assignment_attention", "ch05_assignment_triton_softmax", "ch07_assignment_bpe")


def checks_for(notebook_stem: str) -> NotebookChecks | None:
    """The checks of the book's notebook named ``notebook_stem``, or None when it has none."""
    if notebook_stem not in CHECKED_NOTEBOOKS:
        return None
    return importlib.import_module(f"{__name__}.{notebook_stem}").CHECKS


# --- messages ------------------------------------------------------------------------------------

def describe(value: Any) -> str:
    """A short description of what came back."""
    if isinstance(value, Unreadable):
        return value.describe()
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)} and dtype {value.dtype}"
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 80 else text[:80] + '…'}"


def shape(t: torch.Tensor) -> str:
    return "(" + ", ".join(str(n) for n in t.shape) + ")"


def tolerances(dtype: torch.dtype) -> tuple[float, float]:
    """(rtol, atol) as torch.testing.assert_close uses them."""
    return {torch.float16: (1e-3, 1e-5), torch.bfloat16: (1.6e-2, 1e-5), torch.float32: (1.3e-6, 1e-5),
            torch.float64: (1e-7, 1e-7)}.get(dtype, (0.0, 0.0))


def close(got: Any, expected: torch.Tensor) -> bool:
    """Same shape and dtype, and equal within the usual tolerances."""
    if not isinstance(got, torch.Tensor) or got.shape != expected.shape or got.dtype != expected.dtype:
        return False
    rtol, atol = tolerances(expected.dtype)
    return bool(torch.isclose(got, expected, rtol=rtol, atol=atol, equal_nan=True).all())


def compare_tensor(got: Any, expected: torch.Tensor, what: str = "your output") -> str | None:
    """None when ``got`` equals ``expected`` within tolerance, else the first difference, in words."""
    if not isinstance(got, torch.Tensor):
        return f"{what} should be a tensor of shape {shape(expected)}; it is {describe(got)}"
    if got.shape != expected.shape:
        return f"{what} has shape {shape(got)}; expected {shape(expected)}"
    if got.dtype != expected.dtype:
        return f"{what} has dtype {got.dtype}; expected {expected.dtype}"
    if expected.numel() == 0:
        return None
    rtol, atol = tolerances(expected.dtype)
    if expected.dtype == torch.bool or not expected.is_floating_point():
        wrong = got != expected
    else:
        wrong = ~torch.isclose(got, expected, rtol=rtol, atol=atol, equal_nan=True)
    if not wrong.any():
        return None
    index = tuple(int(i) for i in wrong.nonzero()[0])
    at = "[" + ", ".join(map(str, index)) + "]"
    g, e = got[index].item(), expected[index].item()
    text = f"at index {at} {what} is {_number(g)}; expected {_number(e)} ({int(wrong.sum())} of {wrong.numel()} entries differ"
    if expected.is_floating_point():
        finite = torch.isfinite(got) & torch.isfinite(expected)
        if not torch.isfinite(got).all():
            text += f"; yours has {int((~torch.isfinite(got)).sum())} nan or inf"
        elif finite.any():
            text += f", by up to {(got - expected).abs()[finite].max().item():.3g}"
    return text + ")"


def _number(x: Any) -> str:
    if isinstance(x, float):
        return "nan" if math.isnan(x) else f"{x:.6g}"
    return str(x)


def first_failure(cases: list[Case], judged: list[str | None]) -> tuple[Case, str] | None:
    for case, message in zip(cases, judged):
        if message is not None:
            return case, message
    return None
