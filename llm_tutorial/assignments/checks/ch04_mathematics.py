"""Check of chapter 4's exercise: the backward pass of attention, by hand.

The reference is autograd through PyTorch's ``F.scaled_dot_product_attention`` in float64. Hints
recompute the gradients with the usual slips — no 1/√D, dS instead of dSᵀ, A instead of Aᵀ, the
softmax Jacobian without its row sum, the mask left out, the three returned in another order.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from . import Case, Check, NotebookChecks, close, compare_tensor, definitions_only, describe, randint, shape

NAMES = ("dq", "dk", "dv")


def reference_gradients(q, k, v, grad_out, mask=None) -> tuple[torch.Tensor, ...]:
    leaves = [t.detach().clone().requires_grad_() for t in (q, k, v)]
    if mask is not None and mask.dim() == 1:  # a padding mask (T_k,): PyTorch's attention wants (1, T_k)
        mask = mask[None, :]
    out = F.scaled_dot_product_attention(*leaves, attn_mask=mask)
    return torch.autograd.grad(out, leaves, grad_out)


def _by_hand(q, k, v, G, *, mask=None, scale=True, jacobian=True, transpose_ds=True, transpose_a=True):
    """dq, dk, dv from the chapter's formulas, with a switch for each common slip."""
    s = 1 / math.sqrt(q.shape[-1])
    scores = q @ k.transpose(-2, -1) * s
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    A = torch.softmax(scores, dim=-1)  # (..., T_q, T_k)
    dA = G @ v.transpose(-2, -1)
    dS = A * (dA - (dA * A).sum(dim=-1, keepdim=True)) if jacobian else A * dA
    s = s if scale else 1.0
    dk = (dS.transpose(-2, -1) if transpose_ds else dS) @ q * s
    dv = (A.transpose(-2, -1) if transpose_a else A) @ G
    return dS @ k * s, dk, dv


def cases(generator: torch.Generator) -> list[Case]:
    def rand(*size):
        return torch.randn(*size, generator=generator, dtype=torch.float64)

    T = randint(generator, 5, 10)
    padding = torch.ones(T, dtype=torch.bool)
    padding[randint(generator, 2, T):] = False  # the last keys are padding
    general = torch.rand(2, 1, T, T, generator=generator) < 0.6
    general[..., 0] = True  # every query sees some key
    found = []
    for (B, H, T_q, T_k, D), mask, label in [
            ((1, 1, 1, 1, 1), None, "no mask"), ((1, 1, 3, 3, 2), torch.ones(3, 3, dtype=torch.bool).tril(), "a causal mask (3, 3)"),
            ((2, 3, 7, 7, 5), None, "no mask"), ((2, 3, 7, 7, 5), torch.ones(7, 7, dtype=torch.bool).tril(), "a causal mask (7, 7)"),
            ((1, 2, T, T, 8), padding, f"a padding mask of shape ({T},): keys {int(padding.sum())}..{T - 1} are padding"),
            ((2, 3, T, T, 4), general, f"a random mask of shape (2, 1, {T}, {T})"),
            ((2, 2, 3, 5, 4), None, "no mask, 3 queries and 5 keys")]:
        q, k, v, grad_out = rand(B, H, T_q, D), rand(B, H, T_k, D), rand(B, H, T_k, D), rand(B, H, T_q, D)
        args = (q, k, v, grad_out) if mask is None else (q, k, v, grad_out, mask)
        call = "attention_backward(q, k, v, grad_out)" if mask is None else "attention_backward(q, k, v, grad_out, mask)"
        found.append(Case("attention_backward", args, f"{call} with {label}, q of shape {shape(q)}, k of shape {shape(k)} (float64)"))
    return found


def judge(case: Case, got) -> str | None:
    q, k, v, grad_out, *rest = case.args
    mask = rest[0] if rest else None
    expected = reference_gradients(q, k, v, grad_out, mask)
    if not isinstance(got, (tuple, list)) or len(got) != 3:
        return f"attention_backward should return the three gradients (dq, dk, dv); it returned {describe(got)}"
    for name, mine, reference in zip(NAMES, got, expected):
        message = compare_tensor(mine, reference, f"your {name}")
        if message is None:
            continue
        others = [other for other, theirs in zip(NAMES, expected) if other != name and close(mine, theirs)]
        if others:
            return f"your {name} is the expected {others[0]}: return (dq, dk, dv) in this order; {message}"
        slips = [({"scale": False}, f"your {name} lacks the factor 1/√D of the scores"),
                 ({"jacobian": False}, "dS_ij = A_ij (dA_ij − Σ_k dA_ik A_ik): the softmax Jacobian's sum is missing"),
                 ({"transpose_ds": False}, "dk = dSᵀ Q / √D: transpose dS"),
                 ({"transpose_a": False}, "dv = Aᵀ G: transpose the weights")]
        if mask is not None:
            slips.append(({"mask": None}, "it equals the gradient without the mask: mask the scores before the softmax"))
        for switches, hint in slips:
            try:
                variant = _by_hand(q, k, v, grad_out, **{"mask": mask, **switches})[NAMES.index(name)]
            except RuntimeError:  # the slip does not even fit these shapes (T_q ≠ T_k)
                continue
            if close(mine, variant):
                return f"{hint}; {message}"
        return message
    return None


CHECKS = NotebookChecks([Check("attention_backward_tests", cases, judge)], setup=definitions_only)
