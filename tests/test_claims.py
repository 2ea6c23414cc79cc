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


def test_ch03_block_by_hand_equals_the_package_and_residuals_carry_the_gradient(results):
    """§3.2: our block equals TransformerBlock (both norms); without residuals the gradient at the
    first of 16 layers collapses, with them it does not fall below the one-layer value."""
    r = results("ch03")
    assert r["block_max_difference"] < 1e-5
    assert r["plain_grad_depth16"] < 1e-3 * r["plain_grad_depth1"]
    assert r["plain_grad_depth8"] < r["plain_grad_depth1"]
    assert r["residual_grad_depth16"] > r["plain_grad_depth1"]
    for name in ("prenorm_grad_depth32", "postnorm_grad_depth32"):  # "of the same order" as one layer
        assert 0.1 < r[name] / r["plain_grad_depth1"] < 10
    # near the output, post-norm's last layer gets as much as a one-layer network, pre-norm's less
    assert abs(r["postnorm_last_grad_depth32"] / r["plain_grad_depth1"] - 1) < 0.2
    assert r["postnorm_last_grad_depth32"] > 1.2 * r["prenorm_last_grad_depth32"]


def test_ch03_scaling_keeps_the_softmax_gradient_and_rotations_are_exact(results):
    """§3.2: unscaled scores saturate (largest weight above 0.95 at d_head = 1024) and the softmax's
    gradient shrinks with the width; the sinusoidal rotation holds to float64 rounding."""
    r = results("ch03")
    assert r["max_weight_unscaled_1024"] > 0.95
    assert r["softmax_grad_unscaled_1024"] < 0.5 * r["softmax_grad_unscaled_4"]
    assert r["softmax_grad_scaled_1024"] > 3 * r["softmax_grad_unscaled_1024"]
    assert r["rotation_max_error"] < 1e-12


def test_ch03_both_pretrained_models_beat_the_unigram_baseline_and_end_close(results):
    """§3.2: the BERT's and the GPT's validation losses are far below the unigram baseline and end
    close to each other; over all masked characters the two tie within 0.1 nats."""
    r = results("ch03")
    assert r["bert_over_unigram"] < 0.7
    assert r["gpt_val_loss"] < 0.7 * r["unigram_loss"]
    assert abs(r["bert_val_loss"] - r["gpt_val_loss"]) < 0.1
    assert abs(r["cloze_all_diff"]) < 0.1


def test_ch03_gpt_gap_is_mostly_a_change_of_text_and_the_bert_shows_neither(results):
    """§3.2: trained-on vs random held-out blocks (over-fitting) and held-out blocks vs the
    validation text (change of text), with bootstrap intervals over 1,024-character blocks."""
    r = results("ch03")
    assert r["gpt_overfit_gap_low"] > 0  # a small over-fitting gap, outside the noise
    assert r["gpt_shift_gap_low"] > 0  # a change-of-text gap, outside the noise
    assert r["gpt_shift_gap"] > r["gpt_overfit_gap"]  # "a larger one"
    assert r["bert_overfit_gap_low"] < 0 < r["bert_overfit_gap_high"]  # neither for the BERT
    assert r["bert_shift_gap_low"] < 0 < r["bert_shift_gap_high"]
    assert r["cloze_all_diff_high"] < 0  # "a small lead for the BERT, outside the noise"


def test_ch03_bert_wins_first_letters_gpt_wins_last_letters(results):
    """§3.2: at the same masked validation positions the BERT is better at first letters of words and
    at spaces and punctuation, the GPT at last letters — intervals that exclude 0."""
    r = results("ch03")
    assert r["cloze_first_letter_diff_high"] < 0  # BERT loss − GPT loss
    assert r["cloze_bert_first_letter_accuracy"] > r["cloze_gpt_first_letter_accuracy"]
    assert r["cloze_last_letter_diff_low"] > 0
    assert r["cloze_gpt_last_letter_accuracy"] > r["cloze_bert_last_letter_accuracy"]
    assert r["cloze_bert_space_accuracy"] > r["cloze_gpt_space_accuracy"]
    assert r["bert_neighbour_similarity"] > r["gpt_neighbour_similarity"]  # "far smoother"


def test_ch03_attention_cost_is_quadratic_and_the_fused_kernel_is_linear_in_memory(results):
    """§3.3–3.4: explicit attention's memory grows as T² and its time at least as fast; the fused
    kernel's memory grows as T and it is faster; the blockwise loop is slower than the fused kernel,
    and the word the text uses for its comparison with the explicit version matches the ratio."""
    r = results("ch03")
    assert 1.8 < r["explicit_memory_slope"] < 2.2
    assert r["explicit_time_slope"] > 1.8
    assert 0.8 < r["fused_memory_slope"] < 1.2
    assert 1.6 < r["fused_time_slope"] < 2.4
    assert r["blockwise_over_fused_time"] > r["blockwise_over_explicit_time"]  # fused faster than explicit
    assert r["blockwise_over_fused_time"] > 1
    assert r["blockwise_vs_explicit"] == ("slower than" if r["blockwise_over_explicit_time"] > 1 else "faster than")
    assert r["blockwise_memory_mib_longest"] < 0.05 * r["explicit_memory_mib_longest"]
    assert r["attention_share_1024"] < 0.5 < r["attention_share_16384"]


# ---------------------------------------------------------------------------------------- ch04 --


# ---------------------------------------------------------------------------------------- ch05 --


# ---------------------------------------------------------------------------------------- ch06 --


# ---------------------------------------------------------------------------------------- ch07 --


# ---------------------------------------------------------------------------------------- ch08 --


# ---------------------------------------------------------------------------------------- ch09 --
