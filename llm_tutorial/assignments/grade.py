"""Grading one submission: untrusted code computes, the grader judges.

For the book's notebooks (each has :mod:`.checks`) the student's notebook is never executed as it
is. In a :class:`~.sandbox.Sandbox` kernel the grader first runs the teacher's set-up cells
(imports, given helpers); then, for each exercise, one grader cell (:mod:`.runner`) builds a fresh
namespace from the set-up cells, the student's solution cells *of that exercise* and the teacher's
reference cells of every other exercise, calls the student's functions on inputs drawn here, and
writes the results to a file as data. The grader reads that file and judges each result in its
own process against an independent reference (:mod:`.checks`). No test, hidden or not, reaches the
kernel, and nothing the student's code does to its interpreter can change a verdict. A cell that
runs past the time limit or kills its kernel costs that exercise only: the kernel and everything
it started are killed, and a fresh one grades the next exercise.

Of a chapter notebook, whose set-up cells also load data and train models, only the imports and
definitions run (:func:`.checks.definitions_only`).

Notebooks without checks (a teacher's own nbgrader notebook) are graded the old way — the teacher's
notebook with the student's solution cells, hidden tests included, run in the sandbox — and the
report says that these tests ran in the student's kernel, where they can be fooled.

Around each submission the grader keeps the bytes of the teacher's notebook and of the package's
source: if the student's code changed any of them, they are put back and the report says so.
"""

from __future__ import annotations

import copy
import hashlib
import math
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

import llm_tutorial

from . import transport
from .checks import Case, checks_for
from .exercises import Exercise, find_exercises, is_solution, is_test, nbgrader_metadata, read_notebook
from .sandbox import Outcome, Sandbox, SandboxError

SETUP_TIMEOUT = 600.0  # seconds for the teacher's set-up cells (imports) in a fresh kernel


class GradingError(Exception):
    """A problem with the grading itself (the teacher's notebook, the environment), not with a
    submission: grading cannot go on, and the message says what to do."""


@dataclass
class Score:
    grade_id: str
    points: float
    max_points: float
    message: str  # "passed", or why not


@dataclass
class Report:
    """Everything the grader found about one submission."""

    student: str
    notebook: str
    scores: list[Score]
    isolated: bool = True  # False: the tests ran in the student's kernel (a notebook without checks)
    seed: int = 0
    source_sha256: str = ""
    problems: list[str] = field(default_factory=list)  # beyond single exercises: tampering, a broken file
    seconds: float = 0.0

    @property
    def points(self) -> float:
        return sum(s.points for s in self.scores)

    @property
    def max_points(self) -> float:
        return sum(s.max_points for s in self.scores)


def positive_seconds(value: float) -> float:
    """``value`` when it is a positive, finite number of seconds; else a ValueError that says so."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"a time limit must be a number of seconds, got {value!r}") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"a time limit must be a positive, finite number of seconds, got {value!r}")
    return seconds


def submitted_solutions(submission: dict) -> dict[str, str]:
    """The student's solution cells, by grade_id (the first of each id)."""
    found = {}
    for cell in submission.get("cells", []):
        grade_id = nbgrader_metadata(cell).get("grade_id")
        if is_solution(cell) and grade_id not in found:
            found[grade_id] = "".join(cell.get("source", ""))
    return found


# --- guarding the grader's own files --------------------------------------------------------------

class FileGuard:
    """The bytes of files a submission must not change; ``restore`` puts back any that changed and
    names them (and any new source file in the guarded folders)."""

    def __init__(self, files: list[Path], folders: list[Path]):
        self.folders = folders
        self.saved = {p: p.read_bytes() for p in files}
        for folder in folders:
            self.saved.update({p: p.read_bytes() for p in folder.rglob("*.py")})

    def restore(self) -> list[str]:
        """Put every guarded file back as it was; the paths that had changed."""
        changed = []
        for path, data in self.saved.items():
            try:
                same = path.read_bytes() == data
            except OSError:
                same = False
            if not same:
                changed.append(str(path))
                path.write_bytes(data)
        for folder in self.folders:  # new files are reported, not deleted: they may be someone's work
            changed += [f"{path} (new)" for path in folder.rglob("*.py") if path not in self.saved]
        return changed


def package_folder() -> Path:
    return Path(llm_tutorial.__file__).resolve().parent


# --- grading ------------------------------------------------------------------------------------

