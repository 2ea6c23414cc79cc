"""Benchmark the Triton kernels against PyTorch on a GPU: first check them, then time them.

Usage::

    python -m llm_tutorial.kernels.bench [--out DIR] [--quick] [--no-check]

1. **Correctness** (``correctness.check_kernels``): each kernel against PyTorch in fp32, fp16 and
   bf16, outputs and gradients. Any failure stops the run (exit code 1).
2. **Timing** (``triton.testing.do_bench``, median of many runs) of each kernel and its PyTorch
   counterpart over a range of sizes, forward and forward+backward:

   =================  ==============================================  ==================
   kernel             PyTorch                                          reported as
   =================  ==============================================  ==================
   softmax            ``torch.softmax``                               GB/s
   layer_norm         ``F.layer_norm``                                GB/s
   rms_norm           ``F.rms_norm``                                  GB/s
   flash_attention    ``F.scaled_dot_product_attention`` with each    TFLOP/s
                      backend: flash, efficient, cudnn, math
   cross_entropy      ``F.cross_entropy``                             GB/s
   =================  ==============================================  ==================

   Attention counts :math:`4BHT^2D` FLOPs forward (two matrix products of :math:`2BHT^2D` each),
   half of that when causal, and 2.5× the forward for the backward (five products, one recomputed).
   Memory-bound kernels count the bytes they must move at least: each input read once and each
   output written once. The printed ratio is PyTorch's time divided by ours (> 1: we are faster).

Results go to ``DIR/kernel_benchmark.json`` and ``DIR/kernel_benchmark.png`` (default ``DIR`` is
``runs/kernel-bench``). Without a CUDA GPU the command runs the correctness check in Triton's
interpreter at small sizes (when Triton is installed), then exits with code 2: timing needs a GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

EXIT_NO_GPU = 2
DEFAULT_OUT = Path("runs") / "kernel-bench"


@dataclass(frozen=True)
class Timing:
    """One measured implementation at one size."""

    kernel: str
    mode: str  # "fwd" or "fwd+bwd"
    dtype: str
    size: str  # what varies along the plot's x axis, e.g. "T=4096"
    impl: str  # "triton", "torch", or "sdpa-<backend>"
    ms: float
    throughput: float  # TFLOP/s or GB/s
    unit: str


def _bytes(dtype: torch.dtype) -> int:
    return torch.empty(0, dtype=dtype).element_size()


def attention_flops(batch: int, heads: int, seq: int, head_dim: int, causal: bool, mode: str) -> float:
    """FLOPs of attention: ``4·B·H·T²·D`` forward (halved when causal), ×3.5 for forward+backward."""
    forward = 4 * batch * heads * seq * seq * head_dim / (2 if causal else 1)
    return forward * (3.5 if mode == "fwd+bwd" else 1.0)


def memory_bytes(kernel: str, rows: int, cols: int, dtype: torch.dtype, mode: str) -> float:
    """Bytes a memory-bound kernel must move at least: forward reads x and writes y; backward reads
    what it needs (y or x, and dy) and writes dx. Cross-entropy's forward writes one number per row."""
    element = _bytes(dtype)
    matrix = rows * cols * element
    forward = matrix if kernel == "cross_entropy" else 2 * matrix
    backward = 2 * matrix if kernel == "cross_entropy" else 3 * matrix
    return forward + (backward if mode == "fwd+bwd" else 0)


def _timer(fn: Callable[[], object], grad_to_none: list[torch.Tensor]) -> float:
    import triton.testing

    return triton.testing.do_bench(fn, warmup=25, rep=100, grad_to_none=grad_to_none, return_mode="median")


def _step(run: Callable[[], torch.Tensor], mode: str) -> Callable[[], object]:
    """The function to time: the forward alone, or the forward and a backward from ``sum()``-like ones."""
    if mode == "fwd":
        return run
    out = run()
    upstream = torch.randn_like(out)

    def forward_backward() -> None:
        run().backward(upstream)

    return forward_backward


def _sdpa_backends() -> dict[str, object]:
    from torch.nn.attention import SDPBackend

    names = {"flash": "FLASH_ATTENTION", "efficient": "EFFICIENT_ATTENTION", "cudnn": "CUDNN_ATTENTION", "math": "MATH"}
    return {name: getattr(SDPBackend, attr) for name, attr in names.items() if hasattr(SDPBackend, attr)}


