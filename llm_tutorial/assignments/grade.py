"""Grading a submission: the teacher's notebook with the student's solution cells, executed.

The graded notebook is the *teacher's* notebook (with its hidden tests) in which only the
solution cells are taken from the submission, matched by their nbgrader ``grade_id``: a student
cannot change a test or a set-up cell. Every code cell runs in a Jupyter kernel with a time limit.
A cell that runs forever is stopped; a cell that kills the kernel (``os._exit``, a segfault) is
recorded; either way the kernel is restarted, the cells that had succeeded are replayed, and
grading goes on. An exercise scores its points when its solution cells and its test cell all run
without error, and zero otherwise, with the reason.
"""

from __future__ import annotations

import copy
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .exercises import find_exercises, nbgrader_metadata


@dataclass
class Score:
    grade_id: str
    points: float
    max_points: float
    message: str  # "passed", or why not


def merge_submission(source: dict, submission: dict) -> tuple[dict, dict[str, str]]:
    """The teacher's notebook with the submission's solution cells; also the ids it lacks."""
    submitted = {
        nbgrader_metadata(cell).get("grade_id"): cell
        for cell in submission["cells"]
        if nbgrader_metadata(cell).get("solution")
    }
    merged, missing = copy.deepcopy(source), {}
    for cell in merged["cells"]:
        meta = nbgrader_metadata(cell)
        if meta.get("solution"):
            if meta.get("grade_id") in submitted:
                cell["source"] = submitted[meta["grade_id"]]["source"]
            else:
                missing[meta.get("grade_id")] = "the submission has no cell with this grade_id"
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
    return merged, missing


def _error_message(cell) -> str | None:
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            return f"{output['ename']}: {output['evalue']}".strip()
    return None


def execute(notebook: dict, timeout: float, env: dict[str, str], workdir: Path) -> dict[int, str | None]:
    """Run every code cell; return {cell index: None when it ran cleanly, else what went wrong}."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    nb = copy.deepcopy(notebook)
    code = [i for i, cell in enumerate(nb.cells) if cell.cell_type == "code"]
    outcome: dict[int, str | None] = {}
    position = 0
    while position < len(code):
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=True,
                                resources={"metadata": {"path": str(workdir)}})
        with client.setup_kernel(env=env):
            for index in code[:position]:  # a fresh kernel: replay what had succeeded
                if outcome[index] is None:
                    client.execute_cell(nb.cells[index], index)
            while position < len(code):
                index = code[position]
                position += 1
                try:
                    client.execute_cell(nb.cells[index], index)
                except CellTimeoutError:
                    outcome[index] = f"stopped after {timeout:g} s (an endless loop?)"
                    break
                except DeadKernelError:
                    outcome[index] = "the Python kernel died while running this cell (a crash or exit)"
                    break
                outcome[index] = _error_message(nb.cells[index])
    return outcome


def grade(submission: Path, source: Path, *, timeout: float = 120.0, quick: bool = True) -> list[Score]:
    """Grade ``submission`` against the teacher's notebook ``source``; one Score per exercise."""
    import nbformat

    teacher = nbformat.read(source, as_version=4)
    student = nbformat.read(submission, as_version=4)
    exercises = find_exercises(teacher)
    if not exercises:
        raise ValueError(f"{source} has no graded exercises")
    merged, missing = merge_submission(teacher, student)
    env = {**os.environ, "LLM_TUTORIAL_QUICK": "1" if quick else "0"}
    with tempfile.TemporaryDirectory() as workdir:
        outcome = execute(merged, timeout, env, Path(workdir))
    scores = []
    for exercise in exercises:
        problems = [missing[nbgrader_metadata(teacher["cells"][i]).get("grade_id")]
                    for i in exercise.solution_cells
                    if nbgrader_metadata(teacher["cells"][i]).get("grade_id") in missing]
        problems += [f"your solution: {outcome[i]}" for i in exercise.solution_cells if outcome.get(i)]
        if outcome.get(exercise.test_cell):
            problems.append(f"tests: {outcome[exercise.test_cell]}")
        passed = not problems
        scores.append(Score(exercise.grade_id, exercise.points if passed else 0.0, exercise.points,
                            "passed" if passed else problems[0]))
    return scores


def report(scores: list[Score]) -> str:
    """A table of the scores and their total, for the terminal."""
    width = max(len(s.grade_id) for s in scores)
    lines = [f"{'exercise':<{width}}  {'score':<11}  result"]
    for s in scores:
        first_line = s.message.splitlines()[0] if s.message else ""
        lines.append(f"{s.grade_id:<{width}}  {s.points:>5g} / {s.max_points:<3g}  {first_line}")
    got, total = sum(s.points for s in scores), sum(s.max_points for s in scores)
    lines.append(f"{'total':<{width}}  {got:>5g} / {total:<3g}  ({100 * got / total:.0f}%)")
    return "\n".join(lines)
