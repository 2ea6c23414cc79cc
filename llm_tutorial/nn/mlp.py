"""The position-wise feed-forward network of a Transformer block: a plain MLP or SwiGLU.

Attention moves information between positions; the MLP then processes each position on its own,
widening to ``d_ff`` (typically 4 · d_model), applying a nonlinearity and projecting back. Most
of a Transformer's parameters, and much of what it memorises, live here.

- **MLP**: down(act(up(x))) with ReLU (the original Transformer) or GELU (GPT, BERT). GPT-2
  used GELU's tanh approximation, ``"gelu_tanh"``; exact parity with its weights needs it.
- **SwiGLU** (Shazeer, 2020; Llama): down(SiLU(gate(x)) ⊙ up(x)): a learned gate multiplies the
  hidden units. It has three matrices instead of two, so ``d_ff`` is usually ⅔ of 4 · d_model to
  keep the parameter count.

The output projections are named ``down`` so that a model can find them (GPT scales their
initialisation by depth). ``forward`` trusts its caller: the models check their inputs.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from llm_tutorial._checks import check_choice, check_positive_int

ACTIVATIONS = ("gelu", "gelu_tanh", "relu")
MLPS = (*ACTIVATIONS, "swiglu")


class MLP(nn.Module):
    """down(act(up(x))): ``d_model -> d_ff -> d_model`` with ``activation`` in ``ACTIVATIONS``.

    GELU(x) = x · Φ(x) (Φ the standard normal CDF); ``"gelu_tanh"`` is
    0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³))).
    """

    def __init__(self, d_model: int, d_ff: int, *, activation: str = "gelu", bias: bool = True) -> None:
        super().__init__()
        self.d_model = check_positive_int(d_model, "d_model")
        check_positive_int(d_ff, "d_ff")
        check_choice(activation, "activation", ACTIVATIONS)
        self.activation = activation
        self.up = nn.Linear(d_model, d_ff, bias=bias)
        self.down = nn.Linear(d_ff, d_model, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.up(x)  # (..., d_ff)
        if self.activation == "relu":
            hidden = F.relu(hidden)
        else:
            hidden = F.gelu(hidden, approximate="tanh" if self.activation == "gelu_tanh" else "none")
        return self.down(hidden)  # (..., d_model)


class SwiGLU(nn.Module):
    """down(SiLU(gate(x)) ⊙ up(x)), with SiLU(z) = z · σ(z)."""

    def __init__(self, d_model: int, d_ff: int, *, bias: bool = False) -> None:
        super().__init__()
        self.d_model = check_positive_int(d_model, "d_model")
        check_positive_int(d_ff, "d_ff")
        self.gate = nn.Linear(d_model, d_ff, bias=bias)
        self.up = nn.Linear(d_model, d_ff, bias=bias)
        self.down = nn.Linear(d_ff, d_model, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.silu(self.gate(x)) * self.up(x))  # (..., d_ff) -> (..., d_model)


def build_mlp(kind: str, d_model: int, d_ff: int, *, bias: bool = True) -> nn.Module:
    """A feed-forward network by name: ``"gelu"``, ``"gelu_tanh"``, ``"relu"`` or ``"swiglu"``."""
    check_choice(kind, "mlp", MLPS)
    if kind == "swiglu":
        return SwiGLU(d_model, d_ff, bias=bias)
    return MLP(d_model, d_ff, activation=kind, bias=bias)


def default_d_ff(kind: str, d_model: int) -> int:
    """The usual width: 4 · d_model for an MLP; for SwiGLU ⅔ of that, rounded up to a multiple
    of 8 (Llama's rule, which keeps the parameter count of a 4 · d_model MLP)."""
    check_choice(kind, "mlp", MLPS)
    check_positive_int(d_model, "d_model")
    if kind != "swiglu":
        return 4 * d_model
    hidden = math.ceil(8 * d_model / 3)
    return 8 * math.ceil(hidden / 8)
