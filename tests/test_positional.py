"""Positional encodings against closed-form math computed independently: the sinusoidal formula
with Python's ``math``, RoPE as multiplication by complex exponentials, learned positions as an
``nn.Embedding`` lookup."""

from __future__ import annotations

import math

import pytest
import torch

from llm_tutorial.nn import (
    LearnedPositionalEmbedding,
    RotaryEmbedding,
    SinusoidalPositionalEncoding,
    apply_rope,
    apply_rotary,
    rope_cos_sin,
    sinusoidal_encoding,
)


@pytest.mark.parametrize("n_positions,d_model,base", [(7, 24, 10000.0), (50, 6, 100.0), (1, 2, 10000.0)])
def test_sinusoidal_encoding_matches_the_formula(n_positions, d_model, base):
    expected = torch.tensor(
        [
            [
                math.sin(p / base ** (j / d_model)) if j % 2 == 0 else math.cos(p / base ** ((j - 1) / d_model))
                for j in range(d_model)
            ]
            for p in range(n_positions)
        ],
        dtype=torch.float64,
    )
    table = sinusoidal_encoding(n_positions, d_model, base=base, dtype=torch.float64)
    torch.testing.assert_close(table, expected, rtol=0, atol=1e-12)
    assert sinusoidal_encoding(n_positions, d_model, base=base).dtype == torch.float32


def test_sinusoidal_module_returns_the_rows_at_an_offset():
    module = SinusoidalPositionalEncoding(24, 20)
    assert torch.equal(module(7, offset=5), sinusoidal_encoding(20, 24)[5:12])
    assert not module.state_dict()  # a fixed table, not a parameter to save


def test_learned_positions_are_an_embedding_lookup_with_the_same_gradients():
    module = LearnedPositionalEmbedding(11, 24)
    reference = torch.nn.Embedding(11, 24)
    reference.load_state_dict(module.embedding.state_dict())
    positions = torch.arange(3, 10)
    ours, ref = module(7, offset=3), reference(positions)
    torch.testing.assert_close(ours, ref, rtol=0, atol=0)
    upstream = torch.randn(7, 24)
    (ours * upstream).sum().backward()
    (ref * upstream).sum().backward()
    torch.testing.assert_close(module.embedding.weight.grad, reference.weight.grad, rtol=0, atol=0)


def _rope_by_complex_numbers(x: torch.Tensor, positions: torch.Tensor, base: float) -> torch.Tensor:
    """Pairs (x[2i], x[2i+1]) as complex numbers, multiplied by e^{i p θ_i}, θ_i = base^(-2i/D)."""
    D = x.size(-1)
    theta = torch.tensor([base ** (-2 * i / D) for i in range(D // 2)], dtype=torch.float64)
    rotation = torch.polar(torch.ones(len(positions), D // 2, dtype=torch.float64), positions[:, None].double() * theta)
    pairs = torch.view_as_complex(x.double().reshape(*x.shape[:-1], D // 2, 2).contiguous())
    return torch.view_as_real(pairs * rotation).flatten(-2)


@pytest.mark.parametrize("base", [10000.0, 500.0])
def test_rope_equals_multiplication_by_complex_exponentials(base):
    x = torch.randn(2, 3, 7, 24, dtype=torch.float64)
    positions = torch.tensor([0, 1, 2, 5, 17, 100, 4095])  # arbitrary, not contiguous
    expected = _rope_by_complex_numbers(x, positions, base)
    torch.testing.assert_close(apply_rope(x, positions, base=base), expected, rtol=0, atol=1e-10)


def test_rope_accepts_fractional_positions_for_interpolation():
    x = torch.randn(5, 8, dtype=torch.float64)
    positions = torch.tensor([0.0, 0.5, 1.25, 7.5, 9.0], dtype=torch.float64)
    expected = _rope_by_complex_numbers(x, positions, 10000.0)
    torch.testing.assert_close(apply_rope(x, positions), expected, rtol=0, atol=1e-12)


def test_rope_scores_depend_only_on_the_relative_position():
    D = 24
    q, k = torch.randn(D, dtype=torch.float64), torch.randn(D, dtype=torch.float64)

    def score(m: int, n: int) -> torch.Tensor:
        rotated_q = apply_rope(q[None], torch.tensor([m]))[0]
        rotated_k = apply_rope(k[None], torch.tensor([n]))[0]
        return rotated_q @ rotated_k

    for m, n in [(3, 1), (10, 10), (2, 9), (0, 40)]:
        for shift in (1, 7, 1000):
            torch.testing.assert_close(score(m, n), score(m + shift, n + shift), rtol=0, atol=1e-10)
    assert not torch.allclose(score(3, 1), score(3, 2))  # the distance does matter
    x = torch.randn(9, D, dtype=torch.float64)
    torch.testing.assert_close(apply_rope(x, torch.arange(9)).norm(dim=-1), x.norm(dim=-1))


def test_rotary_module_tables_equal_the_functional_form():
    module = RotaryEmbedding(24, 30, base=500.0)
    cos, sin = module(7, offset=4)
    ref_cos, ref_sin = rope_cos_sin(torch.arange(4, 11), 24, base=500.0, dtype=torch.float64)
    torch.testing.assert_close(cos, ref_cos.float(), rtol=0, atol=1e-7)
    torch.testing.assert_close(sin, ref_sin.float(), rtol=0, atol=1e-7)
    x = torch.randn(2, 3, 7, 24)
    expected = apply_rope(x, torch.arange(4, 11), base=500.0)
    torch.testing.assert_close(apply_rotary(x, cos, sin), expected, rtol=1e-6, atol=1e-6)
    assert not module.state_dict()


def test_bad_positional_inputs():
    with pytest.raises(ValueError, match="d_model must be even"):
        sinusoidal_encoding(10, 7)
    with pytest.raises(ValueError, match=r"positions 8..11 exceed the 10 positions"):
        SinusoidalPositionalEncoding(24, 10)(4, offset=8)
    with pytest.raises(ValueError, match="offset must be a non-negative integer"):
        LearnedPositionalEmbedding(10, 24)(4, offset=-1)
    with pytest.raises(ValueError, match="base must be a number > 1"):
        RotaryEmbedding(8, 10, base=0.5)
    with pytest.raises(ValueError, match="head_dim must be even"):
        RotaryEmbedding(7, 10)
    with pytest.raises(ValueError, match=r"positions must have 1 dimensions \(T,\)"):
        apply_rope(torch.randn(2, 4, 8), torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="one position per row of x: got 3 for T=4"):
        apply_rope(torch.randn(2, 4, 8), torch.arange(3))
    with pytest.raises(ValueError, match=r"cos must have shape \(T, D/2\) = \(4, 4\)"):
        apply_rotary(torch.randn(4, 8), torch.ones(4, 8), torch.ones(4, 8))
