"""A permutation language model in XLNet's style: two-stream attention over a random factorisation order.

XLNet (Yang et al., 2019) trains ``E_z Σ_{t>c} log p(x_{z_t} | x_{z_<t})``, the causal chain rule in a
random order ``z`` of the positions, predicting only the last ``T/K`` steps of each order
(:func:`~llm_tutorial.nn.permutation.num_predicted`). The masks and the two streams are in
:mod:`llm_tutorial.nn.permutation`; this module stacks them into a model:

    h^(0) = E[x] + P                    (B, T, d_model)  content stream: every position, its token
    g^(0) = w + P[targets]              (B, P, d_model)  query stream: only the predicted positions
    (h, g) ← TwoStreamBlock_m(h, g, M_h, M_g[targets]),  m = 1..L
    logits = Norm(g^(L)) Eᵀ              (B, P, V)        tied output layer

What we keep from XLNet: the objective, the two streams with shared weights and their masks,
partial prediction. What we leave out (it does not change the objective): Transformer-XL's
segment recurrence and relative positions (absolute learned positions instead), and its
relative segment encodings. Computing the query stream only at the ``P`` predicted positions is
XLNet's own economy (its ``target_mapping``); the content stream of the last layer feeds nothing
and is skipped.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from llm_tutorial._checks import check_dtype, check_positive_int, check_probability, check_rank, check_token_ids
from llm_tutorial.nn import LearnedPositionalEmbedding, TransformerBlock, build_norm
from llm_tutorial.nn.permutation import TwoStreamBlock, check_permutation, permutation_masks


@dataclass
class PermutationLMConfig:
    """Sizes of the permutation LM; GPT-2-style blocks (pre-norm LayerNorm, GELU MLP, biases)."""

    vocab_size: int
    context_length: int = 32
    n_layer: int = 2
    n_head: int = 4
    d_model: int = 128
    d_ff: int = 512
    dropout: float = 0.0

    def __post_init__(self) -> None:
        for name in ("vocab_size", "context_length", "n_layer", "n_head", "d_model", "d_ff"):
            check_positive_int(getattr(self, name), name)
        if self.d_model % self.n_head:
            raise ValueError(f"n_head={self.n_head} must divide d_model={self.d_model}")
        check_probability(self.dropout, "dropout", inclusive_high=False)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class PermutationLM(nn.Module):
    """Token ids (B, T), a factorisation order (B, T) and the positions to predict (B, P) -> logits (B, P, V)."""

    def __init__(self, config: PermutationLMConfig) -> None:
        super().__init__()
        if not isinstance(config, PermutationLMConfig):
            raise TypeError(f"config must be a PermutationLMConfig, got {type(config).__name__}")
        self.config = c = config
        self.token = nn.Embedding(c.vocab_size, c.d_model)
        self.position = LearnedPositionalEmbedding(c.context_length, c.d_model)
        self.query_init = nn.Parameter(torch.zeros(c.d_model))  # w: "a token is here", with no content
        self.blocks = nn.ModuleList([
            TwoStreamBlock(TransformerBlock.build(c.d_model, c.n_head, d_ff=c.d_ff, mlp="gelu_tanh", norm="layernorm",
                                                  norm_first=True, dropout=c.dropout))
            for _ in range(c.n_layer)
        ])
        self.norm = build_norm("layernorm", c.d_model, eps=1e-5)
        self.lm_head = nn.Linear(c.d_model, c.vocab_size, bias=False)
        self.apply(self._init_weights)
        nn.init.normal_(self.query_init, std=0.02)
        self.lm_head.weight = self.token.weight  # weight tying, as in GPT-2

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, ids: torch.Tensor, order: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, P, V)`` for ``x`` at the positions ``targets`` ``(B, P)``, each predicted from
        the tokens before it in ``order`` ``(B, T)`` (a permutation of ``0..T−1`` per row)."""
        self._check_ids(ids)
        check_rank(order, "order", 2, "(B, T)")
        if order.shape != ids.shape:
            raise ValueError(f"order must have the shape of ids {tuple(ids.shape)}, got {tuple(order.shape)}")
        content, query = permutation_masks(order)  # each (B, T, T); checks that order is a permutation
        return self.predict(ids, content, query, targets)

    def predict(self, ids: torch.Tensor, content_mask: torch.Tensor, query_mask: torch.Tensor,
                targets: torch.Tensor) -> torch.Tensor:
        """The same with the masks given directly, boolean ``(B, T, T)``, rows = query positions.

        Any masks work, not only a permutation's: e.g. a query mask whose target rows see every
        position except the hidden ones scores each hidden token given all the visible ones.
        """
        self._check_ids(ids)
        B, T = ids.shape
        for name, mask in (("content_mask", content_mask), ("query_mask", query_mask)):
            check_dtype(mask, name, torch.bool)
            if mask.shape != (B, T, T):
                raise ValueError(f"{name} must have shape (B, T, T) = ({B}, {T}, {T}), got {tuple(mask.shape)}")
        check_rank(targets, "targets", 2, "(B, P) positions to predict")
        check_dtype(targets, "targets", (torch.int64,))
        if targets.size(0) != B or targets.size(1) == 0:
            raise ValueError(f"targets must have shape (B, P) with B = {B} and P >= 1, got {tuple(targets.shape)}")
        if int(targets.min()) < 0 or int(targets.max()) >= T:
            raise ValueError(f"targets must be positions in [0, {T - 1}], got values in "
                             f"[{int(targets.min())}, {int(targets.max())}]")
        positions = self.position(T)  # (T, d)
        h = self.token(ids) + positions  # (B, T, d)
        g = self.query_init + positions[targets]  # (B, P, d): position known, content not
        rows = query_mask.gather(1, targets[:, :, None].expand(B, targets.size(1), T))  # (B, P, T)
        content_mask, rows = content_mask[:, None], rows[:, None]  # (B, 1, T, T), (B, 1, P, T) broadcast over heads
        for m, block in enumerate(self.blocks):
            h, g = block(h, g, content_mask, rows, update_content=m < len(self.blocks) - 1)
        return self.lm_head(self.norm(g))  # (B, P, V)

    def _check_ids(self, ids: torch.Tensor) -> None:
        check_rank(ids, "ids", 2, "(B, T) token ids")
        check_dtype(ids, "ids", (torch.int64, torch.int32))
        check_token_ids(ids, "ids", self.config.vocab_size)
        if not 1 <= ids.size(1) <= self.config.context_length:
            raise ValueError(f"ids must hold 1..{self.config.context_length} tokens per row "
                             f"(context_length), got shape {tuple(ids.shape)}")


__all__ = ["PermutationLM", "PermutationLMConfig", "check_permutation"]
