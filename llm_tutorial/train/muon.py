r"""Muon: momentum whose update matrix is orthogonalised, for the 2-D weights inside the blocks.

Adam scales every coordinate of the gradient on its own. Muon (Keller Jordan, 2024; the optimizer
of the modded-nanogpt speedrun records) treats a weight matrix as a matrix: it keeps a momentum
``M`` of the gradient and replaces it by the nearest semi-orthogonal matrix — ``M = U S Vᵀ``
becomes ``U Vᵀ``, every singular value set to 1. The update then moves the layer by the same
amount in every direction the gradient spans, instead of mostly along the few directions with the
largest singular values, which dominate a raw (or Adam-scaled) gradient of a small model.

For a weight ``W`` of shape ``(m, n)`` with gradient ``G_t`` at step ``t``, momentum ``μ``,
learning rate ``η`` and weight decay ``λ``::

    M_t = μ M_{t−1} + (1 − μ) G_t                 momentum (an exponential average)
    N_t = μ M_t + (1 − μ) G_t                     Nesterov: look one step ahead
    O_t = NS₅(N_t) ≈ U Vᵀ  where N_t = U S Vᵀ     orthogonalise (five Newton–Schulz steps)
    W  ← (1 − η λ) W − η · sqrt(max(1, m / n)) · O_t

``U Vᵀ`` would need an SVD, which is slow; the Newton–Schulz iteration reaches an approximation
with five pairs of matrix products. Start from ``X₀ = N / ‖N‖_F`` (so every singular value is at
most 1) and repeat::

    A = X Xᵀ
    X ← a X + (b A + c A²) X          (a, b, c) = (3.4445, −4.7750, 2.0315)

Each step maps every singular value ``σ`` of ``X`` to ``p(σ) = a σ + b σ³ + c σ⁵`` and leaves the
singular vectors alone. The coefficients make ``p`` steep at 0 (a = 3.4 multiplies small singular
values fast), so five steps carry every ``σ`` from (0, 1] into roughly [0.7, 1.2] — not exactly 1,
which training does not need. The iteration works on the short side (``X Xᵀ`` is the smaller
Gram matrix), hence the transpose of a tall matrix.

Muon is only for hidden matrices. The token embedding is a lookup table (a row per token, updated
only where the token occurs) and the output head maps to a vocabulary; biases and norm gains are
vectors. Those keep AdamW, as in modded-nanogpt: :class:`Muon` runs both rules in one optimizer,
so the trainer's schedule, ``zero_grad`` and checkpoints treat it as any other. AdamW's step, for
reference (bias-corrected moments, decoupled decay)::

    m ← β₁ m + (1 − β₁) g        v ← β₂ v + (1 − β₂) g²
    θ ← (1 − η λ) θ − η · (m / (1 − β₁ᵗ)) / (sqrt(v / (1 − β₂ᵗ)) + ε)

The trainer sets each group's ``lr`` from the schedule; a group's ``lr_scale`` multiplies it, so
the Muon groups can run at their own (larger) rate while following the same warm-up and decay.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .._checks import check_int, check_number, check_positive_number, check_probability, check_tensor

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
"""The quintic Newton–Schulz coefficients (a, b, c) of Keller Jordan's Muon."""


def newton_schulz(matrix: torch.Tensor, steps: int = 5, eps: float = 1e-7) -> torch.Tensor:
    """The approximately orthogonalised ``matrix`` (shape ``(..., m, n)``, same shape out): its
    singular vectors kept, its singular values pushed towards 1 by ``steps`` quintic
    Newton–Schulz iterations (see the module's docstring).

    Works in float32 whatever the input dtype and returns the input's dtype. A zero matrix stays
    zero (``eps`` keeps the first division finite)."""
    matrix = check_tensor(matrix, "matrix")
    if matrix.ndim < 2:
        raise ValueError(f"newton_schulz orthogonalises matrices: expected shape (..., m, n), got {tuple(matrix.shape)}")
    if not matrix.is_floating_point():
        raise ValueError(f"newton_schulz needs a floating-point matrix, got {matrix.dtype}")
    steps = check_int(steps, "steps", low=0)
    a, b, c = NS_COEFFICIENTS
    x = matrix.float()
    tall = x.size(-2) > x.size(-1)
    if tall:
        x = x.mT  # (..., n, m): iterate on the smaller Gram matrix
    x = x / (x.norm(dim=(-2, -1), keepdim=True) + eps)  # ‖X‖_F ≤ 1, so every σ ≤ 1
    for _ in range(steps):
        gram = x @ x.mT  # (..., k, k), k = min(m, n)
        x = a * x + (b * gram + c * gram @ gram) @ x
    if tall:
        x = x.mT
    return x.to(matrix.dtype)


