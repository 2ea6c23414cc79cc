"""Answer and diversity metrics against hand-computed values, brute-force counts and sacrebleu."""

from __future__ import annotations

import random

import pytest
import sacrebleu

from llm_tutorial.metrics import distinct_n, exact_match, normalize_answer, self_bleu, token_f1


@pytest.mark.parametrize(
    "text, expected",
    [
        ("The Duke of York!", "duke of york"),
        ("  KING   Richard, III. ", "king richard iii"),
        ("an apple a day", "apple day"),
        ("Theatre", "theatre"),  # "the" inside a word stays
        ("", ""),
    ],
)
def test_normalize_answer(text: str, expected: str) -> None:
    assert normalize_answer(text) == expected


@pytest.mark.parametrize(
    "prediction, reference, em, f1",
    [
        ("First Citizen", "first citizen.", 1.0, 1.0),
        ("the cat sat", "a cat sat down", 0.0, 0.8),  # P = {cat, sat}, R = {cat, sat, down}: p 1, r 2/3
        ("Romeo", "Juliet", 0.0, 0.0),
        ("to be to be", "to be or not", 0.0, 0.5),  # multiset overlap {to, be} = 2: p 2/4, r 2/4
        ("the", "a", 1.0, 1.0),  # both normalise to nothing
        ("the", "Romeo", 0.0, 0.0),
    ],
)
def test_exact_match_and_token_f1_by_hand(prediction: str, reference: str, em: float, f1: float) -> None:
    assert exact_match(prediction, reference) == em
    assert token_f1(prediction, reference) == pytest.approx(f1)


def brute_force_f1(predicted: list[str], expected: list[str]) -> float:
    """Multiset overlap by removing matched words one at a time from a copy of the reference."""
    remaining, overlap = list(expected), 0
    for word in predicted:
        if word in remaining:
            remaining.remove(word)
            overlap += 1
    if overlap == 0:
        return 0.0
    p, r = overlap / len(predicted), overlap / len(expected)
    return 2 * p * r / (p + r)


def test_token_f1_equals_a_brute_force_overlap_on_random_answers() -> None:
    rng = random.Random(0)
    words = ["romeo", "juliet", "duke", "of", "york", "king", "lord"]
    for _ in range(200):
        predicted = rng.choices(words, k=rng.randint(1, 6))
        expected = rng.choices(words, k=rng.randint(1, 6))
        assert token_f1(" ".join(predicted), " ".join(expected)) == pytest.approx(brute_force_f1(predicted, expected))


def test_distinct_n_by_hand() -> None:
    assert distinct_n([list("aaaa")], 1) == 0.25
    assert distinct_n([list("abab")], 2) == pytest.approx(2 / 3)  # ab, ba, ab
    assert distinct_n([["to", "be"], ["to", "be"], ["or"]], 2) == 0.5  # (to, be) twice; "or" has no bigram
    # a de Bruijn sequence B(2, 3) holds every binary 3-gram exactly once (cyclically): all distinct
    assert distinct_n([list("0001011100")], 3) == 1.0


def test_distinct_n_equals_a_brute_force_count() -> None:
    rng = random.Random(1)
    sequences = [[rng.randrange(4) for _ in range(rng.randint(0, 9))] for _ in range(7)]
    for n in (1, 2, 3):
        seen, total = [], 0
        for seq in sequences:
            for i in range(len(seq) - n + 1):
                total += 1
                if seq[i : i + n] not in seen:
                    seen.append(seq[i : i + n])
        assert distinct_n(sequences, n) == pytest.approx(len(seen) / total)


def test_self_bleu() -> None:
    same = ["the king is dead , long live the king"] * 3
    assert self_bleu(same) == pytest.approx(100.0)
    assert self_bleu(["aaa bbb ccc ddd", "eee fff ggg hhh"]) == 0.0
    texts = ["the king is dead", "long live the king", "the queen is dead today"]
    expected = sum(
        sacrebleu.sentence_bleu(texts[i], [t for j, t in enumerate(texts) if j != i]).score for i in range(3)
    ) / 3
    assert self_bleu(texts) == pytest.approx(expected)
    assert 0 < self_bleu(texts) < 100


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: exact_match(3, "a"), TypeError, "prediction must be a str"),
        (lambda: token_f1("a", None), TypeError, "reference must be a str"),
        (lambda: distinct_n([[1, 2]], 0), ValueError, "n must be a positive integer"),
        (lambda: distinct_n("abc", 1), TypeError, "list of token sequences"),
        (lambda: distinct_n([[1]], 2), ValueError, "no sequence has 2 tokens"),
        (lambda: self_bleu(["only one"]), ValueError, "at least two texts"),
        (lambda: self_bleu(["a", 2]), TypeError, r"texts\[1\] must be a str"),
    ],
)
def test_bad_inputs(call, error, match) -> None:
    with pytest.raises(error, match=match):
        call()
