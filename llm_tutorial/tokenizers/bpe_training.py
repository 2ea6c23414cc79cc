"""Learning byte-pair-encoding merges, with pair counts updated incrementally.

The algorithm (Sennrich et al., 2016, on bytes as in GPT-2):

1. Pre-tokenise the corpus and count each distinct piece ("word"), e.g. ``{b" the": 5000, ...}``.
   Every word starts as a sequence of single bytes: token ids 0–255.
2. Count every adjacent pair of tokens over the corpus, weighting each word by its frequency:

   .. math:: \\mathrm{count}(a, b) = \\sum_w \\mathrm{freq}(w)\\,\\#\\{i : w_i = a,\\ w_{i+1} = b\\}

3. Take the most frequent pair, give the concatenation of its two tokens the next free id, and
   replace the pair by the new token in every word (left to right, without overlap).
4. Repeat from 2 until the wanted number of merges is learned.

**Incremental counts.** Recounting every pair after each merge costs the size of the corpus per
merge. But a merge only changes the words that contain the merged pair, and only the pairs
inside those words. So we keep

- ``pair_counts[(a, b)]``: the count above, for every pair present;
- ``pair_words[(a, b)]``: the set of words containing the pair;
- a heap of ``(-count, bytes(a), bytes(b))`` entries to find the best pair in ``O(log P)``.

A merge visits only ``pair_words[best]``, subtracts the pairs those words had, adds the pairs they
have now, and pushes a fresh heap entry for each pair whose count changed. The heap is *lazy*:
an entry whose count no longer matches ``pair_counts`` is outdated and skipped when popped.

**Ties.** Among pairs of equal count, the pair whose token bytes are smallest wins, compared as
``(bytes(a), bytes(b))`` (first the left token's bytes, then the right token's; ``b"a" < b"ab"
< b"b"``). So training is deterministic: the same corpus always gives the same merges, whatever
the order in which the corpus was read.
"""

from __future__ import annotations

import heapq
import warnings
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence

from tqdm import tqdm

from .._checks import check_int
from ._common import check_text
from .pretokenize import pretokenize_bytes, split_special_tokens
from ..runtime import progress_bars

Pair = tuple[int, int]


def merge_pair(ids: Sequence[int], pair: Pair, new_id: int) -> list[int]:
    """Replace each occurrence of ``pair`` in ``ids``, scanning left to right without overlap,
    by ``new_id``: ``merge_pair([7, 7, 7], (7, 7), 300)`` → ``[300, 7]``."""
    first, second = pair
    merged: list[int] = []
    i = 0
    while i < len(ids):
        if ids[i] == first and i + 1 < len(ids) and ids[i + 1] == second:
            merged.append(new_id)
            i += 2
        else:
            merged.append(ids[i])
            i += 1
    return merged


def count_pretokens(
    texts: Iterable[str], pattern: str, special_tokens: Collection[str] = ()
) -> Counter[bytes]:
    """How often each pre-token (as UTF-8 bytes) occurs in ``texts``; special tokens are cut out
    first and not counted, so no merge can cross or build one."""
    counts: Counter[bytes] = Counter()
    for text in texts:
        check_text(text, "each training text")
        for piece, is_special in split_special_tokens(text, special_tokens):
            if not is_special:
                counts.update(pretokenize_bytes(piece, pattern))
    return counts