def _attention_timings(device: torch.device, quick: bool, timer: Callable) -> list[Timing]:
    from torch.nn.attention import sdpa_kernel

    from llm_tutorial.kernels import flash_attention

    results = []
    tokens = 16384  # batch × sequence held fixed, so every size does comparable work
    seqs = (1024, 4096) if quick else (512, 1024, 2048, 4096, 8192)
    head_dims = (128,) if quick else (64, 128)
    for head_dim in head_dims:
        heads = 2048 // head_dim
        for causal in (False, True):
            for mode in ("fwd", "fwd+bwd"):
                for seq in seqs:
                    batch = max(1, tokens // seq)
                    q, k, v = (torch.randn(batch, heads, seq, head_dim, device=device, dtype=torch.bfloat16,
                                           requires_grad=mode != "fwd") for _ in range(3))
                    flops = attention_flops(batch, heads, seq, head_dim, causal, mode)
                    kernel = f"flash_attention D={head_dim}{' causal' if causal else ''}"
                    impls = {"triton": lambda: flash_attention(q, k, v, causal=causal)}
                    for name, backend in _sdpa_backends().items():
                        impls[f"sdpa-{name}"] = (
                            lambda backend=backend: _sdpa(q, k, v, causal, backend, sdpa_kernel))
                    for impl, run in impls.items():
                        try:
                            ms = timer(_step(run, mode), [q, k, v])
                        except (RuntimeError, torch.cuda.OutOfMemoryError) as error:  # backend unsupported here
                            print(f"  {kernel} {mode} T={seq} {impl}: skipped ({str(error).splitlines()[0][:80]})")
                            torch.cuda.empty_cache()
                            continue
                        tflops = flops / ms / 1e9
                        results.append(Timing(kernel, mode, "bfloat16", f"T={seq}", impl, ms, tflops, "TFLOP/s"))
    return results


def _sdpa(q, k, v, causal, backend, sdpa_kernel) -> torch.Tensor:
    with sdpa_kernel(backend):
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal)


def _memory_bound_timings(device: torch.device, quick: bool, timer: Callable) -> list[Timing]:
    from llm_tutorial.kernels import cross_entropy, layer_norm, rms_norm, softmax

    results = []
    dtype = torch.bfloat16
    widths = (1024, 4096) if quick else (512, 1024, 2048, 4096, 8192, 16384)
    vocabs = (50257,) if quick else (32000, 50257, 128256)
    rows, ce_rows = 8192, 4096
    for mode in ("fwd", "fwd+bwd"):
        grad = mode != "fwd"
        for width in widths:
            x = torch.randn(rows, width, device=device, dtype=dtype, requires_grad=grad)
            w = torch.randn(width, device=device, dtype=dtype, requires_grad=grad)
            b = torch.randn(width, device=device, dtype=dtype, requires_grad=grad)
            cases = {
                "softmax": ({"triton": lambda: softmax(x), "torch": lambda: torch.softmax(x, -1)}, [x]),
                "layer_norm": ({"triton": lambda: layer_norm(x, w, b, 1e-5),
                                "torch": lambda: F.layer_norm(x, (width,), w, b, 1e-5)}, [x, w, b]),
                "rms_norm": ({"triton": lambda: rms_norm(x, w, 1e-6),
                              "torch": lambda: F.rms_norm(x, (width,), w, 1e-6)}, [x, w]),
            }
            for kernel, (impls, tensors) in cases.items():
                gb = memory_bytes(kernel, rows, width, dtype, mode) / 1e9
                for impl, run in impls.items():
                    ms = timer(_step(run, mode), tensors)
                    results.append(Timing(kernel, mode, "bfloat16", f"N={width}", impl, ms, gb / ms * 1e3, "GB/s"))
        for vocab in vocabs:
            logits = torch.randn(ce_rows, vocab, device=device, dtype=dtype, requires_grad=grad)
            targets = torch.randint(0, vocab, (ce_rows,), device=device)
            gb = memory_bytes("cross_entropy", ce_rows, vocab, dtype, mode) / 1e9
            impls = {"triton": lambda: cross_entropy(logits, targets),
                     "torch": lambda: F.cross_entropy(logits, targets)}
            for impl, run in impls.items():
                ms = timer(_step(run, mode), [logits])
                results.append(Timing("cross_entropy", mode, "bfloat16", f"V={vocab}", impl, ms, gb / ms * 1e3, "GB/s"))
    return results


def ratios(results: list[Timing]) -> list[dict]:
    """For every size: PyTorch's time over ours, per PyTorch implementation (> 1 means Triton is faster)."""
    by_case: dict[tuple, dict[str, float]] = {}
    for r in results:
        by_case.setdefault((r.kernel, r.mode, r.dtype, r.size), {})[r.impl] = r.ms
    rows = []
    for (kernel, mode, dtype, size), times in by_case.items():
        if "triton" not in times:
            continue
        for impl, ms in times.items():
            if impl != "triton":
                rows.append({"kernel": kernel, "mode": mode, "dtype": dtype, "size": size, "versus": impl,
                             "speedup": ms / times["triton"]})
    return rows


