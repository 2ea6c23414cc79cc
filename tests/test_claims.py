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


def test_ch04_every_equation_equals_the_package_to_float64_rounding(results):
    """"The largest difference … is at the level of float64 rounding": hand equations are the model."""
    assert results("ch04")["largest_hand_difference"] < 1e-13


def test_ch04_sat_spreads_its_weight_almost_evenly(results):
    """"Sat does not pick out one token … cat and sat equally, the only a little lower"."""
    r = results("ch04")
    assert r["sat_weight_cat"] == pytest.approx(r["sat_weight_sat"], abs=1e-12)
    assert r["sat_weight_the"] < r["sat_weight_cat"]
    assert r["sat_weight_cat"] - r["sat_weight_the"] < 0.05  # almost uniform: no token singled out
    assert r["sat_weight_cat"] < 0.5


def test_ch04_imaginary_model_is_worse_than_uniform(results):
    """"The imaginary model's perplexity … is above the V of the uniform model"."""
    r = results("ch04")
    assert r["imaginary_perplexity"] > r["word_vocabulary_size"]


def test_ch04_bleu_by_hand_equals_sacrebleu(results):
    """BLEU by hand equals sacreBLEU's sentence_bleu and corpus_bleu (no zero n-gram count to smooth)."""
    r = results("ch04")
    assert r["bleu_by_hand"] == pytest.approx(r["bleu_sentence_sacrebleu"], abs=1e-9)
    assert r["bleu_by_hand"] == pytest.approx(r["bleu_corpus_sacrebleu"], abs=1e-9)
    assert r["bleu_brevity_penalty"] < 1  # the hypothesis is shorter than the reference


def test_ch04_online_softmax_equals_the_full_softmax(results):
    assert results("ch04")["online_softmax_difference"] < 1e-12


def test_ch04_flop_counter_measures_exactly_the_predicted_count(results):
    """"The count is exact": FlopCounterMode against 6·N_matrices + 6·d_model·V + 12·L·T·d_model."""
    assert results("ch04")["flop_count_ratio"] == pytest.approx(1.0, abs=1e-9)


def test_ch04_attention_ratio_to_6n_is_not_its_share(results):
    """Attention's term relative to 6N exceeds its share of 6N + attention, which exceeds its share of the total."""
    r = results("ch04")
    assert r["small_attention_to_6n"] > r["small_attention_share"] > r["small_attention_share_of_total"]
    assert r["small_attention_to_6n"] == pytest.approx(1024 / (12 * 768), rel=0.01)  # ≈ T / (12 d_model)


def test_ch04_activation_memory_matches_korthikanti_without_dropout(results):
    """Measured per-layer activations of the explicit path equal 16sbh + as²b numbers within a few per cent,
    the count with 4as²b bytes over-predicts, and the fused path grows linearly in s."""
    r = results("ch04")
    assert all(0.95 <= ratio <= 1.05 for ratio in r["activation_ratios_explicit"]), r["activation_ratios_explicit"]
    assert r["activation_ratio_if_4as2b_s256"] < 0.9
    assert r["sdpa_growth_128_to_256"] == pytest.approx(2.0, abs=0.1)
    assert r["explicit_growth_128_to_256"] > r["sdpa_growth_128_to_256"] + 0.3


def test_ch04_scaling_keeps_the_softmax_away_from_arg_max(results):
    """Unscaled at d_head = 1024 the max weight nears 1 and the Jacobian shrinks; scaled, both stay put."""
    r = results("ch04")
    assert r["max_weight_unscaled_1024"] > 0.9
    assert r["jacobian_shrink_1024"] > 2
    assert max(r["scaled_max_weights"]) - min(r["scaled_max_weights"]) < 0.03
    assert max(r["scaled_jacobian_norms"]) / min(r["scaled_jacobian_norms"]) < 1.05


def test_ch04_pre_norm_leaves_the_plateau_before_post_norm_in_every_seed(results):
    """"Every post-norm run is slower than every pre-norm run" at lr 1e-3; pre-norm still trains at 1e-2."""
    r = results("ch04")
    never = float("inf")
    pre = [never if step is None else step for step in r["pre_norm_lr1e3_first_below_3"]]
    post = [never if step is None else step for step in r["post_norm_lr1e3_first_below_3"]]
    assert len(pre) == len(post) == 3
    assert max(pre) < min(post)
    assert r["pre_norm_lr1e2_first_below_3"][0] is not None


def test_ch04_chinchilla_closed_form_and_gpt3(results):
    """The closed-form optimum sits at the grid's minimum; GPT-3's compute would do better at the optimum."""
    r = results("ch04")
    assert r["chinchilla_grid_max_gap"] < 0.03
    assert r["gpt3_loss_at_optimum"] < r["gpt3_loss_as_trained"]
    assert r["gpt3_optimal_n_billion"] < 175


# ---------------------------------------------------------------------------------------- ch05 --


# ---------------------------------------------------------------------------------------- ch06 --


# ---------------------------------------------------------------------------------------- ch07 --


# ---------------------------------------------------------------------------------------- ch08 --


# ---------------------------------------------------------------------------------------- ch09 --
