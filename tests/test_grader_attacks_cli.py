"""Attacks through the command line: the grader's command line read from /proc, the teacher's
notebook and the grader's own source rewritten, a fake table printed and the kernel's parent killed.
Each grades chapter-3 submissions in a separate grader process and checks exact scores and what
must hold afterwards (the teacher's files unchanged, nothing fake in the grader's output)."""

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
from grader_submissions import CH03, FAKE_TABLE_AND_KILL, REWRITE_THE_TEACHER, edited, with_paths, write_submission

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="the attacks read /proc (Linux)")


def cli(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "llm_tutorial.assignments", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


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
