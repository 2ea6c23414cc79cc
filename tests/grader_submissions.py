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
from llm_tutorial.assignments.checks import CHAPTERS as CHECKED_CHAPTERS
from llm_tutorial.assignments.exercises import find_exercises

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


# --- the chapter notebooks' exercises --------------------------------------------------------------

CHAPTERS = {stem: NOTEBOOKS / f"{stem}.ipynb" for stem in CHECKED_CHAPTERS}  # the grader's list is the one list


def chapter_exercises(stem: str) -> list[tuple[str, str]]:
    """Each graded exercise of a chapter notebook, in order: (its solution cell's grade_id, its test cell's grade_id)."""
    notebook = nbformat.read(CHAPTERS[stem], as_version=4)
    return [(notebook.cells[exercise.solution_cells[0]].metadata["nbgrader"]["grade_id"], exercise.grade_id)
            for exercise in find_exercises(notebook)]


def chapter_exercise(stem: str) -> str:
    """The grade_id of the solution cell of a chapter notebook's first exercise."""
    return chapter_exercises(stem)[0][0]


# Every exercise of every chapter notebook: (notebook stem, solution grade_id, test grade_id).
CHAPTER_EXERCISES = [(stem, solution, test) for stem in CHAPTERS for solution, test in chapter_exercises(stem)]


