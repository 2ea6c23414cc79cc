"""Norms, feed-forward networks and Transformer blocks against independent references:
``torch.nn.LayerNorm``, ``F.rms_norm`` and the RMSNorm formula in float64, GELU's tanh formula
written out, and ``torch.nn.TransformerEncoderLayer`` / ``TransformerDecoderLayer`` with our
weights copied in."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from llm_tutorial.nn import (
    MLP,
    LayerNorm,
    RMSNorm,
    SwiGLU,
    TransformerBlock,
    build_mlp,
    build_norm,
    causal_mask,
    default_d_ff,
    padding_mask,
)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _randomise(module: torch.nn.Module) -> None:
    """Random weights everywhere (norm gains around 1), so that no default value hides a mistake."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(torch.randn_like(p) * 0.3 + (1.0 if "norm" in name and name.endswith("weight") else 0.0))


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_layer_norm_matches_torch(bias, dtype):
    ours = LayerNorm(24, eps=1e-3, bias=bias).to(dtype)
    ref = torch.nn.LayerNorm(24, eps=1e-3, bias=bias).to(dtype)
    with torch.no_grad():
        ours.weight.normal_()
        ref.weight.copy_(ours.weight)
        if bias:
            ours.bias.normal_()
            ref.bias.copy_(ours.bias)
    x = torch.randn(2, 7, 24, dtype=dtype) * 3 + 1
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(ours(x), ref(x), rtol=tol, atol=tol)


def test_layer_norm_matches_the_formula_in_float64():
    norm = LayerNorm(24, eps=1e-3).double()
    with torch.no_grad():
        norm.weight.normal_()
        norm.bias.normal_()
    x = torch.randn(3, 5, 24, dtype=torch.float64) * 2 + 1
    mean = x.sum(-1, keepdim=True) / 24
    var = ((x - mean) ** 2).sum(-1, keepdim=True) / 24  # biased variance
    expected = (x - mean) / torch.sqrt(var + 1e-3) * norm.weight + norm.bias
    torch.testing.assert_close(norm(x), expected, rtol=0, atol=1e-13)


def test_rms_norm_matches_the_formula_in_float64_and_torch():
    norm = RMSNorm(24, eps=1e-6).double()
    with torch.no_grad():
        norm.weight.normal_()
    x = torch.randn(3, 5, 24, dtype=torch.float64) * 2
    rms = torch.sqrt((x * x).sum(-1, keepdim=True) / 24 + 1e-6)
    torch.testing.assert_close(norm(x), x / rms * norm.weight, rtol=0, atol=1e-13)
    torch.testing.assert_close(norm(x), F.rms_norm(x, (24,), norm.weight, eps=1e-6), rtol=0, atol=1e-13)


def test_norms_compute_half_precision_inputs_in_float32():
    x = torch.randn(4, 24) * 50 + 300  # large mean: bf16 statistics alone would lose it
    for norm, ref in ((LayerNorm(24), torch.nn.LayerNorm(24)), (RMSNorm(24), None)):
        out = norm(x.bfloat16())
        assert out.dtype == torch.bfloat16
        expected = ref(x.bfloat16().float()) if ref is not None else norm(x.bfloat16().float())
        torch.testing.assert_close(out.float(), expected, rtol=2e-2, atol=2e-2)


def test_gelu_tanh_mlp_matches_the_written_out_formula():
    mlp = MLP(24, 40, activation="gelu_tanh")
    x = torch.randn(2, 7, 24, dtype=torch.float64)
    mlp = mlp.double()
    h = x @ mlp.up.weight.T + mlp.up.bias
    gelu = 0.5 * h * (1 + torch.tanh(math.sqrt(2 / math.pi) * (h + 0.044715 * h**3)))
    torch.testing.assert_close(mlp(x), gelu @ mlp.down.weight.T + mlp.down.bias, rtol=0, atol=1e-12)
    exact = MLP(24, 40, activation="gelu").double()
    exact.load_state_dict(mlp.state_dict())
    assert not torch.allclose(exact(x), mlp(x), rtol=0, atol=1e-9)  # the approximation is a different function


