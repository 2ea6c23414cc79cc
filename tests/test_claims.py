"""Every claim the book's prose makes that compares or links measured results, as an assertion.

Each chapter's full run records its headline figures in ``book/results/chNN.json``
(:class:`llm_tutorial.results.ChapterResults`). A sentence such as "beam search beats greedy
decoding" or "chapter 5's GPT beats chapter 1's Kneser–Ney model" is true of those recorded
numbers, or this file fails. Quick runs never overwrite the files, so these tests read the book's
own results, not CI's shortened ones.

One section per chapter; a cross-chapter claim lives in the section of the chapter that makes it.
"""

from __future__ import annotations

import pytest

from llm_tutorial.results import load_results


@pytest.fixture(scope="module")
def results():
    """``results("ch05")["gpt_val"]``: the recorded results, loaded once per chapter."""
    cache: dict[str, dict] = {}

    def get(chapter: str) -> dict:
        if chapter not in cache:
            cache[chapter] = load_results(chapter)
        return cache[chapter]

    return get


# ---------------------------------------------------------------------------------------- ch01 --


# ---------------------------------------------------------------------------------------- ch02 --


# ---------------------------------------------------------------------------------------- ch03 --


# ---------------------------------------------------------------------------------------- ch04 --


# ---------------------------------------------------------------------------------------- ch05 --


# ---------------------------------------------------------------------------------------- ch06 --


def test_ch06_component_split_removes_the_leak(results):
    """6.1: the per-sentence split leaked test and development references into training; the component split none."""
    r = results("ch06")
    assert r["old_test_leaks"] > 0 and r["old_dev_leaks"] > 0
    assert r["new_leaks"] == 0


def test_ch06_best_length_penalty_is_inside_the_grid(results):
    """6.1: the development BLEU peaks at an α strictly inside the grid, not at its edge."""
    r = results("ch06")
    assert r["alpha_grid_min"] < r["best_alpha"] < r["alpha_grid_max"]


def test_ch06_translator_still_improving(results):
    """6.1: "the development loss is still falling at the last evaluation"."""
    r = results("ch06")
    assert r["mt_dev_loss"] < r["mt_dev_loss_before_last"]


def test_ch06_beam_at_alpha_zero_is_shorter_than_greedy(results):
    """6.1: ranked by raw log-probability the beam returns shorter output than greedy search, and the
    length penalty lengthens it."""
    r = results("ch06")
    assert r["dev_beam_alpha0_ratio"] < r["dev_greedy_ratio"]
    assert r["dev_best_ratio"] > r["dev_beam_alpha0_ratio"]


def test_ch06_summariser_hallucinates_on_new_speakers(results):
    """6.3: familiar casts beat the lead baseline; with new speakers most written names are invented."""
    r = results("ch06")
    assert r["sum_familiar_rouge"] > r["sum_lead_rouge"]
    assert r["sum_new_invented"] > 50 > r["sum_familiar_invented"]


def test_ch06_human_text_is_less_predictable_than_truncated_samplers(results):
    """6.4: human text has a higher perplexity under the model than any truncated sampler's text;
    the repetition penalty raises distinct-2 and lowers self-BLEU."""
    r = results("ch06")
    assert r["human_perplexity"] > r["max_truncated_perplexity"]
    assert r["penalty_distinct2"] > r["greedy_distinct2"] and r["penalty_self_bleu"] < r["greedy_self_bleu"]


def _interval_verdict(low: float, high: float) -> str:
    return "better" if low > 0 else "worse" if high < 0 else "noise"


def test_ch06_beam_vs_greedy_as_the_bootstrap_interval_says(results):
    """6.1: the prose reports beam − greedy with its paired-bootstrap interval and a verdict read off it."""
    r = results("ch06")
    difference = r["test_beam_bleu"] - r["test_greedy_bleu"]
    assert r["beam_minus_greedy_low"] <= difference <= r["beam_minus_greedy_high"]
    expected = {"better": "beam search is really better", "worse": "beam search is really worse"}
    verdict = _interval_verdict(r["beam_minus_greedy_low"], r["beam_minus_greedy_high"])
    assert r["beam_verdict"] == expected.get(verdict, "the interval contains zero: the difference is within the noise")
    assert (r["beam_p_value"] < 0.05) == (verdict != "noise") or abs(r["beam_p_value"] - 0.05) < 0.02


def test_ch06_model_vs_translation_memory(results):
    """6.1: the translation memory against the better decoding, with the interval's verdict."""
    r = results("ch06")
    best = max(r["test_greedy_bleu"], r["test_beam_bleu"])
    assert r["memory_minus_model_low"] <= r["test_memory_bleu"] - best <= r["memory_minus_model_high"]
    expected = {"better": "the translation memory is really better than the model",
                "worse": "the model is really better than the translation memory"}
    verdict = _interval_verdict(r["memory_minus_model_low"], r["memory_minus_model_high"])
    assert r["memory_verdict"] == expected.get(verdict, "the interval contains zero: the difference is within the noise")


def test_ch06_dev_comparisons_as_written(results):
    """6.1: "beam at α = 0 … {above|below} greedy", "beam 8 … {higher|lower} than beam 4"."""
    r = results("ch06")
    assert r["alpha0_vs_greedy"] == ("below" if r["dev_beam_alpha0_bleu"] < r["dev_greedy_bleu"] else "above")
    assert r["beam8_vs_beam4"] == ("lower" if r["dev_beam8_bleu"] < r["dev_best_bleu"] else "higher")


def test_ch06_qa_reader_against_each_baseline(results):
    """6.2: the reader's test exact match against the random and first-speaker baselines, as written;
    the previous-speaker rule is always wrong; the breakdown adds up."""
    r = results("ch06")
    assert r["qa_vs_random"] == ("above" if r["qa_test_em"] > r["qa_random_em"] else "below")
    assert r["qa_vs_first"] == ("above" if r["qa_test_em"] > r["qa_first_em"] else "below")
    assert r["qa_previous_em"] < 5
    shares = [r[f"qa_{k}_share"] for k in ("right", "previous", "next", "other", "not")]
    assert sum(shares) == pytest.approx(100, abs=0.01)
    assert r["qa_right_share"] == pytest.approx(r["qa_test_em"], abs=0.01)


def test_ch06_qa_reader_has_not_learnt_the_task_on_training_questions(results):
    """6.2: "it has not learnt the reading procedure even on the examples it trained on"."""
    r = results("ch06")
    assert r["qa_train_em"] < 60


# ---------------------------------------------------------------------------------------- ch07 --


# ---------------------------------------------------------------------------------------- ch08 --


# ---------------------------------------------------------------------------------------- ch09 --