class PairIndex:
    """The pair counts of a corpus of words, kept exact while merges are applied (see the module
    docstring). Token ids 0–255 are the bytes; merge ``k`` creates id ``256 + k``."""

    def __init__(self, word_counts: Mapping[bytes, int]):
        self.token_bytes: list[bytes] = [bytes([b]) for b in range(256)]
        self.words: list[list[int]] = [list(word) for word in word_counts]
        self.weights: list[int] = list(word_counts.values())
        self.pair_counts: dict[Pair, int] = {}
        self.pair_words: dict[Pair, set[int]] = {}
        for index, (word, weight) in enumerate(zip(self.words, self.weights)):
            for pair in zip(word, word[1:]):
                self.pair_counts[pair] = self.pair_counts.get(pair, 0) + weight
                self.pair_words.setdefault(pair, set()).add(index)
        self.heap = [self._heap_entry(pair, count) for pair, count in self.pair_counts.items()]
        heapq.heapify(self.heap)

    def _heap_entry(self, pair: Pair, count: int) -> tuple[int, bytes, bytes, Pair]:
        # heapq pops the smallest entry: the highest count, then the smallest (left, right) bytes.
        first, second = pair
        return (-count, self.token_bytes[first], self.token_bytes[second], pair)

    def pop_best_pair(self) -> Pair | None:
        """The most frequent pair (ties as documented), or ``None`` when no pair is left."""
        while self.heap:
            negative_count, _, _, pair = heapq.heappop(self.heap)
            if self.pair_counts.get(pair) == -negative_count:
                return pair
        return None

    def merge(self, pair: Pair) -> int:
        """Merge ``pair`` into a new token everywhere; update only the words that contain it."""
        new_id = len(self.token_bytes)
        self.token_bytes.append(self.token_bytes[pair[0]] + self.token_bytes[pair[1]])
        count_changes: dict[Pair, int] = {}
        for index in self.pair_words.pop(pair):
            old_word = self.words[index]
            new_word = merge_pair(old_word, pair, new_id)
            self.words[index] = new_word
            self._record_changes(index, old_word, new_word, count_changes)
        for changed, change in count_changes.items():
            if change:
                self._apply_change(changed, change)
        return new_id

    def _record_changes(
        self, index: int, old_word: list[int], new_word: list[int], count_changes: dict[Pair, int]
    ) -> None:
        weight = self.weights[index]
        old_pairs = list(zip(old_word, old_word[1:]))
        new_pairs = list(zip(new_word, new_word[1:]))
        for old in old_pairs:
            count_changes[old] = count_changes.get(old, 0) - weight
        for new in new_pairs:
            count_changes[new] = count_changes.get(new, 0) + weight
        for gone in set(old_pairs).difference(new_pairs):
            if gone in self.pair_words:  # the merged pair's own set was popped already
                self.pair_words[gone].discard(index)
        for added in set(new_pairs).difference(old_pairs):
            self.pair_words.setdefault(added, set()).add(index)

    def _apply_change(self, pair: Pair, change: int) -> None:
        count = self.pair_counts.get(pair, 0) + change
        if count > 0:
            self.pair_counts[pair] = count
            heapq.heappush(self.heap, self._heap_entry(pair, count))
        else:
            del self.pair_counts[pair]
            self.pair_words.pop(pair, None)


def learn_merges(
    pretoken_counts: Mapping[bytes, int], num_merges: int, *, progress: bool = True
) -> list[tuple[bytes, bytes]]:
    """Learn up to ``num_merges`` merges from pre-token counts; returns them in order, each as the
    ``(left, right)`` bytes of the two tokens it joins. Stops early, with a warning, when every
    word has become a single token."""
    check_int(num_merges, "num_merges", 0)
    index = PairIndex(pretoken_counts)
    merges: list[tuple[bytes, bytes]] = []
    with tqdm(total=num_merges, desc="BPE merges", unit="merge", disable=not progress_bars(progress)) as bar:
        while len(merges) < num_merges:
            pair = index.pop_best_pair()
            if pair is None:
                warnings.warn(
                    f"only {len(merges)} of the {num_merges} requested merges exist: every pre-token of "
                    "the training text is a single token now. Train on more text for a larger vocabulary.",
                    stacklevel=3,
                )
                break
            index.merge(pair)
            merges.append((index.token_bytes[pair[0]], index.token_bytes[pair[1]]))
            bar.update(1)
    return merges
