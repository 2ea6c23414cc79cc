"""A count-based n-gram language model with interpolated Kneser–Ney or add-k smoothing.

An n-gram model makes the Markov assumption that only the last ``n - 1`` tokens matter:

    p(x_t | x_<t) ≈ p(x_t | x_{t-n+1}, …, x_{t-1}),

and estimates that conditional from counts. Raw counts give probability zero to every n-gram the
training text never contained, so one unseen n-gram makes the perplexity infinite. Smoothing
moves some probability mass onto unseen events:

- add-k (Lidstone):  p(w | h) = (c(h w) + k) / (c(h) + k V)
- interpolated Kneser–Ney (Chen & Goodman, 1998), discount D:

      p(w | h) = max(c(h w) − D, 0) / c(h)  +  D · N₁₊(h •) / c(h) · p_cont(w | h′)

  where h′ drops the oldest token of h, N₁₊(h •) counts the distinct tokens seen after h, and
  the lower orders use *continuation* counts N₁₊(• h′ w) — how many different tokens precede
  h′ w — instead of raw counts, because a lower order is only consulted for contexts the higher
  order has not seen enough of.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence

import torch

from .._checks import check_choice, check_positive_int

Context = tuple[int, ...]


class NGramLM:
    """n-gram LM over integer token ids ``0 … vocab_size-1``. Call :meth:`fit` before use."""

    SMOOTHINGS = ("kneser-ney", "add-k")

    def __init__(
        self, order: int, vocab_size: int, smoothing: str = "kneser-ney", *, k: float = 1.0, discount: float = 0.75
    ) -> None:
        check_positive_int(order, "order")
        check_positive_int(vocab_size, "vocab_size")
        check_choice(smoothing, "smoothing", self.SMOOTHINGS)
        if smoothing == "add-k" and not k > 0:
            raise ValueError(f"add-k smoothing needs k > 0, got k={k!r}")
        if smoothing == "kneser-ney" and not 0 < discount < 1:
            raise ValueError(f"the Kneser–Ney discount must lie in (0, 1), got {discount!r}")
        self.order, self.vocab_size, self.smoothing = order, vocab_size, smoothing
        self.k, self.discount = k, discount
        self._fitted = False

    def fit(self, ids: Sequence[int] | torch.Tensor) -> NGramLM:
        """Count every m-gram, m = 1 … order, in one pass per order."""
        ids = self._as_list(ids, "ids")
        if len(ids) < self.order:
            raise ValueError(f"need at least order={self.order} tokens to fit, got {len(ids)}")
        # counts[m][h][w]: raw count of context h (length m) followed by w.
        self.counts: list[dict[Context, Counter]] = []
        for m in range(self.order):
            grams = Counter(zip(*(ids[i : len(ids) - m + i] for i in range(m + 1))))
            table: dict[Context, Counter] = defaultdict(Counter)
            for gram, count in grams.items():
                table[gram[:-1]][gram[-1]] = count
            self.counts.append(dict(table))
        # continuation[m][h][w] = N₁₊(• h w): distinct tokens seen before h w (lower orders only).
        self.continuation: list[dict[Context, Counter]] = []
        for m in range(self.order - 1):
            table = defaultdict(Counter)
            for longer_context, followers in self.counts[m + 1].items():
                for w in followers:
                    table[longer_context[1:]][w] += 1
            self.continuation.append(dict(table))
        self._totals = [{h: sum(c.values()) for h, c in level.items()} for level in self.counts]
        self._cont_totals = [{h: sum(c.values()) for h, c in level.items()} for level in self.continuation]
        self._fitted = True
        return self

    def prob(self, context: Sequence[int], token: int) -> float:
        """p(token | the last ``order - 1`` tokens of context); a shorter context uses a lower order."""
        self._require_fitted()
        history = tuple(context)[max(0, len(context) - (self.order - 1)) :]
        if self.smoothing == "add-k":
            return self._add_k(history, token)
        return self._kneser_ney(history, token, highest=True)

    def _add_k(self, history: Context, token: int) -> float:
        # (c(h w) + k) / (c(h) + k V)
        seen = self.counts[len(history)].get(history, Counter())
        total = self._totals[len(history)].get(history, 0)
        return (seen[token] + self.k) / (total + self.k * self.vocab_size)

    def _kneser_ney(self, history: Context, token: int, highest: bool) -> float:
        m = len(history)
        counts = self.counts[m] if highest else self.continuation[m]
        totals = self._totals[m] if highest else self._cont_totals[m]
        total = totals.get(history, 0)
        if m == 0:
            lower = 1.0 / self.vocab_size  # the uniform distribution below the unigram level
        else:
            lower = self._kneser_ney(history[1:], token, highest=False)
        if total == 0:
            return lower  # an unseen context: all mass goes to the lower order
        followers = counts[history]
        discounted = max(followers[token] - self.discount, 0.0) / total
        backoff_weight = self.discount * len(followers) / total  # D · N₁₊(h •) / c(h)
        return discounted + backoff_weight * lower

    def distribution(self, context: Sequence[int]) -> torch.Tensor:
        """The full next-token distribution (vocab_size,), which sums to one."""
        return torch.tensor([self.prob(context, w) for w in range(self.vocab_size)], dtype=torch.float64)

    def token_nll(self, ids: Sequence[int] | torch.Tensor) -> torch.Tensor:
        """Negative log-likelihood (nats) of each token of ``ids``: a ``(len(ids),)`` float64 tensor.

        Token t sees ids[:t] only (its last ``order - 1`` tokens), so the first tokens use lower
        orders. Per-token losses are what a paired comparison or a bootstrap interval needs.
        """
        ids = self._as_list(ids, "ids")
        if not ids:
            raise ValueError("ids is empty")
        return torch.tensor([-math.log(self.prob(ids[max(0, t - self.order + 1) : t], w)) for t, w in enumerate(ids)],
                            dtype=torch.float64)

    def nll(self, ids: Sequence[int] | torch.Tensor) -> float:
        """Mean negative log-likelihood (nats per token) of ``ids``; token t sees ids[:t] only."""
        return self.token_nll(ids).mean().item()

    def sample(self, context: Sequence[int], num_tokens: int, generator: torch.Generator | None = None) -> list[int]:
        """Continue ``context`` by ``num_tokens`` tokens drawn from the model."""
        check_positive_int(num_tokens, "num_tokens")
        tokens = self._as_list(context, "context")
        for _ in range(num_tokens):
            probs = self.distribution(tokens)
            tokens.append(int(torch.multinomial(probs, 1, generator=generator)))
        return tokens[len(tokens) - num_tokens :]

    def _as_list(self, ids: Sequence[int] | torch.Tensor, name: str) -> list[int]:
        values = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        bad = [v for v in values if not isinstance(v, int) or not 0 <= v < self.vocab_size]
        if bad:
            raise ValueError(f"{name} must hold token ids in [0, {self.vocab_size}), found {bad[0]!r}")
        return values

    def _require_fitted(self) -> None:
        if not self._fitted:
            raise RuntimeError("this NGramLM has not been fitted: call .fit(train_ids) first")