def _exact_gelu(h: torch.Tensor) -> torch.Tensor:
    """GELU(h) = h · Φ(h), with the normal CDF Φ written with erf."""
    return h * 0.5 * (1 + torch.erf(h / math.sqrt(2)))


@pytest.mark.parametrize("activation,reference", [("relu", torch.relu), ("gelu", _exact_gelu)])
def test_mlp_activations(activation, reference):
    mlp = MLP(24, 40, activation=activation, bias=False).double()
    x = torch.randn(5, 24, dtype=torch.float64)
    torch.testing.assert_close(mlp(x), reference(x @ mlp.up.weight.T) @ mlp.down.weight.T, rtol=0, atol=1e-12)


def test_swiglu_matches_its_formula():
    swiglu = SwiGLU(24, 40).double()
    x = torch.randn(2, 7, 24, dtype=torch.float64)
    gate, up = x @ swiglu.gate.weight.T, x @ swiglu.up.weight.T
    expected = (gate * torch.sigmoid(gate) * up) @ swiglu.down.weight.T
    torch.testing.assert_close(swiglu(x), expected, rtol=0, atol=1e-12)
    assert swiglu.gate.bias is None


def test_default_feed_forward_widths():
    assert default_d_ff("gelu", 24) == 96
    assert default_d_ff("swiglu", 768) == 2048  # 8/3 · 768, Llama's rule
    assert default_d_ff("swiglu", 24) == 64
    assert isinstance(build_mlp("swiglu", 24, 64), SwiGLU) and isinstance(build_norm("rmsnorm", 24, eps=1e-6), RMSNorm)


# ---------------------------------------------------------------- blocks vs torch.nn.Transformer*Layer


def _copy_attention(ours, ref: torch.nn.MultiheadAttention) -> None:
    with torch.no_grad():
        ref.in_proj_weight.copy_(torch.cat([ours.q_proj.weight, ours.k_proj.weight, ours.v_proj.weight]))
        ref.in_proj_bias.copy_(torch.cat([ours.q_proj.bias, ours.k_proj.bias, ours.v_proj.bias]))
        ref.out_proj.weight.copy_(ours.out_proj.weight)
        ref.out_proj.bias.copy_(ours.out_proj.bias)


def _copy_linear_and_norm(ours_linear, ref_linear) -> None:
    ref_linear.load_state_dict(ours_linear.state_dict())


@pytest.mark.parametrize("norm_first", [True, False])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_encoder_block_matches_torch_encoder_layer(norm_first, activation):
    d_model, n_head, d_ff = 24, 4, 40
    ours = TransformerBlock.build(d_model, n_head, d_ff=d_ff, mlp=activation, norm_first=norm_first).eval()
    _randomise(ours)
    ref = torch.nn.TransformerEncoderLayer(
        d_model, n_head, d_ff, dropout=0.0, activation=activation, batch_first=True, norm_first=norm_first
    ).eval()
    _copy_attention(ours.attn, ref.self_attn)
    pairs = ((ours.mlp.up, ref.linear1), (ours.mlp.down, ref.linear2),
             (ours.norm_attn, ref.norm1), (ours.norm_mlp, ref.norm2))
    for mine, theirs in pairs:
        _copy_linear_and_norm(mine, theirs)
    x = torch.randn(3, 7, d_model)
    lengths = torch.tensor([7, 4, 6])
    keep = padding_mask(lengths, 7)
    expected = ref(x, src_mask=~causal_mask(7), src_key_padding_mask=~keep[:, 0, 0])
    got = ours(x, mask=keep, is_causal=True)
    valid = keep[:, 0, 0]  # torch's fast path may zero padded rows; compare the real tokens
    torch.testing.assert_close(got[valid], expected[valid], rtol=1e-5, atol=1e-5)