def format_timings(results: list[Timing]) -> str:
    """One line per measurement, with the ratio to PyTorch on the lines of other implementations."""
    speedups = {(r["kernel"], r["mode"], r["size"], r["versus"]): r["speedup"] for r in ratios(results)}
    lines = [f"{'kernel':<34}{'mode':<9}{'size':<10}{'impl':<16}{'ms':>9}{'throughput':>17}{'torch/triton':>14}"]
    for r in results:
        ratio = speedups.get((r.kernel, r.mode, r.size, r.impl))
        lines.append(f"{r.kernel:<34}{r.mode:<9}{r.size:<10}{r.impl:<16}{r.ms:>9.3f}"
                     f"{r.throughput:>10.1f} {r.unit:<7}{'' if ratio is None else f'{ratio:>13.2f}x'}")
    return "\n".join(lines)


def plot_timings(results: list[Timing], path: Path) -> None:
    """One panel per (kernel, mode): throughput against size, one line per implementation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = sorted({(r.kernel, r.mode) for r in results})
    columns = 4
    n_rows = max(1, -(-len(panels) // columns))
    fig, axes = plt.subplots(n_rows, columns, figsize=(4.2 * columns, 3.2 * n_rows), squeeze=False)
    for ax, (kernel, mode) in zip(axes.flat, panels):
        panel = [r for r in results if (r.kernel, r.mode) == (kernel, mode)]
        sizes = list(dict.fromkeys(r.size for r in panel))
        for impl in dict.fromkeys(r.impl for r in panel):
            points = [(sizes.index(r.size), r.throughput) for r in panel if r.impl == impl]
            ax.plot(*zip(*points), marker="o", label=impl, linewidth=2.5 if impl == "triton" else 1.2)
        ax.set_xticks(range(len(sizes)), [s.split("=")[1] for s in sizes], rotation=45)
        ax.set_xlabel(sizes[0].split("=")[0])
        ax.set_ylabel(panel[0].unit)
        ax.set_title(f"{kernel}, {mode}", fontsize=9)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle("Triton kernels vs PyTorch (bf16; higher is better)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def save_results(results: list[Timing], checks: list, out: Path, device_name: str) -> tuple[Path, Path]:
    """Write the timings, the ratios and the correctness checks to JSON, and the plot to PNG."""
    out.mkdir(parents=True, exist_ok=True)
    environment = {"device": device_name, "torch": torch.__version__, "python": platform.python_version()}
    try:
        import triton

        environment["triton"] = triton.__version__
    except ImportError:
        environment["triton"] = None
    payload = {
        "environment": environment,
        "correctness": [c.as_dict() for c in checks],
        "timings": [asdict(r) for r in results],
        "ratios": ratios(results),
    }
    json_path, png_path = out / "kernel_benchmark.json", out / "kernel_benchmark.png"
    json_path.write_text(json.dumps(payload, indent=2))
    plot_timings(results, png_path)
    return json_path, png_path


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m llm_tutorial.kernels.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"folder for the JSON and PNG (default {DEFAULT_OUT})")
    parser.add_argument("--quick", action="store_true", help="fewer sizes (a few minutes on an H100)")
    parser.add_argument("--no-check", action="store_true", help="skip the correctness check")
    return parser.parse_args(argv)


def _check(device: torch.device, quick: bool) -> list:
    from llm_tutorial.kernels.correctness import check_kernels, format_results

    checks = check_kernels(device, quick=quick)
    print(format_results(checks))
    return checks


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the process exit code (0 ok, 1 a check failed, 2 no GPU)."""
    args = _parse(argv)
    from llm_tutorial.kernels.backends import triton_available

    if not torch.cuda.is_available():
        if not args.no_check:
            os.environ.setdefault("TRITON_INTERPRET", "1")  # Triton reads it when it is first imported
        if not args.no_check and triton_available():
            print("No CUDA GPU: checking the kernels in Triton's interpreter at small sizes.")
            if not all(c.passed for c in _check(torch.device("cpu"), quick=True)):
                return 1
        print("No CUDA GPU found: the timing part of this benchmark needs one (exit code 2).", file=sys.stderr)
        return EXIT_NO_GPU
    if not triton_available():
        print("Triton is not installed: pip install 'llm-tutorial[kernels]'", file=sys.stderr)
        return 1
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        print("TRITON_INTERPRET is set: unset it to time the compiled kernels.", file=sys.stderr)
        return 1
    device = torch.device("cuda")
    device_name = torch.cuda.get_device_name(device)
    print(f"Device: {device_name}, torch {torch.__version__}")
    checks = [] if args.no_check else _check(device, quick=False)
    if not all(c.passed for c in checks):
        return 1
    results = _memory_bound_timings(device, args.quick, _timer)
    results += _attention_timings(device, args.quick, _timer)
    print(format_timings(results))
    json_path, png_path = save_results(results, checks, args.out, device_name)
    print(f"Saved {json_path} and {png_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
