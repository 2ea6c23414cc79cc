r"""LayerNorm and RMSNorm in Triton, forward and backward, including the weight and bias gradients.

For one row :math:`x \in \mathbb{R}^N` with weight :math:`w` and bias :math:`b`:

.. math::

    \text{LayerNorm:}\quad \mu = \tfrac1N \textstyle\sum_j x_j,\quad
        \sigma^2 = \tfrac1N \textstyle\sum_j (x_j-\mu)^2,\quad
        \hat x = (x-\mu)\, r,\quad r = 1/\sqrt{\sigma^2+\varepsilon},\quad y = \hat x \odot w + b

    \text{RMSNorm:}\quad \hat x = x\, r,\quad r = 1/\sqrt{\tfrac1N \textstyle\sum_j x_j^2+\varepsilon},
        \quad y = \hat x \odot w

RMSNorm is LayerNorm without the centring (and without a bias), so one pair of kernels serves both,
switched by the compile-time flag ``CENTER``.

Backward, with :math:`g = \partial L/\partial y` and :math:`\bar g = g \odot w`:

.. math::

    \frac{\partial L}{\partial x} = r\Big(\bar g - \hat x\, \overline{\hat x \bar g}
        - \overline{\bar g}\Big)\ \text{(LayerNorm)},\qquad
    \frac{\partial L}{\partial x} = r\Big(\bar g - \hat x\, \overline{\hat x \bar g}\Big)\ \text{(RMSNorm)},

where an overline is the mean over the row, and over all rows
:math:`\partial L/\partial w = \sum_{\text{rows}} g \odot \hat x`,
:math:`\partial L/\partial b = \sum_{\text{rows}} g`.

Tiling: program ``i`` of the forward owns ``BLOCK_ROWS`` whole rows and saves each row's
:math:`\mu` and :math:`r` (one number each) for the backward. The weight gradient is a sum over
*all* rows, which no single program sees. Each backward program therefore loops over several
blocks of rows, keeps its own partial sums of :math:`g \odot \hat x` and :math:`g` in registers,
and writes them to one row of a small ``(programs, N)`` buffer; PyTorch then adds those few rows.
No two programs write the same memory, so no atomics or locks are needed and the result is
deterministic.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from llm_tutorial.kernels.triton_setup import accumulator_dtype, parallel_programs, row_tiling


@triton.jit
def _norm_forward_kernel(
    X, W, B, Y, Mean, Rstd, n_rows, n_cols, stride_x_row, stride_y_row, eps,
    CENTER: tl.constexpr, HAS_BIAS: tl.constexpr,
    BLOCK_ROWS: tl.constexpr, BLOCK_COLS: tl.constexpr, ACC: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)  # (BLOCK_ROWS,)
    cols = tl.arange(0, BLOCK_COLS)  # (BLOCK_COLS,)
    col_ok = cols < n_cols
    in_bounds = (rows[:, None] < n_rows) & col_ok[None, :]  # (BLOCK_ROWS, BLOCK_COLS)
    rows64 = rows.to(tl.int64)

    # Padding is loaded as 0, so it adds nothing to the sums below; we divide by n_cols, not BLOCK_COLS.
    x = tl.load(X + rows64[:, None] * stride_x_row + cols[None, :], mask=in_bounds, other=0.0).to(ACC)
    if CENTER:
        mean = tl.sum(x, axis=1) / n_cols  # μ, (BLOCK_ROWS,)
        x = tl.where(col_ok[None, :], x - mean[:, None], 0.0)  # x − μ, padding kept at 0
    variance = tl.sum(x * x, axis=1) / n_cols  # σ² (LayerNorm) or mean of x² (RMSNorm)
    rstd = 1.0 / tl.sqrt(variance + eps)  # r
    x_hat = x * rstd[:, None]

    w = tl.load(W + cols, mask=col_ok, other=0.0).to(ACC)
    y = x_hat * w[None, :]
    if HAS_BIAS:
        y += tl.load(B + cols, mask=col_ok, other=0.0).to(ACC)[None, :]
    tl.store(Y + rows64[:, None] * stride_y_row + cols[None, :], y, mask=in_bounds)
    # Two numbers per row let the backward rebuild x̂ without storing it.
    if CENTER:
        tl.store(Mean + rows, mean, mask=rows < n_rows)
    tl.store(Rstd + rows, rstd, mask=rows < n_rows)


@triton.jit
def _norm_backward_kernel(
    X, W, DY, DX, Mean, Rstd, DW_partial, DB_partial,
    n_rows, n_cols, stride_x_row, stride_dy_row, stride_dx_row,
    CENTER: tl.constexpr, HAS_BIAS: tl.constexpr,
    BLOCK_ROWS: tl.constexpr, BLOCK_COLS: tl.constexpr, ACC: tl.constexpr,
):
    program = tl.program_id(0)
    n_programs = tl.num_programs(0)
    cols = tl.arange(0, BLOCK_COLS)
    col_ok = cols < n_cols
    w = tl.load(W + cols, mask=col_ok, other=0.0).to(ACC)
    # This program's share of ∂L/∂w and ∂L/∂b: sums over the rows it visits.
    dw = tl.zeros([BLOCK_COLS], dtype=ACC)
    db = tl.zeros([BLOCK_COLS], dtype=ACC)

    # A persistent program: blocks of rows program, program + n_programs, program + 2·n_programs, …
    for first_row in range(program * BLOCK_ROWS, n_rows, n_programs * BLOCK_ROWS):
        rows = first_row + tl.arange(0, BLOCK_ROWS)
        row_ok = rows < n_rows
        in_bounds = row_ok[:, None] & col_ok[None, :]
        rows64 = rows.to(tl.int64)
        x = tl.load(X + rows64[:, None] * stride_x_row + cols[None, :], mask=in_bounds, other=0.0).to(ACC)
        g = tl.load(DY + rows64[:, None] * stride_dy_row + cols[None, :], mask=in_bounds, other=0.0).to(ACC)
        rstd = tl.load(Rstd + rows, mask=row_ok, other=0.0)
        if CENTER:
            mean = tl.load(Mean + rows, mask=row_ok, other=0.0)
            x = x - mean[:, None]
        x_hat = tl.where(in_bounds, x * rstd[:, None], 0.0)  # rebuilt from the saved μ and r
        g_bar = g * w[None, :]  # ḡ = g ⊙ w
        mean_xhat_gbar = tl.sum(x_hat * g_bar, axis=1) / n_cols
        if CENTER:
            mean_gbar = tl.sum(g_bar, axis=1) / n_cols
            dx = rstd[:, None] * (g_bar - x_hat * mean_xhat_gbar[:, None] - mean_gbar[:, None])
        else:
            dx = rstd[:, None] * (g_bar - x_hat * mean_xhat_gbar[:, None])
        tl.store(DX + rows64[:, None] * stride_dx_row + cols[None, :], dx, mask=in_bounds)
        dw += tl.sum(g * x_hat, axis=0)
        if HAS_BIAS:
            db += tl.sum(g, axis=0)

    # One row of partial sums per program; the host adds the rows.
    tl.store(DW_partial + program * n_cols + cols, dw, mask=col_ok)
    if HAS_BIAS:
        tl.store(DB_partial + program * n_cols + cols, db, mask=col_ok)


def _as_rows(x: torch.Tensor) -> torch.Tensor:
    """``x`` of shape ``(..., N)`` as a ``(n_rows, N)`` matrix whose rows are contiguous."""
    rows = x.reshape(-1, x.shape[-1])
    return rows if rows.stride(-1) == 1 else rows.contiguous()


def norm_forward(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, eps: float, center: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Launch the forward kernel; returns ``y`` (shape of ``x``), and per row ``μ`` and ``r`` (fp32/fp64).

    ``center=True`` is LayerNorm, ``center=False`` RMSNorm (then ``μ`` is an empty placeholder).
    """
    rows = _as_rows(x)
    n_rows, n_cols = rows.shape
    stats_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    y = torch.empty(rows.shape, dtype=x.dtype, device=x.device)
    mean = torch.empty(n_rows if center else 0, dtype=stats_dtype, device=x.device)
    rstd = torch.empty(n_rows, dtype=stats_dtype, device=x.device)
    block_rows, block_cols, num_warps = row_tiling(n_cols)
    grid = (triton.cdiv(n_rows, block_rows),)
    _norm_forward_kernel[grid](
        rows, weight, bias if bias is not None else weight, y, mean, rstd,
        n_rows, n_cols, rows.stride(0), y.stride(0), eps,
        CENTER=center, HAS_BIAS=bias is not None,
        BLOCK_ROWS=block_rows, BLOCK_COLS=block_cols, ACC=accumulator_dtype(x.dtype), num_warps=num_warps,
    )
    return y.view(x.shape), mean, rstd


