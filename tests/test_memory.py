"""PeakMemory against byte counts worked out by hand from each tensor's shape and dtype, and against
the closed form of explicit attention's memory (two T×T matrices per head plus the output)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from llm_tutorial.memory import PeakMemory
from llm_tutorial.nn import scaled_dot_product_attention


def test_counts_allocations_and_frees_in_order():
    with PeakMemory() as meter:
        a = torch.empty(1000)  # 4000 bytes
        b = a * 2  # 8000 alive
        del a  # 4000
        c = b.to(torch.float64) + 1  # the float64 copy (8000) and the sum (8000) with b: 20000
        assert meter.current_bytes == 4000 + 8000
    assert meter.peak_bytes == 20000
    assert meter.current_bytes == 12000  # b and c are still alive
    del b, c
    assert meter.current_bytes == 0


def test_views_in_place_ops_and_inputs_allocate_nothing():
    x = torch.randn(17, 9)
    with PeakMemory() as meter:
        x.t()
        x.view(9, 17)
        x[:, 2:5]
        x.add_(1.0)
        x.unsqueeze(0).expand(3, 17, 9)
    assert meter.peak_bytes == 0


def test_matmul_output_is_the_only_new_tensor():
    x = torch.randn(37, 11, dtype=torch.float64)
    with PeakMemory() as meter:
        y = x @ x.T  # (37, 37) float64
    assert meter.peak_bytes == 37 * 37 * 8
    assert y.shape == (37, 37)


def test_gradients_computed_inside_the_block_are_counted():
    w = torch.randn(13, 7, requires_grad=True)
    with PeakMemory() as meter:
        (w * 3.0).sum().backward()
    assert w.grad is not None
    assert meter.current_bytes == 13 * 7 * 4  # the gradient is kept; the temporaries are gone
    assert meter.peak_bytes >= 13 * 7 * 4


@pytest.mark.parametrize("T", [33, 128])
def test_explicit_attention_holds_two_score_matrices_and_the_output(T):
    B, H, D = 2, 3, 16
    q, k, v = (torch.randn(B, H, T, D) for _ in range(3))
    with PeakMemory() as meter:
        out = scaled_dot_product_attention(q, k, v)
    scores = B * H * T * T * 4  # one (B, H, T, T) float32 matrix
    assert meter.peak_bytes == 2 * scores + out.numel() * 4
    fused = PeakMemory()
    with fused:
        F.scaled_dot_product_attention(q, k, v)
    assert fused.peak_bytes < scores  # the fused kernel never returns a T×T matrix


def test_device_filter_ignores_other_devices():
    with PeakMemory(device="cuda") as meter:
        torch.ones(100)
    assert meter.peak_bytes == 0
    with PeakMemory(device=torch.device("cpu")) as meter:
        torch.ones(100)
    assert meter.peak_bytes == 400


def test_bad_device_is_rejected():
    with pytest.raises(TypeError, match="device must be None"):
        PeakMemory(device=0)
    with pytest.raises(RuntimeError, match="device"):
        PeakMemory(device="gpu0")
