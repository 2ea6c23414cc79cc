"""The public kernel functions: check the inputs, then send them to Triton or to the PyTorch reference.

Every function here takes ordinary tensors, supports autograd, and gives the same numbers (to
rounding) on every backend; ``backends.backend_for(tensor)`` says which one a tensor gets. The
checks run before the choice, so a mistake fails the same way on a laptop and on a GPU.
"""

from __future__ import annotations

import math
import warnings

import torch

from llm_tutorial._checks import (
    check_bool,
    check_dtype,
    check_min_rank,
    check_number,
    check_positive_number,
    check_rank,
    check_same_device,
    check_same_dtype_and_device,
    check_tensor,
)
from llm_tutorial.kernels import reference
from llm_tutorial.kernels.backends import backend_for, kernel_module

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
SUPPORTED_HEAD_DIMS = (16, 32, 64, 128)
"""Head dimensions of ``flash_attention``: powers of two (``tl.arange`` tiles) and ≥ 16 (``tl.dot`` on GPUs)."""


def _check_float_input(x: torch.Tensor, name: str) -> None:
    check_min_rank(x, name, 1)
    check_dtype(x, name, FLOAT_DTYPES)


def _check_norm_parameter(param: torch.Tensor, name: str, x: torch.Tensor) -> None:
    check_rank(param, name, 1, "(N,)")
    check_dtype(param, name, FLOAT_DTYPES)
    if param.shape[0] != x.shape[-1]:
        raise ValueError(
            f"{name} must have shape ({x.shape[-1]},) to match the last dimension of x {tuple(x.shape)}, "
            f"got {tuple(param.shape)}"
        )


def softmax(x: torch.Tensor) -> torch.Tensor:
    """Softmax over the last dimension of ``x`` ``(..., N)``, N ≤ 65536 on the Triton backends."""
    _check_float_input(x, "x")
    backend = backend_for(x)
    if backend == "reference" or x.numel() == 0:
        return reference.softmax(x)
    return kernel_module("triton_softmax", backend).SoftmaxFunction.apply(x)


def layer_norm(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, eps: float = 1e-5
) -> torch.Tensor:
    """LayerNorm over the last dimension of ``x`` ``(..., N)``, ``weight`` ``(N,)``, optional ``bias`` ``(N,)``."""
    _check_float_input(x, "x")
    _check_norm_parameter(weight, "weight", x)
    tensors = {"x": x, "weight": weight}
    if bias is not None:
        _check_norm_parameter(bias, "bias", x)
        tensors["bias"] = bias
    check_same_device(tensors)
    eps = check_positive_number(eps, "eps")
    backend = backend_for(x)
    if backend == "reference" or x.numel() == 0:
        return reference.layer_norm(x, weight, bias, eps)
    return kernel_module("triton_norms", backend).LayerNormFunction.apply(x, weight, bias, eps)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """RMSNorm over the last dimension of ``x`` ``(..., N)`` with ``weight`` ``(N,)``."""
    _check_float_input(x, "x")
    _check_norm_parameter(weight, "weight", x)
    check_same_device({"x": x, "weight": weight})
    eps = check_positive_number(eps, "eps")
    backend = backend_for(x)
    if backend == "reference" or x.numel() == 0:
        return reference.rms_norm(x, weight, eps)
    return kernel_module("triton_norms", backend).RMSNormFunction.apply(x, weight, eps)


