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

def test_ch02_causal_decoder_prefix_does_not_move_bidirectional_encoder_does(results):
    """§2.1: changing the last target token leaves every earlier decoder output exactly unchanged;
    changing the first source token moves every encoder position."""
    r = results("ch02")
    assert r["decoder_prefix_moved"] == 0
    assert r["encoder_min_moved"] > 0


def test_ch02_gpt_is_exactly_blind_to_the_future_bert_is_not(results):
    """§2.4: one changed token moves every BERT position (a little) and no GPT position before it."""
    r = results("ch02")
    assert r["gpt_before_moved"] == 0
    assert r["bert_min_moved"] > 0


def test_ch02_training_moves_the_gpt_from_log_v(results):
    """§2.2: the validation loss starts at log V (a uniform guess) and training cuts it by over 2 nats."""
    r = results("ch02")
    assert abs(r["gpt_val_first"] - r["log_v"]) < 0.05
    assert r["gpt_val_final"] < r["log_v"] - 2


def test_ch02_training_concentrates_every_head(results):
    """§2.2: untrained heads are uniform (relative entropy ≈ 1); after training every head is sharper
    than any untrained one."""
    r = results("ch02")
    assert r["untrained_entropy_min"] > 0.98
    assert r["trained_entropy_max"] < r["untrained_entropy_min"]


def test_ch02_untrained_losses_sit_at_their_closed_forms(results):
    """§2.3: binary losses at log 2 within the spread of five initialisations; MLM at log V + σ²/2;
    the tied-embedding GPT below log V + σ²/2 by several spreads, a gap the current-token lift accounts for."""
    import math

    r = results("ch02")
    assert abs(r["nsp_untrained"] - math.log(2)) < 2 * r["nsp_untrained_std"]
    assert abs(r["rtd_disc_untrained"] - math.log(2)) < 2 * r["rtd_disc_std"]
    assert abs(r["mlm_untrained"] - r["mlm_expected"]) < 0.01
    assert abs(r["clm_untrained"] - r["log_v"]) < r["clm_untrained_std"]
    assert r["clm_gap"] > 2 * r["clm_untrained_std"]
    assert abs(r["lift_product"] - r["clm_gap"]) < 0.25 * r["clm_gap"]



def test_ch02_gap_parts_memorisation_and_different_text(results):
    """§2.2: unseen blocks of the training plays score worse than trained-on blocks (memorisation), and
    the validation split worse again (different text); the two parts add up to the whole gap."""
    r = results("ch02")
    assert r["memorised_low"] <= r["memorised_gap"] <= r["memorised_high"]
    assert r["shift_low"] <= r["shift_gap"] <= r["shift_high"]
    assert r["memorised_gap"] > 0 and r["shift_gap"] > 0
    assert abs(r["memorised_gap"] + r["shift_gap"] - (r["val_split_loss"] - r["heldin_loss"])) < 1e-9


def test_ch02_first_column_comes_from_the_first_line(results):
    """§2.2: on average the first token gets little weight; the bright first column of the sentence's
    map comes from its first line, whose queries put more weight there than any head does on average."""
    r = results("ch02")
    assert r["break_head_first"] > r["trained_first_max"]


def test_ch02_memorisation_is_the_larger_part_of_the_gap(results):
    """§2.2: memorisation (held-out − held-in) is larger than the shift to the validation plays, and the
    logged training loss is close to the held-in loss."""
    r = results("ch02")
    assert r["memorised_gap"] > r["shift_gap"]
    assert r["memorised_low"] > 0 and r["shift_low"] > 0
    assert abs(r["logged_train_loss"] - r["heldin_loss"]) < 0.05


def test_ch02_local_heads_in_layer_1_line_break_heads_in_layer_2(results):
    """Summary: local heads in layer 1, heads anchored on line breaks in layer 2."""
    r = results("ch02")
    assert r["local_head"].startswith("layer 1") and r["break_head"].startswith("layer 2")


# ---------------------------------------------------------------------------------------- ch03 --


# ---------------------------------------------------------------------------------------- ch04 --


# ---------------------------------------------------------------------------------------- ch05 --


# ---------------------------------------------------------------------------------------- ch06 --


# ---------------------------------------------------------------------------------------- ch07 --


# ---------------------------------------------------------------------------------------- ch08 --


# ---------------------------------------------------------------------------------------- ch09 --
