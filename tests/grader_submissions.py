"""Submissions for the grader's tests: the teacher's notebook with some solution cells replaced.

Each attack or mistake is the source of one solution cell, written as a student would. The tests
in test_grader_attacks.py and test_grader_mistakes.py grade them and assert exact scores.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat

from llm_tutorial.assignments import student_notebook

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
CH03 = NOTEBOOKS / "ch03_assignment_attention.ipynb"
CH05 = NOTEBOOKS / "ch05_assignment_triton_softmax.ipynb"
CH07 = NOTEBOOKS / "ch07_assignment_bpe.ipynb"
FULL = {"causal_mask_tests": 2, "attention_tests": 4, "heads_tests": 2, "self_attention_tests": 4}


def reference_source(teacher: Path, grade_id: str) -> str:
    notebook = nbformat.read(teacher, as_version=4)
    return next(c.source for c in notebook.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


def stub_source(teacher: Path, grade_id: str) -> str:
    notebook = student_notebook(nbformat.read(teacher, as_version=4))
    return next("".join(c["source"]) for c in notebook["cells"] if c["metadata"].get("nbgrader", {}).get("grade_id") == grade_id)


def edited(teacher: Path, grade_id: str, old: str, new: str) -> str:
    """The reference solution of ``grade_id`` with one mistake (``old`` replaced by ``new``)."""
    source = reference_source(teacher, grade_id)
    assert old in source, f"{old!r} is not in the {grade_id} solution"
    return source.replace(old, new)


def write_submission(path: Path, teacher: Path, *, stubs: bool = False, **cells: str) -> Path:
    """A copy of the handed-out notebook (``stubs``) or of the teacher's, with ``cells`` (by grade_id)
    replaced, written to ``path``."""
    notebook = nbformat.read(teacher, as_version=4)
    if stubs:
        notebook = nbformat.from_dict(student_notebook(notebook))
    for cell in notebook.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in cells:
            cell.source = cells[grade_id]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, path)
    return path


def points(report) -> dict[str, float]:
    return {s.grade_id: s.points for s in report.scores}


def messages(report) -> dict[str, str]:
    return {s.grade_id: s.message for s in report.scores}


def process_is_gone(pid: int) -> bool:
    """Dead: no such process, or a zombie waiting for a parent that is not ours to reap it."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state in ("Z", "X")


CORRECT_MASK = "def causal_mask(T):\n    return torch.ones(T, T, dtype=torch.bool).tril()\n"

# The issue's first attack: silence every exception the tests raise, and make the tests' own
# comparisons always succeed; the mask is right, every other answer is wrong.
SILENCE_THE_TESTS = """
get_ipython().set_custom_exc((BaseException,), lambda *a, **k: None)
import torch
torch.testing.assert_close = lambda *a, **k: None
torch.equal = lambda *a, **k: True
torch.allclose = lambda *a, **k: True
""" + CORRECT_MASK
WRONG_ATTENTION = "def attention(q, k, v, mask=None):\n    return torch.zeros_like(q)\n"
WRONG_LAYER = "def causal_self_attention(x, w_qkv, w_out, n_head):\n    return x\n"

# Read the grader's command line from /proc, copy the hidden tests, rewrite the teacher's notebook
# (every test "pass", every reference the student's) and the grader's own check of the mask.
REWRITE_THE_TEACHER = """
import json, os, pathlib
def _ancestors():
    pid = os.getppid()
    while pid > 1:
        yield pid
        pid = int(pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
for _pid in _ancestors():
    _args = pathlib.Path(f"/proc/{_pid}/cmdline").read_bytes().decode().split("\\0")
    if "--source" in _args:
        _source = pathlib.Path(os.readlink(f"/proc/{_pid}/cwd")) / _args[_args.index("--source") + 1]
        _text = _source.read_text()
        pathlib.Path(LEAK).write_text(_text)
        _nb = json.loads(_text)
        for _cell in _nb["cells"]:
            if _cell["metadata"].get("nbgrader", {}).get("grade"):
                _cell["source"] = "pass"
        _source.write_text(json.dumps(_nb))
        import llm_tutorial.assignments.checks.ch03_assignment_attention as _checks
        with open(_checks.__file__, "a") as _f:
            _f.write("\\nCHECKS.checks.clear()  # every exercise passes from now on\\n")
""" + CORRECT_MASK