# Realistic slips in each exercise of a chapter notebook, as edits of its reference solution: (old, new,
# words the grader's message must contain), under "<notebook stem>/<solution cell's grade_id>". Every
# exercise needs at least two; the first of each is also graded in a kernel.
CHAPTER_MISTAKES = {
    "ch01_background/bigram_add_one": [
        ("counts.sum(1, keepdim=True)", "torch.bincount(ids, minlength=vocab_size)[:, None]", "the last id starts no pair"),
        ("counts.sum(1, keepdim=True) + vocab_size", "counts.sum(1, keepdim=True) + 1", "add V to c(h), not 1"),
        ("pairs = ids[:-1] * vocab_size + ids[1:]", "pairs = ids[1:] * vocab_size + ids[:-1]", "your table is transposed"),
        ("return (counts + 1) / (counts.sum(1, keepdim=True) + vocab_size)", "return counts / counts.sum(1, keepdim=True)",
         "unsmoothed"),
    ],
    "ch02_core_concepts/attention_weights": [
        (" + (T_k - T_q)", "", "a causal mask aligned with the first key"),
        (" / math.sqrt(q.size(-1))", "", "without the scale"),
        ("<= query_position", "< query_position", "may also see its own position"),
        ("torch.softmax(scores, dim=-1)", "torch.softmax(scores, dim=-2)", "a softmax over the queries"),
    ],
    "ch03_algorithms/causal_blockwise_attention": [
        ("torch.arange(k_start, k_end)[None, :] > torch.arange(q_start, q_end)[:, None]",
         "torch.arange(k_end - k_start)[None, :] > torch.arange(q_end - q_start)[:, None]", "compares positions inside each block"),
        ("> torch.arange(q_start, q_end)[:, None]", ">= torch.arange(q_start, q_end)[:, None]", "must see its own key"),
        ("range(0, q_end, block)", "range(q_start, q_end, block)", "the query's own block only"),
        ("o = o * rescale[..., None] + p @ v", "o = o + p @ v", "the first wrong row is query"),
    ],
    "ch03_algorithms/query_stream_mask": [
        ("return rank[None, :] < rank[:, None]", "return rank[None, :] <= rank[:, None]", "content-stream mask"),
        ("return rank[None, :] < rank[:, None]", "return order[None, :] < order[:, None]", "inverse permutation"),
        ("return rank[None, :] < rank[:, None]", "return rank[:, None] < rank[None, :]", "transposed"),
    ],
    "ch03_algorithms/corrupt_spans": [
        ("if noisy and (i == 0 or not noise_mask[i - 1]):", "if noisy:", "one sentinel per dropped token"),
        ("    targets.append(sentinel_ids[n_spans])\n    return", "    return", "one more sentinel"),
        ("            n_spans += 1\n", "", "the same sentinel"),
    ],
    "ch05_speedrun/newton_schulz": [
        ("x = matrix / matrix.norm()", "x = matrix", "divide the matrix by its Frobenius norm"),
        ("(b * gram + c * gram @ gram)", "(b * gram + c * gram)", "the quintic term needs A @ A"),
        ("for _ in range(steps):", "for _ in range(steps - 1):", "one is missing"),
    ],
    "ch04_mathematics/attention_backward": [
        ("d_scores.transpose(-2, -1) @ q * scale", "d_scores @ q * scale", "dk = dSᵀ Q / √D: transpose dS"),
        ("return d_scores @ k * scale,", "return d_scores @ k,", "lacks the factor 1/√D"),
        ("weights * (d_weights - (d_weights * weights).sum(dim=-1, keepdim=True))", "weights * d_weights",
         "the softmax Jacobian's sum is missing"),
        ("weights.transpose(-2, -1) @ grad_out", "weights @ grad_out", "dv = Aᵀ G"),
        ('scores = scores.masked_fill(~mask, float("-inf"))', "pass", "the gradient without the mask"),
        ("return d_scores @ k * scale, d_scores.transpose(-2, -1) @ q * scale, d_v",
         "return d_scores.transpose(-2, -1) @ q * scale, d_scores @ k * scale, d_v", "in this order"),
    ],
    "ch05_project/tiled_attention": [
        ("acc = acc * correction[..., None] + p @ v[:, :, keys]", "acc = acc + p @ v[:, :, keys]",
         "multiply the accumulated output by e^(m − m_new)"),
        ("return acc / row_sum[..., None], row_max + torch.log(row_sum)", "return acc / row_sum[..., None], torch.log(row_sum)",
         "L = m + log ℓ"),
        ("return acc / row_sum[..., None],", "return acc,", "not divided by ℓ"),
        ("row_max + torch.log(row_sum)", "(row_max + torch.log(row_sum)) / math.log(2)", "natural logarithm"),
    ],
    "ch06_applications/best_span_loop": [
        ("min(i + max_answer_length, len(s))", "min(i + max_answer_length + 1, len(s))", "(j < i + max_answer_length)"),
        ("if ok[i] and ok[j]", "if ok[i]", "is False"),
        ("for j in range(i, ", "for j in range(max(i - 1, 0), ", "ends before it starts"),
    ],
    "ch06_controllable_generation/guided_log_probs": [
        ("return guided.log_softmax(dim=-1)", "return guided", "not renormalised"),
        ("lm_logits.gather(-1, candidates) + strength * attribute_log_probs.gather(-1, candidates)",
         "strength * lm_logits.gather(-1, candidates) + attribute_log_probs.gather(-1, candidates)",
         "λ multiplies the classifier's log-probability"),
        ("candidates = lm_logits.topk(top_k, dim=-1).indices",
         "candidates = (lm_logits + strength * attribute_log_probs).topk(top_k, dim=-1).indices",
         "you chose them after adding the classifier's term"),
        ("strength * attribute_log_probs.gather(-1, candidates)",
         "strength * attribute_log_probs.gather(-1, candidates).exp()", "not λ · p(a | ·)"),
        ("return guided.log_softmax(dim=-1)", "return guided.softmax(dim=-1)", "you returned probabilities"),
    ],
    "ch06_applications/reader_state_from_pretrained": [
        ('name.startswith("encoder.")', 'name.startswith("encoder.blocks.")', "but not the embeddings"),
        ("for name, value in fresh.items()", "for name, value in pretrained.items()", "pre-training heads"),
        ('(pretrained[name] if name.startswith("encoder.") else value)', "value", "nothing was taken"),
    ],
    "ch07_tools/bpe_encode": [
        ("best = min(range(len(pair_ranks)), key=pair_ranks.__getitem__)",
         "best = next((i for i, r in enumerate(pair_ranks) if r != math.inf), 0)", "the leftmost pair that has a rank"),
        ("best = min(range(len(pair_ranks)), key=pair_ranks.__getitem__)",
         "best = max((i for i, r in enumerate(pair_ranks) if r != math.inf), key=pair_ranks.__getitem__, default=0)",
         "merge the pair whose joined bytes have the lowest rank"),
        ("min(range(len(pair_ranks))", "min(reversed(range(len(pair_ranks)))", "merge the leftmost one first"),
        ("return [ranks[part] for part in parts]", "return parts", "not their bytes"),
    ],
    "ch08_trends_challenges/quantize_rows": [
        ("weight.abs().amax(dim=1, keepdim=True)", "weight.amax(dim=1, keepdim=True)", "not its largest magnitude"),
        ("torch.round(weight / torch.where(scales > 0, scales, 1.0))", "(weight / torch.where(scales > 0, scales, 1.0))",
         "truncated towards zero"),
        ("q_max = 2 ** (bits - 1) - 1", "q_max = 2 ** bits - 1", "not 2^bits − 1"),
        ("amax(dim=1, keepdim=True)", "amax(dim=0, keepdim=True)", "one scale per output row"),
    ],
    "ch08_trends_challenges/knn_probs": [
        ("torch.softmax(-distances / temperature, dim=1)", "torch.softmax(distances / temperature, dim=1)", "with the minus"),
        ("torch.softmax(-distances / temperature, dim=1)", "torch.softmax(-distances, dim=1)", "divide the distances by τ"),
        ("torch.softmax(-distances / temperature, dim=1)",
         "torch.exp(-distances / temperature) / torch.exp(-distances / temperature).sum(1, keepdim=True)", "underflows"),
        ("torch.softmax(-distances / temperature, dim=1)", "torch.exp(-distances / temperature)", "do not sum to one"),
    ],
    "ch08_trends_challenges/patchify_images": [
        ("x = x.permute(0, 1, 3, 2, 4)", "x = x", "reshaped the image directly"),
        ("x.permute(0, 1, 3, 2, 4)", "x.permute(0, 3, 1, 2, 4)", "column by column"),
        ("x.permute(0, 1, 3, 2, 4)", "x.permute(0, 1, 3, 4, 2)", "down the columns"),
    ],
    "ch09_faq/stable_log_softmax": [
        ("x.max(dim=-1, keepdim=True).values", "x.max()", "subtract each row's own maximum"),
        ("shifted = x - x.max(dim=-1, keepdim=True).values", "shifted = x", "subtract the row maximum before exponentiating"),
        ("return shifted - torch.log(torch.exp(shifted).sum(dim=-1, keepdim=True))",
         "return torch.exp(shifted) / torch.exp(shifted).sum(dim=-1, keepdim=True)", "return its logarithm"),
    ],
}


