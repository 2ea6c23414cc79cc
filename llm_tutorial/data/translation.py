"""Splitting a parallel corpus so that no test sentence is seen in training.

A corpus of translation pairs such as Tatoeba is not a set of independent examples: one English
sentence has several translations, and one Chinese sentence translates several English ones
("I've lost my watch." and "I have lost my watch." both map to 我把手表弄丢了。). Splitting by
English sentence still puts test *references* into the training targets through such paraphrases,
and the test then rewards memory rather than translation.

The fix is to split by **connected component**: pairs are the edges of a graph whose nodes are
normalised sentences (English and Chinese), and every component — all the pairs linked, directly
or through other pairs, by a shared sentence — goes whole to one part. Then no normalised English
or Chinese sentence of the test or development part occurs in training, by construction.

Normalisation decides what counts as "the same sentence": case, punctuation, whitespace, full-
and half-width forms, and English contractions ("I've" ≡ "I have", "don't" ≡ "do not").
"""

from __future__ import annotations

import random
import re
import unicodedata
from collections.abc import Sequence

from .._checks import check_int

# Whole-word contractions first (their stems change), then the regular suffixes.
_IRREGULAR = {"won't": "will not", "can't": "can not", "cannot": "can not", "shan't": "shall not",
              "ain't": "is not", "let's": "let us"}
_SUFFIXES = (("n't", " not"), ("'re", " are"), ("'m", " am"), ("'ve", " have"), ("'ll", " will"),
             ("'d", " would"), ("'s", " is"))
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def normalise_english(sentence: str) -> str:
    """Lower case, contractions expanded, punctuation dropped, words joined by single spaces.

    ``'s`` always becomes ``is`` and ``'d`` always ``would`` (the possessive and ``had`` are not
    told apart): both sides of every comparison are normalised the same way, and a rare false
    match only makes a component larger, never lets a test sentence into training.
    """
    text = unicodedata.normalize("NFKC", sentence).lower().replace("\u2019", "'").replace("`", "'")
    words = []
    for word in _WORD.findall(text):
        if word in _IRREGULAR:
            words.append(_IRREGULAR[word])
            continue
        for suffix, expansion in _SUFFIXES:
            if word.endswith(suffix) and len(word) > len(suffix):
                word = word[: -len(suffix)] + expansion
                break
        words.append(word.replace("'", ""))
    return " ".join(words)


def normalise_chinese(sentence: str) -> str:
    """Full-width forms folded (NFKC), Latin letters lower-cased, punctuation and spaces dropped."""
    text = unicodedata.normalize("NFKC", sentence).lower()
    return "".join(c for c in text if c.isalnum())


def _check_pairs(pairs: object) -> None:
    if not isinstance(pairs, Sequence) or isinstance(pairs, (str, bytes)):
        raise TypeError(f"pairs must be a list of (english, chinese[, ...]) tuples, got {type(pairs).__name__}")
    for i, pair in enumerate(pairs):
        if (not isinstance(pair, (tuple, list)) or len(pair) < 2
                or not isinstance(pair[0], str) or not isinstance(pair[1], str)):
            raise ValueError(f"pairs[{i}] must be a tuple (english, chinese[, ...]) of strings, got {pair!r}")
        if not normalise_english(pair[0]) or not normalise_chinese(pair[1]):
            raise ValueError(f"pairs[{i}] has a sentence with no letters or digits: {pair!r}")


def translation_components(pairs: Sequence[tuple[str, str]]) -> list[list[int]]:
    """Indices of ``pairs`` grouped into connected components (pairs sharing a normalised sentence).

    Union–find over the pairs: each normalised English and each normalised Chinese sentence
    remembers the first pair it appeared in, and every later pair with it is joined to that one.
    Components are returned in order of their first pair, each sorted.
    """
    _check_pairs(pairs)
    parent = list(range(len(pairs)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]  # path halving keeps the trees flat
            i = parent[i]
        return i

    first_seen: dict[tuple[str, str], int] = {}
    for i, (english, chinese, *_) in enumerate(pairs):
        for key in (("en", normalise_english(english)), ("zh", normalise_chinese(chinese))):
            j = first_seen.setdefault(key, i)
            parent[find(i)] = find(j)
    groups: dict[int, list[int]] = {}
    for i in range(len(pairs)):
        groups.setdefault(find(i), []).append(i)
    return sorted(groups.values(), key=lambda members: members[0])


def split_translation_pairs(pairs: Sequence[tuple], n_test: int, n_dev: int, seed: int = 0
                            ) -> tuple[list[tuple], list[tuple], list[tuple]]:
    """``(train, dev, test)``: whole components of ``pairs``, about ``n_test`` and ``n_dev`` pairs held out.

    The components are shuffled with ``seed``; each in turn goes to the test part if it still fits
    in ``n_test`` pairs, else to the development part if it fits in ``n_dev``, else to training.
    A component never straddles two parts, so no normalised English or Chinese sentence of the
    development or test part occurs in training (``tests/test_translation_split.py`` checks it
    on Tatoeba). Large components (a common sentence with many translations) rarely fit, so the
    held-out parts lean towards sentences with one or few translations; say so when you report
    on them. Pairs keep any extra fields (Tatoeba's attribution) and their original order.
    """
    _check_pairs(pairs)
    check_int(n_test, "n_test", 0)
    check_int(n_dev, "n_dev", 0)
    check_int(seed, "seed")
    if n_test + n_dev >= len(pairs):
        raise ValueError(f"n_test + n_dev = {n_test + n_dev} leaves no training pairs out of {len(pairs)}; "
                         f"hold out fewer pairs")
    components = translation_components(pairs)
    random.Random(seed).shuffle(components)
    part_of = [0] * len(pairs)  # 0 train, 1 dev, 2 test
    room = {2: n_test, 1: n_dev}
    for members in components:
        for part in (2, 1):
            if len(members) <= room[part]:
                room[part] -= len(members)
                for i in members:
                    part_of[i] = part
                break
    if room[2] or room[1]:
        raise ValueError(f"could not fill the held-out parts with whole components ({room[2]} test and "
                         f"{room[1]} development pairs short): ask for fewer")
    parts: tuple[list, list, list] = ([], [], [])
    for pair, part in zip(pairs, part_of):
        parts[part].append(pair)
    return parts
