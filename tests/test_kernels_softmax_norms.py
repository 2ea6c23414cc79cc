"""Softmax, LayerNorm and RMSNorm kernels through Triton's interpreter, against PyTorch's own ops."""

import os

os.environ["TRITON_INTERPRET"] = "1"  # Triton reads it when the kernel modules are imported: before that

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("triton")

from llm_tutorial.kernels import backend_for, layer_norm, rms_norm, softmax  # noqa: E402

TOL = {torch.float64: 1e-10, torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 2e-2}


def _max_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return (actual.double() - expected.double()).abs().max().item()


def _grads(out: torch.Tensor, inputs: list[torch.Tensor], upstream: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return torch.autograd.grad(out, inputs, upstream)


def _leaves(*tensors: torch.Tensor) -> list[torch.Tensor]:
    return [t.detach().clone().requires_grad_() for t in tensors]


def test_cpu_tensors_take_the_interpreter():
    assert backend_for(torch.zeros(3)) == "interpreter"


@pytest.mark.parametrize("shape", [(1, 1), (7, 3), (3, 5, 100), (130, 1000)])
def test_softmax_fp64_matches_torch_with_gradients(shape):
    x = torch.randn(*shape, dtype=torch.float64) * 3
    (ours,), (ref,) = _leaves(x), _leaves(x)
    y, y_ref = softmax(ours), torch.softmax(ref, dim=-1)
    upstream = torch.randn_like(y)
    assert _max_error(y, y_ref) < 1e-12
    assert _max_error(_grads(y, [ours], upstream)[0], _grads(y_ref, [ref], upstream)[0]) < 1e-10


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_softmax_low_precision_matches_torch(dtype):
    x = torch.randn(9, 77, dtype=dtype)
    (ours,) = _leaves(x)
    (ref,) = _leaves(x.float())
    y, y_ref = softmax(ours), torch.softmax(ref, dim=-1)
    upstream = torch.randn_like(y_ref)
    assert y.dtype == dtype
    assert _max_error(y, y_ref) < TOL[dtype]
    assert _max_error(_grads(y, [ours], upstream.to(dtype))[0], _grads(y_ref, [ref], upstream)[0]) < TOL[dtype] * 5


def test_softmax_is_stable_for_huge_logits_and_accepts_transposed_views():
    x = (torch.randn(40, 6, dtype=torch.float64) * 1e4).t()  # (6, 40), non-contiguous, entries ~1e4
    y = softmax(x)
    assert torch.isfinite(y).all()
    assert _max_error(y, torch.softmax(x, dim=-1)) < 1e-12


def test_softmax_rejects_bad_input():
    with pytest.raises(TypeError, match="x must have dtype float16, bfloat16, float32, float64, got int64"):
        softmax(torch.arange(6).view(2, 3))
    with pytest.raises(ValueError, match="at least 1 dimensions"):
        softmax(torch.tensor(1.0))
    with pytest.raises(ValueError, match="longer than the 65536"):
        softmax(torch.zeros(1, 65537))


@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("shape", [(1, 1), (300, 7), (2, 3, 100), (5, 1000)])
def test_layer_norm_fp64_matches_torch_with_all_gradients(shape, with_bias):
    width = shape[-1]
    x, w, b = torch.randn(*shape, dtype=torch.float64) * 2 + 1, torch.randn(width, dtype=torch.float64), torch.randn(
        width, dtype=torch.float64
    )
    ours, ref = _leaves(x, w, b), _leaves(x, w, b)
    bias_ours, bias_ref = (ours[2], ref[2]) if with_bias else (None, None)
    y = layer_norm(ours[0], ours[1], bias_ours, 1e-5)
    y_ref = F.layer_norm(ref[0], (width,), ref[1], bias_ref, 1e-5)
    upstream = torch.randn_like(y)
    n = 3 if with_bias else 2
    assert _max_error(y, y_ref) < 1e-12
    # 300 rows of width 7 span several row blocks per program: the per-program partial sums of
    # ∂L/∂w and ∂L/∂b must add up to the full sums.
    for g, g_ref in zip(_grads(y, ours[:n], upstream), _grads(y_ref, ref[:n], upstream)):
        assert _max_error(g, g_ref) < 1e-10


@pytest.mark.parametrize("shape", [(1, 1), (300, 7), (2, 3, 100), (5, 1000)])
def test_rms_norm_fp64_matches_torch_with_weight_gradient(shape):
    width = shape[-1]
    x, w = torch.randn(*shape, dtype=torch.float64), torch.randn(width, dtype=torch.float64)
    ours, ref = _leaves(x, w), _leaves(x, w)
    y, y_ref = rms_norm(ours[0], ours[1], 1e-6), F.rms_norm(ref[0], (width,), ref[1], 1e-6)
    upstream = torch.randn_like(y)
    assert _max_error(y, y_ref) < 1e-12
    for g, g_ref in zip(_grads(y, ours, upstream), _grads(y_ref, ref, upstream)):
        assert _max_error(g, g_ref) < 1e-10


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_norms_low_precision_match_torch(dtype):
    x, w, b = torch.randn(33, 96, dtype=dtype), torch.randn(96, dtype=dtype), torch.randn(96, dtype=dtype)
    ln = layer_norm(x, w, b, 1e-5)
    rms = rms_norm(x, w, 1e-6)
    assert ln.dtype == rms.dtype == dtype
    assert _max_error(ln, F.layer_norm(x.float(), (96,), w.float(), b.float(), 1e-5)) < TOL[dtype] * 10
    assert _max_error(rms, F.rms_norm(x.float(), (96,), w.float(), 1e-6)) < TOL[dtype] * 10


def test_norms_accept_transposed_views():
    x = torch.randn(64, 10, dtype=torch.float64).t()  # (10, 64) with row stride 1
    w, b = torch.randn(64, dtype=torch.float64), torch.randn(64, dtype=torch.float64)
    assert _max_error(layer_norm(x, w, b), F.layer_norm(x, (64,), w, b, 1e-5)) < 1e-12
    assert _max_error(rms_norm(x, w), F.rms_norm(x, (64,), w, 1e-6)) < 1e-12


def test_norms_reject_bad_input():
    x, w = torch.randn(4, 8), torch.randn(8)
    with pytest.raises(ValueError, match=r"weight must have shape \(8,\) to match the last dimension of x"):
        layer_norm(x, torch.randn(7))
    with pytest.raises(ValueError, match=r"bias must have shape \(8,\)"):
        layer_norm(x, w, torch.randn(9))
    with pytest.raises(TypeError, match="x must have dtype .* got int64"):
        rms_norm(torch.ones(4, 8, dtype=torch.long), w)
    with pytest.raises(ValueError, match="same device, got x on cpu, weight on meta"):
        rms_norm(x, torch.randn(8, device="meta"))
    with pytest.raises(ValueError, match="eps must be a positive number, got 0"):
        layer_norm(x, w, eps=0)