def test_post_norm_decoder_block_with_cross_attention_matches_torch_decoder_layer():
    d_model, n_head, d_ff = 24, 3, 40
    ours = TransformerBlock.build(d_model, n_head, d_ff=d_ff, mlp="relu", norm_first=False, cross_attention=True).eval()
    _randomise(ours)
    ref = torch.nn.TransformerDecoderLayer(d_model, n_head, d_ff, dropout=0.0, batch_first=True).eval()
    _copy_attention(ours.attn, ref.self_attn)
    _copy_attention(ours.cross_attn, ref.multihead_attn)
    pairs = ((ours.mlp.up, ref.linear1), (ours.mlp.down, ref.linear2), (ours.norm_attn, ref.norm1),
             (ours.norm_cross, ref.norm2), (ours.norm_mlp, ref.norm3))
    for mine, theirs in pairs:
        _copy_linear_and_norm(mine, theirs)
    x, memory = torch.randn(2, 7, d_model), torch.randn(2, 9, d_model)
    memory_keep = padding_mask(torch.tensor([9, 5]), 9)
    expected = ref(x, memory, tgt_mask=~causal_mask(7), memory_key_padding_mask=~memory_keep[:, 0, 0])
    ours.attn.keep_weights = ours.cross_attn.keep_weights = True
    got = ours(x, is_causal=True, memory=memory, memory_mask=memory_keep)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert ours.attn.weights.shape == (2, 3, 7, 7) and ours.cross_attn.weights.shape == (2, 3, 7, 9)
    assert (ours.cross_attn.weights[1, :, :, 5:] == 0).all()


# ---------------------------------------------------------------- bad input


def test_float64_input_to_a_float32_norm_gives_the_float64_answer():
    """Norms compute in the wider of float32 and the input's dtype, the float32 gain widened."""
    x = torch.randn(3, 5, 24, dtype=torch.float64) * 2 + 1
    for norm in (LayerNorm(24, eps=1e-3), RMSNorm(24, eps=1e-3)):
        with torch.no_grad():
            norm.weight.normal_()
        out = norm(x)
        assert out.dtype == torch.float64 and norm.weight.dtype == torch.float32
        torch.testing.assert_close(out, norm.double()(x), rtol=0, atol=0)


def test_bad_norm_and_mlp_inputs():
    for eps in (0.0, -1e-5, float("nan"), float("inf"), True, "1e-5"):
        with pytest.raises(ValueError, match="eps must be a positive number"):
            RMSNorm(24, eps=eps)
    with pytest.raises(ValueError, match="eps must be a positive number, got nan"):
        LayerNorm(24, eps=float("nan"))
    with pytest.raises(RuntimeError, match=r"expected input with shape \[\*, 24\]"):  # PyTorch's own check
        LayerNorm(24)(torch.randn(3, 16))
    with pytest.raises(ValueError, match="unknown norm 'batchnorm'"):
        build_norm("batchnorm", 24, eps=1e-5)
    with pytest.raises(ValueError, match="unknown activation 'tanh'"):
        MLP(24, 96, activation="tanh")
    with pytest.raises(ValueError, match="unknown mlp 'geglu'"):
        build_mlp("geglu", 24, 96)
    with pytest.raises(ValueError, match="d_ff must be a positive integer"):
        SwiGLU(24, 0)
    with pytest.raises(RuntimeError, match="cannot be multiplied"):  # PyTorch's own check
        SwiGLU(24, 40)(torch.randn(2, 23))


def test_bad_block_inputs():
    block = TransformerBlock.build(24, 4)
    decoder = TransformerBlock.build(24, 4, cross_attention=True)
    with pytest.raises(ValueError, match="give cross_attn and norm_cross together"):
        TransformerBlock(block.attn, block.mlp, block.norm_attn, block.norm_mlp, cross_attn=decoder.cross_attn)
