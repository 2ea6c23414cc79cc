"""Check of chapter 8's exercise: symmetric absmax quantisation with one scale per row.

Closed form, in float64: ``q_max = 2^(bits−1) − 1``, ``s = max_j |W_ij| / q_max`` and each code a
nearest integer to ``W_ij / s`` (either one at an exact half: rounding ties is not what the
exercise is about); a row of zeros has scale 0 and codes 0. Codes may come in any integer dtype,
or as whole numbers in a float dtype, as the notebook's own check allows. Hints name a scale from
the largest value instead of the largest magnitude, a wrong ``q_max``, one scale per column, a
zero row divided by zero and codes truncated instead of rounded.
"""

from __future__ import annotations

import torch

from . import Case, Check, NotebookChecks, definitions_only, describe, randint, shape

ROUNDING_SLACK = 1e-3  # a code may be off from W/s by at most 0.5 + this (float32 division)


def cases(generator: torch.Generator) -> list[Case]:
    def rand(rows, cols, scale=1.0):
        return torch.randn(rows, cols, generator=generator) * scale

    found = []
    weights = [(torch.tensor([[-0.5]]), 8, "weight = [[-0.5]]"), (torch.tensor([[0.0, 0.0, 0.0], [0.3, -0.9, 0.6]]), 2,
               "weight = [[0, 0, 0], [0.3, -0.9, 0.6]]")]
    for (rows, cols), bits, scale in [((3, 1), 5, 1.0), ((6, 11), 4, 10.0), ((13, 7), 3, 1.0),
                                      ((randint(generator, 20, 65), randint(generator, 20, 40)), 8, 0.05)]:
        weight = rand(rows, cols, scale)
        weight[-1, 0] = -weight[-1].abs().max() - 1  # the largest magnitude is negative
        if rows > 3:
            weight[1] = 0.0  # a row of zeros
        weights.append((weight, bits, f"weight of shape {shape(weight)}"))
    weights.append((torch.zeros(2, 4), 8, "weight = zeros(2, 4)"))
    for weight, bits, label in weights:
        found.append(Case("quantize_rows", (weight, bits), f"quantize_rows({label}, bits={bits})"))
    return found


def judge(case: Case, got) -> str | None:
    weight, bits = case.args
    rows, cols = weight.shape
    q_max = 2 ** (bits - 1) - 1
    w = weight.double()
    absmax = w.abs().amax(dim=1, keepdim=True)  # (out, 1)
    expected_scales = absmax / q_max
    exact = w / torch.where(absmax > 0, expected_scales, 1.0)  # (out, in): W / s, 0 on zero rows
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        return f"quantize_rows should return (codes, scales); it returned {describe(got)}"
    codes, scales = got
    if isinstance(codes, torch.Tensor) and isinstance(scales, torch.Tensor) and codes.shape == (rows, 1) != scales.shape:
        return f"your first result has shape {shape(codes)} and your second {shape(scales)}: return (codes, scales) in this order"
    if not isinstance(scales, torch.Tensor) or scales.shape != (rows, 1):
        found = shape(scales) if isinstance(scales, torch.Tensor) else describe(scales)
        hint = ": one scale per output row (the maximum over dim=1, keepdim=True)" if isinstance(scales, torch.Tensor) else ""
        return f"your scales should have shape ({rows}, 1); they are {found}{hint}"
    if not isinstance(codes, torch.Tensor) or codes.shape != (rows, cols):
        return f"your codes should be a tensor of shape ({rows}, {cols}); they are {describe(codes)}"
    if not scales.is_floating_point():
        return f"your scales have dtype {scales.dtype}; they are real numbers (a float dtype)"
    if codes.dtype == torch.bool or codes.is_complex():
        return f"your codes have dtype {codes.dtype}; they are integers (int8)"
    scales, codes = scales.double(), codes.double()
    if not torch.isfinite(scales).all() or not torch.isfinite(codes).all():
        return ("your scales or codes have nan or inf: a row of zeros must get scale 0 and codes 0 "
                "(do not divide by its zero scale)")
    wrong_scale = ~torch.isclose(scales, expected_scales, rtol=1e-5, atol=1e-12)  # (out, 1)
    if wrong_scale.any():
        r = int(wrong_scale.nonzero()[0, 0])
        message = (f"the scale of row {r} is {scales[r, 0].item():.6g}; expected max_j |W[{r}, j]| / q_max = "
                   f"{absmax[r, 0].item():.6g} / {q_max} = {expected_scales[r, 0].item():.6g}")
        for variant, hint in [(w.amax(dim=1, keepdim=True) / q_max, "your scale uses the row's largest value, not its largest "
                               "magnitude: take weight.abs().amax(dim=1, keepdim=True)"),
                              (absmax / (2 ** bits - 1), f"q_max = 2^(bits−1) − 1 = {q_max} for {bits} bits, not 2^bits − 1"),
                              (absmax / 2 ** (bits - 1), f"q_max = 2^(bits−1) − 1 = {q_max} for {bits} bits, not 2^(bits−1)")]:
            if torch.isclose(scales, variant, rtol=1e-5, atol=1e-12).all():
                return f"{hint}; {message}"
        return message
    if (codes != codes.round()).any():
        return "your codes are not whole numbers: round W / s to the nearest integer and convert to int8"
    wrong = (codes - exact).abs() > 0.5 + ROUNDING_SLACK
    if not wrong.any():
        return None
    r, c = (int(i) for i in wrong.nonzero()[0])
    message = (f"code [{r}, {c}] is {int(codes[r, c])}; expected round(W / s) = round({w[r, c].item():.6g} / "
               f"{expected_scales[r, 0].item():.6g}) = round({exact[r, c].item():.4f}) = {int(exact[r, c].round())}")
    if ((codes - exact.trunc()).abs() < 0.5).all():
        return f"your codes are truncated towards zero: round to the nearest integer before converting (torch.round); {message}"
    return message


CHECKS = NotebookChecks([Check("quantize_rows_tests", cases, judge)], setup=definitions_only)
