"""Normalisation layers: LayerNorm and RMSNorm.

Deep stacks of residual blocks keep adding to the same vector; normalising the input of each
sublayer keeps its scale under control so that training stays stable at any depth.

- **LayerNorm** (Ba et al., 2016) recentres and rescales each vector to zero mean and unit
  variance, then applies a learned gain (and bias).
- **RMSNorm** (Zhang & Sennrich, 2019) only rescales, by the root mean square: cheaper, and
  in practice as good (Llama, T5).

Both normalise over the last dimension and compute in at least float32, so that half-precision
inputs do not lose the small differences the statistics are made of, and in float64 when the input
is float64 (the float32 gain and bias are widened, so a float32 layer gives the float64 answer);
the output has the input's dtype. ``forward`` trusts its caller: the models check their inputs.
The equations are written above each ``forward``; the computation calls PyTorch's fused
``F.layer_norm`` / ``F.rms_norm``, which evaluate exactly these formulas in one pass over memory
instead of the five passes the written-out version takes (tests/test_norms_mlp.py checks them
against the formulas in float64).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from llm_tutorial._checks import check_choice, check_positive_int, check_positive_number

NORMS = ("layernorm", "rmsnorm")


class LayerNorm(nn.Module):
    """y = (x − mean(x)) / √(var(x) + eps) · weight + bias, statistics over the last dimension.

    ``var`` is the biased variance (divide by d, not d − 1), as in the paper and PyTorch.
    ``bias=False`` drops the additive term (a common simplification, e.g. nanoGPT).
    """

    def __init__(self, d_model: int, *, eps: float = 1e-5, bias: bool = True) -> None:
        super().__init__()
        self.d_model = check_positive_int(d_model, "d_model")
        self.eps = check_positive_number(eps, "eps")
        self.weight = nn.Parameter(torch.ones(d_model))
        self.bias = nn.Parameter(torch.zeros(d_model)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # mean = Σ x / d,  var = Σ (x − mean)² / d,  y = (x − mean) / √(var + eps) · weight + bias
        if x.dtype == self.weight.dtype == torch.float32:  # the common case, without three no-op casts
            return F.layer_norm(x, (self.d_model,), self.weight, self.bias, self.eps)
        dtype = torch.promote_types(x.dtype, torch.float32)
        weight, bias = self.weight.to(dtype), None if self.bias is None else self.bias.to(dtype)
        return F.layer_norm(x.to(dtype), (self.d_model,), weight, bias, self.eps).to(x.dtype)


class RMSNorm(nn.Module):
    """y = x / √(mean(x²) + eps) · weight, over the last dimension (no centring, no bias)."""

    def __init__(self, d_model: int, *, eps: float = 1e-6) -> None:
        super().__init__()
        self.d_model = check_positive_int(d_model, "d_model")
        self.eps = check_positive_number(eps, "eps")
        self.weight = nn.Parameter(torch.ones(d_model))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # y = x / √(Σ x² / d + eps) · weight
        if x.dtype == self.weight.dtype == torch.float32:
            return F.rms_norm(x, (self.d_model,), self.weight, self.eps)
        dtype = torch.promote_types(x.dtype, torch.float32)
        return F.rms_norm(x.to(dtype), (self.d_model,), self.weight.to(dtype), self.eps).to(x.dtype)


def build_norm(kind: str, d_model: int, *, eps: float, bias: bool = True) -> nn.Module:
    """A norm by name: ``"layernorm"`` or ``"rmsnorm"`` (which has no bias, so ``bias`` is unused)."""
    check_choice(kind, "norm", NORMS)
    if kind == "layernorm":
        return LayerNorm(d_model, eps=eps, bias=bias)
    return RMSNorm(d_model, eps=eps)
