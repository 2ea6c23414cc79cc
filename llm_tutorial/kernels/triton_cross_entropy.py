r"""Cross-entropy over a large vocabulary in Triton, without materialising the softmax.

For one row of logits :math:`z \in \mathbb{R}^V` and target class :math:`t`,

.. math::

    \ell = -\log \operatorname{softmax}(z)_t = \underbrace{\log \textstyle\sum_j e^{z_j}}_{\text{LSE}(z)} - z_t,
    \qquad
    \frac{\partial \ell}{\partial z_j} = \operatorname{softmax}(z)_j - [j = t]
    = e^{z_j - \text{LSE}(z)} - [j = t].

A GPT-2 row has :math:`V = 50257` logits; a batch of 8×1024 tokens holds 400 million. PyTorch's
``F.cross_entropy`` first writes the full log-softmax (another 400 million numbers) and reads it
back. Here nothing of size :math:`V` is ever written in the forward: only the LSE (one number per
row) is kept.

**Forward: one program = one row.** It streams over the vocabulary in blocks of ``BLOCK_V`` and
keeps the running maximum :math:`m` and the running sum :math:`s = \sum e^{z_j - m}` — the same
online recurrence as FlashAttention's softmax:

.. math::

    m_{\text{new}} = \max(m, \max_{j \in \text{block}} z_j),\qquad
    s \leftarrow e^{m - m_{\text{new}}}\, s + \textstyle\sum_{j \in \text{block}} e^{z_j - m_{\text{new}}},

and at the end :math:`\text{LSE} = m + \log s`. The target logit is a single load.

**Backward: one program = one row**, streaming again: each block's gradient
:math:`(e^{z_j - \text{LSE}} - [j = t])\cdot \partial L/\partial \ell` is computed from the saved LSE
and written directly. With the mean over the :math:`n` rows whose target is not ``ignore_index``
(as ``F.cross_entropy`` does), :math:`\partial L/\partial \ell = 1/n` for those rows and 0 for
ignored ones.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from llm_tutorial.kernels.triton_setup import INTERPRETER, accumulator_dtype

# Vocabulary block streamed per step: large on a GPU (fewer, longer memory transactions), small in
# the interpreter so that tests with a few hundred classes still take several steps.
BLOCK_V = 128 if INTERPRETER else 4096
_NUM_WARPS = 8


@triton.jit
def _cross_entropy_forward_kernel(
    Logits, Targets, Loss, LSE, n_classes, stride_row, ignore_index,
    BLOCK_V: tl.constexpr, ACC: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    row_logits = Logits + row * stride_row
    running_max = tl.full([], float("-inf"), dtype=ACC)  # m
    running_sum = tl.zeros([], dtype=ACC)  # s = Σ e^{z − m} over the classes seen so far
    for start in range(0, n_classes, BLOCK_V):
        cols = start + tl.arange(0, BLOCK_V)
        z = tl.load(row_logits + cols, mask=cols < n_classes, other=float("-inf")).to(ACC)  # (BLOCK_V,)
        new_max = tl.maximum(running_max, tl.max(z, axis=0))  # m_new = max(m, max z)
        running_sum = running_sum * tl.exp(running_max - new_max) + tl.sum(tl.exp(z - new_max), axis=0)
        running_max = new_max
    lse = running_max + tl.log(running_sum)  # LSE = m + log s

    target = tl.load(Targets + row)
    ignored = target == ignore_index
    safe_target = tl.where(ignored, 0, target)  # an ignored row still needs a valid address
    target_logit = tl.load(row_logits + safe_target).to(ACC)
    tl.store(Loss + row, tl.where(ignored, 0.0, lse - target_logit))  # ℓ = LSE − z_t
    tl.store(LSE + row, lse)


@triton.jit
def _cross_entropy_backward_kernel(
    Logits, Targets, LSE, RowGrad, DLogits, n_classes, stride_row, stride_grad_row,
    BLOCK_V: tl.constexpr, ACC: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    row_logits = Logits + row * stride_row
    row_dlogits = DLogits + row * stride_grad_row
    lse = tl.load(LSE + row)
    target = tl.load(Targets + row)
    grad = tl.load(RowGrad + row)  # ∂L/∂ℓ for this row: 1/n, or 0 when its target is ignored
    for start in range(0, n_classes, BLOCK_V):
        cols = start + tl.arange(0, BLOCK_V)
        in_bounds = cols < n_classes
        z = tl.load(row_logits + cols, mask=in_bounds, other=0.0).to(ACC)
        probability = tl.exp(z - lse)  # softmax(z)_j, rebuilt from the saved LSE
        one_hot = tl.where(cols == target, 1.0, 0.0)
        tl.store(row_dlogits + cols, (probability - one_hot) * grad, mask=in_bounds)


def cross_entropy_forward(
    logits: torch.Tensor, targets: torch.Tensor, ignore_index: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Launch the forward kernel on ``(N, V)`` logits; returns per-row ``loss`` and ``lse`` (fp32/fp64).

    The loss of a row whose target is ``ignore_index`` is 0.
    """
    n_rows, n_classes = logits.shape
    stats_dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
    loss = torch.empty(n_rows, dtype=stats_dtype, device=logits.device)
    lse = torch.empty(n_rows, dtype=stats_dtype, device=logits.device)
    _cross_entropy_forward_kernel[(n_rows,)](
        logits, targets, loss, lse, n_classes, logits.stride(0), ignore_index,
        BLOCK_V=BLOCK_V, ACC=accumulator_dtype(logits.dtype), num_warps=_NUM_WARPS,
    )
    return loss, lse


def cross_entropy_backward(
    logits: torch.Tensor, targets: torch.Tensor, lse: torch.Tensor, row_grad: torch.Tensor
) -> torch.Tensor:
    """Launch the backward kernel; ``row_grad`` holds ∂L/∂ℓ per row. Returns ``dlogits`` like ``logits``."""
    n_rows, n_classes = logits.shape
    dlogits = torch.empty(logits.shape, dtype=logits.dtype, device=logits.device)
    _cross_entropy_backward_kernel[(n_rows,)](
        logits, targets, lse, row_grad, dlogits, n_classes, logits.stride(0), dlogits.stride(0),
        BLOCK_V=BLOCK_V, ACC=accumulator_dtype(logits.dtype), num_warps=_NUM_WARPS,
    )
    return dlogits


class CrossEntropyFunction(torch.autograd.Function):
    """Mean cross-entropy over the rows whose target is not ``ignore_index``, like ``F.cross_entropy``.

    ``logits`` ``(N, V)`` with unit stride along ``V``; ``targets`` ``(N,)`` integer classes.
    Saves the logits and one LSE per row.
    """

    @staticmethod
    def forward(ctx, logits: torch.Tensor, targets: torch.Tensor, ignore_index: int) -> torch.Tensor:
        loss, lse = cross_entropy_forward(logits, targets, ignore_index)
        counted = targets != ignore_index  # (N,)
        n_counted = counted.sum()
        ctx.save_for_backward(logits, targets, lse, counted, n_counted)
        # Mean over counted rows; 0/0 = nan when every target is ignored, as in F.cross_entropy.
        return (loss.sum() / n_counted).to(logits.dtype)

    @staticmethod
    def backward(ctx, dloss: torch.Tensor):
        logits, targets, lse, counted, n_counted = ctx.saved_tensors
        row_grad = counted.to(lse.dtype) * (dloss.to(lse.dtype) / n_counted)  # (N,) ∂L/∂ℓ_i
        return cross_entropy_backward(logits, targets, lse, row_grad), None, None