class Muon(torch.optim.Optimizer):
    """Muon for the groups with ``use_muon=True``, AdamW for the others (see the module's docstring).

    Each parameter group holds ``lr``, ``lr_scale`` (the step uses ``lr · lr_scale``),
    ``weight_decay``, and either ``momentum``, ``nesterov`` and ``ns_steps`` (Muon) or ``betas``
    and ``eps`` (AdamW). Build the usual split of a model with :func:`build_muon`."""

    def __init__(self, groups: list[dict], lr: float = 1e-3, *, momentum: float = 0.95, nesterov: bool = True,
                 ns_steps: int = 5, betas: tuple[float, float] = (0.9, 0.99), eps: float = 1e-8,
                 weight_decay: float = 0.0) -> None:
        check_positive_number(lr, "lr")
        check_probability(momentum, "momentum", inclusive_high=False)
        check_int(ns_steps, "ns_steps", low=1)
        for beta in betas:
            check_probability(beta, "each of betas", inclusive_high=False)
        check_number(weight_decay, "weight_decay", 0)
        defaults = dict(lr=lr, lr_scale=1.0, use_muon=False, momentum=momentum, nesterov=nesterov,
                        ns_steps=ns_steps, betas=tuple(betas), eps=eps, weight_decay=weight_decay)
        super().__init__(groups, defaults)
        for group in self.param_groups:
            if group["use_muon"]:
                for p in group["params"]:
                    if p.ndim != 2:
                        raise ValueError(f"Muon orthogonalises matrices: a use_muon group holds a parameter of shape "
                                         f"{tuple(p.shape)}; put vectors (biases, gains) in an AdamW group")

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ANN001 - the torch.optim signature
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if params:
                (self._muon_step if group["use_muon"] else self._adamw_step)(group, params)
        return loss

    def _muon_step(self, group: dict, params: list[torch.Tensor]) -> None:
        lr = group["lr"] * group["lr_scale"]
        mu = group["momentum"]
        for p in params:
            state = self.state[p]
            if not state:
                state["momentum"] = torch.zeros_like(p)
            buffer = state["momentum"]
            buffer.lerp_(p.grad, 1 - mu)  # M = μ M + (1 − μ) G
            direction = p.grad.lerp(buffer, mu) if group["nesterov"] else buffer  # N = μ M + (1 − μ) G
            update = newton_schulz(direction, group["ns_steps"])  # (m, n) ≈ U Vᵀ
            if group["weight_decay"]:
                p.mul_(1 - lr * group["weight_decay"])
            p.add_(update, alpha=-lr * math.sqrt(max(1.0, p.size(0) / p.size(1))))

    def _adamw_step(self, group: dict, params: list[torch.Tensor]) -> None:
        lr = group["lr"] * group["lr_scale"]
        beta1, beta2 = group["betas"]
        grads, firsts, seconds = [], [], []
        for p in params:
            state = self.state[p]
            if not state:
                state["step"] = 0
                state["exp_avg"] = torch.zeros_like(p)
                state["exp_avg_sq"] = torch.zeros_like(p)
            state["step"] += 1
            grads.append(p.grad)
            firsts.append(state["exp_avg"])
            seconds.append(state["exp_avg_sq"])
        t = self.state[params[0]]["step"]  # the group's parameters step together
        torch._foreach_lerp_(firsts, grads, 1 - beta1)  # m = β₁ m + (1 − β₁) g
        torch._foreach_mul_(seconds, beta2)
        torch._foreach_addcmul_(seconds, grads, grads, 1 - beta2)  # v = β₂ v + (1 − β₂) g²
        if group["weight_decay"]:
            torch._foreach_mul_(params, 1 - lr * group["weight_decay"])
        denominators = torch._foreach_sqrt(seconds)
        torch._foreach_div_(denominators, math.sqrt(1 - beta2**t))
        torch._foreach_add_(denominators, group["eps"])  # sqrt(v̂) + ε
        torch._foreach_addcdiv_(params, firsts, denominators, -lr / (1 - beta1**t))  # − η m̂ / (sqrt(v̂) + ε)


def muon_parameter_split(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter], list[nn.Parameter]]:
    """``(hidden matrices, other matrices, vectors)`` of ``model``'s trainable parameters.

    Hidden matrices (Muon's) are the 2-D weights of ``nn.Linear`` layers other than the output
    head ``lm_head``; the other matrices are embeddings and the head (a tied head is the
    embedding, listed once); vectors are biases and norm gains."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    head = getattr(model, "lm_head", None)
    head_weight = head.weight if isinstance(head, nn.Linear) else None
    hidden_ids = {id(m.weight) for m in model.modules() if isinstance(m, nn.Linear) and m is not head}
    hidden, matrices, vectors = [], [], []
    for p in model.parameters():  # each shared parameter once
        if not p.requires_grad:
            continue
        if p.ndim == 2 and id(p) in hidden_ids and p is not head_weight:
            hidden.append(p)
        elif p.ndim >= 2:
            matrices.append(p)
        else:
            vectors.append(p)
    if not hidden:
        raise ValueError(f"{type(model).__name__} has no hidden nn.Linear weights for Muon to train; use AdamW")
    return hidden, matrices, vectors


def build_muon(model: nn.Module, lr: float, weight_decay: float, betas: tuple[float, float], *,
               muon_lr_scale: float = 20.0, momentum: float = 0.95, ns_steps: int = 5) -> Muon:
    """Muon for the hidden matrices (at ``lr · muon_lr_scale``, no weight decay), AdamW for the
    embeddings and head (decayed) and the vectors (not decayed), all at the schedule's ``lr``.

    The default scale puts Muon at 0.02 when AdamW runs at 1e-3: the per-layer rates of Keller
    Jordan's Muon (0.02) and of AdamW for a small model."""
    check_positive_number(muon_lr_scale, "muon_lr_scale")
    hidden, matrices, vectors = muon_parameter_split(model)
    groups = [{"params": hidden, "use_muon": True, "lr_scale": muon_lr_scale, "weight_decay": 0.0}]
    if matrices:
        groups.append({"params": matrices, "weight_decay": weight_decay})
    if vectors:
        groups.append({"params": vectors, "weight_decay": 0.0})
    return Muon(groups, lr=lr, momentum=momentum, ns_steps=ns_steps, betas=betas)
