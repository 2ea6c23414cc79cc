"""A realistic slip in each chapter's exercise, graded in the sandbox: exactly 0 of 3 points, with a
message that names the slip (the first of each chapter's list in grader_submissions.py; the others
are judged without a kernel in test_grader_chapters.py)."""

from __future__ import annotations

import pytest

from grader_submissions import CHAPTER_MISTAKES, CHAPTERS, chapter_exercise, edited, write_submission
from llm_tutorial.assignments import grade, table
from llm_tutorial.assignments.checks import checks_for


@pytest.mark.parametrize("stem", CHAPTERS)
def test_a_subtle_slip_scores_zero_with_its_hint(stem, tmp_path):
    teacher = CHAPTERS[stem]
    grade_id = chapter_exercise(stem)
    (test_id,) = checks_for(stem).checks
    old, new, hint = CHAPTER_MISTAKES[stem][0]
    submission = write_submission(tmp_path / teacher.name, teacher, **{grade_id: edited(teacher, grade_id, old, new)})
    report = grade(submission, teacher, timeout=120)
    assert [(s.grade_id, s.points, s.max_points) for s in report.scores] == [(test_id, 0.0, 3.0)], table(report)
    assert hint in report.scores[0].message and report.isolated, table(report)


def test_a_solution_cell_that_also_uses_the_notebooks_data_still_scores(tmp_path):
    """The grader runs a chapter notebook's imports and definitions only: a line after the function
    that uses a value the notebook computes is skipped, not counted against the exercise."""
    teacher = CHAPTERS["ch09_faq"]
    source = edited(teacher, "stable_log_softmax", "### END SOLUTION",
                    "### END SOLUTION\nprint(stable_log_softmax(some_logits_the_notebook_computed))\n"
                    "check_stable_log_softmax(stable_log_softmax)")
    report = grade(write_submission(tmp_path / teacher.name, teacher, stable_log_softmax=source), teacher, timeout=120)
    assert report.points == 3 and report.scores[0].message == "passed", table(report)
