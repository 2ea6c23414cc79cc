"""Positional encodings: how a Transformer knows where each token is.

Attention by itself is blind to order: permute the tokens and the outputs permute with them. Three
ways to give it positions, in historical order:

- **Sinusoidal** (Vaswani et al., 2017): add a fixed vector of sines and cosines of geometrically
  spaced frequencies to each token embedding.
- **Learned** (GPT, BERT): add a trained vector per position, up to a maximum length.
- **Rotary, RoPE** (Su et al., 2021; Llama): rotate each pair of query/key coordinates by an angle
  proportional to the position, so that a query–key dot product depends only on their *distance*.

The embedding modules share one call signature, ``module(seq_len, offset=0)``, for the positions
``offset, …, offset + seq_len − 1`` (a KV cache supplies the offset). They are checked in Python,
so they cost no device synchronisation.
"""

from __future__ import annotations

import torch
from torch import nn

from llm_tutorial._checks import check_int, check_min_rank, check_number, check_positive_int, check_rank, check_tensor


def _check_even(value: int, name: str) -> int:
    check_positive_int(value, name)
    if value % 2:
        raise ValueError(f"{name} must be even (positions are encoded in sine/cosine pairs), got {value}")
    return value


def _check_base(base: float) -> float:
    return check_number(base, "base", 1, above=True, hint=" (10000 in the papers)")


def _check_span(seq_len: int, offset: int, max_len: int) -> None:
    """Positions ``offset .. offset + seq_len − 1`` must lie in ``[0, max_len)``."""
    check_positive_int(seq_len, "seq_len")
    check_int(offset, "offset", 0)
    if offset + seq_len > max_len:
        raise ValueError(
            f"positions {offset}..{offset + seq_len - 1} exceed the {max_len} positions this encoding was built for; "
            "shorten the sequence or build it with a larger max_len"
        )