def grade(submission: Path, source: Path, *, timeout: float = 120.0, quick: bool = True, seed: int | None = None,
          student: str | None = None) -> Report:
    """Grade the notebook ``submission`` against the teacher's notebook ``source``.

    ``timeout`` is the limit in seconds for each exercise (notebooks with checks) or each cell
    (notebooks without). Raises :class:`GradingError` when the teacher's side is at fault.
    """
    timeout = positive_seconds(timeout)
    try:
        teacher_bytes = Path(source).read_bytes()
        teacher = read_notebook(source)
        exercises = find_exercises(teacher)
    except (OSError, ValueError) as error:
        raise GradingError(f"the teacher's notebook cannot be used: {error}") from None
    if not exercises:
        raise GradingError(f"{source} has no graded exercises (nbgrader test cells with points)")
    seed = secrets.randbelow(2**31) if seed is None else int(seed)
    report = Report(student or Path(submission).stem, Path(source).name, [], seed=seed,
                    source_sha256=hashlib.sha256(teacher_bytes).hexdigest())
    started = time.monotonic()
    try:
        student_nb = read_notebook(submission)
    except ValueError as error:
        report.problems.append(str(error))
        report.scores = [Score(e.grade_id, 0.0, e.points, f"not graded: {error}") for e in exercises]
        return report
    guard = FileGuard([Path(source).resolve()], [package_folder()])
    env = {"LLM_TUTORIAL_QUICK": "1" if quick else "0"}
    checks = checks_for(Path(source).stem)
    try:
        if checks is not None:
            report.scores = _grade_isolated(teacher, student_nb, exercises, checks, timeout, seed, env, report)
        else:
            report.isolated = False
            report.scores = _grade_in_kernel(teacher, student_nb, exercises, timeout, env)
    except SandboxError as error:
        raise GradingError(f"no Jupyter kernel could be started for grading ({error}); "
                           "install the coursework extra: pip install 'llm-tutorial[coursework]'") from None
    finally:
        changed = guard.restore()
    if changed:
        report.problems.append("the submission's code changed the grader's files, which were put back: " + ", ".join(changed))
        report.scores = [Score(s.grade_id, 0.0, s.max_points, "not graded: the submission changed the grader's files")
                         for s in report.scores]
    report.seconds = round(time.monotonic() - started, 2)
    return report


def _student_cells(exercises: list[Exercise]) -> dict[str, list[int]]:
    """The solution cells each exercise grades: its own, or (for an exercise that has none, like the
    kernel's second and third tests) those of the nearest exercise before it that has some."""
    owned, last = {}, []
    for exercise in exercises:
        last = exercise.solution_cells or last
        owned[exercise.grade_id] = last
    return owned


def _warm_up(box: Sandbox, setup_sources: list[str]) -> None:
    """Run the teacher's set-up cells once in a fresh kernel (imports), before any student code."""
    for source in setup_sources:
        outcome = box.run(source, SETUP_TIMEOUT)
        if not outcome.ok:
            raise GradingError(f"the notebook's set-up cells fail in the grading kernel ({outcome.status}: "
                               f"{outcome.error or 'no message'}); check the environment, e.g. run the notebook yourself")


def _grade_isolated(teacher, student_nb, exercises, checks, timeout, seed, env, report) -> list[Score]:
    import torch

    cells = teacher["cells"]
    prepare = checks.setup or (lambda source: source)  # a chapter notebook: only its imports and definitions
    setup = {i: prepare("".join(c["source"])) for i, c in enumerate(cells)
             if c["cell_type"] == "code" and not is_solution(c) and not is_test(c)}
    setup = {i: source for i, source in setup.items() if source.strip()}
    submitted = submitted_solutions(student_nb)
    owned = _student_cells(exercises)
    scores = []
    with Sandbox(env) as box:
        _warm_up(box, list(setup.values()))
        for number, exercise in enumerate(exercises):
            check = checks.checks.get(exercise.grade_id)
            if check is None:
                raise GradingError(f"the grader has no check for exercise {exercise.grade_id!r}")
            ids = [nbgrader_metadata(cells[i])["grade_id"] for i in owned[exercise.grade_id]]
            absent = [g for g in ids if g not in submitted]
            if absent:
                scores.append(Score(exercise.grade_id, 0.0, exercise.points,
                                    f"your notebook has no solution cell with grade_id {absent[0]!r}: "
                                    "write your answer in the cells you were handed, and keep their metadata"))
                continue
            plan = []
            for i, cell in enumerate(cells):
                grade_id = nbgrader_metadata(cell).get("grade_id")
                if i in owned[exercise.grade_id]:  # lenient where the notebook's computed values are missing
                    plan.append({"name": f"{grade_id} cell", "source": submitted[grade_id], "student": True,
                                 "lenient": checks.setup is not None})
                elif is_solution(cell):
                    plan.append({"name": f"reference {grade_id} cell", "source": "".join(cell["source"]), "student": False})
                elif i in setup:
                    plan.append({"name": f"set-up cell {i}", "source": setup[i], "student": False})
            cases = check.cases(torch.Generator().manual_seed(seed + number))
            message = _run_and_judge(box, plan, cases, check, timeout, report)
            scores.append(Score(exercise.grade_id, exercise.points if message is None else 0.0, exercise.points,
                                message or "passed"))
    return scores


