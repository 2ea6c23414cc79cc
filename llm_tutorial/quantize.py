"""Weight quantisation: a Linear layer's weights stored as 8-bit (or narrower) integers.

A trained model's weights are float32: 4 bytes each. Most of them sit in the matrices of the
Linear layers, and those matrices tolerate being rounded to a few bits. The simplest scheme that
works well is *symmetric absmax quantisation per output channel* (Jacob et al., 2018; the
"vector-wise" quantisation of Dettmers et al., 2022): each row ``i`` of ``W`` (the weights that
produce output ``i``) gets its own scale, chosen so that the row's largest magnitude maps to the
largest integer:

    q_max  = 2^(b−1) − 1                           (127 for b = 8 bits)
    s_i    = max_j |W_ij| / q_max                   (one float scale per output channel)
    Q_ij   = clamp(round(W_ij / s_i), −q_max, q_max)  (integers in b bits)
    Ŵ_ij   = s_i · Q_ij                             (what the layer computes with)

Rounding moves each weight by at most half a step, ``|W_ij − Ŵ_ij| ≤ s_i / 2``. A scale per row
rather than one for the whole matrix keeps a row of small weights from being rounded to zero
because another row holds an outlier.

This module *simulates* quantisation: the integers are stored, and the layer dequantises them to
float before its matrix multiply. That shows the accuracy and the storage of an integer model
exactly; the speed of one needs integer matrix-multiply kernels, which are not used here.
Narrower codes than 8 bits are held one per ``int8`` in memory; :attr:`QuantizedTensor.nbytes`
counts them packed (two 4-bit codes per byte), as a file or a kernel would store them.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import check_floating, check_int, check_rank, check_tensor

MIN_BITS, MAX_BITS = 2, 8


def _check_bits(bits: object) -> int:
    return check_int(bits, "bits", MIN_BITS, MAX_BITS)


@dataclass(frozen=True)
class QuantizedTensor:
    """A matrix as integer codes ``values`` ``(out, in)`` (int8) and one scale per row ``scale``
    ``(out, 1)`` (float32): the matrix it stands for is ``scale * values``."""

    values: torch.Tensor
    scale: torch.Tensor
    bits: int

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The float matrix ``Ŵ = s ⊙ Q`` ``(out, in)``."""
        return self.values.to(dtype) * self.scale.to(dtype)  # (out, in) * (out, 1)

    @property
    def nbytes(self) -> int:
        """Bytes to store it: ``bits`` per code, packed, plus the float32 scales."""
        return math.ceil(self.values.numel() * self.bits / 8) + self.scale.numel() * self.scale.element_size()


def quantize_absmax(weight: torch.Tensor, bits: int = 8) -> QuantizedTensor:
    """Symmetric absmax quantisation of ``weight`` ``(out, in)``, one scale per output row.

    ``s_i = max_j |W_ij| / (2^(bits−1) − 1)``, ``Q_ij = clamp(round(W_ij / s_i), ±q_max)``; a row
    of zeros gets scale 0 and codes 0. Rounding is to the nearest integer, ties to even.
    """
    check_tensor(weight, "weight")
    check_rank(weight, "weight", 2, "(out_features, in_features)")
    check_floating(weight, "weight")
    q_max = 2 ** (_check_bits(bits) - 1) - 1
    weight = weight.detach().float()
    absmax = weight.abs().amax(dim=1, keepdim=True)  # (out, 1)
    scale = absmax / q_max  # (out, 1)
    safe_scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # a zero row divides by 1: codes stay 0
    values = torch.round(weight / safe_scale).clamp(-q_max, q_max).to(torch.int8)  # (out, in)
    return QuantizedTensor(values, scale, bits)


class QuantizedLinear(nn.Module):
    """A Linear layer whose weight is held as :class:`QuantizedTensor` codes.

    ``y = x Ŵᵀ + b`` with ``Ŵ = s ⊙ Q`` dequantised on the fly in the input's dtype; the bias
    (if any) stays in float. Build one from a trained layer with :meth:`from_linear`.
    """

    def __init__(self, weight: QuantizedTensor, bias: torch.Tensor | None = None) -> None:
        super().__init__()
        if not isinstance(weight, QuantizedTensor):
            raise TypeError(f"weight must be a QuantizedTensor (see quantize_absmax), got {type(weight).__name__}")
        self.bits = weight.bits
        self.out_features, self.in_features = weight.values.shape
        self.register_buffer("values", weight.values)  # (out, in) int8
        self.register_buffer("scale", weight.scale)  # (out, 1) float32
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone())

    @classmethod
    def from_linear(cls, linear: nn.Linear, bits: int = 8) -> QuantizedLinear:
        """Quantise a float ``nn.Linear`` (its weight per output channel; its bias kept)."""
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"linear must be a torch.nn.Linear, got {type(linear).__name__}")
        return cls(quantize_absmax(linear.weight, bits), linear.bias).to(linear.weight.device)

    @property
    def quantized_weight(self) -> QuantizedTensor:
        return QuantizedTensor(self.values, self.scale, self.bits)

    @property
    def nbytes(self) -> int:
        """Bytes of the packed codes, the scales and the bias."""
        bias = 0 if self.bias is None else self.bias.numel() * self.bias.element_size()
        return self.quantized_weight.nbytes + bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.quantized_weight.dequantize(x.dtype), self.bias)  # (..., out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bits={self.bits}, " \
               f"bias={self.bias is not None}"


def quantize_linear_layers(model: nn.Module, bits: int = 8, *, skip: Iterable[str] = ()) -> nn.Module:
    """A copy of ``model`` with every ``nn.Linear`` replaced by a :class:`QuantizedLinear`.

    ``skip``: names of Linear modules to leave in float (as ``model.named_modules()`` names
    them), e.g. ``("lm_head",)`` when the output layer shares its matrix with the token embedding:
    quantising that layer would store the tied matrix twice, once in float for the embedding
    lookup and once in integers. Embeddings and norms are never quantised. ``model`` is not changed.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    _check_bits(bits)
    if isinstance(skip, str):
        raise TypeError(f"skip must be a collection of module names, e.g. ('lm_head',), got the string {skip!r}")
    skip = set(skip)
    linear_names = {name for name, module in model.named_modules() if isinstance(module, nn.Linear)}
    unknown = sorted(skip - linear_names)
    if unknown:
        raise ValueError(f"skip names {unknown} are not Linear modules of the model; its Linear modules are "
                         f"{sorted(linear_names)}")
    quantized = copy.deepcopy(model)
    for name in sorted(linear_names - skip):
        parent_name, _, child_name = name.rpartition(".")
        parent = quantized.get_submodule(parent_name)
        setattr(parent, child_name, QuantizedLinear.from_linear(getattr(parent, child_name), bits))
    return quantized


def storage_bytes(model: nn.Module) -> int:
    """Bytes needed to store ``model``: every distinct parameter and persistent buffer at its
    element size, except that :class:`QuantizedLinear` layers count their packed codes.

    A tensor shared by two modules (tied embeddings) counts once; buffers that are recomputed
    rather than saved (``persistent=False``, such as RoPE's tables) are not counted.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    quantized = [module for module in model.modules() if isinstance(module, QuantizedLinear)]
    counted = {id(t) for module in quantized for t in (module.values, module.scale, module.bias) if t is not None}
    total = sum(module.nbytes for module in quantized)
    seen = set()
    for tensor in model.state_dict(keep_vars=True).values():
        if id(tensor) in counted or id(tensor) in seen:
            continue
        seen.add(id(tensor))
        total += tensor.numel() * tensor.element_size()
    return total
