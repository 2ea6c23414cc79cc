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

Every graded notebook of the book has its checks here, in a module named after the notebook: the
three assignments and the one exercise of each chapter notebook.
"""

from __future__ import annotations

import ast
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
    """Every check of one notebook, by the ``grade_id`` of the exercise's test cell.

    ``setup`` turns the source of each of the notebook's set-up cells (neither solution nor test)
    into what the grader runs before the student's code; ``None`` runs them as they are (the
    assignments, whose set-up cells are imports and given helpers). A chapter notebook passes
    :func:`definitions_only`: its set-up cells also load data, train models and draw figures.
    """

    def __init__(self, checks: list[Check], setup: Callable[[str], str] | None = None):
        self.checks = {check.grade_id: check for check in checks}
        self.setup = setup


ASSIGNMENTS = ("ch03_assignment_attention", "ch05_assignment_triton_softmax", "ch07_assignment_bpe")
CHAPTERS = ("ch01_background", "ch02_core_concepts", "ch03_algorithms", "ch04_mathematics", "ch05_project",
            "ch05_speedrun", "ch06_applications", "ch06_controllable_generation", "ch07_tools", "ch08_trends_challenges",
            "ch09_faq")
CHECKED_NOTEBOOKS = ASSIGNMENTS + CHAPTERS


def checks_for(notebook_stem: str) -> NotebookChecks | None:
    """The checks of the book's notebook named ``notebook_stem``, or None when it has none."""
    if notebook_stem not in CHECKED_NOTEBOOKS:
        return None
    return importlib.import_module(f"{__name__}.{notebook_stem}").CHECKS


def definitions_only(source: str) -> str:
    """The imports, constants, and function and class definitions of one cell, without anything else.

    This is what the grader runs of a chapter notebook's set-up cells. Running those cells as they
    are would load data sets, train models and draw figures — minutes per submission, none of it
    needed by the exercise — while a student's solution may use any module the notebook imports,
    any constant it sets to a literal and any helper it defines; these are kept, in the notebook's
    order. Values the notebook *computes* (a trained model, a data set) are not: the exercises'
    functions take what they need as arguments. A definition that needs such a value (a default
    argument ``x=eval_x``) is skipped when that value is missing. Comments are dropped.
    """
    try:
        tree = ast.parse(source)
    except SyntaxError:  # IPython syntax (magics, !commands): turn it into Python first
        from IPython.core.inputtransformer2 import TransformerManager

        tree = ast.parse(TransformerManager().transform_cell(source))
    kept = []
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            kept.append(node)
        elif _literal_assignment(node):  # without its annotation, which might name something missing
            kept.append(ast.Assign(targets=[node.target], value=node.value) if isinstance(node, ast.AnnAssign) else node)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            skip = ast.ExceptHandler(type=ast.Name("NameError", ast.Load()), name=None, body=[ast.Pass()])
            kept.append(ast.Try(body=[node], handlers=[skip], orelse=[], finalbody=[]))
    module = ast.fix_missing_locations(ast.Module(body=kept, type_ignores=[]))
    return ast.unparse(module) + "\n" if kept else ""


def _literal_assignment(node: ast.stmt) -> bool:
    """``NAME = literal`` or ``A, B = literal, literal`` (an annotation allowed)."""
    if isinstance(node, ast.Assign):
        targets, value = node.targets, node.value
    elif isinstance(node, ast.AnnAssign) and node.value is not None and node.simple:
        targets, value = [node.target], node.value
    else:
        return False
    names = all(isinstance(t, ast.Name) or isinstance(t, ast.Tuple) and all(isinstance(e, ast.Name) for e in t.elts)
                for t in targets)
    try:
        ast.literal_eval(value)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    return names


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


def compare_tensor(got: Any, expected: torch.Tensor, what: str = "your output",
                   tolerance: tuple[float, float] | None = None) -> str | None:
    """None when ``got`` equals ``expected`` within tolerance (``(rtol, atol)``, by default those of
    the dtype), else the first difference, in words."""
    if not isinstance(got, torch.Tensor):
        return f"{what} should be a tensor of shape {shape(expected)}; it is {describe(got)}"
    if got.shape != expected.shape:
        return f"{what} has shape {shape(got)}; expected {shape(expected)}"
    if got.dtype != expected.dtype:
        return f"{what} has dtype {got.dtype}; expected {expected.dtype}"
    if expected.numel() == 0:
        return None
    rtol, atol = tolerance or tolerances(expected.dtype)
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


# --- inputs --------------------------------------------------------------------------------------

def randint(generator: torch.Generator, low: int, high: int) -> int:
    """A random integer in [low, high), from ``generator``."""
    return int(torch.randint(low, high, (1,), generator=generator))


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")