def sinusoidal_encoding(
    n_positions: int, d_model: int, *, base: float = 10000.0, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """The ``(n_positions, d_model)`` table of Vaswani et al. (2017):

        PE[p, 2i]   = sin(p / base^(2i / d_model))
        PE[p, 2i+1] = cos(p / base^(2i / d_model))

    Wavelengths run geometrically from 2π to base·2π, so nearby positions differ in the fast
    coordinates and far ones in the slow ones; PE[p + k] is a fixed linear function (a rotation)
    of PE[p], which lets attention pick out relative offsets. Computed in float64, then cast.
    """
    check_positive_int(n_positions, "n_positions")
    _check_even(d_model, "d_model")
    base = _check_base(base)
    positions = torch.arange(n_positions, dtype=torch.float64).unsqueeze(1)  # (P, 1)
    inv_freq = base ** (-torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)  # (d_model/2,)
    angles = positions * inv_freq  # (P, d_model/2)
    table = torch.stack((angles.sin(), angles.cos()), dim=-1)  # (P, d_model/2, 2): sin, cos interleaved
    return table.flatten(1).to(dtype)  # (P, d_model)


class SinusoidalPositionalEncoding(nn.Module):
    """Fixed sinusoidal encodings for up to ``max_len`` positions (no parameters)."""

    def __init__(self, d_model: int, max_len: int, *, base: float = 10000.0) -> None:
        super().__init__()
        self.max_len = check_positive_int(max_len, "max_len")
        self.register_buffer("encoding", sinusoidal_encoding(max_len, d_model, base=base), persistent=False)

    def forward(self, seq_len: int, offset: int = 0) -> torch.Tensor:
        """The encodings of positions ``offset .. offset + seq_len − 1``, ``(seq_len, d_model)``."""
        _check_span(seq_len, offset, self.max_len)
        return self.encoding[offset : offset + seq_len]


class LearnedPositionalEmbedding(nn.Module):
    """One trained vector per position (GPT-2, BERT): an ``nn.Embedding`` indexed by position.

    Simple and expressive, but it cannot go past ``max_len``: there is no vector for position
    ``max_len`` and beyond.
    """

    def __init__(self, max_len: int, d_model: int) -> None:
        super().__init__()
        self.max_len = check_positive_int(max_len, "max_len")
        self.embedding = nn.Embedding(max_len, check_positive_int(d_model, "d_model"))

    def forward(self, seq_len: int, offset: int = 0) -> torch.Tensor:
        """The embeddings of positions ``offset .. offset + seq_len − 1``, ``(seq_len, d_model)``.

        A slice of the table equals looking up ``arange(offset, offset + seq_len)``, gradients
        included, without building the index tensor.
        """
        _check_span(seq_len, offset, self.max_len)
        return self.embedding.weight[offset : offset + seq_len]


def rope_cos_sin(
    positions: torch.Tensor, head_dim: int, *, base: float = 10000.0, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosines and sines of the RoPE angles ``φ[p, i] = p · θ_i`` with ``θ_i = base^(−2i / head_dim)``.

    ``positions`` ``(T,)`` may hold any real numbers (integers normally; fractions for position
    interpolation). Returns ``(cos, sin)``, each ``(T, head_dim/2)``, computed in ``dtype``
    (angles grow with the position, so large positions want float32 at least).
    """
    check_rank(positions, "positions", 1, "(T,)")
    _check_even(head_dim, "head_dim")
    base = _check_base(base)
    inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=dtype, device=positions.device) / head_dim)  # (D/2,)
    angles = torch.outer(positions.to(dtype), inv_freq)  # (T, D/2)
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each coordinate pair ``(x[2i], x[2i+1])`` of ``x`` ``(..., T, D)`` by its angle:

        y[2i]   = x[2i] cos φ_i − x[2i+1] sin φ_i
        y[2i+1] = x[2i] sin φ_i + x[2i+1] cos φ_i

    i.e. multiply the complex number ``x[2i] + i·x[2i+1]`` by ``e^{iφ_i}``. Because rotations
    compose, ⟨R_m q, R_n k⟩ = ⟨q, R_{n−m} k⟩: the score depends on the offset n − m only.

    Convention: *interleaved* pairs, as in the RoFormer paper and Meta's Llama code. Hugging Face's
    Llama pairs coordinate i with i + D/2 ("rotate half"); the two agree after permuting the rows
    of the query and key projections (see ``tests/test_gpt.py``). ``cos``, ``sin``: ``(T, D/2)``.
    """
    check_min_rank(x, "x", 2, "(..., T, D)")
    for name, table in (("cos", cos), ("sin", sin)):
        check_tensor(table, name)
        if tuple(table.shape) != (x.size(-2), x.size(-1) // 2) or x.size(-1) % 2:
            raise ValueError(
                f"{name} must have shape (T, D/2) = {(x.size(-2), x.size(-1) // 2)} for x of shape {tuple(x.shape)} "
                "(and D must be even)"
            )
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    x_even, x_odd = x[..., 0::2], x[..., 1::2]  # (..., T, D/2) each
    rotated = torch.stack((x_even * cos - x_odd * sin, x_even * sin + x_odd * cos), dim=-1)  # (..., T, D/2, 2)
    return rotated.flatten(-2)  # (..., T, D)


def apply_rope(x: torch.Tensor, positions: torch.Tensor, *, base: float = 10000.0) -> torch.Tensor:
    """RoPE at arbitrary ``positions`` ``(T,)`` for ``x`` ``(..., T, D)``; see :func:`apply_rotary`.

    The angles are computed in x's precision (at least float32)."""
    check_min_rank(x, "x", 2, "(..., T, D)")
    check_rank(positions, "positions", 1, "(T,)")
    if positions.size(0) != x.size(-2):
        raise ValueError(f"positions must give one position per row of x: got {positions.size(0)} for T={x.size(-2)}")
    dtype = torch.promote_types(x.dtype, torch.float32)
    return apply_rotary(x, *rope_cos_sin(positions, x.size(-1), base=base, dtype=dtype))


class RotaryEmbedding(nn.Module):
    """Precomputed RoPE tables for positions ``0 .. max_len − 1`` (no parameters).

    One instance serves every layer: the model calls it once per forward pass and hands the
    ``(cos, sin)`` pair to each attention layer. For positions beyond ``max_len`` (long-context
    experiments) use :func:`apply_rope`, or build a larger table: RoPE has nothing to retrain.
    """

    def __init__(self, head_dim: int, max_len: int, *, base: float = 10000.0) -> None:
        super().__init__()
        self.head_dim = _check_even(head_dim, "head_dim")
        self.max_len = check_positive_int(max_len, "max_len")
        self.base = _check_base(base)
        cos, sin = rope_cos_sin(torch.arange(max_len), head_dim, base=base, dtype=torch.float64)
        self.register_buffer("cos", cos.float(), persistent=False)  # (max_len, D/2)
        self.register_buffer("sin", sin.float(), persistent=False)  # (max_len, D/2)

    def forward(self, seq_len: int, offset: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """``(cos, sin)`` for positions ``offset .. offset + seq_len − 1``, each ``(seq_len, D/2)``."""
        _check_span(seq_len, offset, self.max_len)
        return self.cos[offset : offset + seq_len], self.sin[offset : offset + seq_len]
