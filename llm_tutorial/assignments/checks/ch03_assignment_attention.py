"""Checks of the chapter-3 assignment: causal mask, attention, heads, multi-head self-attention.

References are PyTorch's own ``torch.tril`` and ``F.scaled_dot_product_attention``; the hints
compare a wrong result with the common mistakes (no 1/√d, inverted or ignored mask, a reshape
that mixes positions and features, a layer that sees the future).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from . import Case, Check, NotebookChecks, close, compare_tensor, shape


def _randn(generator: torch.Generator, *size: int, dtype=torch.float32) -> torch.Tensor:
    return torch.randn(*size, generator=generator, dtype=dtype)


# Exercise 1 --------------------------------------------------------------------------------------

def mask_cases(generator: torch.Generator) -> list[Case]:
    sizes = [1, 2, 4, 7, int(torch.randint(9, 17, (1,), generator=generator))]
    return [Case("causal_mask", (T,), f"causal_mask({T})") for T in sizes]


def judge_mask(case: Case, got) -> str | None:
    (T,) = case.args
    expected = torch.ones(T, T, dtype=torch.bool).tril()
    if isinstance(got, torch.Tensor) and got.shape == expected.shape and got.dtype != torch.bool:
        return f"your mask has dtype {got.dtype}; it should be a boolean tensor (dtype=torch.bool)"
    if not isinstance(got, torch.Tensor) or got.shape != expected.shape:
        return compare_tensor(got, expected, "your mask")
    wrong = (got != expected).nonzero()
    if len(wrong) == 0:
        return None
    i, j = (int(n) for n in wrong[0])
    verb = "allows" if got[i, j] else "blocks"
    return f"row {i} of your causal mask {verb} column {j}; row i may see columns 0..i (True on and below the diagonal)"


# Exercise 2 --------------------------------------------------------------------------------------

def attention_cases(generator: torch.Generator) -> list[Case]:
    cases = []

    def add(q_shape, mask, label, dtype=torch.float32):
        q, k, v = (_randn(generator, *q_shape, dtype=dtype) for _ in range(3))
        args = (q, k, v) if mask is None else (q, k, v, mask)
        call = "attention(q, k, v)" if mask is None else "attention(q, k, v, mask)"
        cases.append(Case("attention", args, f"{call} {label}, q, k, v of shape {shape(q)} ({str(dtype).removeprefix('torch.')})"))

    add((4, 8), None, "without a mask")
    add((2, 5, 8), None, "without a mask")
    add((2, 3, 9, 16), torch.ones(9, 9, dtype=torch.bool).tril(), "with a causal mask (T, T)", torch.float64)
    add((2, 3, 9, 16), torch.tensor([True] * 6 + [False] * 3)[None, :], "with a padding mask (1, T): keys 6..8 are padding",
        torch.float64)
    general = torch.rand(2, 1, 7, 7, generator=generator) < 0.6
    general[..., 0] = True  # every query sees at least one key
    add((2, 4, 7, 8), general, "with a random mask (B, 1, T, T)", torch.float64)
    return cases


def _attention(q, k, v, mask=None, *, scale=None, invert=False, dim=-1):
    """softmax(q kᵀ · scale + M) v, with the variants that common mistakes compute."""
    scores = q @ k.transpose(-2, -1) * (1 / math.sqrt(q.shape[-1]) if scale is None else scale)
    if mask is not None:
        scores = scores.masked_fill(mask if invert else ~mask, float("-inf"))
    return torch.softmax(scores, dim=dim) @ v


def judge_attention(case: Case, got) -> str | None:
    q, k, v, *rest = case.args
    mask = rest[0] if rest else None
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    message = compare_tensor(got, expected)
    if message is None:
        return None
    mistakes = [(_attention(q, k, v, mask, scale=1.0), "it equals attention without the scale: divide the scores by √d (d = q.shape[-1])"),
                (_attention(q, k, v, mask, scale=1 / q.shape[-1]), "it equals attention with the scores divided by d: divide by √d"),
                (_attention(q, k, v, None), "it equals attention without the mask: fill the scores with -inf where mask is False"),
                (_attention(q, k, v, mask, dim=-2), "it equals a softmax over the queries: take it over the keys (dim=-1)")]
    if mask is not None:
        mistakes.append((_attention(q, k, v, mask, invert=True), "it equals attention with the mask inverted: mask is True where attention is allowed"))
    hints = [hint for variant, hint in mistakes if close(got, variant)]
    if hints:
        return f"{hints[0]}; {message}"
    if isinstance(got, torch.Tensor) and got.shape == expected.shape and mask is not None and not torch.isfinite(got).all():
        return f"your output has nan although every query may see some key: check how the mask is applied; {message}"
    return message


# Exercise 3 --------------------------------------------------------------------------------------

def heads_cases(generator: torch.Generator) -> list[Case]:
    cases = []
    for (B, T, d), H in [((1, 1, 4), 4), ((2, 5, 12), 3), ((3, 7, 24), 6)]:
        x = _randn(generator, B, T, d)
        cases.append(Case("split_heads", (x, H), f"split_heads(x, {H}) with x of shape {shape(x)}", {"H": H}))
    for B, H, T, hd in [(1, 4, 1, 1), (2, 3, 5, 4), (3, 6, 7, 4)]:
        y = _randn(generator, B, H, T, hd)
        cases.append(Case("merge_heads", (y,), f"merge_heads(x) with x of shape {shape(y)}"))
    return cases


def judge_heads(case: Case, got) -> str | None:
    if case.function == "split_heads":
        x, H = case.args
        B, T, d = x.shape
        expected = x.view(B, T, H, d // H).transpose(1, 2)
        message = compare_tensor(got, expected)
        if message and close(got, x.reshape(B, H, T, d // H)):
            return ("it equals x.view(B, H, T, d/H), which mixes positions and features: "
                    f"view as (B, T, H, d/H), then transpose(1, 2); {message}")
        if message and isinstance(got, torch.Tensor) and got.shape == expected.shape:
            return f"head 1 must own features {d // H}..{2 * d // H - 1} of every position; {message}"
        return message
    (y,) = case.args
    B, H, T, hd = y.shape
    expected = y.transpose(1, 2).reshape(B, T, H * hd)
    message = compare_tensor(got, expected)
    if message and close(got, y.reshape(B, T, H * hd)):
        return f"it equals x.reshape(B, T, H·d/H) without the transpose: transpose(1, 2) first; {message}"
    return message


# Exercise 4 --------------------------------------------------------------------------------------

def layer_cases(generator: torch.Generator) -> list[Case]:
    cases = []
    for (B, T, d), H, dtype in [((1, 1, 8), 2, torch.float32), ((2, 6, 16), 4, torch.float32),
                                ((2, 5, 12), 1, torch.float64), ((3, 11, 24), 6, torch.float64)]:
        x = _randn(generator, B, T, d, dtype=dtype)
        w_qkv, w_out = _randn(generator, 3 * d, d, dtype=dtype) / 4, _randn(generator, d, d, dtype=dtype) / 4
        cases.append(Case("causal_self_attention", (x, w_qkv, w_out, H),
                          f"causal_self_attention(x, w_qkv, w_out, {H}) with x of shape {shape(x)} "
                          f"({str(dtype).removeprefix('torch.')})"))
    return cases


def _layer(x, w_qkv, w_out, n_head, causal=True):
    B, T, d = x.shape
    q, k, v = (t.view(B, T, n_head, d // n_head).transpose(1, 2) for t in (x @ w_qkv.T).chunk(3, dim=-1))  # (B, H, T, d/H)
    heads = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    return heads.transpose(1, 2).reshape(B, T, d) @ w_out.T  # (B, T, d)


def judge_layer(case: Case, got) -> str | None:
    expected = _layer(*case.args)
    message = compare_tensor(got, expected)
    if message and close(got, _layer(*case.args, causal=False)):
        return f"it equals the layer without the causal mask: position t must not see positions after t; {message}"
    return message


CHECKS = NotebookChecks([
    Check("causal_mask_tests", mask_cases, judge_mask),
    Check("attention_tests", attention_cases, judge_attention),
    Check("heads_tests", heads_cases, judge_heads),
    Check("self_attention_tests", layer_cases, judge_layer),
])
