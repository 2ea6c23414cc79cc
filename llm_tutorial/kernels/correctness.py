"""Check every kernel against PyTorch, outputs and gradients, on whatever backend a device gets.

The GPU benchmark runs this first (a fast kernel that computes the wrong thing is worth nothing);
the tests run the same function on a CPU through Triton's interpreter, at small sizes.

An error is reported relative to the size of the reference, ``max|kernel − ref| / max|ref|``, so
one tolerance per dtype fits outputs and gradients of any scale. References are computed in fp32
(fp64 for fp64 inputs) from the same, already rounded, inputs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from llm_tutorial.kernels.backends import backend_for
from llm_tutorial.kernels.dispatch import cross_entropy, flash_attention, layer_norm, rms_norm, softmax

TOLERANCES = {torch.float64: 1e-10, torch.float32: 1e-4, torch.float16: 5e-3, torch.bfloat16: 3e-2}
"""Largest accepted relative error per dtype (bf16 keeps 8 significant bits, fp16 11, fp32 24)."""


@dataclass(frozen=True)
class CheckResult:
    """One comparison: a kernel, a dtype and a shape; the worst relative error over output and gradients."""

    kernel: str
    dtype: str
    shape: str
    backend: str
    max_error: float
    tolerance: float

    @property
    def passed(self) -> bool:
        return self.max_error <= self.tolerance

    def as_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed}


def _relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    expected = expected.double()
    scale = expected.abs().max().clamp_min(1e-30)
    return float(((actual.double() - expected).abs().max() / scale).item())


def _compare(
    kernel: Callable[..., torch.Tensor],
    torch_reference: Callable[..., torch.Tensor],
    inputs: list[torch.Tensor],
    differentiable: list[int],
    generator: torch.Generator,
) -> float:
    """Worst relative error of ``kernel`` against ``torch_reference`` over the output and the gradients.

    The reference sees the same inputs upcast to fp32 (fp64 stays fp64); ``differentiable`` lists
    which inputs get gradients.
    """
    ref_dtype = torch.float64 if inputs[0].dtype == torch.float64 else torch.float32

    def prepared(cast: bool) -> list[torch.Tensor]:
        out = []
        for i, t in enumerate(inputs):
            t = t.detach().to(ref_dtype) if cast and t.is_floating_point() else t.detach().clone()
            out.append(t.requires_grad_(i in differentiable))
        return out

    ours_in, ref_in = prepared(cast=False), prepared(cast=True)
    ours, ref = kernel(*ours_in), torch_reference(*ref_in)
    upstream = torch.randn(ref.shape, generator=generator, dtype=ref.dtype).to(ref.device)  # a random dL/d(out)
    ours_grads = torch.autograd.grad(ours, [ours_in[i] for i in differentiable], upstream.to(ours.dtype))
    ref_grads = torch.autograd.grad(ref, [ref_in[i] for i in differentiable], upstream)
    errors = [_relative_error(ours, ref)]
    errors += [_relative_error(a, b) for a, b in zip(ours_grads, ref_grads)]
    return max(errors)


def _cases(
    device: torch.device, dtype: torch.dtype, quick: bool, generator: torch.Generator
) -> list[tuple[str, str, Callable[[], float]]]:
    """``(kernel, shape, run)`` triples; ``run()`` draws fresh inputs from ``generator`` and returns the error."""

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator).to(device, dtype)

    rows, width = (9, 200) if quick else (512, 3000)
    batch, heads, seq, vocab = (1, 2, 37, 300) if quick else (2, 4, 515, 50257)
    cases = [
        ("softmax", f"({rows}, {width})",
         lambda: _compare(softmax, lambda x: torch.softmax(x, -1), [randn(rows, width)], [0], generator)),
        ("layer_norm", f"({rows}, {width})",
         lambda: _compare(lambda x, w, b: layer_norm(x, w, b, 1e-5),
                          lambda x, w, b: F.layer_norm(x, (width,), w, b, 1e-5),
                          [randn(rows, width), randn(width), randn(width)], [0, 1, 2], generator)),
        ("rms_norm", f"({rows}, {width})",
         lambda: _compare(lambda x, w: rms_norm(x, w, 1e-6),
                          lambda x, w: F.rms_norm(x, (width,), w, 1e-6),
                          [randn(rows, width), randn(width)], [0, 1], generator)),
    ]
    for head_dim in ((32,) if quick else (64, 128)):
        for causal in (False, True):
            shape = (batch, heads, seq, head_dim)
            cases.append((
                f"flash_attention{' causal' if causal else ''}", str(shape),
                lambda causal=causal, shape=shape: _compare(
                    lambda q, k, v: flash_attention(q, k, v, causal=causal),
                    lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=causal),
                    [randn(*shape), randn(*shape), randn(*shape)], [0, 1, 2], generator),
            ))
    n_tokens = rows * 4

    def cross_entropy_case() -> float:
        targets = torch.randint(0, vocab, (n_tokens,), generator=generator).to(device)
        targets[::5] = -100  # some ignored positions, as padding would be
        return _compare(cross_entropy, F.cross_entropy, [randn(n_tokens, vocab), targets], [0], generator)

    cases.append(("cross_entropy", f"({n_tokens}, {vocab})", cross_entropy_case))
    return cases


def check_kernels(
    device: torch.device | str, dtypes: tuple[torch.dtype, ...] | None = None, *, quick: bool = True, seed: int = 0
) -> list[CheckResult]:
    """Compare every kernel with PyTorch on ``device`` for each dtype; returns one result per case.

    ``dtypes`` defaults to fp32, fp16 and bf16 on a GPU, and to fp32 and fp16 elsewhere (Triton's
    interpreter multiplies bf16 matrices wrongly). ``quick`` uses small shapes (seconds in the
    interpreter); otherwise GPU-sized ones (sequence 515, vocabulary 50257).
    """
    device = torch.device(device)
    if dtypes is None:
        dtypes = (torch.float32, torch.float16) + ((torch.bfloat16,) if device.type == "cuda" else ())
    generator = torch.Generator().manual_seed(seed)
    backend = backend_for(torch.empty(0, device=device))
    results = []
    for dtype in dtypes:
        for kernel, shape, run in _cases(device, dtype, quick, generator):
            dtype_name = str(dtype).replace("torch.", "")
            results.append(CheckResult(kernel, dtype_name, shape, backend, run(), TOLERANCES[dtype]))
    return results


def format_results(results: list[CheckResult]) -> str:
    """A table of the check results, one line per case."""
    lines = [f"{'kernel':<24}{'dtype':<10}{'shape':<22}{'backend':<13}{'max rel. error':>15}  {'tol':>7}  ok"]
    for r in results:
        lines.append(f"{r.kernel:<24}{r.dtype:<10}{r.shape:<22}{r.backend:<13}{r.max_error:>15.2e}  "
                     f"{r.tolerance:>7.0e}  {'yes' if r.passed else 'NO'}")
    return "\n".join(lines)
