"""A student who wants marks without the work: every attack scores exactly what the answers earn.

Each test grades one submission of the chapter-3 assignment (causal mask 2, attention 4, heads 2,
layer 4 points) and asserts its exact score, the messages, and what must hold after grading (no
process left). The attacks on the command line are in test_grader_attacks_cli.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from grader_submissions import (
    CH03,
    CRASH_IN_MERGE,
    ENDLESS_ATTENTION,
    EXIT_AFTER_ATTENTION,
    FORGE_RESULTS,
    FULL,
    HUGE_MASK,
    LYING_HEADS,
    OUTLIVE_GRADING,
    PATCH_BUILTINS,
    SILENCE_THE_TESTS,
    WRONG_ATTENTION,
    WRONG_LAYER,
    messages,
    points,
    process_is_gone,
    with_paths,
    write_submission,
)
from llm_tutorial.assignments import grade

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="the attacks read /proc (Linux)")


def test_silenced_exceptions_and_patched_comparisons_earn_only_the_right_answer(tmp_path):
    """The issue's 12/12: set_custom_exc and a patched assert_close/equal, other answers wrong."""
    submission = write_submission(tmp_path / "cheat.ipynb", CH03, stubs=True, causal_mask=SILENCE_THE_TESTS,
                                  attention=WRONG_ATTENTION, self_attention=WRONG_LAYER)
    report = grade(submission, CH03, timeout=60)
    assert points(report) == {"causal_mask_tests": 2, "attention_tests": 0, "heads_tests": 0, "self_attention_tests": 0}
    assert "at index" in messages(report)["attention_tests"]


def test_processes_started_by_the_submission_are_dead_after_grading(tmp_path):
    """Background processes (new session, scrubbed environment, double fork), sys.exit in a cell
    and a kernel killed by os._exit: each costs only its exercise."""
    pids = tmp_path / "pids"
    submission = write_submission(tmp_path / "procs.ipynb", CH03, causal_mask=with_paths(OUTLIVE_GRADING, PIDS=pids),
                                  attention=EXIT_AFTER_ATTENTION, heads=CRASH_IN_MERGE)
    report = grade(submission, CH03, timeout=60)
    assert points(report) == {"causal_mask_tests": 2, "attention_tests": 0, "heads_tests": 0, "self_attention_tests": 4}
    assert "SystemExit" in messages(report)["attention_tests"]
    assert "kernel died" in messages(report)["heads_tests"]
    started = [int(p) for p in pids.read_text().split()]
    assert len(started) == 2 and all(process_is_gone(pid) for pid in started)


def test_endless_loop_huge_output_and_lying_tensor_cost_their_exercises(tmp_path):
    submission = write_submission(tmp_path / "odd.ipynb", CH03, causal_mask=HUGE_MASK, attention=ENDLESS_ATTENTION,
                                  heads=LYING_HEADS)
    report = grade(submission, CH03, timeout=5)
    assert points(report) == {"causal_mask_tests": 0, "attention_tests": 0, "heads_tests": 0, "self_attention_tests": 4}
    text = messages(report)
    assert "MB" in text["causal_mask_tests"] and "stopped after 5 s" in text["attention_tests"]
    assert "at index" in text["heads_tests"]


def test_patched_builtins_spoil_only_the_students_own_results(tmp_path):
    submission = write_submission(tmp_path / "builtins.ipynb", CH03, causal_mask=PATCH_BUILTINS)
    report = grade(submission, CH03, timeout=60)
    assert points(report) == {**{k: 0 for k in FULL}, "causal_mask_tests": 2}


def test_forged_result_files_are_judged_as_data(tmp_path):
    submission = write_submission(tmp_path / "forge.ipynb", CH03, causal_mask=FORGE_RESULTS)
    report = grade(submission, CH03, timeout=60)
    assert report.points == 0 and all("should be a tensor" in m for m in messages(report).values())


@pytest.mark.parametrize("limit", [0, -1, float("nan"), float("inf"), "soon"])
def test_time_limits_must_be_positive_numbers(limit):
    with pytest.raises(ValueError, match="seconds"):
        grade(CH03, CH03, timeout=limit)


@pytest.mark.parametrize("limit", ["0", "-1"])
def test_the_command_line_rejects_a_time_limit_that_is_not_positive(limit, tmp_path, capsys):
    from llm_tutorial.assignments.__main__ import main

    assert main(["grade", str(CH03), "--timeout", limit, "--out", str(tmp_path / "grades")]) == 2
    error = capsys.readouterr().err
    assert len(error.strip().splitlines()) == 1 and "positive" in error and not (tmp_path / "grades").exists()
