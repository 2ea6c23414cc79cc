"""Attention: scaled dot-product attention, its masks, and multi-head (grouped-query) attention.

Attention lets every position read from every other position it is allowed to see. A query
vector asks a question, each key says how well it answers, and the answer is the average of the
values weighted by those scores (Vaswani et al., 2017):

    Attention(Q, K, V) = softmax(Q Kᵀ / √d + M) V

where ``M`` is 0 where a query may attend to a key and −∞ where it may not.

Conventions used throughout the package:

- Masks are **boolean** and **True means "may attend"**. (PyTorch's ``nn.MultiheadAttention``
  uses the opposite convention for its ``key_padding_mask``; ours reads like the English.)
- Masks broadcast against the scores, shape ``(..., T_q, T_k)``; for multi-head attention that is
  ``(B, H, T_q, T_k)``, so a causal mask is ``(T_q, T_k)`` and a padding mask ``(B, 1, 1, T_k)``.
- A query whose every key is masked (e.g. a padding position attending to nothing) gets an output
  of zeros, never NaN. ``F.scaled_dot_product_attention`` does the same.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from llm_tutorial._checks import (
    check_choice,
    check_divides,
    check_floating,
    check_last_dim,
    check_min_rank,
    check_positive_int,
    check_positive_number,
    check_probability,
    check_rank,
    check_same_dtype_and_device,
    check_tensor,
)
from llm_tutorial.nn.kv_cache import LayerKVCache
from llm_tutorial.nn.positional import apply_rotary

ATTENTION_IMPLS = ("explicit", "sdpa", "triton")


def _check_bool_mask(mask: torch.Tensor, name: str) -> None:
    check_tensor(mask, name)
    if mask.dtype != torch.bool:
        raise TypeError(
            f"{name} must be a boolean tensor (True = may attend), got {str(mask.dtype).replace('torch.', '')}. "
            "Additive float masks (0 / -inf) are not accepted because 0/1 float masks look the same but mean "
            f"the opposite; convert yours, e.g. `{name} = additive_mask == 0` or `{name} = keep.bool()`."
        )


def _check_mask_fits(mask: torch.Tensor, name: str, scores_shape: tuple[int, ...]) -> None:
    """``mask`` must broadcast to ``scores_shape`` without enlarging it."""
    _check_bool_mask(mask, name)
    try:
        fits = torch.broadcast_shapes(mask.shape, scores_shape) == scores_shape
    except RuntimeError:
        fits = False
    if not fits:
        raise ValueError(
            f"{name} of shape {tuple(mask.shape)} does not broadcast to the attention scores' shape "
            f"{tuple(scores_shape)} (..., T_q, T_k). A causal mask is (T_q, T_k); a padding mask for "
            "multi-head attention is (B, 1, 1, T_k)."
        )


def scaled_dot_product_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    scale: float | None = None,
    dropout_p: float = 0.0,
    return_weights: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Attention written out step by step: scores, scale, mask, softmax, weighted sum.

    Shapes: ``q`` ``(..., T_q, D)``, ``k`` ``(..., T_k, D)``, ``v`` ``(..., T_k, D_v)`` with the same
    leading dimensions (any number, including none); ``mask`` boolean, broadcastable to
    ``(..., T_q, T_k)``, True where a query may attend to a key. Returns the output
    ``(..., T_q, D_v)`` and, with ``return_weights=True``, also the attention weights
    ``(..., T_q, T_k)`` (before dropout; each row sums to 1, or is all zeros for a fully masked row).

    Why divide by √D: for random unit-variance q and k, q·k has variance D; without the scale the
    softmax saturates as D grows and its gradients vanish. ``scale`` overrides 1/√D.
    """
    for name, x in (("q", q), ("k", k), ("v", v)):
        check_min_rank(x, name, 2, "(..., T, D)")
        check_floating(x, name)
    check_same_dtype_and_device({"q": q, "k": k, "v": v})
    if k.ndim != q.ndim or v.ndim != q.ndim or q.shape[:-2] != k.shape[:-2] or k.shape[:-2] != v.shape[:-2]:
        raise ValueError(
            "q, k and v must share their leading dimensions (..., T, D); got shapes "
            f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    check_last_dim(k, "k", q.size(-1))
    if v.size(-2) != k.size(-2):
        raise ValueError(f"k and v must have the same number of keys T_k; got {k.size(-2)} and {v.size(-2)}")
    if scale is not None:
        check_positive_number(scale, "scale")
    check_probability(dropout_p, "dropout_p", inclusive_high=False)
    scores_shape = (*q.shape[:-1], k.size(-2))
    if mask is not None:
        _check_mask_fits(mask, "mask", scores_shape)

    scale = 1.0 / math.sqrt(q.size(-1)) if scale is None else float(scale)
    scores = q @ k.transpose(-2, -1)  # (..., T_q, D) @ (..., D, T_k) -> (..., T_q, T_k)
    scores = scores * scale
    has_key = None
    if mask is not None:
        # A query whose every key is masked would get softmax(−∞, …, −∞) = NaN. Such a row is left
        # unmasked instead (finite weights) and its output zeroed below. Re-masking the weights after
        # the softmax would do the same, but would make a second (T_q, T_k) tensor that the A·V
        # product saves for the backward pass: twice the quadratic activation memory.
        has_key = mask.any(dim=-1, keepdim=True)  # (..., T_q, 1): may this query see any key?
        scores = scores.masked_fill(~mask & has_key, float("-inf"))
    weights = torch.softmax(scores, dim=-1)  # (..., T_q, T_k), rows sum to 1; masked keys get exactly 0
    attended = F.dropout(weights, dropout_p) if dropout_p > 0 else weights
    out = attended @ v  # (..., T_q, T_k) @ (..., T_k, D_v) -> (..., T_q, D_v)
    if has_key is not None:
        out = out.masked_fill(~has_key, 0.0)  # fully masked queries: zeros, and zero gradient
    if not return_weights:
        return out
    if has_key is not None:
        weights = weights.masked_fill(~has_key, 0.0)  # a copy only when the caller asks for the weights
    return out, weights


def causal_mask(T_q: int, T_k: int | None = None, *, device: torch.device | str | None = None) -> torch.Tensor:
    """The boolean causal mask ``(T_q, T_k)``: query i may attend to key j only if j ≤ its position.

    The queries are the *last* ``T_q`` of ``T_k`` positions (``T_k`` defaults to ``T_q``): with a
    KV cache holding ``T_k − T_q`` earlier tokens, query i sits at position ``T_k − T_q + i``.
    """
    check_positive_int(T_q, "T_q")
    T_k = T_q if T_k is None else check_positive_int(T_k, "T_k")
    if T_k < T_q:
        raise ValueError(f"a causal mask needs T_k >= T_q (queries are the last T_q keys), got T_q={T_q}, T_k={T_k}")
    return torch.ones(T_q, T_k, dtype=torch.bool, device=device).tril(diagonal=T_k - T_q)


def padding_mask(keep_or_lengths: torch.Tensor, max_len: int | None = None) -> torch.Tensor:
    """A key-padding mask ``(B, 1, 1, T_k)``, broadcastable to multi-head scores ``(B, H, T_q, T_k)``.

    Give either a boolean ``(B, T_k)`` tensor, True at real tokens (e.g. ``ids != pad_id``), or
    integer ``lengths`` ``(B,)`` together with ``max_len`` (real tokens first, padding after).
    For head-less scores ``(B, T_q, T_k)`` use ``padding_mask(...).squeeze(1)``.
    """
    check_tensor(keep_or_lengths, "keep_or_lengths")
    if keep_or_lengths.dtype == torch.bool:
        check_rank(keep_or_lengths, "keep (boolean padding mask)", 2, "(B, T_k)")
        if max_len is not None:
            raise ValueError("max_len is only used with integer lengths; a boolean (B, T_k) mask has its own length")
        keep = keep_or_lengths
    elif not keep_or_lengths.is_floating_point() and not keep_or_lengths.is_complex():
        check_rank(keep_or_lengths, "lengths", 1, "(B,)")
        if max_len is None:
            raise ValueError("padding_mask(lengths) needs max_len, the padded length T_k")
        check_positive_int(max_len, "max_len")
        if keep_or_lengths.numel() and (int(keep_or_lengths.min()) < 0 or int(keep_or_lengths.max()) > max_len):
            raise ValueError(f"lengths must lie in [0, {max_len}], got {keep_or_lengths.tolist()}")
        positions = torch.arange(max_len, device=keep_or_lengths.device)  # (T_k,)
        keep = positions < keep_or_lengths.unsqueeze(1)  # (B, T_k)
    else:
        raise TypeError(
            "padding_mask takes a boolean (B, T_k) mask (True = real token) or integer lengths (B,), "
            f"got dtype {str(keep_or_lengths.dtype).replace('torch.', '')}"
        )
    return keep[:, None, None, :]  # (B, 1, 1, T_k)


def combine_masks(*masks: torch.Tensor | None) -> torch.Tensor | None:
    """Logical AND of boolean masks (broadcasting); ``None`` entries mean "no restriction".

    E.g. ``combine_masks(causal_mask(T), padding_mask(ids != pad))`` has shape ``(B, 1, T, T)``.
    """
    present = [m for m in masks if m is not None]
    for i, m in enumerate(present):
        _check_bool_mask(m, f"masks[{i}]")
    if not present:
        return None
    combined = present[0]
    for m in present[1:]:
        combined = combined & m
    return combined


def repeat_kv_heads(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """Repeat each key/value head ``n_rep`` times: ``(B, H_kv, T, D) -> (B, H_kv·n_rep, T, D)``.

    Grouped-query attention shares one key/value head among ``n_rep`` consecutive query heads:
    query head h reads key/value head ``h // n_rep``.
    """
    if n_rep == 1:
        return x
    B, H_kv, T, D = x.shape
    return x[:, :, None].expand(B, H_kv, n_rep, T, D).reshape(B, H_kv * n_rep, T, D)  # (B, H, T, D)


class MultiHeadAttention(nn.Module):
    """Multi-head attention with optional grouped-query heads, RoPE, a KV cache and cross-attention.

    Each of ``n_head`` heads attends in its own ``d_model / n_head``-dimensional subspace, so
    different heads can look for different things; the heads' outputs are concatenated and mixed
    by ``out_proj``. With ``n_kv_head < n_head`` (grouped-query attention, Ainslie et al., 2023)
    groups of query heads share key/value heads, which shrinks the KV cache by ``n_head/n_kv_head``.

    ``impl`` picks how the attention itself is computed; all agree to rounding error:

    - ``"explicit"``: :func:`scaled_dot_product_attention` above, for teaching and for weights;
    - ``"sdpa"``: ``torch.nn.functional.scaled_dot_product_attention`` (fused, the default);
    - ``"triton"``: ``llm_tutorial.kernels.flash_attention`` (our FlashAttention kernel); it
      supports no mask other than causal.

    To see the attention weights, set ``keep_weights = True``: each forward pass then takes the
    explicit path (the fused kernels never form the weight matrix) and leaves the weights
    ``(B, H, T_q, T_k)`` in ``self.weights``. ``GPT.attention_maps`` does this for every layer.

    The constructor checks its arguments; ``forward`` trusts its caller, as the layers of a model
    do: the models (GPT, Transformer, BERT) check their inputs once at their own entry point. The
    one exception is ``mask``, which a learner builds by hand: a mask of the wrong shape would fail
    deep in PyTorch with a message that names no argument and no expected shape.
    """

    def __init__(
        self,
        d_model: int,
        n_head: int,
        *,
        n_kv_head: int | None = None,
        bias: bool = True,
        dropout: float = 0.0,
        impl: str = "sdpa",
    ) -> None:
        super().__init__()
        check_positive_int(d_model, "d_model")
        check_positive_int(n_head, "n_head")
        n_kv_head = n_head if n_kv_head is None else check_positive_int(n_kv_head, "n_kv_head")
        check_divides(n_head, d_model, "n_head", "d_model")
        check_divides(n_kv_head, n_head, "n_kv_head", "n_head")
        check_choice(impl, "attention impl", ATTENTION_IMPLS)
        self.d_model, self.n_head, self.n_kv_head = d_model, n_head, n_kv_head
        self.head_dim = d_model // n_head
        self.dropout_p = check_probability(dropout, "dropout", inclusive_high=False)  # on the attention weights
        self.impl = impl
        self.keep_weights = False
        self.weights: torch.Tensor | None = None  # (B, H, T_q, T_k) of the last call, when keep_weights
        self.q_proj = nn.Linear(d_model, n_head * self.head_dim, bias=bias)
        self.k_proj = nn.Linear(d_model, n_kv_head * self.head_dim, bias=bias)
        self.v_proj = nn.Linear(d_model, n_kv_head * self.head_dim, bias=bias)
        self.out_proj = nn.Linear(n_head * self.head_dim, d_model, bias=bias)

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor | None = None,
        *,
        mask: torch.Tensor | None = None,
        is_causal: bool = False,
        cache: LayerKVCache | None = None,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Attend from ``x`` ``(B, T, d_model)`` to itself, or to ``memory`` ``(B, S, d_model)``.

        - ``mask``: boolean, broadcastable to ``(B, H, T_q, T_k)``, True = may attend.
        - ``is_causal``: self-attention only; each query sees keys up to its own position (with a
          cache, the cached keys count as earlier positions).
        - ``cache``: this layer's :class:`LayerKVCache`; the new keys/values are appended and the
          queries attend to everything cached so far (self-attention only).
        - ``rope``: ``(cos, sin)``, each ``(T, head_dim/2)``, from :class:`RotaryEmbedding` for the
          positions of ``x``; rotates queries and keys before they are cached (self-attention only).

        Returns ``(B, T, d_model)``.
        """
        B, T, _ = x.shape
        source = x if memory is None else memory
        S = source.size(1)
        if mask is not None:  # the one input checked here (see the class docstring)
            _check_mask_fits(mask, "mask", (B, self.n_head, T, S + (cache.length if cache is not None else 0)))
        q = self.q_proj(x).view(B, T, self.n_head, self.head_dim).transpose(1, 2)  # (B, H, T, D)
        k = self.k_proj(source).view(B, S, self.n_kv_head, self.head_dim).transpose(1, 2)  # (B, H_kv, S, D)
        v = self.v_proj(source).view(B, S, self.n_kv_head, self.head_dim).transpose(1, 2)  # (B, H_kv, S, D)
        if rope is not None:
            q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
        if cache is not None:
            k, v = cache.append(k, v)  # (B, H_kv, T_k, D): everything cached so far
        n_rep = self.n_head // self.n_kv_head
        k, v = repeat_kv_heads(k, n_rep), repeat_kv_heads(v, n_rep)  # (B, H, T_k, D)

        out = self._attend(q, k, v, mask, is_causal)  # (B, H, T, D)
        out = out.transpose(1, 2).reshape(B, T, self.n_head * self.head_dim)  # (B, T, d_model)
        out = self.out_proj(out)
        return out

    def _attend(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, is_causal: bool
    ) -> torch.Tensor:
        """Dispatch to the chosen implementation. ``q`` ``(B, H, T_q, D)``, ``k``/``v`` ``(B, H, T_k, D)``."""
        T_q, T_k = q.size(-2), k.size(-2)
        causal = is_causal and T_q > 1  # one new query may see every earlier (cached) key
        dropout_p = self.dropout_p if self.training else 0.0
        impl = "explicit" if self.keep_weights else self.impl
        if impl == "triton":
            return self._attend_triton(q, k, v, mask, causal)
        # Fused kernels take is_causal only for square scores and with no other mask; else build it.
        if causal and (impl == "explicit" or mask is not None or T_q != T_k):
            mask = combine_masks(causal_mask(T_q, T_k, device=q.device), mask)
            causal = False
        if impl == "sdpa":
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=causal)
        if not self.keep_weights:
            self.weights = None
            return scaled_dot_product_attention(q, k, v, mask, dropout_p=dropout_p)
        out, self.weights = scaled_dot_product_attention(q, k, v, mask, dropout_p=dropout_p, return_weights=True)
        return out

    def _attend_triton(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, causal: bool
    ) -> torch.Tensor:
        """Our FlashAttention kernel: square causal or unmasked attention only, no dropout."""
        if mask is not None or (causal and q.size(-2) != k.size(-2)):
            raise ValueError(
                "impl='triton' supports only unmasked or causal attention over the whole sequence "
                "(no padding mask, no multi-token step on a non-empty cache); use impl='sdpa' here"
            )
        if self.training and self.dropout_p > 0:
            raise ValueError("impl='triton' has no attention dropout; set dropout=0 or use impl='sdpa'")
        from llm_tutorial.kernels import flash_attention

        return flash_attention(q, k, v, causal=causal, scale=1.0 / math.sqrt(self.head_dim))