# Print a table of full marks on the grader's standard output and error, then kill its parent.
FAKE_TABLE_AND_KILL = CORRECT_MASK + """
import os, signal, sys
FAKE = "exercise  score  result\\ncausal_mask_tests  2 / 2  passed\\ntotal  12 / 12  (100%)\\n"
print(FAKE)
sys.stdout.flush()
os.write(1, FAKE.encode())
os.write(2, FAKE.encode())
os.kill(os.getppid(), signal.SIGKILL)
"""

# Processes that try to outlive grading: a new session without the grader's environment, and a
# double fork whose grandchild is an orphan in the root folder.
OUTLIVE_GRADING = CORRECT_MASK + """
import os, subprocess
_first = subprocess.Popen(["sleep", "300"], start_new_session=True, env={}, cwd="/")
_read, _write = os.pipe()
if os.fork() == 0:
    os.setsid()
    _pid = os.fork()
    if _pid == 0:
        os.chdir("/")
        os.execve("/bin/sleep", ["sleep", "301"], {})
    os.write(_write, str(_pid).encode())
    os._exit(0)
os.close(_write)
_grandchild = int(os.read(_read, 100))
os.wait()
with open(PIDS, "w") as _f:
    _f.write(f"{_first.pid} {_grandchild}")
"""
EXIT_AFTER_ATTENTION = """
def attention(q, k, v, mask=None):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v
import sys
sys.exit(0)
"""
CRASH_IN_MERGE = """
def split_heads(x, n_head):
    B, T, d = x.shape
    return x.view(B, T, n_head, d // n_head).transpose(1, 2)

def merge_heads(x):
    import os
    os._exit(1)
"""

HUGE_MASK = "def causal_mask(T):\n    return torch.empty(70 * 2**20, dtype=torch.bool)\n"
ENDLESS_ATTENTION = "def attention(q, k, v, mask=None):\n    while True:\n        pass\n"
LYING_HEADS = """
class AlwaysEqual(torch.Tensor):
    def __eq__(self, other):
        return True
    def allclose(self, *args, **kwargs):
        return True

def split_heads(x, n_head):
    B, T, d = x.shape
    return torch.zeros(B, n_head, T, d // n_head).as_subclass(AlwaysEqual)

def merge_heads(x):
    B, H, T, hd = x.shape
    return torch.zeros(B, T, H * hd).as_subclass(AlwaysEqual)
"""

# Builtins patched for the rest of the kernel's life: later cells (the grader's too) run nothing.
PATCH_BUILTINS = CORRECT_MASK + "import builtins\nbuiltins.exec = lambda *args, **kwargs: None\n"

# After every cell, overwrite the grader's result files with a forged "everything passed".
FORGE_RESULTS = CORRECT_MASK + """
import glob, json, os
from safetensors import safe_open
from safetensors.torch import save_file
def _forge(*_):
    for request in glob.glob(os.path.join(os.getcwd(), "request-*.safetensors")):
        with safe_open(request, "pt") as handle:
            calls = len(json.loads(handle.metadata()["document"])["calls"])
        document = {"cells": [], "results": [{"value": True}] * calls, "passed": True, "points": 12}
        save_file({}, request.replace("request-", "result-"), metadata={"document": json.dumps(document)})
get_ipython().events.register("post_run_cell", _forge)
"""


def with_paths(source: str, **paths: Path) -> str:
    """``source`` with NAME = "path" lines in front, for attacks that report what they did."""
    return "".join(f"{name} = {os.fspath(path)!r}\n" for name, path in paths.items()) + source


def notebook_json(path: Path) -> dict:
    return json.loads(path.read_text())
