r"""The PyTorch reference of every kernel: the same mathematics, written the obvious way.

These run wherever Triton cannot (a CPU without ``TRITON_INTERPRET=1``, Apple MPS, no Triton) and
autograd differentiates them. They materialise everything the kernels avoid — the full softmax, the
``T×T`` attention matrix — which is exactly the memory the kernels save. Inputs in fp16/bf16 are
computed in fp32 and the result is cast back, as the kernels do.
"""

from __future__ import annotations

import torch


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def softmax(x: torch.Tensor) -> torch.Tensor:
    r"""Softmax over the last dimension: :math:`y_j = e^{x_j - m} / \sum_k e^{x_k - m}`, :math:`m = \max_k x_k`."""
    z = x.to(_compute_dtype(x))
    numerator = torch.exp(z - z.amax(dim=-1, keepdim=True))
    return (numerator / numerator.sum(dim=-1, keepdim=True)).to(x.dtype)


def layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, eps: float) -> torch.Tensor:
    r"""LayerNorm over the last dimension: :math:`(x-\mu)/\sqrt{\sigma^2+\varepsilon}\odot w + b` (biased variance)."""
    z = x.to(_compute_dtype(x))
    centred = z - z.mean(dim=-1, keepdim=True)
    variance = (centred * centred).mean(dim=-1, keepdim=True)
    y = centred * torch.rsqrt(variance + eps) * weight
    if bias is not None:
        y = y + bias
    return y.to(x.dtype)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    r"""RMSNorm over the last dimension: :math:`x/\sqrt{\overline{x^2}+\varepsilon}\odot w`."""
    z = x.to(_compute_dtype(x))
    mean_square = (z * z).mean(dim=-1, keepdim=True)
    return (z * torch.rsqrt(mean_square + eps) * weight).to(x.dtype)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool, scale: float) -> torch.Tensor:
    r""":math:`\operatorname{softmax}(c\,QK^\top + \text{mask})\,V` on ``(B, H, T, D)``, scores in memory."""
    dtype = _compute_dtype(q)
    scores = scale * q.to(dtype) @ k.to(dtype).transpose(-2, -1)  # (B, H, T_q, T_k)
    if causal:
        q_len, k_len = scores.shape[-2:]
        future = torch.ones(q_len, k_len, dtype=torch.bool, device=q.device).triu(diagonal=1)
        scores = scores.masked_fill(future, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return (weights @ v.to(dtype)).to(q.dtype)  # (B, H, T_q, D)


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
    r"""Mean of :math:`\mathrm{LSE}(z) - z_t` over rows whose target is not ``ignore_index``; ``logits (N, V)``."""
    z = logits.to(_compute_dtype(logits))
    counted = targets != ignore_index  # (N,)
    safe_targets = torch.where(counted, targets, torch.zeros_like(targets))
    target_logits = z.gather(1, safe_targets[:, None]).squeeze(1)  # (N,)
    losses = torch.where(counted, torch.logsumexp(z, dim=1) - target_logits, torch.zeros_like(target_logits))
    return (losses.sum() / counted.sum()).to(logits.dtype)
