"""A realistic slip in each exercise of a chapter, graded in the sandbox: exactly 0 of its 3 points,
full marks for the notebook's other exercises, and a message that names the slip (the first of each
exercise's list in grader_submissions.py; the others are judged without a kernel in
test_grader_chapters.py)."""

from __future__ import annotations

import pytest

from grader_submissions import CHAPTER_EXERCISES, CHAPTER_MISTAKES, CHAPTERS, edited, write_submission
from llm_tutorial.assignments import grade, table


@pytest.mark.parametrize("stem,solution,test_id", CHAPTER_EXERCISES, ids=lambda value: value)
def test_a_subtle_slip_scores_zero_with_its_hint(stem, solution, test_id, tmp_path):
    teacher = CHAPTERS[stem]
    old, new, hint = CHAPTER_MISTAKES[f"{stem}/{solution}"][0]
    submission = write_submission(tmp_path / teacher.name, teacher, **{solution: edited(teacher, solution, old, new)})
    report = grade(submission, teacher, timeout=120)
    expected = [(test, 0.0 if test == test_id else 3.0, 3.0) for s, _, test in CHAPTER_EXERCISES if s == stem]
    assert [(s.grade_id, s.points, s.max_points) for s in report.scores] == expected, table(report)
    (slipped,) = [s for s in report.scores if s.grade_id == test_id]
    assert hint in slipped.message and report.isolated, table(report)


def test_a_solution_cell_that_also_uses_the_notebooks_data_still_scores(tmp_path):
    """The grader runs a chapter notebook's imports and definitions only: a line after the function
    that uses a value the notebook computes is skipped, not counted against the exercise."""
    teacher = CHAPTERS["ch09_faq"]
    source = edited(teacher, "stable_log_softmax", "### END SOLUTION",
                    "### END SOLUTION\nprint(stable_log_softmax(some_logits_the_notebook_computed))\n"
                    "check_stable_log_softmax(stable_log_softmax)")
    report = grade(write_submission(tmp_path / teacher.name, teacher, stable_log_softmax=source), teacher, timeout=120)
    assert report.points == 3 and report.scores[0].message == "passed", table(report)