def _run_and_judge(box: Sandbox, plan: list[dict], cases: list[Case], check, timeout: float, report: Report) -> str | None:
    """Run one exercise in the kernel; None when every case is right, else the first problem."""
    tensors: dict = {}
    calls = [{"function": c.function, "args": transport.encode(list(c.args), tensors, [2**62, 2**62])} for c in cases]
    token = secrets.token_hex(8)
    request, result = box.workdir / f"request-{token}.safetensors", box.workdir / f"result-{token}.safetensors"
    transport.save(request, {"cells": plan, "calls": calls, "on_device": check.on_device}, tensors)
    outcome = box.run(f"import llm_tutorial.assignments.runner as _grader\n_grader.run({str(request)!r}, {str(result)!r})",
                      timeout)
    if outcome.status in ("timeout", "died"):
        box.restart()
        _warm_up(box, [p["source"] for p in plan if p["name"].startswith("set-up")])
        if outcome.status == "timeout":
            return f"stopped after {timeout:g} s: your code ran too long (an endless loop?)"
        return "the Python kernel died while running your code (a crash, exit() or os._exit?)"
    if outcome.status == "error":
        return (f"the grader's cell failed in your kernel ({outcome.error}); does your code change Python's "
                "built-ins or the modules the grader uses?")
    try:
        document, out_tensors = transport.load(result)
        cell_errors, results = document["cells"], document["results"]
        if not isinstance(cell_errors, list) or not isinstance(results, list) or len(results) != len(cases):
            raise transport.TransportError("results of the wrong shape")
    except (transport.TransportError, KeyError, TypeError) as error:
        return (f"the grader could not read your results: {error}; does your code change Python's built-ins "
                "or the files and modules the grader uses?")
    finally:
        request.unlink(missing_ok=True)
        result.unlink(missing_ok=True)
    for entry in cell_errors:
        if not isinstance(entry, dict):
            return "the grader could not read your results"
        if entry.get("student"):
            return f"your {entry.get('cell', 'solution cell')} raised {entry.get('error')}"
        report.problems.append(f"the notebook's {entry.get('cell')} failed while grading: {entry.get('error')}")
        return f"not graded: the notebook's own {entry.get('cell')} failed ({entry.get('error')}); tell your teacher"
    for case, entry in zip(cases, results):
        message = _judge_one(case, entry, out_tensors, check)
        if message is not None:
            return f"on {case.label}: {message}"
    return None


def _judge_one(case: Case, entry, tensors: dict, check) -> str | None:
    if not isinstance(entry, dict):
        return "the grader could not read your result"
    if entry.get("missing"):
        return f"your notebook defines no function {case.function}"
    if "error" in entry:
        return f"your code raised {entry['error']}"
    try:
        value = transport.decode(entry.get("value"), tensors)
    except transport.TransportError as error:
        return f"the grader could not read your result ({error})"
    try:
        return check.judge(case, value)
    except Exception as error:  # a result of a shape the judge did not foresee
        return f"your result could not be compared with the expected one ({type(error).__name__}: {str(error)[:150]})"


# --- notebooks without checks: the teacher's tests, run in the student's kernel -------------------

def merge_submission(source: dict, submission: dict) -> tuple[dict, dict[str, str]]:
    """The teacher's notebook with the submission's solution cells; also the ids it lacks."""
    submitted = submitted_solutions(submission)
    merged, missing = copy.deepcopy(source), {}
    for cell in merged["cells"]:
        meta = nbgrader_metadata(cell)
        if meta.get("solution"):
            if meta.get("grade_id") in submitted:
                cell["source"] = submitted[meta["grade_id"]]
            else:
                missing[meta.get("grade_id")] = "the submission has no cell with this grade_id"
    return merged, missing


def _grade_in_kernel(teacher, student_nb, exercises, timeout, env) -> list[Score]:
    merged, missing = merge_submission(teacher, student_nb)
    code = [i for i, cell in enumerate(merged["cells"]) if cell["cell_type"] == "code"]
    outcome: dict[int, Outcome] = {}
    with Sandbox(env) as box:
        for index in code:
            result = box.run("".join(merged["cells"][index]["source"]), timeout)
            outcome[index] = result
            if result.status in ("timeout", "died"):  # a fresh kernel: replay what had succeeded
                box.restart()
                for done in code[: code.index(index)]:
                    if outcome[done].ok:
                        box.run("".join(merged["cells"][done]["source"]), timeout)
    scores = []
    for exercise in exercises:
        problems = [missing[g] for i in exercise.solution_cells if (g := nbgrader_metadata(teacher["cells"][i]).get("grade_id")) in missing]
        problems += [f"your solution: {_outcome_text(outcome[i], timeout)}" for i in exercise.solution_cells if not outcome[i].ok]
        if not outcome[exercise.test_cell].ok:
            problems.append(f"tests: {_outcome_text(outcome[exercise.test_cell], timeout)}")
        scores.append(Score(exercise.grade_id, 0.0 if problems else exercise.points, exercise.points,
                            problems[0] if problems else "passed"))
    return scores


def _outcome_text(outcome: Outcome, timeout: float) -> str:
    if outcome.status == "timeout":
        return f"stopped after {timeout:g} s (an endless loop?)"
    if outcome.status == "died":
        return "the Python kernel died while running this cell (a crash or exit)"
    return outcome.error
