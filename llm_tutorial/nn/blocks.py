"""The Transformer block: attention and a feed-forward network, each wrapped in a residual connection.

One class covers every layer in the book. Each sublayer F (self-attention, optionally
cross-attention, then the MLP) is wrapped in a residual connection with a norm, placed either

- **after** the addition, *post-norm* (Vaswani et al., 2017; BERT):  x ← Norm(x + Dropout(F(x)))
- **before** the sublayer, *pre-norm* (GPT-2, Llama):                 x ← x + Dropout(F(Norm(x)))

Pre-norm leaves an unnormalised path from input to output, so gradients reach early layers
undamped and deep models train without learning-rate warm-up tricks; post-norm models usually
need warm-up. A pre-norm model ends with one final norm (the model adds it, not the block).

Layers as used in the book:

- GPT / Llama decoder layer: pre-norm, causal self-attention, MLP.
- Encoder layer (Transformer, BERT): post-norm, self-attention with a padding mask, MLP.
- Decoder layer of the encoder–decoder: post-norm, causal self-attention, cross-attention to the
  encoder's output (``memory``), MLP.
"""

from __future__ import annotations

import torch
from torch import nn

from llm_tutorial._checks import check_probability
from llm_tutorial.nn.attention import MultiHeadAttention
from llm_tutorial.nn.kv_cache import LayerKVCache
from llm_tutorial.nn.mlp import build_mlp, default_d_ff
from llm_tutorial.nn.norms import build_norm


class TransformerBlock(nn.Module):
    """Self-attention, optional cross-attention and a feed-forward network, each residual.

    The parts are passed in ready-made, so any attention, MLP and norm combine; :meth:`build`
    makes the usual ones from sizes. ``dropout`` is the residual dropout applied to each
    sublayer's output before it is added.
    """

    def __init__(
        self,
        attn: MultiHeadAttention,
        mlp: nn.Module,
        norm_attn: nn.Module,
        norm_mlp: nn.Module,
        *,
        cross_attn: MultiHeadAttention | None = None,
        norm_cross: nn.Module | None = None,
        norm_first: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if (cross_attn is None) != (norm_cross is None):
            raise ValueError("give cross_attn and norm_cross together (a cross-attention sublayer needs its own norm)")
        self.attn, self.norm_attn = attn, norm_attn
        self.cross_attn, self.norm_cross = cross_attn, norm_cross
        self.mlp, self.norm_mlp = mlp, norm_mlp
        self.norm_first = bool(norm_first)
        self.dropout = nn.Dropout(check_probability(dropout, "dropout", inclusive_high=False))

    @classmethod
    def build(
        cls,
        d_model: int,
        n_head: int,
        *,
        d_ff: int | None = None,
        n_kv_head: int | None = None,
        norm: str = "layernorm",
        mlp: str = "gelu",
        norm_first: bool = True,
        cross_attention: bool = False,
        bias: bool = True,
        norm_eps: float = 1e-5,
        dropout: float = 0.0,
        attention_impl: str = "sdpa",
    ) -> TransformerBlock:
        """A block from sizes and names: ``norm`` in ``NORMS``, ``mlp`` in ``MLPS``
        (``d_ff`` defaults to :func:`default_d_ff`). ``dropout`` is used for both the attention
        weights and the residual connections. The parts check their own sizes."""
        d_ff = default_d_ff(mlp, d_model) if d_ff is None else d_ff

        def attention() -> MultiHeadAttention:
            return MultiHeadAttention(
                d_model, n_head, n_kv_head=n_kv_head, bias=bias, dropout=dropout, impl=attention_impl
            )

        def make_norm() -> nn.Module:
            return build_norm(norm, d_model, eps=norm_eps, bias=bias)

        return cls(
            attention(),
            build_mlp(mlp, d_model, d_ff, bias=bias),
            make_norm(),
            make_norm(),
            cross_attn=attention() if cross_attention else None,
            norm_cross=make_norm() if cross_attention else None,
            norm_first=norm_first,
            dropout=dropout,
        )

    def forward(
        self,
        x: torch.Tensor,
        *,
        mask: torch.Tensor | None = None,
        is_causal: bool = False,
        cache: LayerKVCache | None = None,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
        memory: torch.Tensor | None = None,
        memory_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``x`` ``(B, T, d_model)`` -> ``(B, T, d_model)``.

        ``mask``, ``is_causal``, ``cache`` and ``rope`` go to the self-attention (see
        :meth:`MultiHeadAttention.forward`); ``memory`` ``(B, S, d_model)``, the encoder's output,
        and ``memory_mask`` (broadcastable to ``(B, H, T, S)``) to the cross-attention, which a
        block has exactly when it was built with one (the caller passes ``memory`` then).
        """
        # Dropout is the identity when off (evaluation, or p = 0): skip its module call, which a
        # decoder pays 2·n_layer times per generated token.
        drop = self.dropout if self.training and self.dropout.p > 0 else _identity
        if self.norm_first:  # pre-norm: x ← x + Dropout(F(Norm(x)))
            x = x + drop(self.attn(self.norm_attn(x), mask=mask, is_causal=is_causal, cache=cache, rope=rope))
            if self.cross_attn is not None:
                x = x + drop(self.cross_attn(self.norm_cross(x), memory, mask=memory_mask))
            x = x + drop(self.mlp(self.norm_mlp(x)))
        else:  # post-norm: x ← Norm(x + Dropout(F(x)))
            x = self.norm_attn(x + drop(self.attn(x, mask=mask, is_causal=is_causal, cache=cache, rope=rope)))
            if self.cross_attn is not None:
                x = self.norm_cross(x + drop(self.cross_attn(x, memory, mask=memory_mask)))
            x = self.norm_mlp(x + drop(self.mlp(x)))
        return x


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x
