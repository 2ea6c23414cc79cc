"""Checks of chapter 8's exercises: absmax quantisation (8.3.1), the kNN-LM's distribution (8.4.1), patches (8.4.2).

**Quantisation**: symmetric absmax quantisation with one scale per row.

Closed form, in float64: ``q_max = 2^(bits−1) − 1``, ``s = max_j |W_ij| / q_max`` and each code a
nearest integer to ``W_ij / s`` (either one at an exact half: rounding ties is not what the
exercise is about); a row of zeros has scale 0 and codes 0. Codes may come in any integer dtype,
or as whole numbers in a float dtype, as the notebook's own check allows. Hints name a scale from
the largest value instead of the largest magnitude, a wrong ``q_max``, one scale per column, a
zero row divided by zero and codes truncated instead of rounded.

**kNN distribution**: ``knn_probs(distances (Q, K), values (Q, K), vocab_size, temperature)`` is
softmax(−d/τ) over the K neighbours, each weight added to its value's token, judged in float64
against that closed form; hints name weights that grow with the distance, a temperature ignored or
multiplied, equal votes, unnormalised weights and the nan of exp(−d/τ) underflowing at large d.

**Patches**: ``patchify_images(images (B, H, W), P)`` -> ``(B, N, P·P)``, judged exactly against
PyTorch's ``unfold``; hints name a direct reshape into runs of a row, patches numbered column by
column and patches flattened column by column.
"""

from __future__ import annotations

import torch

from . import Case, Check, NotebookChecks, compare_tensor, definitions_only, describe, randint, shape

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


# --- 8.4.1: the kNN distribution ------------------------------------------------------------------

def knn_cases(generator: torch.Generator) -> list[Case]:
    found = [Case("knn_probs", (torch.tensor([[0.0, 1.0, 1.0]]), torch.tensor([[2, 0, 2]]), 3, 1.0),
                  "knn_probs(distances=[[0, 1, 1]], values=[[2, 0, 2]], vocab_size=3, temperature=1)")]
    for (Q, K, V), temperature, scale in [((2, 4, 5), 0.5, 1.0), ((7, 16, 11), 3.0, 10.0),
                                          ((randint(generator, 3, 9), randint(generator, 8, 33), 65), 2.0, 5.0),
                                          ((3, 8, 6), 1.0, 2000.0)]:  # the last: distances far from 0
        distances = (torch.rand(Q, K, generator=generator) * scale).sort(1).values + (scale if scale > 100 else 0)
        values = torch.randint(0, V, (Q, K), generator=generator)
        label = f"distances of shape {shape(distances)} (from {distances.min():.3g} to {distances.max():.3g})"
        found.append(Case("knn_probs", (distances, values, V, temperature),
                          f"knn_probs({label}, values, vocab_size={V}, temperature={temperature})"))
    return found


def knn_judge(case: Case, got) -> str | None:
    distances, values, vocab_size, temperature = case.args
    d = distances.double()

    def votes(weights: torch.Tensor) -> torch.Tensor:  # (Q, K) weights -> (Q, V), each to its token
        return torch.zeros(len(d), vocab_size, dtype=torch.float64).scatter_add_(1, values, weights)

    expected = votes(torch.softmax(-d / temperature, dim=1))
    if not isinstance(got, torch.Tensor) or got.shape != expected.shape:
        return f"knn_probs should return a tensor of shape {shape(expected)} (queries, vocabulary); it returned {describe(got)}"
    if not got.is_floating_point():
        return f"your probabilities have dtype {got.dtype}; they are real numbers (a float dtype)"
    g = got.double()
    if not torch.isfinite(g).all():
        return ("your probabilities have nan or inf: exp(−d/τ) of large distances underflows to 0 and 0/0 is nan; "
                "subtract each row's smallest distance first, or use torch.softmax(−d / τ, dim=1)")
    if torch.allclose(g, expected, rtol=1e-4, atol=1e-6):
        return None
    wrong = (g - expected).abs() > 1e-4 + 1e-4 * expected.abs()
    q, y = (int(i) for i in wrong.nonzero()[0])
    message = f"p[{q}, {y}] is {g[q, y].item():.6g}; expected {expected[q, y].item():.6g}"
    for variant, hint in [
        (votes(torch.softmax(d / temperature, dim=1)), "your weights grow with the distance: use exp(−d/τ), with the minus"),
        (votes(torch.softmax(-d, dim=1)), "your weights ignore the temperature: divide the distances by τ"),
        (votes(torch.softmax(-d * temperature, dim=1)), "you multiplied the distances by τ: divide them by τ"),
        (votes(torch.full_like(d, 1.0 / d.size(1))), "every neighbour got the same vote: weight each by exp(−d/τ)"),
        (votes(torch.exp(-d / temperature)), "your probabilities do not sum to one: divide by the sum of the weights"),
    ]:
        if torch.allclose(g, variant, rtol=1e-4, atol=1e-6):
            return f"{hint}; {message}"
    if not torch.allclose(g.sum(1), torch.ones(len(g), dtype=torch.float64), atol=1e-4):
        return f"each row must sum to one; row {q} sums to {g[q].sum().item():.6g}; {message}"
    return message


# --- 8.4.2: patches -------------------------------------------------------------------------------

def patch_cases(generator: torch.Generator) -> list[Case]:
    found = [Case("patchify_images", (torch.arange(16.0).view(1, 4, 4), 2), "patchify_images(arange(16).view(1, 4, 4), 2)")]
    for B, H, W, P in [(2, 6, 9, 3), (1, 5, 10, 5), (3, 8, 12, 4), (randint(generator, 1, 4), 7, 14, 7)]:
        images = torch.randn(B, H, W, generator=generator)
        found.append(Case("patchify_images", (images, P), f"patchify_images(images of shape {shape(images)}, {P})"))
    return found


def patch_judge(case: Case, got) -> str | None:
    images, P = case.args
    B, H, W = images.shape
    # The reference: PyTorch's unfold (im2col), whose columns are the patches, row by row.
    expected = torch.nn.functional.unfold(images[:, None], P, stride=P).transpose(1, 2)  # (B, N, P·P)
    if not isinstance(got, torch.Tensor) or got.shape != expected.shape:
        return (f"patchify_images should return a tensor of shape {shape(expected)} (images, patches, P·P); "
                f"it returned {describe(got)}")
    if torch.equal(got.to(expected.dtype), expected):
        return None
    message = compare_tensor(got.to(expected.dtype), expected, "your patches")
    rows, cols = H // P, W // P
    strips = images.reshape(B, -1, P * P)
    by_column = expected.view(B, rows, cols, P * P).transpose(1, 2).reshape(B, -1, P * P)
    inside_transposed = expected.view(B, -1, P, P).transpose(-1, -2).reshape(B, -1, P * P)
    for variant, hint in [
        (strips, "you reshaped the image directly: that cuts it into runs of P·P consecutive pixels of a row, not P×P "
                 "squares; split rows and columns first (view(B, H/P, P, W/P, P)) and bring the two patch axes together"),
        (by_column, "your patches are numbered column by column; number them row by row (all patches of the top "
                    "row first)"),
        (inside_transposed, "inside each patch your values run down the columns; flatten each patch row by row"),
    ]:
        if torch.equal(got.to(expected.dtype), variant):
            return f"{hint}; {message}"
    return message


CHECKS = NotebookChecks([Check("quantize_rows_tests", cases, judge), Check("knn_probs_tests", knn_cases, knn_judge),
                         Check("patchify_tests", patch_cases, patch_judge)], setup=definitions_only)
