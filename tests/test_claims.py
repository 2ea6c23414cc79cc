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


# ---------------------------------------------------------------------------------------- ch09 --