# The issue's first attack on chapter 9: silence the tests' exceptions, make every comparison pass
# and empty the notebook's visible check, with a log-softmax that overflows.
SILENCE_THE_CHAPTER_TESTS = """
get_ipython().set_custom_exc((BaseException,), lambda *a, **k: None)
import torch
torch.testing.assert_close = lambda *a, **k: None
torch.equal = lambda *a, **k: True
torch.allclose = lambda *a, **k: True
torch.Tensor.all = lambda self, *a, **k: True
check_stable_log_softmax = lambda candidate: print("correct: your log-softmax equals torch.log_softmax")

def stable_log_softmax(x):
    return x - torch.log(torch.exp(x).sum(dim=-1, keepdim=True))
"""

# Chapter 8's hidden tests compare with the package's quantize_absmax, which the student's code can
# replace by its own wrong answer (scales from the largest value, not the largest magnitude).
REPLACE_THE_REFERENCE = """
import llm_tutorial.quantize

def quantize_rows(weight, bits):
    q_max = 2 ** (bits - 1) - 1
    scales = weight.amax(dim=1, keepdim=True) / q_max
    codes = torch.round(weight / torch.where(scales > 0, scales, 1.0)).clamp(-q_max, q_max)
    return codes.to(torch.int8), scales

def _agree(weight, bits=8):
    codes, scales = quantize_rows(weight, bits)
    return llm_tutorial.quantize.QuantizedTensor(codes, scales.float(), bits)

llm_tutorial.quantize.quantize_absmax = _agree
quantize_absmax = _agree
"""

# Chapter 6: spans made of ints that equal everything.
SPANS_THAT_EQUAL_EVERYTHING = """
class Anything(int):
    def __eq__(self, other):
        return True
    __hash__ = int.__hash__

def best_span_loop(start_logits, end_logits, allowed, max_answer_length):
    return [(Anything(0), Anything(0)) for _ in range(len(start_logits))]
"""
