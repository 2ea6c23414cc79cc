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
    report,
    strip_hidden_tests,
    strip_solutions,
    student_notebook,
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


def points(scores) -> dict[str, float]:
    return {s.grade_id: s.points for s in scores}


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
    scores = grade(stubs, teacher, timeout=30)
    assert points(scores) == {"add_tests": 0, "attention_score_tests": 0}
    assert "NotImplementedError" in scores[0].message


def test_a_subtly_wrong_solution_loses_exactly_its_points(tmp_path):
    teacher = write(tmp_path / "teacher.ipynb", teacher_notebook())
    unscaled = SCORE.replace("return q * k / math.sqrt(4)", "return q * k")
    submission = write(tmp_path / "submission.ipynb", teacher_notebook(score=unscaled))
    scores = grade(submission, teacher, timeout=30)
    assert points(scores) == {"add_tests": 2, "attention_score_tests": 0}
    assert "sqrt(d)" in scores[1].message


def test_students_cannot_change_the_tests(tmp_path):
    teacher = write(tmp_path / "teacher.ipynb", teacher_notebook())
    cheat = teacher_notebook(score=SCORE.replace("return q * k / math.sqrt(4)", "return q * k"))
    cheat["cells"][5]["source"] = "pass"
    assert points(grade(write(tmp_path / "cheat.ipynb", cheat), teacher, timeout=30))["attention_score_tests"] == 0


def test_endless_loop_and_dead_kernel_score_zero_and_grading_goes_on(tmp_path):
    teacher = write(tmp_path / "teacher.ipynb", teacher_notebook())
    endless = ADD.replace("return a + b", "while True:\n        pass")
    scores = grade(write(tmp_path / "loop.ipynb", teacher_notebook(add=endless)), teacher, timeout=3)
    assert points(scores) == {"add_tests": 0, "attention_score_tests": 3}
    assert "stopped after 3 s" in scores[0].message
    crash = ADD.replace("return a + b", "import os\n    os._exit(1)")
    scores = grade(write(tmp_path / "crash.ipynb", teacher_notebook(add=crash)), teacher, timeout=30)
    assert points(scores) == {"add_tests": 0, "attention_score_tests": 3}
    assert "kernel died" in scores[0].message


def test_missing_solution_cell_scores_zero(tmp_path):
    teacher = write(tmp_path / "teacher.ipynb", teacher_notebook())
    partial = teacher_notebook()
    del partial["cells"][2]
    scores = grade(write(tmp_path / "partial.ipynb", partial), teacher, timeout=30)
    assert points(scores)["add_tests"] == 0 and "no cell with this grade_id" in scores[0].message


def test_report_gives_each_exercise_and_the_total(tmp_path):
    teacher = write(tmp_path / "teacher.ipynb", teacher_notebook())
    text = report(grade(teacher, teacher, timeout=30))
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
                                 "--timeout", "30", "--json", str(tmp_path / "scores.json")],
                                capture_output=True, text=True, check=True)
    assert "0 / 5" in graded_run.stdout
    assert json.loads((tmp_path / "scores.json").read_text())[0]["grade_id"] == "add_tests"
    with pytest.raises(FileNotFoundError, match="chapters: ch42"):
        build_chapter("7", notebooks, tmp_path / "out")


# The book's graded assignments: reference solutions, stubs, and subtly wrong solutions.
NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def edited(tmp_path: Path, name: str, grade_id: str, old: str, new: str) -> Path:
    """A copy of the teacher's notebook with one solution cell edited (a student's mistake)."""
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    cell = next(c for c in notebook.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)
    assert old in cell.source, f"{old!r} not in the {grade_id} solution"
    cell.source = cell.source.replace(old, new)
    path = tmp_path / name
    nbformat.write(notebook, path)
    return path


ASSIGNMENTS = {
    "ch03_assignment_attention.ipynb": (
        {"causal_mask_tests": 2, "attention_tests": 4, "heads_tests": 2, "self_attention_tests": 4},
        # attention without the 1/sqrt(d) scale: the attention and the layer built on it fail.
        ("attention", " / math.sqrt(q.shape[-1])", "", {"attention_tests", "self_attention_tests"}),
    ),
    "ch07_assignment_bpe.ipynb": (
        {"pair_counts_tests": 2, "merge_word_tests": 2, "train_bpe_tests": 4, "encode_tests": 4},
        # ties broken towards the largest pair: only training is wrong; encoding uses given merges.
        ("train_bpe", "min(counts, key=lambda pair: (-counts[pair], pair))",
         "max(counts, key=lambda pair: (counts[pair], pair))", {"train_bpe_tests"}),
    ),
    "ch05_assignment_triton_softmax.ipynb": (
        {"reference_softmax_tests": 2, "kernel_power_of_two_tests": 4, "kernel_any_length_tests": 4,
         "kernel_stability_tests": 2},
        # a kernel that forgets to subtract the row maximum overflows on large inputs only.
        ("softmax_kernel", "    x = x - tl.max(x, axis=0)\n", "", {"kernel_stability_tests"}),
    ),
}


@pytest.mark.parametrize("name", sorted(ASSIGNMENTS))
def test_book_assignment_reference_stub_and_subtle_mistake(name, tmp_path):
    full, (grade_id, old, new, losing) = ASSIGNMENTS[name]
    teacher = NOTEBOOKS / name
    assert points(grade(teacher, teacher, timeout=120)) == full
    stub = write(tmp_path / f"stub_{name}", json.loads(nbformat.writes(student_notebook(nbformat.read(teacher, 4)))))
    assert set(points(grade(stub, teacher, timeout=120)).values()) == {0}
    wrong = points(grade(edited(tmp_path, name, grade_id, old, new), teacher, timeout=120))
    assert wrong == {exercise: 0 if exercise in losing else value for exercise, value in full.items()}
