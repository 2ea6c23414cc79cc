"""The book's three assignments: references score 100 %, stubs 0, and each subtle mistake loses
exactly the points of its own exercise, with a message that names the mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from grader_submissions import CH03, CH05, CH07, FULL, edited, messages, points, write_submission
from llm_tutorial.assignments import grade, table


@pytest.mark.parametrize("teacher", [CH03, CH05, CH07], ids=lambda p: p.stem)
def test_reference_scores_full_marks_and_stubs_score_zero(teacher: Path, tmp_path):
    reference = grade(teacher, teacher, timeout=120)
    assert reference.points == reference.max_points == 12, table(reference)
    assert all(s.message == "passed" for s in reference.scores) and not reference.problems
    stubs = grade(write_submission(tmp_path / teacher.name, teacher, stubs=True), teacher, timeout=120)
    assert stubs.points == 0 and all("NotImplementedError" in s.message for s in stubs.scores), table(stubs)


def test_attention_mistakes_cost_only_their_own_exercises(tmp_path):
    """An inverted mask, no 1/√d and a reshape that mixes positions and features: the layer built on
    all three still scores, because it is graded with the reference helpers."""
    inverted = edited(CH03, "causal_mask", ".tril()", ".tril().logical_not()")
    unscaled = edited(CH03, "attention", " / math.sqrt(q.shape[-1])", "")
    reshaped = edited(CH03, "heads", "x.view(B, T, n_head, d_model // n_head).transpose(1, 2)", "x.view(B, n_head, T, d_model // n_head)")
    reshaped = reshaped.replace("x.transpose(1, 2).reshape(B, T, H * head_dim)", "x.reshape(B, T, H * head_dim)")
    submission = write_submission(tmp_path / "mistakes.ipynb", CH03, causal_mask=inverted, attention=unscaled, heads=reshaped)
    report = grade(submission, CH03, timeout=120)
    assert points(report) == {**{k: 0 for k in FULL}, "self_attention_tests": 4}, table(report)
    text = messages(report)
    assert "row 0 of your causal mask blocks column 0; row i may see columns 0..i" in text["causal_mask_tests"]
    assert "without the scale: divide the scores by √d" in text["attention_tests"]
    assert "view as (B, T, H, d/H), then transpose(1, 2)" in text["heads_tests"]


def test_bpe_tie_break_costs_only_training(tmp_path):
    largest = edited(CH07, "train_bpe", "min(counts, key=lambda pair: (-counts[pair], pair))",
                     "max(counts, key=lambda pair: (counts[pair], pair))")
    report = grade(write_submission(tmp_path / "bpe.ipynb", CH07, train_bpe=largest), CH07, timeout=120)
    assert points(report) == {"pair_counts_tests": 2, "merge_word_tests": 2, "train_bpe_tests": 0, "encode_tests": 4}
    assert "on a tie, take the smallest pair" in messages(report)["train_bpe_tests"]


def test_softmax_without_the_maximum_loses_the_stability_points(tmp_path):
    naive_rows = edited(CH05, "reference_softmax", "x - x.max(dim=-1, keepdim=True).values", "x")
    naive_kernel = edited(CH05, "softmax_kernel", "    x = x - tl.max(x, axis=0)\n", "")
    report = grade(write_submission(tmp_path / "softmax.ipynb", CH05, reference_softmax=naive_rows,
                                    softmax_kernel=naive_kernel), CH05, timeout=120)
    assert points(report) == {"reference_softmax_tests": 0, "kernel_power_of_two_tests": 4, "kernel_any_length_tests": 4,
                              "kernel_stability_tests": 0}, table(report)
    assert all("subtract the row maximum" in messages(report)[k] for k in ("reference_softmax_tests", "kernel_stability_tests"))
