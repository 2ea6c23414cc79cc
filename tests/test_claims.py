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


# ---------------------------------------------------------------------------------------- ch07 --


# ---------------------------------------------------------------------------------------- ch08 --


def test_ch08_kv_cache_speedup_grows_with_length(results):
    """8.3.1: "the speed-up grows with the length", from the shortest length timed to the longest."""
    r = results("ch08")
    assert r["kv_speedup_shortest"] > 1
    assert r["kv_speedup_longest"] > 2 * r["kv_speedup_shortest"]


def test_ch08_int8_nearly_free_and_two_bits_break_the_model(results):
    """8.3.1: "flat until it falls off a cliff": int8 costs well under 1% of perplexity, each bit
    removed costs more, and int2 more than doubles the perplexity."""
    r = results("ch08")
    assert abs(r["int8_change"]) < 0.01
    assert r["int8_change"] <= r["int6_change"] < r["int4_change"] < r["int3_change"]
    assert r["int2_ppl"] > 2 * r["main_val_ppl"]
    assert 0.25 < r["int8_size_ratio"] < 0.35  # "not 25%": embeddings and norms stay in float


def test_ch08_distilled_student_beats_text_only_student(results):
    """8.3.1: the distilled student beats the same student trained on text alone, by more than the
    evaluation noise, and stays behind its teacher."""
    r = results("ch08")
    assert r["main_val_ppl"] < r["student_distilled_ppl"] < r["student_scratch_ppl"]
    assert r["distill_gain_low"] > 0
    assert 0 < r["distill_gap_closed"] < 1


def test_ch08_probes_previous_character_moved_by_attention_names_readable_from_embedding(results):
    """8.3.2: the previous character is near the guessing baseline at the embedding and readable
    after one block; speaker names are already readable at the embedding (a probe needs its baseline)."""
    r = results("ch08")
    assert r["probe_prev_embed"] < r["probe_prev_guess"] + 0.15
    assert r["probe_prev_block1"] > r["probe_prev_embed"] + 0.5
    assert r["probe_prev_last"] < r["probe_prev_block1"]  # "fades a little in later layers"
    assert r["probe_name_embed"] > 0.9 and r["probe_name_last"] - r["probe_name_embed"] < 0.1


def test_ch08_character_noise_approaches_the_unigram_guess(results):
    """8.3.3: 10% noise roughly doubles the perplexity; 20% approaches, but stays below, the
    context-free unigram guess."""
    r = results("ch08")
    assert 1.5 < r["noise10_ratio"] < 2.5
    assert r["noise10_ppl"] < r["noise20_ppl"] < r["unigram_ppl"]


def test_ch08_bias_probe_overall_he_preference_and_reversed_role_association(results):
    """8.3.4: the model prefers he over she more than the corpus does, his over her less; the role
    effects are small and run against the corpus, detectably (permutation p < 0.05, interval below 0)."""
    r = results("ch08")
    assert r["he_she_model"] > r["he_she_corpus"] > 0
    assert 0 < r["his_her_model"] < r["his_her_corpus"]
    assert r["role_effect_max"] < 0.25
    assert r["bias_r"] < 0 and r["bias_p"] < 0.05 and r["bias_r_high"] < 0


def test_ch08_calibrated_because_under_trained(results):
    """8.3.5: ECE near one percentage point, on validation and training text alike, and the
    validation loss still falling at the end of training."""
    r = results("ch08")
    assert r["ece"] < 0.02 and r["ece_train"] < 0.02
    assert r["val_loss_last_drop"] > 0
    assert 0 < r["main_gap"] < 0.3


def test_ch08_rope_degrades_beyond_trained_context(results):
    """8.3.6: RoPE read whole gets worse past T and worse again past 2T, ending worse than the
    learned-position model's sliding window; RoPE beats learned positions inside T."""
    r = results("ch08")
    assert r["rope_whole_in"] < r["rope_whole_1t2t"] < r["rope_whole_2t4t"]
    assert r["rope_whole_2t4t"] > r["learned_slide_2t4t"] > r["rope_slide_2t4t"]
    assert r["rope_gain_low"] > 0


def test_ch08_samples_copy_no_more_than_unseen_shakespeare(results):
    """8.3.7: at temperature 1 the samples share fewer 8-grams with the training text than held-out
    Shakespeare, at temperature 0.5 more; longest copied spans are of similar length."""
    r = results("ch08")
    assert r["overlap8_t1"] < r["overlap8_heldout"] < r["overlap8_t05"]
    assert r["span_max_t05"] < 2 * r["span_max_heldout"]


# ---------------------------------------------------------------------------------------- ch09 --
