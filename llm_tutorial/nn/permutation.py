"""Permutation language modelling (XLNet): the masks of a factorisation order, and two-stream attention.

XLNet (Yang et al., 2019) keeps the chain rule of a causal LM but applies it in a random order
``z`` of the positions, a permutation of ``0 .. T−1``. Averaged over orders, every token is
predicted from tokens on both of its sides, yet no token ever sees itself:

    max_θ  E_z [ Σ_t log p_θ(x_{z_t} | x_{z_<t}) ]

The text is never reordered: tokens keep their positions (and position embeddings), and the
order lives only in the attention masks. With ``rank[i]`` the place of position ``i`` in ``z``
(``z[rank[i]] = i``), and masks read "query position i may attend to key position j":

    content mask  M_h[i, j] = rank[j] ≤ rank[i]     the token at z_t sees z_≤t, itself included
    query mask    M_g[i, j] = rank[j] <  rank[i]     the prediction at z_t sees z_<t only

**Two streams.** The prediction for position ``z_t`` must know *where* it predicts (its position)
but not *what* stands there (its content), while the same token, as context for later positions,
must carry its content. XLNet therefore keeps two states per position and layer, sharing one set
of weights:

    h_{z_t}^{(m)} = Attention(Q = h_{z_t}^{(m−1)}, KV = h_{z≤t}^{(m−1)})   content stream, mask M_h
    g_{z_t}^{(m)} = Attention(Q = g_{z_t}^{(m−1)}, KV = h_{z<t}^{(m−1)})   query stream,   mask M_g

with ``h^(0) = E[x] + P`` and ``g^(0) = w + P`` (a learned vector ``w`` in place of the token's
embedding; the paper uses relative positions, we add absolute ones). The last layer's ``g`` feeds
the softmax. With the identity order ``M_g`` is the causal mask without its diagonal and the
objective is the causal LM's: position ``t`` predicts ``x_t`` from ``x_<t``.
"""

from __future__ import annotations

import torch
from torch import nn

from llm_tutorial._checks import check_min_rank, check_tensor
from llm_tutorial.data.pretraining_examples import num_predicted  # partial prediction's count, with the examples
from llm_tutorial.nn.blocks import TransformerBlock

__all__ = ["TwoStreamBlock", "check_permutation", "num_predicted", "order_ranks", "permutation_masks"]


def check_permutation(order: torch.Tensor, name: str = "order") -> None:
    """``order`` ``(..., T)`` must hold, in each row, every position ``0 .. T−1`` exactly once."""
    check_tensor(order, name)
    check_min_rank(order, name, 1, "(..., T), a permutation of 0..T-1 in each row")
    if order.is_floating_point() or order.is_complex() or order.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer positions, got dtype {str(order.dtype).replace('torch.', '')}")
    T = order.shape[-1]
    if T == 0:
        raise ValueError(f"{name} is empty: a factorisation order needs at least one position")
    expected = torch.arange(T, device=order.device)
    if not torch.equal(order.sort(dim=-1).values, expected.expand_as(order)):
        bad = (order.sort(dim=-1).values != expected).any(-1).flatten().nonzero()[0].item()
        row = order.reshape(-1, T)[bad].tolist()
        raise ValueError(
            f"{name} must be a permutation of 0..{T - 1} in every row (each position exactly once), "
            f"but row {bad} is {row}; draw one with torch.randperm({T})"
        )


def order_ranks(order: torch.Tensor) -> torch.Tensor:
    """The inverse permutation: ``rank[..., i]`` is the step of the order at which position ``i`` comes."""
    ranks = torch.empty_like(order)
    steps = torch.arange(order.shape[-1], device=order.device).expand_as(order)
    return ranks.scatter_(-1, order, steps)  # rank[z_t] = t


def permutation_masks(order: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The content-stream and query-stream masks ``(..., T, T)`` of the factorisation order ``order`` ``(..., T)``.

    Rows are query positions, columns key positions, both in the text's own order; True = may attend.
    ``content[..., i, j] = rank[j] ≤ rank[i]`` and ``query[..., i, j] = rank[j] < rank[i]``. The query
    mask's row for the first position of the order is all False: it predicts from no context
    (its attention output is zeros; its prediction uses its position alone).
    """
    check_permutation(order)
    rank = order_ranks(order)  # (..., T)
    content = rank.unsqueeze(-1) >= rank.unsqueeze(-2)  # (..., T, T): rank[j] ≤ rank[i]
    query = rank.unsqueeze(-1) > rank.unsqueeze(-2)  # (..., T, T): rank[j] < rank[i]
    return content, query


class TwoStreamBlock(nn.Module):
    """One layer of two-stream attention, wrapping a pre-norm :class:`TransformerBlock` whose
    weights both streams share:

        h' = h + Attn(N(h), N(h), M_h),      h'' = h' + MLP(N(h'))
        g' = g + Attn(N(g), N(h), M_g),      g'' = g' + MLP(N(g'))

    The query stream's keys and values come from the *content* stream of the layer below. ``g``
    may hold only the predicted positions ``(B, P, d_model)`` with the matching rows of ``M_g``.
    """

    def __init__(self, block: TransformerBlock) -> None:
        super().__init__()
        if not isinstance(block, TransformerBlock) or not block.norm_first or block.cross_attn is not None:
            raise TypeError("TwoStreamBlock wraps a pre-norm TransformerBlock without cross-attention")
        self.block = block

    def forward(
        self, h: torch.Tensor, g: torch.Tensor, content_mask: torch.Tensor, query_mask: torch.Tensor, *,
        update_content: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``h`` (B, T, d), ``g`` (B, P, d), masks broadcastable to (B, H, T, T) and (B, H, P, T)
        -> ``(h', g')``; ``update_content=False`` returns ``h`` unchanged (the last layer's content
        stream feeds nothing)."""
        b = self.block
        memory = b.norm_attn(h)  # (B, T, d): the content stream, normalised, as keys and values
        g = g + b.dropout(b.attn(b.norm_attn(g), memory, mask=query_mask))  # (B, P, d)
        g = g + b.dropout(b.mlp(b.norm_mlp(g)))
        if update_content:
            h = b(h, mask=content_mask)  # (B, T, d)
        return h, g
