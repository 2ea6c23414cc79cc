"""Attacks on the chapter notebooks' exercises: each scores exactly what its answer earns, 0.

Graded the old way (hidden tests in the student's kernel), the first two would pass: the first
silences the tests and patches their comparisons, the second replaces the package function that
chapter 8's hidden test compares with. Here the grader judges the returned data in its own
process, against its own references, and says what is wrong with the answer.
"""

from __future__ import annotations

import pytest

from grader_submissions import (
    CHAPTERS,
    REPLACE_THE_REFERENCE,
    SILENCE_THE_CHAPTER_TESTS,
    SPANS_THAT_EQUAL_EVERYTHING,
    chapter_exercises,
    write_submission,
)
from llm_tutorial.assignments import grade, table

ATTACKS = {
    "silenced tests and patched comparisons": ("ch09_faq", SILENCE_THE_CHAPTER_TESTS,
                                               "subtract the row maximum before exponentiating"),
    "the notebook's reference replaced": ("ch08_trends_challenges", REPLACE_THE_REFERENCE, "not its largest magnitude"),
    "results that equal everything": ("ch06_applications", SPANS_THAT_EQUAL_EVERYTHING, "each span should be a pair of ints"),
}


@pytest.mark.parametrize("attack", ATTACKS)
def test_an_attack_on_a_chapter_exercise_earns_nothing(attack, tmp_path):
    stem, source, words = ATTACKS[attack]
    teacher = CHAPTERS[stem]
    (solution, test_id), *others = chapter_exercises(stem)  # the attack is on the first exercise
    submission = write_submission(tmp_path / teacher.name, teacher, **{solution: source})
    report = grade(submission, teacher, timeout=60)
    points = {s.grade_id: s.points for s in report.scores}
    assert points[test_id] == 0 and report.isolated and not report.problems, table(report)
    assert all(points[test] == 3 for _, test in others), table(report)  # the others keep their reference answers
    (attacked,) = [s for s in report.scores if s.grade_id == test_id]
    assert words in attacked.message, table(report)
