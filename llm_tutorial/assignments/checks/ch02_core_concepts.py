"""Check of chapter 2's exercise: attention weights, causal for the last T_q of T_k positions.

The reference is PyTorch's ``F.scaled_dot_product_attention`` with the values set to the identity
matrix, which returns the weights themselves, and the mask ``tril(diagonal=T_k − T_q)`` (query i
sits at position T_k − T_q + i). Hints name a mask aligned with the first position, a mask off
by one, a missing or wrong scale and a softmax over the wrong dimension.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from . import Case, Check, NotebookChecks, close, compare_tensor, definitions_only, dtype_name, randint, shape


def allowed(T_q: int, T_k: int, offset: int | None = None) -> torch.Tensor:
    """(T_q, T_k) bool: query i may see keys j ≤ i + offset (offset T_k − T_q unless given)."""
    return torch.ones(T_q, T_k, dtype=torch.bool).tril(diagonal=T_k - T_q if offset is None else offset)


def reference_weights(q: torch.Tensor, k: torch.Tensor, causal: bool) -> torch.Tensor:
    T_q, T_k = q.shape[-2], k.shape[-2]
    identity = torch.eye(T_k, dtype=torch.float64).expand(*k.shape[:-2], T_k, T_k)  # values = I: output = weights
    mask = allowed(T_q, T_k) if causal else None
    return F.scaled_dot_product_attention(q.double(), k.double(), identity, attn_mask=mask).to(q.dtype)


def _weights(q, k, mask=None, scale=None, dim=-1):
    """softmax(q kᵀ · scale, masked) over ``dim``: the variants that common mistakes compute."""
    scores = q.double() @ k.double().transpose(-2, -1) * (1 / math.sqrt(q.shape[-1]) if scale is None else scale)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=dim).to(q.dtype)


def cases(generator: torch.Generator) -> list[Case]:
    sizes = [((), 1, 1, 4, True, torch.float32), ((), 2, 2, 3, False, torch.float32), ((), 2, 4, 3, True, torch.float32),
             ((2,), 3, 7, 8, True, torch.float64), ((2, 3), 1, 6, 16, True, torch.float64),
             ((1, 2), 9, 9, 5, False, torch.float64), ((1, 2), 9, 9, 5, True, torch.float64)]
    T_k = randint(generator, 6, 13)
    leading = (randint(generator, 1, 4), randint(generator, 1, 4))
    sizes += [(leading, randint(generator, 2, T_k), T_k, randint(generator, 2, 17), causal, torch.float64)
              for causal in (False, True)]
    found = []
    for leading, T_q, T_k, D, causal, dtype in sizes:
        q = torch.randn(*leading, T_q, D, generator=generator, dtype=dtype)
        k = torch.randn(*leading, T_k, D, generator=generator, dtype=dtype)
        found.append(Case("attention_weights", (q, k, causal), f"attention_weights(q, k, causal={causal}) with q of shape "
                          f"{shape(q)} and k of shape {shape(k)} ({dtype_name(dtype)})"))
    return found


def judge(case: Case, got) -> str | None:
    q, k, causal = case.args
    T_q, T_k = q.shape[-2], k.shape[-2]
    expected = reference_weights(q, k, causal)
    message = compare_tensor(got, expected, "your weights")
    if message is None:
        return None
    mask = allowed(T_q, T_k) if causal else None
    first = T_k - T_q  # the position of query 0
    mistakes = [(_weights(q, k, mask, scale=1.0), "it equals the weights without the scale: divide the scores by √D"),
                (_weights(q, k, mask, scale=1 / q.shape[-1]), "it equals the weights with the scores divided by D: divide by √D"),
                (_weights(q, k, mask, dim=-2), "it equals a softmax over the queries: take it over the keys (dim=-1)")]
    if causal:
        mistakes += [(_weights(q, k, allowed(T_q, T_k, 0)),
                      f"it equals a causal mask aligned with the first key: the queries are the last {T_q} of the {T_k} "
                      f"positions, so query i sits at position {first} + i and may see keys 0..{first} + i"),
                     (_weights(q, k, allowed(T_q, T_k, first - 1)), "query i may also see its own position T_k − T_q + i"),
                     (_weights(q, k, allowed(T_q, T_k, first + 1)), "query i must not see position T_k − T_q + i + 1"),
                     (_weights(q, k), "it equals the weights without the causal mask: causal=True must hide the future keys")]
    else:
        mistakes.append((_weights(q, k, allowed(T_q, T_k)), "causal=False must not mask anything; yours applies the causal mask"))
    hints = [hint for variant, hint in mistakes if close(got, variant)]
    if hints:
        return f"{hints[0]}; {message}"
    if causal and isinstance(got, torch.Tensor) and got.shape == expected.shape:
        leaked = (expected == 0) & (got != 0)
        if leaked.any():
            *_, i, j = (int(n) for n in leaked.nonzero()[0])
            return (f"query {i} (position {first + i}) gives key {j}, which is in its future, a weight of "
                    f"{got[leaked].flatten()[0].item():.3g}; it may see keys 0..{first + i}; {message}")
    return message


CHECKS = NotebookChecks([Check("attention_weights_tests", cases, judge)], setup=definitions_only)
