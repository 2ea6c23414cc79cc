"""Attacks on the chapter notebooks' exercises: each scores exactly what its answer earns, 0.

Graded the old way (hidden tests in the student's kernel), each of these would pass. Here the
grader judges the returned data in its own process, against its own references.
"""

from __future__ import annotations

from grader_submissions import (
    CHAPTERS,
    REPLACE_THE_REFERENCE,
    SILENCE_THE_CHAPTER_TESTS,
    SPANS_THAT_EQUAL_EVERYTHING,
    messages,
    write_submission,
)
from llm_tutorial.assignments import grade, table


def test_silenced_exceptions_patched_comparisons_and_an_empty_check_earn_nothing(tmp_path):
    teacher = CHAPTERS["ch09_faq"]
    submission = write_submission(tmp_path / teacher.name, teacher, stable_log_softmax=SILENCE_THE_CHAPTER_TESTS)
    report = grade(submission, teacher, timeout=60)
    assert report.points == 0 and report.isolated, table(report)
    assert "subtract the row maximum before exponentiating" in messages(report)["stable_log_softmax_tests"]


def test_replacing_the_notebooks_reference_earns_nothing(tmp_path):
    teacher = CHAPTERS["ch08_trends_challenges"]
    submission = write_submission(tmp_path / teacher.name, teacher, quantize_rows=REPLACE_THE_REFERENCE)
    report = grade(submission, teacher, timeout=60)
    assert report.points == 0, table(report)
    assert "not its largest magnitude" in messages(report)["quantize_rows_tests"]


def test_results_that_equal_everything_arrive_as_what_they_are(tmp_path):
    teacher = CHAPTERS["ch06_applications"]
    submission = write_submission(tmp_path / teacher.name, teacher, best_span_loop=SPANS_THAT_EQUAL_EVERYTHING)
    report = grade(submission, teacher, timeout=60)
    assert report.points == 0, table(report)
    assert "a pair of ints" in messages(report)["best_span_loop_tests"]
