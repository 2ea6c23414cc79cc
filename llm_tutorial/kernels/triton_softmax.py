r"""Row softmax in Triton, forward and backward: the "hello world" of fused kernels.

For one row :math:`x \in \mathbb{R}^N`,

.. math::

    y_j = \frac{e^{x_j - m}}{\sum_k e^{x_k - m}}, \qquad m = \max_k x_k

(subtracting the maximum changes nothing mathematically and keeps every exponent ≤ 0, so nothing
overflows). Its backward, for an incoming gradient :math:`g = \partial L / \partial y`, is

.. math::

    \frac{\partial L}{\partial x_j} = y_j \Big(g_j - \sum_k g_k\, y_k\Big).

PyTorch's unfused version reads and writes the row several times (max, subtract, exp, sum,
divide). Here one program loads whole rows into registers once, does every step there, and writes
the result once: memory traffic is one read and one write per element, the minimum possible, which
is what decides the speed of such a memory-bound operation.

Tiling: the input is viewed as a matrix ``(n_rows, n_cols)``; program ``i`` owns rows
``[i·BLOCK_ROWS, (i+1)·BLOCK_ROWS)``, all of their columns (``BLOCK_COLS`` is ``n_cols`` rounded up
to a power of two; the extra columns are masked).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from llm_tutorial.kernels.triton_setup import accumulator_dtype, row_tiling


@triton.jit
def _softmax_forward_kernel(
    X, Y, n_rows, n_cols, stride_x_row, stride_y_row,
    BLOCK_ROWS: tl.constexpr, BLOCK_COLS: tl.constexpr, ACC: tl.constexpr,
):
    # This program's rows, and every column of them.
    rows = tl.program_id(0) * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)  # (BLOCK_ROWS,)
    cols = tl.arange(0, BLOCK_COLS)  # (BLOCK_COLS,)
    in_bounds = (rows[:, None] < n_rows) & (cols[None, :] < n_cols)  # (BLOCK_ROWS, BLOCK_COLS)
    rows64 = rows.to(tl.int64)  # row · stride can exceed 2^31 for big tensors

    x = tl.load(X + rows64[:, None] * stride_x_row + cols[None, :], mask=in_bounds, other=0.0).to(ACC)
    # Padding columns get −∞: e^{−∞} = 0 adds nothing to the sum. Padding rows keep their zeros,
    # so they stay finite (they are never stored).
    x = tl.where(cols[None, :] < n_cols, x, float("-inf"))

    shifted = x - tl.max(x, axis=1)[:, None]  # x − m, every entry ≤ 0
    numerator = tl.exp(shifted)
    denominator = tl.sum(numerator, axis=1)  # (BLOCK_ROWS,)
    y = numerator / denominator[:, None]
    tl.store(Y + rows64[:, None] * stride_y_row + cols[None, :], y, mask=in_bounds)


@triton.jit
def _softmax_backward_kernel(
    Y, DY, DX, n_rows, n_cols, stride_y_row, stride_dy_row, stride_dx_row,
    BLOCK_ROWS: tl.constexpr, BLOCK_COLS: tl.constexpr, ACC: tl.constexpr,
):
    # Same tiling as the forward. The backward needs y (saved), not x: dx = y ⊙ (g − ⟨g, y⟩).
    rows = tl.program_id(0) * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)
    cols = tl.arange(0, BLOCK_COLS)
    in_bounds = (rows[:, None] < n_rows) & (cols[None, :] < n_cols)
    rows64 = rows.to(tl.int64)

    y = tl.load(Y + rows64[:, None] * stride_y_row + cols[None, :], mask=in_bounds, other=0.0).to(ACC)
    g = tl.load(DY + rows64[:, None] * stride_dy_row + cols[None, :], mask=in_bounds, other=0.0).to(ACC)
    g_dot_y = tl.sum(g * y, axis=1)  # (BLOCK_ROWS,) one number per row
    dx = y * (g - g_dot_y[:, None])
    tl.store(DX + rows64[:, None] * stride_dx_row + cols[None, :], dx, mask=in_bounds)


def softmax_forward(x: torch.Tensor) -> torch.Tensor:
    """Launch the forward kernel on ``x`` of shape ``(..., N)``; returns ``y`` of the same shape."""
    rows = x.reshape(-1, x.shape[-1])  # (n_rows, N), a view when x's rows are evenly spaced
    if rows.stride(-1) != 1:
        rows = rows.contiguous()
    y = torch.empty(rows.shape, dtype=x.dtype, device=x.device)
    n_rows, n_cols = rows.shape
    block_rows, block_cols, num_warps = row_tiling(n_cols)
    grid = (triton.cdiv(n_rows, block_rows),)
    _softmax_forward_kernel[grid](
        rows, y, n_rows, n_cols, rows.stride(0), y.stride(0),
        BLOCK_ROWS=block_rows, BLOCK_COLS=block_cols, ACC=accumulator_dtype(x.dtype), num_warps=num_warps,
    )
    return y.view(x.shape)


def softmax_backward(y: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
    """Launch the backward kernel: ``dx`` from the saved output ``y`` and the gradient ``dy``."""
    y_rows = y.reshape(-1, y.shape[-1])
    dy_rows = dy.reshape(-1, dy.shape[-1])
    if dy_rows.stride(-1) != 1:
        dy_rows = dy_rows.contiguous()
    dx = torch.empty(y_rows.shape, dtype=y.dtype, device=y.device)
    n_rows, n_cols = y_rows.shape
    block_rows, block_cols, num_warps = row_tiling(n_cols)
    grid = (triton.cdiv(n_rows, block_rows),)
    _softmax_backward_kernel[grid](
        y_rows, dy_rows, dx, n_rows, n_cols, y_rows.stride(0), dy_rows.stride(0), dx.stride(0),
        BLOCK_ROWS=block_rows, BLOCK_COLS=block_cols, ACC=accumulator_dtype(y.dtype), num_warps=num_warps,
    )
    return dx.view(y.shape)


class SoftmaxFunction(torch.autograd.Function):
    """Softmax over the last dimension, forward and backward in Triton. Saves only the output."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        y = softmax_forward(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, dy: torch.Tensor) -> torch.Tensor:
        (y,) = ctx.saved_tensors
        return softmax_backward(y, dy)
