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


# ---------------------------------------------------------------------------------------- ch07 --


# ---------------------------------------------------------------------------------------- ch08 --


# ---------------------------------------------------------------------------------------- ch09 --
