"""The translation split never lets a held-out sentence into training; the translation memory retrieves."""

from __future__ import annotations

import pytest

from llm_tutorial.data import (
    DataUnavailableError,
    load_translation_pairs,
    normalise_chinese,
    normalise_english,
    split_translation_pairs,
    translation_components,
)
from llm_tutorial.models import TranslationMemory


def _leaks(train, held_out) -> list[tuple]:
    english = {normalise_english(e) for e, *_ in train}
    chinese = {normalise_chinese(z) for _, z, *_ in train}
    return [p for p in held_out if normalise_english(p[0]) in english or normalise_chinese(p[1]) in chinese]


@pytest.mark.parametrize(("a", "b"), [
    ("I've lost my watch.", "I have lost my watch."),
    ("Don't go!", "do not go"),
    ("I can't swim.", "I cannot swim."),
    ("He won't come.", "He will not come."),
    ("It’s   HERE .", "it is here"),
    ("Let's go.", "Let us go!"),
])
def test_english_normalisation_equates_paraphrases(a, b):
    assert normalise_english(a) == normalise_english(b)


def test_english_normalisation_keeps_different_sentences_apart():
    assert normalise_english("I have a cat.") != normalise_english("I had a cat.")
    assert normalise_english("Tom is here.") != normalise_english("Tom was here.")


def test_chinese_normalisation_folds_widths_and_punctuation():
    assert normalise_chinese("我有一只猫。") == normalise_chinese("我有一只猫.") == "我有一只猫"
    assert normalise_chinese("汤姆在Ｂｏｓｔｏｎ！") == normalise_chinese("汤姆 在 boston!")
    assert normalise_chinese("我有一只猫。") != normalise_chinese("我有一只狗。")


def test_components_follow_chains_through_both_languages():
    pairs = [("I've lost my watch.", "我把手表弄丢了。"),  # 0
             ("I have lost my watch.", "我丢了我的手表。"),  # 1: same English as 0, normalised
             ("My watch is lost.", "我丢了我的手表。"),  # 2: same Chinese as 1
             ("It's raining.", "下雨了。"),  # 3: alone
             ("It is raining!", "在下雨。")]  # 4: same English as 3
    assert translation_components(pairs) == [[0, 1, 2], [3, 4]]


def test_crafted_split_keeps_components_whole_and_sizes_exact():
    pairs = [(f"Sentence number {i}.", f"第{i}句。") for i in range(40)]
    pairs += [("I've lost my watch.", "我把手表弄丢了。"), ("I have lost my watch.", "我丢了我的手表。"),
              ("My watch is lost.", "我丢了我的手表。")]
    for seed in range(20):
        train, dev, test = split_translation_pairs(pairs, 5, 4, seed)
        assert (len(train), len(dev), len(test)) == (len(pairs) - 9, 4, 5)
        assert sorted(train + dev + test) == sorted(pairs)
        assert _leaks(train, dev + test) == []
        watch = [part for part in (train, dev, test) if pairs[-1] in part][0]
        assert all(p in watch for p in pairs[-3:])  # the three linked pairs travel together


def test_a_split_by_english_sentence_alone_would_leak():
    """The test above can fail: the per-sentence split it replaces leaks through the Chinese side."""
    pairs = [("I've lost my watch.", "我丢了我的手表。"), ("My watch is lost.", "我丢了我的手表。")]
    assert _leaks(pairs[:1], pairs[1:]) == [pairs[1]]


def test_same_seed_same_split_other_seed_other_split():
    pairs = [(f"Sentence number {i}.", f"第{i}句。") for i in range(100)]
    assert split_translation_pairs(pairs, 10, 10, 3) == split_translation_pairs(pairs, 10, 10, 3)
    assert split_translation_pairs(pairs, 10, 10, 3)[2] != split_translation_pairs(pairs, 10, 10, 4)[2]


def test_tatoeba_split_has_no_leak():
    try:
        pairs = load_translation_pairs()
    except DataUnavailableError:
        pytest.skip("the Tatoeba pairs are not available offline here")
    train, dev, test = split_translation_pairs(pairs, 1000, 500, seed=0)
    assert (len(dev), len(test)) == (500, 1000)
    assert len(train) + len(dev) + len(test) == len(pairs)
    assert _leaks(train, dev + test) == []
    assert all(len(p) == 3 for p in test)  # the attribution travels with each pair


@pytest.mark.parametrize(("pairs", "n_test", "n_dev", "error", "words"), [
    ("not pairs", 1, 1, TypeError, "list of"),
    ([("only English",)], 0, 0, ValueError, "pairs[0]"),
    ([("English", 3)], 0, 0, ValueError, "pairs[0]"),
    ([("...", "你好")], 0, 0, ValueError, "no letters"),
    ([("a b", "你"), ("c d", "好")], -1, 0, ValueError, "n_test"),
    ([("a b", "你"), ("c d", "好")], 1, 1.5, ValueError, "n_dev"),
    ([("a b", "你"), ("c d", "好")], 1, 1, ValueError, "no training pairs"),
    ([("a b", "你"), ("a b", "好"), ("c", "们"), ("c", "的")], 1, 0, ValueError, "whole components"),
])
def test_bad_inputs_are_refused_clearly(pairs, n_test, n_dev, error, words):
    with pytest.raises(error, match=words.replace("[", r"\[").replace("]", r"\]")):
        split_translation_pairs(pairs, n_test, n_dev, 0)


def test_translation_memory_prefers_rare_shared_words():
    memory = TranslationMemory([("I like the cat.", "我喜欢猫。"), ("I like the dog.", "我喜欢狗。"),
                                ("The elephant is big.", "大象很大。")])
    assert memory.translate(["Do you like the elephant?"]) == ["大象很大。"]  # "elephant" outweighs "I like the"
    assert memory.translate(["I've a dog", "unknown words only"]) == ["我喜欢狗。", "我喜欢猫。"]  # no match: first


def test_translation_memory_similarity_is_weighted_dice():
    memory = TranslationMemory([("a b", "甲"), ("b c", "乙"), ("c d", "丙")])
    idf = {w: memory.idf[memory.vocabulary[w]].item() for w in "abcd"}
    got = memory.similarities(["a c"])[0]
    want = [2 * idf["a"] / (idf["a"] + idf["b"] + idf["a"] + idf["c"]),
            2 * idf["c"] / (idf["b"] + idf["c"] + idf["a"] + idf["c"]),
            2 * idf["c"] / (idf["c"] + idf["d"] + idf["a"] + idf["c"])]
    assert got.tolist() == pytest.approx(want)


def test_translation_memory_bad_inputs():
    with pytest.raises(ValueError, match="non-empty"):
        TranslationMemory([])
    with pytest.raises(ValueError, match=r"pairs\[0\]"):
        TranslationMemory([("English only",)])
    with pytest.raises(TypeError, match="list of sentences"):
        TranslationMemory([("a", "甲")]).translate("a")


def test_pad_sequences_fills_after_each_row():
    from llm_tutorial.data import pad_sequences

    assert pad_sequences([[1, 2, 3], [4]], 0).tolist() == [[1, 2, 3], [4, 0, 0]]
    assert pad_sequences([[5]], -1).tolist() == [[5]]
    for bad in ([], [[]], [[1], []], "ab"):
        with pytest.raises(ValueError, match="pad_sequences"):
            pad_sequences(bad, 0)
