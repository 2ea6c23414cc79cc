"""Exercises in nbgrader's format: where solutions and hidden tests sit in a notebook.

A graded exercise is a group of cells whose ``metadata["nbgrader"]`` says what they are:

- *solution* cells (``"solution": true``) hold the reference implementation between
  ``### BEGIN SOLUTION`` and ``### END SOLUTION``;
- one *test* cell (``"grade": true``, with ``"points"``) follows them; it may hold tests that
  students do not see, between ``### BEGIN HIDDEN TESTS`` and ``### END HIDDEN TESTS``.

These are nbgrader's own markers and metadata (schema version 3), so a teacher can also hand the
chapter notebooks to nbgrader directly. The solution cells of an exercise are those between the
previous test cell and its own test cell.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

BEGIN_SOLUTION, END_SOLUTION = "### BEGIN SOLUTION", "### END SOLUTION"
BEGIN_HIDDEN, END_HIDDEN = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
STUB = 'raise NotImplementedError("replace this line with your solution")'


@dataclass
class Exercise:
    """One graded exercise: its id, its points, and the indices of its cells in the notebook."""

    grade_id: str
    points: float
    test_cell: int
    solution_cells: list[int] = field(default_factory=list)


def read_notebook(path: Path) -> dict:
    """A notebook as a dict (nbformat 4), or ValueError saying why it is not one."""
    import nbformat

    try:
        return nbformat.reads(Path(path).read_text(encoding="utf-8"), as_version=4)
    except FileNotFoundError:
        raise ValueError(f"no file {path}") from None
    except Exception as error:  # nbformat raises several kinds for a broken file
        raise ValueError(f"{path} is not a readable notebook ({type(error).__name__}: {str(error)[:150]})") from None


def nbgrader_metadata(cell: dict) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def is_solution(cell: dict) -> bool:
    return cell.get("cell_type") == "code" and bool(nbgrader_metadata(cell).get("solution"))


def is_test(cell: dict) -> bool:
    return cell.get("cell_type") == "code" and bool(nbgrader_metadata(cell).get("grade"))


def find_exercises(notebook: dict) -> list[Exercise]:
    """The graded exercises of a notebook, in order. A solution cell with no test after it is an error."""
    exercises, pending = [], []
    for index, cell in enumerate(notebook["cells"]):
        if is_solution(cell):
            pending.append(index)
        if is_test(cell):
            meta = nbgrader_metadata(cell)
            if "grade_id" not in meta or "points" not in meta:
                raise ValueError(f"test cell {index} needs nbgrader grade_id and points, got {meta}")
            exercises.append(Exercise(meta["grade_id"], float(meta["points"]), index, pending))
            pending = []
    if pending:
        raise ValueError(f"solution cells {pending} have no graded test cell after them")
    return exercises


def _replace_regions(source: str, begin: str, end: str, replacement: str | None) -> str:
    """Replace every ``begin … end`` region (markers included) by ``replacement`` at the marker's
    indentation, or delete it when ``replacement`` is None."""
    pattern = re.compile(rf"^([ \t]*){re.escape(begin)}[^\n]*\n.*?^[ \t]*{re.escape(end)}[^\n]*(\n|$)", re.S | re.M)
    if source.count(begin) != source.count(end):
        raise ValueError(f"unbalanced {begin!r} / {end!r} markers in:\n{source}")

    def substitute(match: re.Match) -> str:
        return "" if replacement is None else f"{match.group(1)}{replacement}{match.group(2)}"

    return pattern.sub(substitute, source)


def strip_solutions(source: str) -> str:
    """The student's version of a solution cell: each solution region becomes a stub that raises."""
    return _replace_regions(source, BEGIN_SOLUTION, END_SOLUTION, STUB)


def strip_hidden_tests(source: str) -> str:
    """The student's version of a test cell: hidden tests removed."""
    return _replace_regions(source, BEGIN_HIDDEN, END_HIDDEN, None).rstrip("\n")
