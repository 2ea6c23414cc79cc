"""Check of chapter 5's exercise: FlashAttention's forward in PyTorch, output and log-sum-exp.

References: PyTorch's ``F.scaled_dot_product_attention`` for the output and ``torch.logsumexp`` of
the scaled (and, when causal, masked) scores for ``L``. Hints name an output not divided by ℓ,
a log-sum-exp without the running maximum or in base 2, and — when ``L`` is right but the output
is not — the accumulated output that was not rescaled when the running maximum grew.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from . import Case, Check, NotebookChecks, close, compare_tensor, definitions_only, describe, dtype_name, randint, shape


def scores(q: torch.Tensor, k: torch.Tensor, causal: bool) -> torch.Tensor:
    """q kᵀ / √D, with -inf above the diagonal when causal: (B, H, T, T)."""
    s = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if causal:
        T = q.shape[-2]
        s = s.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
    return s


def cases(generator: torch.Generator) -> list[Case]:
    T = randint(generator, 20, 50)
    sizes = [((1, 1, 1, 4), 4, True, torch.float64), ((1, 2, 5, 8), 5, False, torch.float64),
             ((1, 2, 7, 8), 3, True, torch.float64), ((2, 1, 12, 4), 1, True, torch.float64),
             ((2, 3, T, 16), randint(generator, 2, 10), True, torch.float64),
             ((2, 3, T, 16), randint(generator, 2, 10), False, torch.float64), ((1, 2, 9, 8), 64, False, torch.float64),
             ((1, 2, 33, 16), 8, True, torch.float32)]
    found = []
    for size, block, causal, dtype in sizes:
        q, k, v = (torch.randn(*size, generator=generator, dtype=dtype) for _ in range(3))
        found.append(Case("tiled_attention", (q, k, v, block, causal), f"tiled_attention(q, k, v, {block}, causal={causal}) "
                          f"with q, k, v of shape {shape(q)} ({dtype_name(dtype)})"))
    return found


def judge(case: Case, got) -> str | None:
    q, k, v, block, causal = case.args
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        return f"tiled_attention should return (output, log-sum-exp); it returned {describe(got)}"
    out, lse = got
    s = scores(q.double(), k.double(), causal)  # (B, H, T, T)
    row_max = s.amax(dim=-1, keepdim=True)  # (B, H, T, 1): m after the last block
    expected_lse = torch.logsumexp(s, dim=-1).to(q.dtype)  # (B, H, T)
    expected_out = F.scaled_dot_product_attention(q.double(), k.double(), v.double(), is_causal=causal).to(q.dtype)
    lse_message = compare_tensor(lse, expected_lse, "your log-sum-exp")
    out_message = compare_tensor(out, expected_out)
    if out_message:
        unnormalised = torch.softmax(s, dim=-1) @ v.double() * torch.exp(s - row_max).sum(dim=-1, keepdim=True)  # Σ e^(S−m) V
        if close(out, unnormalised.to(q.dtype)):
            return f"it equals the output not divided by ℓ: divide the accumulated output by the running sum at the end; {out_message}"
        if close(out, F.scaled_dot_product_attention(q.double(), k.double(), v.double(), is_causal=not causal).to(q.dtype)):
            return f"causal={causal} {'must' if causal else 'must not'} hide the keys after each query; {out_message}"
        if lse_message is None and block < k.shape[-2]:
            return ("your log-sum-exp is right but your output is not: when the running maximum grows from m to m_new, "
                    f"multiply the accumulated output by e^(m − m_new), as you do ℓ; {out_message}")
        return out_message
    if lse_message:
        for variant, hint in [(expected_lse - row_max.squeeze(-1), "L = m + log ℓ: add the running maximum m to log ℓ"),
                              (expected_lse / math.log(2), "L is the natural logarithm (torch.log), not log base 2"),
                              (expected_lse.unsqueeze(-1), "L has one number per query row, shape (B, H, T): drop the last dimension")]:
            if close(lse, variant.to(q.dtype)):
                return f"{hint}; {lse_message}"
        return lse_message
    return None


CHECKS = NotebookChecks([Check("tiled_attention_tests", cases, judge)], setup=definitions_only)
