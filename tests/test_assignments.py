"""Coursework tools: nbgrader markers, student notebooks, and the autograder."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from llm_tutorial.assignments import (
    build_chapter,
    find_exercises,
    grade,
    strip_hidden_tests,
    strip_solutions,
    student_notebook,
    table,
)

ADD = '''def add(a, b):
    """a + b"""
    ### BEGIN SOLUTION
    return a + b
    ### END SOLUTION'''
ADD_TEST = """assert add(1, 2) == 3
### BEGIN HIDDEN TESTS
assert add(-1, 1) == 0
### END HIDDEN TESTS"""
SCORE = '''def attention_score(q, k):
    ### BEGIN SOLUTION
    return q * k / math.sqrt(4)
    ### END SOLUTION'''
SCORE_TEST = """assert attention_score(2.0, 3.0) > 0
### BEGIN HIDDEN TESTS
assert attention_score(2.0, 3.0) == 3.0, "scores must be divided by sqrt(d) = 2"
### END HIDDEN TESTS"""


def graded(source: str, grade_id: str, *, solution=False, points=None):
    cell = nbformat.v4.new_code_cell(source)
    meta = {"grade_id": grade_id, "solution": solution, "grade": points is not None, "locked": not solution,
            "schema_version": 3}
    if points is not None:
        meta["points"] = points
    cell.metadata["nbgrader"] = meta
    return cell


def teacher_notebook(add=ADD, score=SCORE) -> dict:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Exercises"),
        nbformat.v4.new_code_cell("import math"),
        graded(add, "add", solution=True),
        graded(ADD_TEST, "add_tests", points=2),
        graded(score, "attention_score", solution=True),
        graded(SCORE_TEST, "attention_score_tests", points=3),
    ]
    return json.loads(nbformat.writes(nb))


def write(path: Path, notebook: dict) -> Path:
    path.write_text(json.dumps(notebook))
    return path


def points(report) -> dict[str, float]:
    return {s.grade_id: s.points for s in report.scores}


def test_exercises_are_found_with_their_cells_and_points():
    exercises = find_exercises(teacher_notebook())
    assert [(e.grade_id, e.points, e.solution_cells, e.test_cell) for e in exercises] == [
        ("add_tests", 2.0, [2], 3),
        ("attention_score_tests", 3.0, [4], 5),
    ]


def test_markers_are_replaced_at_their_indentation():
    assert strip_solutions(ADD) == (
        'def add(a, b):\n    """a + b"""\n    raise NotImplementedError("replace this line with your solution")'
    )
    assert strip_hidden_tests(ADD_TEST) == "assert add(1, 2) == 3"
    with pytest.raises(ValueError, match="unbalanced"):
        strip_solutions("### BEGIN SOLUTION\nx = 1\n")


def test_solution_without_a_test_cell_is_an_error():
    notebook = teacher_notebook()
    notebook["cells"] = notebook["cells"][:3]
    with pytest.raises(ValueError, match="no graded test cell"):
        find_exercises(notebook)


def test_student_notebook_hides_solutions_and_hidden_tests():
    student = student_notebook(teacher_notebook())
    text = json.dumps(student)
    assert "return a + b" not in text and "math.sqrt(4)" not in text
    assert "add(-1, 1)" not in text and "BEGIN HIDDEN" not in text
    assert "assert add(1, 2) == 3" in text
    test_cells = [c for c in student["cells"] if c["metadata"].get("nbgrader", {}).get("grade")]
    assert all("raises-exception" in c["metadata"]["tags"] for c in test_cells)
    assert all(c["outputs"] == [] and c["execution_count"] is None for c in student["cells"] if c["cell_type"] == "code")


def test_reference_scores_full_marks_and_stubs_score_zero(tmp_path):
    teacher = write(tmp_path / "teacher.ipynb", teacher_notebook())
    assert points(grade(teacher, teacher, timeout=30)) == {"add_tests": 2, "attention_score_tests": 3}
    stubs = write(tmp_path / "student.ipynb", student_notebook(teacher_notebook()))
    report = grade(stubs, teacher, timeout=30)
    assert points(report) == {"add_tests": 0, "attention_score_tests": 0}
    assert "NotImplementedError" in report.scores[0].message
    assert not report.isolated  # no checks for this notebook: its tests ran in the student's kernel


def test_a_subtly_wrong_solution_loses_exactly_its_points(tmp_path):
    teacher = write(tmp_path / "teacher.ipynb", teacher_notebook())
    unscaled = SCORE.replace("return q * k / math.sqrt(4)", "return q * k")
    submission = write(tmp_path / "submission.ipynb", teacher_notebook(score=unscaled))
    report = grade(submission, teacher, timeout=30)
    assert points(report) == {"add_tests": 2, "attention_score_tests": 0}
    assert "sqrt(d)" in report.scores[1].message


