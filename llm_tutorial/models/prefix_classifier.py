"""A prefix classifier: the probability of an attribute after every prefix of a text, p(a | x_≤t).

Guided decoding (FUDGE, Yang & Klein, 2021; :mod:`llm_tutorial.generate.guided`) asks, at every
step and for every candidate next token, how likely the *finished* text is to have attribute
``a`` if the text so far is ``x_<t`` followed by that candidate. A classifier of whole texts
cannot answer for an unfinished one, so this classifier is trained on every prefix of each
labelled example, all with the example's label (a cross-entropy at every position):

    L = − (1/|P|) Σ_{(b,t) ∈ P} log p(a_b | x_{b,≤t})        (P: the non-padding positions)

It is a recurrent network (an embedding, a GRU, a linear head), as FUDGE's was: the state after
``x_≤t`` summarises the prefix, so scoring k candidate continuations costs k single GRU steps
(:meth:`PrefixClassifier.extend`) instead of k passes over the whole prefix.

    h_t = GRU(h_{t−1}, E[x_t]),    p(a | x_≤t) = softmax(W h_t + b)_a
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .._checks import check_positive_int, check_rank, check_token_ids


@dataclass
class PrefixClassifierConfig:
    """Sizes of a :class:`PrefixClassifier`."""

    vocab_size: int
    n_classes: int
    d_embed: int = 64
    d_hidden: int = 128

    def __post_init__(self) -> None:
        for name in ("vocab_size", "d_embed", "d_hidden"):
            check_positive_int(getattr(self, name), name)
        check_positive_int(self.n_classes, "n_classes")
        if self.n_classes < 2:
            raise ValueError(f"n_classes must be at least 2 (a classifier chooses between classes), got {self.n_classes}")


class PrefixClassifier(nn.Module):
    """Attribute logits after every prefix: ``forward(idx (B, T)) → (B, T, n_classes)``."""

    def __init__(self, config: PrefixClassifierConfig):
        super().__init__()
        if not isinstance(config, PrefixClassifierConfig):
            raise TypeError(f"config must be a PrefixClassifierConfig, got {type(config).__name__}")
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.d_embed)
        self.gru = nn.GRU(config.d_embed, config.d_hidden, batch_first=True)
        self.head = nn.Linear(config.d_hidden, config.n_classes)

    def _check_ids(self, idx: torch.Tensor, name: str) -> None:
        check_rank(idx, name, 2, "(B, T) token ids")
        check_token_ids(idx, name, self.config.vocab_size)
        if idx.size(1) == 0:
            raise ValueError(f"{name} must hold at least one token per row, got shape {tuple(idx.shape)}")

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Logits of the attribute after each prefix ``x_≤t``: ``(B, T, n_classes)``."""
        self._check_ids(idx, "idx")
        states, _ = self.gru(self.embedding(idx))  # (B, T, d_hidden)
        return self.head(states)  # (B, T, n_classes)

    def start(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Read a prompt ``(B, T)``: the attribute's log-probabilities after it ``(B, n_classes)``
        and the state ``(B, d_hidden)`` to :meth:`extend` from."""
        self._check_ids(idx, "idx")
        states, _ = self.gru(self.embedding(idx))  # (B, T, d_hidden)
        state = states[:, -1]  # (B, d_hidden)
        return self.head(state).log_softmax(dim=-1), state

    def extend(self, state: torch.Tensor, candidates: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One step from ``state`` ``(B, d_hidden)`` for each of k candidate tokens ``(B, k)``.

        Returns the log-probabilities ``(B, k, n_classes)`` of the attribute if the candidate were
        appended, and the k new states ``(B, k, d_hidden)`` (keep the chosen one's).
        """
        check_rank(state, "state", 2, "(B, d_hidden)")
        self._check_ids(candidates, "candidates")
        B, k = candidates.shape
        if state.shape != (B, self.config.d_hidden):
            raise ValueError(f"state must have shape (B, d_hidden) = ({B}, {self.config.d_hidden}) for {B} rows of "
                             f"candidates, got {tuple(state.shape)}")
        x = self.embedding(candidates.reshape(B * k, 1))  # (B·k, 1, d_embed)
        h0 = state.repeat_interleave(k, dim=0)[None]  # (1, B·k, d_hidden): row b's state for each of its k
        new, _ = self.gru(x, h0)  # (B·k, 1, d_hidden)
        new = new.reshape(B, k, -1)  # (B, k, d_hidden)
        return self.head(new).log_softmax(dim=-1), new