def norm_backward(
    dy: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, has_bias: bool,
    mean: torch.Tensor, rstd: torch.Tensor, center: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Launch the backward kernel; returns ``(dx, dweight, dbias)`` (``dbias`` None without a bias)."""
    rows = _as_rows(x)
    dy_rows = _as_rows(dy)
    n_rows, n_cols = rows.shape
    block_rows, block_cols, num_warps = row_tiling(n_cols)
    n_programs = parallel_programs(x.device, triton.cdiv(n_rows, block_rows))
    dx = torch.empty(rows.shape, dtype=x.dtype, device=x.device)
    partial_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    dw_partial = torch.empty(n_programs, n_cols, dtype=partial_dtype, device=x.device)
    db_partial = torch.empty(n_programs if has_bias else 0, n_cols, dtype=partial_dtype, device=x.device)
    _norm_backward_kernel[(n_programs,)](
        rows, weight, dy_rows, dx, mean, rstd, dw_partial, db_partial,
        n_rows, n_cols, rows.stride(0), dy_rows.stride(0), dx.stride(0),
        CENTER=center, HAS_BIAS=has_bias,
        BLOCK_ROWS=block_rows, BLOCK_COLS=block_cols, ACC=accumulator_dtype(x.dtype), num_warps=num_warps,
    )
    dweight = dw_partial.sum(dim=0).to(weight.dtype)  # (N,) the last step of the reduction
    dbias = db_partial.sum(dim=0).to(weight.dtype) if has_bias else None
    return dx.view(x.shape), dweight, dbias


class LayerNormFunction(torch.autograd.Function):
    """LayerNorm over the last dimension in Triton; ``bias`` may be None. Saves x, μ and r."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, eps: float) -> torch.Tensor:
        y, mean, rstd = norm_forward(x, weight, bias, eps, center=True)
        ctx.save_for_backward(x, weight, mean, rstd)
        ctx.has_bias = bias is not None
        return y

    @staticmethod
    def backward(ctx, dy: torch.Tensor):
        x, weight, mean, rstd = ctx.saved_tensors
        dx, dweight, dbias = norm_backward(dy, x, weight, ctx.has_bias, mean, rstd, center=True)
        return dx, dweight, dbias, None


class RMSNormFunction(torch.autograd.Function):
    """RMSNorm over the last dimension in Triton. Saves x and r."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
        y, mean, rstd = norm_forward(x, weight, None, eps, center=False)
        ctx.save_for_backward(x, weight, mean, rstd)
        return y

    @staticmethod
    def backward(ctx, dy: torch.Tensor):
        x, weight, mean, rstd = ctx.saved_tensors
        dx, dweight, _ = norm_backward(dy, x, weight, False, mean, rstd, center=False)
        return dx, dweight, None
