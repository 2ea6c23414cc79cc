"""A translation memory: the baseline every machine translation system must beat.

Translators have long reused past work: find the stored source sentence most like the new one and
offer its translation. As a baseline it answers the question a BLEU score alone cannot: how much
of the score does *retrieval* already give, without translating anything? On a corpus full of
near-duplicates it can give a lot — which is also a test of whether the split leaks.

Similarity is IDF-weighted word overlap (a weighted Dice coefficient) between normalised English
sentences ``q`` (the query) and ``d`` (a stored sentence), as sets of words:

    idf(w) = log(N / df(w)),
    sim(q, d) = 2 Σ_{w ∈ q ∩ d} idf(w) / (Σ_{w ∈ q} idf(w) + Σ_{w ∈ d} idf(w)),

so rare shared words count much more than shared "the" or "I", and a long stored sentence is not
preferred just for containing more words. Ties go to the earliest stored pair.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from llm_tutorial.data.translation import normalise_english


class TranslationMemory:
    """Stores ``(english, chinese)`` pairs; ``translate`` returns the Chinese of the most similar English."""

    def __init__(self, pairs: Sequence[tuple]):
        if not isinstance(pairs, Sequence) or len(pairs) == 0:
            raise ValueError("TranslationMemory needs a non-empty list of (english, chinese) pairs to remember")
        for i, pair in enumerate(pairs):
            if not isinstance(pair, (tuple, list)) or len(pair) < 2 or not all(isinstance(s, str) for s in pair[:2]):
                raise ValueError(f"pairs[{i}] must be a tuple (english, chinese[, ...]) of strings, got {pair!r}")
        self.sources = [p[0] for p in pairs]
        self.targets = [p[1] for p in pairs]
        words = [set(normalise_english(s).split()) for s in self.sources]
        document_frequency: dict[str, int] = {}
        for ws in words:
            for w in ws:
                document_frequency[w] = document_frequency.get(w, 0) + 1
        self.vocabulary = {w: i for i, w in enumerate(sorted(document_frequency))}
        n = len(pairs)
        self.idf = torch.tensor([math.log(n / document_frequency[w]) for w in self.vocabulary])  # (V,)
        rows = [i for i, ws in enumerate(words) for _ in ws]
        cols = [self.vocabulary[w] for ws in words for w in ws]
        indices = torch.tensor([rows, cols], dtype=torch.long)
        values = self.idf[indices[1]] if cols else torch.zeros(0)
        self.memory = torch.sparse_coo_tensor(indices, values, (n, len(self.vocabulary)), check_invariants=True).coalesce()  # (N, V)
        self.memory_mass = torch.zeros(n).index_add_(0, indices[0], values)  # (N,): Σ_{w∈d} idf(w)

    def similarities(self, sentences: Sequence[str]) -> torch.Tensor:
        """(M, N): sim(q_m, d_n) for every query and every stored English sentence."""
        queries = torch.zeros(len(self.vocabulary), len(sentences))  # (V, M): 1 where word v is in query m
        for m, sentence in enumerate(sentences):
            for w in set(normalise_english(sentence).split()):
                if w in self.vocabulary:  # a word never stored can match nothing
                    queries[self.vocabulary[w], m] = 1.0
        shared = torch.sparse.mm(self.memory, queries)  # (N, M): Σ_{w∈q∩d} idf(w)
        query_mass = (self.idf[:, None] * queries).sum(0)  # (M,); unseen words add 0 (their idf is unknown)
        denominator = self.memory_mass[:, None] + query_mass[None, :]  # (N, M)
        return (2 * shared / denominator.clamp_min(1e-12)).T  # (M, N)

    def translate(self, sentences: Sequence[str], batch_size: int = 256) -> list[str]:
        """For each English sentence, the stored Chinese whose English is most similar."""
        if isinstance(sentences, str):
            raise TypeError("translate takes a list of sentences; wrap a single sentence in a list")
        out = []
        for i in range(0, len(sentences), batch_size):
            best = self.similarities(sentences[i : i + batch_size]).argmax(dim=1)  # (M,): first maximum on ties
            out += [self.targets[j] for j in best.tolist()]
        return out
