"""Scores for what a model extracts or writes: answer overlap, and the diversity of samples.

Extractive question answering (SQuAD, Rajpurkar et al., 2016) compares a predicted answer with
the reference after normalising both (lower case, no punctuation, no articles a/an/the, single
spaces):

- **exact match**: 1 if the normalised strings are equal, else 0;
- **token F1**: the harmonic mean of precision and recall of the answer's words, counting each
  word as often as it occurs (multiset overlap ``|P ∩ R|``):
  ``precision = |P ∩ R| / |P|``, ``recall = |P ∩ R| / |R|``, ``F1 = 2·p·r / (p + r)``.

The diversity of generated text, which likelihood alone does not show (the most likely text is
often a loop):

- **distinct-n** (Li et al., 2016): distinct n-grams / all n-grams over a set of samples; 1 means
  no n-gram ever repeats, values near 0 mean the samples say the same thing over and over;
- **self-BLEU** (Zhu et al., 2018): the mean BLEU of each sample against all the others as
  references; high when the samples resemble one another (low diversity), 0 when they share no
  n-gram. BLEU comes from ``sacrebleu`` (Post, 2018), imported only when self-BLEU is asked for.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Hashable, Sequence

from ._checks import check_positive_int

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def _check_str(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {type(value).__name__}")
    return value


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lower case, punctuation removed, articles removed, spaces squeezed."""
    text = _check_str(text, "text").lower().translate(_PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, reference: str) -> float:
    """1.0 if the normalised prediction equals the normalised reference, else 0.0."""
    _check_str(prediction, "prediction"), _check_str(reference, "reference")
    return float(normalize_answer(prediction) == normalize_answer(reference))


def token_f1(prediction: str, reference: str) -> float:
    """Word-overlap F1 of the normalised answers, ``2·p·r / (p + r)``; 0 when they share no word.
    Two answers that normalise to nothing (e.g. both "the") score 1, one of them alone 0."""
    _check_str(prediction, "prediction"), _check_str(reference, "reference")
    predicted, expected = normalize_answer(prediction).split(), normalize_answer(reference).split()
    if not predicted or not expected:
        return float(predicted == expected)
    overlap = sum((Counter(predicted) & Counter(expected)).values())  # |P ∩ R| as multisets
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(predicted), overlap / len(expected)
    return 2 * precision * recall / (precision + recall)


def distinct_n(sequences: Sequence[Sequence[Hashable]], n: int) -> float:
    """Distinct n-grams divided by all n-grams, pooled over ``sequences`` (each a sequence of
    tokens: words, characters or ids). Sequences shorter than ``n`` contribute nothing."""
    check_positive_int(n, "n")
    if isinstance(sequences, str) or not isinstance(sequences, Sequence) or not sequences:
        raise TypeError("sequences must be a non-empty list of token sequences (e.g. [text.split() for text in samples])")
    ngrams = [tuple(tokens[i : i + n]) for tokens in sequences for i in range(len(tokens) - n + 1)]
    if not ngrams:
        raise ValueError(f"no sequence has {n} tokens, so there is no {n}-gram to count")
    return len(set(ngrams)) / len(ngrams)


def self_bleu(texts: Sequence[str], tokenize: str = "13a") -> float:
    """Mean sentence BLEU (0–100) of each text against all the other texts as references.

    ``tokenize`` is sacrebleu's tokenizer (``"13a"`` for English, ``"zh"`` for Chinese). Needs at
    least two texts. Sentence BLEU uses sacrebleu's default exponential smoothing, so a sample that
    shares some but not all n-gram orders with the others still gets a small, non-zero score."""
    if isinstance(texts, str) or not isinstance(texts, Sequence) or len(texts) < 2:
        raise ValueError("self_bleu needs a list of at least two texts (one is scored against the others)")
    for i, text in enumerate(texts):
        _check_str(text, f"texts[{i}]")
    try:
        import sacrebleu
    except ImportError as error:
        raise ImportError("self_bleu needs sacrebleu: pip install 'llm-tutorial[interop]' (or sacrebleu)") from error
    scores = [
        sacrebleu.sentence_bleu(text, [*texts[:i], *texts[i + 1 :]], tokenize=tokenize).score
        for i, text in enumerate(texts)
    ]
    return sum(scores) / len(scores)