def test_students_cannot_change_the_tests(tmp_path):
    teacher = write(tmp_path / "teacher.ipynb", teacher_notebook())
    cheat = teacher_notebook(score=SCORE.replace("return q * k / math.sqrt(4)", "return q * k"))
    cheat["cells"][5]["source"] = "pass"
    assert points(grade(write(tmp_path / "cheat.ipynb", cheat), teacher, timeout=30))["attention_score_tests"] == 0


def test_endless_loop_and_dead_kernel_score_zero_and_grading_goes_on(tmp_path):
    teacher = write(tmp_path / "teacher.ipynb", teacher_notebook())
    endless = ADD.replace("return a + b", "while True:\n        pass")
    report = grade(write(tmp_path / "loop.ipynb", teacher_notebook(add=endless)), teacher, timeout=3)
    assert points(report) == {"add_tests": 0, "attention_score_tests": 3}
    assert "stopped after 3 s" in report.scores[0].message
    crash = ADD.replace("return a + b", "import os\n    os._exit(1)")
    report = grade(write(tmp_path / "crash.ipynb", teacher_notebook(add=crash)), teacher, timeout=30)
    assert points(report) == {"add_tests": 0, "attention_score_tests": 3}
    assert "kernel died" in report.scores[0].message


def test_missing_solution_cell_scores_zero(tmp_path):
    teacher = write(tmp_path / "teacher.ipynb", teacher_notebook())
    partial = teacher_notebook()
    del partial["cells"][2]
    report = grade(write(tmp_path / "partial.ipynb", partial), teacher, timeout=30)
    assert points(report)["add_tests"] == 0 and "no cell with this grade_id" in report.scores[0].message


def test_report_gives_each_exercise_and_the_total(tmp_path):
    teacher = write(tmp_path / "teacher.ipynb", teacher_notebook())
    text = table(grade(teacher, teacher, timeout=30))
    assert "add_tests" in text and "total" in text and "5 / 5" in text and "(100%)" in text


def test_command_line_builds_and_grades(tmp_path):
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    write(notebooks / "ch42_toy.ipynb", teacher_notebook())
    build = subprocess.run([sys.executable, "-m", "llm_tutorial.assignments", "build", "42", "--notebooks", str(notebooks),
                            "--out", str(tmp_path / "student")], capture_output=True, text=True, check=True)
    assert "ch42_toy.ipynb" in build.stdout
    graded_run = subprocess.run([sys.executable, "-m", "llm_tutorial.assignments", "grade",
                                 str(tmp_path / "student" / "ch42_toy.ipynb"), "--source", str(notebooks / "ch42_toy.ipynb"),
                                 "--timeout", "30", "--json", str(tmp_path / "scores.json"), "--out", str(tmp_path / "grades")],
                                capture_output=True, text=True, check=True)
    assert "0 / 5" in graded_run.stdout
    assert json.loads((tmp_path / "scores.json").read_text())["scores"][0]["grade_id"] == "add_tests"
    assert (tmp_path / "grades" / "ch42_toy.txt").read_text().startswith("# ch42_toy.ipynb: ch42_toy")
    with pytest.raises(FileNotFoundError, match="chapters: ch42"):
        build_chapter("7", notebooks, tmp_path / "out")


@pytest.mark.parametrize("args, says", [
    (["build", "99"], "no notebook for chapter '99'"),
    (["build", "3", "--notebooks", "{tmp}/missing"], "no folder of notebooks"),
    (["grade", "{tmp}/missing.ipynb"], "no notebook or folder"),
    (["grade", "{tmp}/broken.ipynb", "--source", "{tmp}/broken.ipynb"], "is not a readable notebook"),
    (["grade", "{tmp}/empty"], "no submissions in"),
    (["grade", "{tmp}/flat"], "grade such notebooks with --source"),
    (["grade", "{tmp}/flat/alice.ipynb", "--source", "{tmp}/missing.ipynb"], "no teacher's notebook"),
    (["grade", "{tmp}/flat/alice.ipynb", "--timeout", "0"], "positive number of seconds"),
    (["frobnicate"], "invalid choice"),
])
def test_command_line_errors_are_one_line_with_exit_code_2(args, says, tmp_path, capsys):
    from llm_tutorial.assignments.__main__ import main

    (tmp_path / "broken.ipynb").write_text("{not json")
    (tmp_path / "empty").mkdir()
    (tmp_path / "flat").mkdir()
    write(tmp_path / "flat" / "alice.ipynb", teacher_notebook())
    assert main([a.replace("{tmp}", str(tmp_path)) for a in args]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.strip().splitlines()) == 1, captured.err
    assert captured.err.startswith("error: ") and says in captured.err
