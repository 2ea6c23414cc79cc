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


def test_ch05_the_loop_by_hand_is_the_trainer_bit_for_bit(results):
    """"every weight and every loss identical" (section 5.3)."""
    r = results("ch05")
    assert r["loop_bit_identical"] is True and r["loop_steps"] == 50


def test_ch05_batch_32_moves_more_tokens_than_the_preset(results):
    """"a batch of 32 moves more tokens per second than the preset's 12"; the wider model fewer."""
    r = results("ch05")
    assert r["tps_run"] > r["tps_preset"] and r["tps_run_over_preset"] > 1
    assert r["tokens_5min_wide"] < r["tokens_5min_run"]


def test_ch05_character_gpt_meets_the_loss_target(results):
    """"below the 1.70 target" on the validation text, within five minutes of training."""
    r = results("ch05")
    assert r["char_val_loss"] <= 1.70
    assert r["char_train_seconds"] <= 300


def test_ch05_train_validation_gap_grows(results):
    """"the gap grows through the run": larger at the end than at step 500."""
    r = results("ch05")
    assert r["char_gap_final"] > r["char_gap_q1"]


def test_ch05_kneser_ney_beats_the_gpt_on_the_same_test_text(results):
    """The n-gram baseline's loss is lower than the character GPT's on the same test characters, and the
    bootstrap interval of the difference excludes 0."""
    r = results("ch05")
    assert r["kn_test_loss"] < r["char_test_loss"]
    assert r["kn_minus_gpt2_low"] < r["kn_minus_gpt2_test"] < r["kn_minus_gpt2_high"] < 0


def test_ch05_llama_has_fewer_parameters_and_is_slower(results):
    """"fewer parameters … slower per step" (Llama-style against GPT-2-style)."""
    r = results("ch05")
    assert r["llama_params"] < r["gpt2_params"]
    assert r["llama_tokens_per_s"] < r["char_tokens_per_s"]
    assert r["llama_train_seconds"] > r["char_train_seconds"]



# ---------------------------------------------------------------------------------------- ch06 --


# ---------------------------------------------------------------------------------------- ch07 --


# ---------------------------------------------------------------------------------------- ch08 --


# ---------------------------------------------------------------------------------------- ch09 --
