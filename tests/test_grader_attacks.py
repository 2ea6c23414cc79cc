"""A student who wants marks without the work: every attack scores exactly what the answers earn.

Each test grades one submission of the chapter-3 assignment (causal mask 2, attention 4, heads 2,
layer 4 points) and asserts its exact score, the messages, and what must hold after grading
(no process left, the teacher's files unchanged, no fake table in the grader's output).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import llm_tutorial
from grader_submissions import (
    CH03,
    CRASH_IN_MERGE,
    ENDLESS_ATTENTION,
    EXIT_AFTER_ATTENTION,
    FAKE_TABLE_AND_KILL,
    FORGE_RESULTS,
    FULL,
    HUGE_MASK,
    LYING_HEADS,
    OUTLIVE_GRADING,
    PATCH_BUILTINS,
    REWRITE_THE_TEACHER,
    SILENCE_THE_TESTS,
    WRONG_ATTENTION,
    WRONG_LAYER,
    edited,
    messages,
    points,
    process_is_gone,
    with_paths,
    write_submission,
)
from llm_tutorial.assignments import grade

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="the attacks read /proc (Linux)")


def cli(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "llm_tutorial.assignments", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_silenced_exceptions_and_patched_comparisons_earn_only_the_right_answer(tmp_path):
    """The issue's 12/12: set_custom_exc and a patched assert_close/equal, other answers wrong."""
    submission = write_submission(tmp_path / "cheat.ipynb", CH03, stubs=True, causal_mask=SILENCE_THE_TESTS,
                                  attention=WRONG_ATTENTION, self_attention=WRONG_LAYER)
    report = grade(submission, CH03, timeout=60)
    assert points(report) == {"causal_mask_tests": 2, "attention_tests": 0, "heads_tests": 0, "self_attention_tests": 0}
    assert "at index" in messages(report)["attention_tests"]


def test_rewriting_the_teacher_notebook_and_the_grader_changes_nothing(tmp_path):
    """mallory reads --source from the grader's command line, leaks the hidden tests, rewrites the
    teacher's notebook and the grader's own check; zed, graded next, has an off-by-one mask."""
    package = tmp_path / "site" / "llm_tutorial"
    shutil.copytree(Path(llm_tutorial.__file__).parent, package, ignore=shutil.ignore_patterns("__pycache__"))
    teacher = tmp_path / "teacher" / CH03.name
    teacher.parent.mkdir()
    shutil.copy(CH03, teacher)
    checks = package / "assignments" / "checks" / "ch03_assignment_attention.py"
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in (teacher, checks)}
    leak = tmp_path / "leaked.ipynb"
    write_submission(tmp_path / "subs" / "mallory" / CH03.name, CH03, causal_mask=with_paths(REWRITE_THE_TEACHER, LEAK=leak))
    off_by_one = edited(CH03, "causal_mask", ".tril()", ".tril(diagonal=1)")
    write_submission(tmp_path / "subs" / "zed" / CH03.name, CH03, causal_mask=off_by_one)
    env = {**os.environ, "PYTHONPATH": str(package.parent)}
    run = cli("grade", "subs", "--source", f"teacher/{CH03.name}", "--timeout", "60", "--out", "grades", cwd=tmp_path, env=env)
    assert run.returncode == 1, run.stderr  # 1: a submission changed the grader's files
    assert "BEGIN HIDDEN TESTS" in leak.read_text()  # the attack did run
    assert {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in (teacher, checks)} == before
    assert "warning: mallory" in run.stderr and "changed the grader's files" in run.stderr
    (mallory,), (zed,) = (json.loads((tmp_path / "grades" / f"{s}.json").read_text()) for s in ("mallory", "zed"))
    assert mallory["points"] == 0 and zed["points"] == 10
    assert [s["points"] for s in zed["scores"]] == [0, 4, 2, 4]  # no cascade: 10, not the old grader's 2
    assert "row 0 of your causal mask allows column 1" in zed["scores"][0]["message"]
    gradebook = (tmp_path / "grades" / "gradebook.csv").read_text().splitlines()
    assert gradebook[0].startswith("student,notebook,causal_mask_tests") and gradebook[2].startswith("zed,")
    assert "row 0 of your causal mask allows column 1" in (tmp_path / "grades" / "zed.txt").read_text()


def test_a_fake_table_and_a_killed_parent_never_reach_the_teacher(tmp_path):
    submission = write_submission(tmp_path / "sub" / "liar.ipynb", CH03, stubs=True, causal_mask=FAKE_TABLE_AND_KILL)
    run = cli("grade", str(submission), "--source", str(CH03), "--timeout", "60", "--out", str(tmp_path / "grades"), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "12 / 12" not in run.stdout + run.stderr and "passed" in run.stdout
    table = run.stdout.splitlines()
    assert table[0].startswith("exercise") and table[5].startswith("total") and "2 / 12" in table[5]
    assert json.loads((tmp_path / "grades" / "liar.json").read_text())["points"] == 2


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
    report = grade(submission, CH03, timeout=8)
    assert points(report) == {"causal_mask_tests": 0, "attention_tests": 0, "heads_tests": 0, "self_attention_tests": 4}
    text = messages(report)
    assert "MB" in text["causal_mask_tests"] and "stopped after 8 s" in text["attention_tests"]
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
def test_the_command_line_rejects_a_time_limit_that_is_not_positive(limit, tmp_path):
    run = cli("grade", str(CH03), "--timeout", limit, cwd=tmp_path)
    assert run.returncode == 2 and len(run.stderr.strip().splitlines()) == 1 and "positive" in run.stderr
    assert not (tmp_path / "grades").exists()
