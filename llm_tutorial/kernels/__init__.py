"""GPU kernels in Triton — softmax, LayerNorm/RMSNorm, FlashAttention-2, cross-entropy — with PyTorch fallbacks.

Each kernel is a ``torch.autograd.Function`` (in ``triton_<name>.py``, forward and backward in
Triton) behind a plain function exported here::

    softmax(x)                                    # rows of the last dimension
    layer_norm(x, weight, bias=None, eps=1e-5)
    rms_norm(x, weight, eps=1e-6)
    flash_attention(q, k, v, causal=False, scale=None)   # (B, H, T, D)
    cross_entropy(logits, targets, ignore_index=-100)    # (..., V) and (...)

Where the code runs is decided per tensor (``backend_for``): CUDA tensors take the compiled
kernels; CPU tensors take Triton's interpreter when ``TRITON_INTERPRET=1`` was set before the
first kernel call, and the plain PyTorch ``reference`` otherwise. Importing this package never
imports Triton, so it works on machines without it.

``python -m llm_tutorial.kernels.bench`` checks the kernels against PyTorch on a GPU and times them.
"""

from __future__ import annotations

from llm_tutorial.kernels import reference
from llm_tutorial.kernels.backends import available_backends, backend_for
from llm_tutorial.kernels.dispatch import (
    SUPPORTED_HEAD_DIMS,
    cross_entropy,
    flash_attention,
    layer_norm,
    rms_norm,
    softmax,
)

__all__ = [
    "SUPPORTED_HEAD_DIMS",
    "available_backends",
    "backend_for",
    "cross_entropy",
    "flash_attention",
    "layer_norm",
    "reference",
    "rms_norm",
    "softmax",
]