def _check_attention_inputs(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool) -> None:
    for name, t in (("q", q), ("k", k), ("v", v)):
        check_rank(t, name, 4, "(B, H, T, D)")
        check_dtype(t, name, FLOAT_DTYPES)
    check_same_dtype_and_device({"q": q, "k": k, "v": v})
    if k.shape != v.shape:
        raise ValueError(f"k and v must have the same shape (B, H, T_k, D), got {tuple(k.shape)} and {tuple(v.shape)}")
    if (q.shape[0], q.shape[1], q.shape[3]) != (k.shape[0], k.shape[1], k.shape[3]):
        raise ValueError(
            f"q (B, H, T_q, D) and k (B, H, T_k, D) must agree on B, H and D, got {tuple(q.shape)} and {tuple(k.shape)}"
        )
    if q.shape[3] not in SUPPORTED_HEAD_DIMS:
        raise ValueError(
            f"flash_attention supports head dimensions {SUPPORTED_HEAD_DIMS}, got D={q.shape[3]}; "
            "choose n_heads so that d_model / n_heads is one of them"
        )
    if causal and q.shape[2] != k.shape[2]:
        raise ValueError(
            f"causal attention needs as many queries as keys, got T_q={q.shape[2]} and T_k={k.shape[2]} "
            "(for cached decoding, attend without the causal flag)"
        )
    if q.shape[2] == 0 or k.shape[2] == 0:
        raise ValueError(f"sequences must not be empty, got T_q={q.shape[2]} and T_k={k.shape[2]}")


def flash_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool = False, scale: float | None = None
) -> torch.Tensor:
    r"""Exact attention :math:`\operatorname{softmax}(c\,QK^\top)V` on ``(B, H, T, D)`` tensors, FlashAttention-2 style.

    ``scale`` :math:`c` defaults to :math:`1/\sqrt D`. ``causal=True`` lets query ``i`` see keys
    ``j ≤ i`` (then ``T_q`` must equal ``T_k``). Any strides are accepted, e.g. the
    ``(B, T, H, D).transpose(1, 2)`` view a model produces. Returns a contiguous ``(B, H, T_q, D)``.
    """
    check_bool(causal, "causal")
    _check_attention_inputs(q, k, v, causal)
    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[-1])
    else:
        check_number(scale, "scale", 0, above=True, hint=" or None (for 1/sqrt(D))")
    backend = backend_for(q)
    if backend == "reference" or q.shape[0] * q.shape[1] == 0:
        return reference.attention(q, k, v, causal, float(scale))
    if backend == "interpreter" and q.dtype == torch.bfloat16:
        warnings.warn(
            "Triton's interpreter computes bf16 matrix products (tl.dot) wrongly, so bf16 flash_attention "
            "is inaccurate here; use float16 or float32 on a CPU (bf16 is fine on a GPU)",
            RuntimeWarning,
            stacklevel=2,
        )
    return kernel_module("triton_flash_attention", backend).FlashAttentionFunction.apply(q, k, v, causal, float(scale))


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
    """Mean cross-entropy of ``logits`` ``(..., V)`` against integer ``targets`` ``(...)``, like ``F.cross_entropy``.

    Rows whose target equals ``ignore_index`` count neither in the sum nor in the mean. Unlike
    ``F.cross_entropy`` the classes are on the *last* dimension, which is how a language model's
    ``(B, T, V)`` logits come. The Triton path never stores the ``(N, V)`` softmax.
    """
    _check_float_input(logits, "logits")
    check_tensor(targets, "targets")
    if targets.dtype not in (torch.int64, torch.int32):
        got = str(targets.dtype).replace("torch.", "")
        raise TypeError(f"targets must hold integer class ids (torch.long), got {got}")
    if targets.shape != logits.shape[:-1]:
        raise ValueError(
            f"targets must have shape {tuple(logits.shape[:-1])} (logits {tuple(logits.shape)} without the class "
            f"dimension), got {tuple(targets.shape)}"
        )
    check_same_device({"logits": logits, "targets": targets})
    n_classes = logits.shape[-1]
    invalid = (targets != ignore_index) & ((targets < 0) | (targets >= n_classes))
    if bool(invalid.any()):
        bad = targets[invalid][0].item()
        raise ValueError(f"targets must lie in [0, {n_classes}) or equal ignore_index={ignore_index}, found {bad}")
    rows = logits.reshape(-1, n_classes)  # (N, V)
    flat_targets = targets.reshape(-1)  # (N,)
    backend = backend_for(logits)
    if backend == "reference" or rows.numel() == 0:
        return reference.cross_entropy(rows, flat_targets, ignore_index)
    if rows.stride(-1) != 1:
        rows = rows.contiguous()
    return kernel_module("triton_cross_entropy", backend).CrossEntropyFunction.apply(rows, flat_targets, ignore_index)
