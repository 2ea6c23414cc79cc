"""Weight quantisation, checked against an independent NumPy computation of absmax quantisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from llm_tutorial.models.gpt import GPT, GPTConfig
from llm_tutorial.quantize import (
    QuantizedLinear,
    QuantizedTensor,
    quantize_absmax,
    quantize_linear_layers,
    storage_bytes,
)


def numpy_absmax(weight: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Reference: per-row scale max|w| / (2^(b-1) - 1), codes round-half-even and clipped."""
    q_max = 2 ** (bits - 1) - 1
    scale = np.abs(weight).max(axis=1, keepdims=True) / q_max
    with np.errstate(divide="ignore", invalid="ignore"):
        codes = np.where(scale > 0, np.round(weight / scale), 0.0)
    return np.clip(codes, -q_max, q_max).astype(np.int8), scale


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("shape", [(1, 1), (7, 13), (64, 33)])
def test_codes_and_scales_equal_numpy(bits: int, shape: tuple[int, int]) -> None:
    weight = torch.randn(*shape, generator=torch.Generator().manual_seed(sum(shape) + bits), dtype=torch.float64)
    weight = weight.float()
    quantized = quantize_absmax(weight, bits)
    codes, scale = numpy_absmax(weight.numpy().astype(np.float64), bits)
    np.testing.assert_allclose(quantized.scale.numpy(), scale, rtol=1e-6)
    # float32 division may land on the other side of a .5 tie than float64: allow one code step there
    assert np.abs(quantized.values.numpy().astype(int) - codes.astype(int)).max() <= 1
    assert (quantized.values.numpy() == codes).mean() > 0.99
    assert quantized.values.dtype == torch.int8 and quantized.scale.shape == (shape[0], 1)


def test_rounding_error_is_at_most_half_a_step_and_row_maxima_are_exact() -> None:
    weight = torch.randn(40, 17, generator=torch.Generator().manual_seed(0)) * torch.logspace(-3, 1, 40)[:, None]
    quantized = quantize_absmax(weight, 8)
    error = (weight - quantized.dequantize()).abs()
    assert torch.all(error <= quantized.scale / 2 * (1 + 1e-5))
    rows = torch.arange(40)
    extreme = weight.abs().argmax(dim=1)
    assert torch.all(quantized.values[rows, extreme].abs() == 127)
    torch.testing.assert_close(quantized.dequantize()[rows, extreme], weight[rows, extreme])


def test_a_zero_row_stays_zero_and_other_rows_keep_their_own_scale() -> None:
    weight = torch.tensor([[0.0, 0.0, 0.0], [1e-4, -2e-4, 0.0], [100.0, 1.0, -50.0]])
    quantized = quantize_absmax(weight, 8)
    assert torch.all(quantized.values[0] == 0) and quantized.scale[0].item() == 0
    assert torch.isfinite(quantized.dequantize()).all()
    # per-channel scales: the tiny row is not rounded away by the large one
    torch.testing.assert_close(quantized.dequantize()[1], weight[1], rtol=1e-2, atol=0)


def test_packed_size_counts_bits_per_code_and_float32_scales() -> None:
    weight = torch.randn(10, 7)
    assert quantize_absmax(weight, 8).nbytes == 70 + 10 * 4
    assert quantize_absmax(weight, 4).nbytes == 35 + 10 * 4
    assert quantize_absmax(weight, 3).nbytes == 27 + 10 * 4  # ceil(210 / 8)


@pytest.mark.parametrize("bias", [True, False])
def test_quantized_linear_computes_with_the_dequantised_weight(bias: bool) -> None:
    torch.manual_seed(1)
    linear = nn.Linear(19, 11, bias=bias)
    layer = QuantizedLinear.from_linear(linear, bits=4)
    x = torch.randn(3, 5, 19)
    codes, scale = numpy_absmax(linear.weight.detach().numpy().astype(np.float64), 4)
    reference = x.double().numpy() @ (codes * scale).T
    if bias:
        reference = reference + linear.bias.detach().double().numpy()
    np.testing.assert_allclose(layer(x).detach().numpy(), reference, rtol=1e-4, atol=1e-5)
    assert layer.nbytes == QuantizedTensor(layer.values, layer.scale, 4).nbytes + (11 * 4 if bias else 0)


def small_gpt() -> GPT:
    torch.manual_seed(2)
    return GPT(GPTConfig(vocab_size=23, context_length=16, n_layer=2, n_head=2, d_model=24))


def test_quantize_linear_layers_replaces_every_linear_but_the_skipped_and_leaves_the_model() -> None:
    model = small_gpt()
    before = {name: p.clone() for name, p in model.state_dict().items()}
    quantized = quantize_linear_layers(model, bits=8, skip=("lm_head",))
    linear_names = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    replaced = [name for name, m in quantized.named_modules() if isinstance(m, QuantizedLinear)]
    assert sorted(replaced) == sorted(set(linear_names) - {"lm_head"}) and len(replaced) == 12  # q, k, v, out, up, down per block
    assert isinstance(quantized.lm_head, nn.Linear)
    assert quantized.lm_head.weight is quantized.token_embedding.weight  # tying survives the copy
    for name, p in model.state_dict().items():
        torch.testing.assert_close(p, before[name], rtol=0, atol=0)
    idx = torch.randint(0, 23, (2, 16), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        full, int8 = model(idx), quantized(idx)
    relative = (full - int8).norm() / full.norm()
    assert 0 < relative < 0.02


def test_storage_bytes_equals_a_hand_count() -> None:
    model = small_gpt()
    float_bytes = 4 * model.num_parameters()  # the tied matrix once
    assert storage_bytes(model) == float_bytes
    quantized = quantize_linear_layers(model, bits=4, skip=["lm_head"])
    expected = float_bytes
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and name != "lm_head":
            out_features, in_features = module.weight.shape
            expected += -4 * module.weight.numel() + (out_features * in_features + 1) // 2 + 4 * out_features
    assert storage_bytes(quantized) == expected


def test_storage_bytes_skips_recomputed_rope_tables() -> None:
    model = GPT(GPTConfig(vocab_size=11, context_length=32, n_layer=1, n_head=2, d_model=8, position="rope"))
    assert storage_bytes(model) == 4 * model.num_parameters()


def test_bad_inputs_are_named() -> None:
    with pytest.raises(ValueError, match="bits must be an integer in \\[2, 8\\]"):
        quantize_absmax(torch.randn(3, 3), bits=9)
    with pytest.raises(ValueError, match="bits must be an integer in \\[2, 8\\]"):
        quantize_absmax(torch.randn(3, 3), bits=True)
    with pytest.raises(ValueError, match=r"weight must have 2 dimensions"):
        quantize_absmax(torch.randn(3), bits=8)
    with pytest.raises(TypeError, match="floating"):
        quantize_absmax(torch.ones(3, 3, dtype=torch.long))
    with pytest.raises(TypeError, match="must be a torch.nn.Linear"):
        QuantizedLinear.from_linear(nn.Conv1d(2, 2, 1))
    with pytest.raises(TypeError, match="must be a QuantizedTensor"):
        QuantizedLinear(torch.randn(2, 2))
    with pytest.raises(ValueError, match=r"not Linear modules of the model.*lm_head"):
        quantize_linear_layers(small_gpt(), skip=("head",))
    with pytest.raises(TypeError, match="collection of module names"):
        quantize_linear_layers(small_gpt(), skip="lm_head")
    with pytest.raises(TypeError, match="must be a torch.nn.Module"):
        storage_bytes(torch.randn(2))
