"""The graded exercises of each chapter notebook, judged by the grader in its own process.

Fast tests call the reference solutions and their common slips here and judge them on the cases
of several seeds: references pass, each slip gets its hint. The slow test grades the reference
(full marks) and the handed-out stubs (0) of each chapter in the sandbox;
test_grader_chapter_mistakes.py grades a slip of each exercise.
"""

from __future__ import annotations

import ast
import copy
import math

import nbformat
import pytest
import torch
import torch.nn.functional as F

from grader_submissions import (
    CHAPTER_EXERCISES,
    CHAPTER_MISTAKES,
    CHAPTERS,
    NOTEBOOKS,
    edited,
    reference_source,
    write_submission,
)
from llm_tutorial.assignments import grade, table
from llm_tutorial.assignments.checks import CHAPTERS as CHECKED_CHAPTERS
from llm_tutorial.assignments.checks import CHECKED_NOTEBOOKS, checks_for, definitions_only
from llm_tutorial.assignments.exercises import find_exercises, is_solution, is_test
from llm_tutorial.assignments.runner import run_lenient

SEEDS = (0, 1, 2)


def first_problem(stem: str, test_id: str, source: str, seed: int) -> str | None:
    """Define the exercise's function from ``source`` here and judge it on the cases of ``seed``
    drawn by the check of the test cell ``test_id``."""
    namespace = {"math": math, "torch": torch, "F": F}
    exec(compile(source, f"<{stem} solution>", "exec"), namespace)
    check = checks_for(stem).checks[test_id]
    for case in check.cases(torch.Generator().manual_seed(seed)):
        try:
            got = namespace[case.function](*copy.deepcopy(case.args))
        except Exception as error:  # noqa: BLE001 - a slip may raise; the grader reports it likewise
            return f"on {case.label}: raised {type(error).__name__}: {error}"
        message = check.judge(case, got)
        if message is not None:
            return f"on {case.label}: {message}"
    return None


def test_every_graded_notebook_of_the_book_has_a_check_for_each_exercise():
    """No notebook of the book falls back to running its hidden tests in the student's kernel."""
    assert set(CHECKED_CHAPTERS) == set(CHAPTERS)
    graded = 0
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        exercises = find_exercises(nbformat.read(path, as_version=4))
        if exercises:
            checks = checks_for(path.stem)
            assert checks is not None, f"{path.name} has graded exercises but no grader checks"
            assert [e.grade_id for e in exercises] == list(checks.checks), path.name
            graded += 1
    assert graded == len(CHECKED_NOTEBOOKS)


def test_every_exercise_of_a_chapter_has_its_slips_and_every_slip_its_exercise():
    """Each exercise is tested against at least two realistic mistakes, and no list of mistakes is orphaned."""
    exercises = {f"{stem}/{solution}" for stem, solution, _ in CHAPTER_EXERCISES}
    assert set(CHAPTER_MISTAKES) == exercises
    assert all(len(mistakes) >= 2 for mistakes in CHAPTER_MISTAKES.values())


def test_definitions_only_keeps_imports_constants_functions_and_classes():
    cell = ("import math\nfrom pathlib import Path\nx = train_for_an_hour()\nV, T = 50257, 1024\nNAME: Missing = 'a'\n"
            "for i in range(3):\n    print(i)\ndef helper(n=3):\n    return n  # comment\nclass Box:\n    size = V\n"
            "def needs_data(x=eval_x):\n    return x\nif 'google.colab' in sys.modules:\n    import colab\n")
    kept = definitions_only(cell)
    assert "train_for_an_hour" not in kept and "print" not in kept and "colab" not in kept and "Missing" not in kept
    namespace = {}
    exec(kept, namespace)
    assert namespace["math"] is math and namespace["V"] == 50257 and namespace["NAME"] == "a"
    assert namespace["helper"]() == 3 and namespace["Box"].size == 50257
    assert "needs_data" not in namespace  # its default is a value the notebook computes: skipped
    assert definitions_only("x = load()\nprint(x)\n") == ""
    assert definitions_only("%matplotlib inline\nimport os\n") == "import os\n"


def test_a_students_cell_runs_leniently_but_its_definitions_must_work():
    namespace = {}
    run_lenient("def f(x):\n    return 2 * x\nprint(f(data_the_notebook_computed))\ny = f(3)\n", "<cell>", namespace)
    assert namespace["f"](2) == 4 and namespace["y"] == 6
    for broken in ("def g(x=data_the_notebook_computed):\n    return x\n", "import math\nclass C(Missing):\n    pass\n"):
        with pytest.raises(NameError):
            run_lenient(broken, "<cell>", {})
    with pytest.raises(ZeroDivisionError):
        run_lenient("x = 1 / 0\n", "<cell>", {})


@pytest.mark.parametrize("stem", CHAPTERS)
def test_set_up_definitions_never_replace_the_students_function(stem):
    """The grader runs the notebook's imports and definitions around the student's cell: none may
    define the function being graded, nor fail to parse."""
    notebook = nbformat.read(CHAPTERS[stem], as_version=4)
    functions = {case.function for check in checks_for(stem).checks.values()
                 for case in check.cases(torch.Generator().manual_seed(0))}
    for cell in notebook.cells:
        if cell.cell_type == "code" and not is_solution(cell) and not is_test(cell):
            tree = ast.parse(definitions_only(cell.source))
            defined = {node.name for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
            defined |= {name.id for node in tree.body if isinstance(node, ast.Assign)
                        for target in node.targets for name in ast.walk(target) if isinstance(name, ast.Name)}
            assert not defined & functions, f"a set-up cell of {stem} defines {defined & functions}"


@pytest.mark.parametrize("stem,solution,test_id", CHAPTER_EXERCISES, ids=lambda value: value)
def test_reference_solution_passes_on_fresh_inputs(stem, solution, test_id):
    source = reference_source(CHAPTERS[stem], solution)
    for seed in SEEDS:
        assert first_problem(stem, test_id, source, seed) is None, f"seed {seed}"


TEST_ID = {f"{stem}/{solution}": test_id for stem, solution, test_id in CHAPTER_EXERCISES}


@pytest.mark.parametrize("exercise,mistake", [(exercise, m) for exercise, ms in CHAPTER_MISTAKES.items() for m in ms],
                         ids=lambda value: value if isinstance(value, str) else value[2][:30])
def test_each_slip_fails_with_its_hint(exercise, mistake):
    stem, solution = exercise.split("/")
    old, new, hint = mistake
    source = edited(CHAPTERS[stem], solution, old, new)
    for seed in SEEDS:
        message = first_problem(stem, TEST_ID[exercise], source, seed)
        assert message is not None and hint in message, f"seed {seed}: {message}"


@pytest.mark.parametrize("stem", CHAPTERS)
def test_reference_scores_full_marks_and_stub_scores_zero_in_the_sandbox(stem, tmp_path):
    teacher = CHAPTERS[stem]
    reference = grade(teacher, teacher, timeout=120)
    n_exercises = len(checks_for(stem).checks)
    assert reference.isolated and reference.points == reference.max_points == 3 * n_exercises, table(reference)
    assert [s.message for s in reference.scores] == ["passed"] * n_exercises and not reference.problems
    stub = grade(write_submission(tmp_path / teacher.name, teacher, stubs=True), teacher, timeout=120)
    assert stub.points == 0 and all("NotImplementedError" in s.message for s in stub.scores), table(stub)
