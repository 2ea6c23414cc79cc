"""The GPU benchmark's CPU-testable parts: its correctness check (in the interpreter), FLOP and byte
counts, the no-GPU exit, and the JSON and plot it writes."""

import os

os.environ["TRITON_INTERPRET"] = "1"  # Triton reads it when the kernel modules are imported: before that

import json
import subprocess
import sys

import pytest
import torch

pytest.importorskip("triton")

from llm_tutorial.kernels import bench, correctness  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_command_checks_in_the_interpreter_then_exits_with_code_2_without_a_gpu():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the command would run the whole benchmark")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}  # the command sets it itself
    result = subprocess.run([sys.executable, "-m", "llm_tutorial.kernels.bench", "--quick"], capture_output=True,
                            text=True, cwd=REPO, env=env, timeout=300)
    assert result.returncode == bench.EXIT_NO_GPU, result.stderr[-2000:]
    assert "No CUDA GPU found" in result.stderr
    table = [line.split() for line in result.stdout.splitlines() if line.endswith((" yes", " NO"))]
    assert all(row[-4] == "interpreter" for row in table)
    kernels = {" ".join(row[: row.index("float32") if "float32" in row else row.index("float16")]) for row in table}
    assert kernels == {
        "softmax", "layer_norm", "rms_norm", "flash_attention", "flash_attention causal", "cross_entropy"
    }
    assert len(table) == 12 and all(row[-1] == "yes" for row in table)


def test_correctness_check_catches_a_wrong_kernel(monkeypatch):
    monkeypatch.setattr(correctness, "softmax", lambda x: torch.softmax(x * 1.001, dim=-1))
    results = correctness.check_kernels("cpu", (torch.float32,))
    failed = [r.kernel for r in results if not r.passed]
    assert failed == ["softmax"]
    assert "softmax                 float32" in correctness.format_results(results)
    assert "NO" in correctness.format_results(results)


def test_attention_flops_and_memory_bytes():
    # B=1, H=1, T=2, D=3: QKᵀ and PV are 2·T·T·D = 24 FLOPs each.
    assert bench.attention_flops(1, 1, 2, 3, causal=False, mode="fwd") == 48
    assert bench.attention_flops(1, 1, 2, 3, causal=True, mode="fwd") == 24
    assert bench.attention_flops(2, 4, 1024, 128, causal=False, mode="fwd+bwd") == 3.5 * 4 * 8 * 1024**2 * 128
    # softmax in bf16: read x and write y (2 bytes each), then read y and dy, write dx.
    assert bench.memory_bytes("softmax", 10, 100, torch.bfloat16, "fwd") == 2 * 1000 * 2
    assert bench.memory_bytes("softmax", 10, 100, torch.bfloat16, "fwd+bwd") == 5 * 1000 * 2
    assert bench.memory_bytes("cross_entropy", 10, 100, torch.float32, "fwd+bwd") == 3 * 1000 * 4


def test_without_a_gpu_the_command_exits_with_code_2(capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the command would run the benchmark")
    assert bench.main(["--no-check"]) == bench.EXIT_NO_GPU
    assert "No CUDA GPU found" in capsys.readouterr().err


def test_results_are_saved_as_json_and_plot(tmp_path):
    timings = [
        bench.Timing("softmax", "fwd", "bfloat16", f"N={n}", impl, ms, 100.0 / ms, "GB/s")
        for n in (1024, 4096) for impl, ms in (("triton", 1.0), ("torch", 1.5))
    ] + [
        bench.Timing("flash_attention D=128", "fwd", "bfloat16", "T=4096", impl, ms, 400.0 / ms, "TFLOP/s")
        for impl, ms in (("triton", 2.0), ("sdpa-flash", 1.8), ("sdpa-math", 9.0))
    ]
    checks = [correctness.CheckResult("softmax", "float32", "(4, 5)", "interpreter", 1e-7, 1e-4)]
    json_path, png_path = bench.save_results(timings, checks, tmp_path / "out", "test device")
    payload = json.loads(json_path.read_text())
    assert payload["environment"]["device"] == "test device"
    assert len(payload["timings"]) == 7 and len(payload["correctness"]) == len(checks)
    speedups = {(r["kernel"], r["size"], r["versus"]): r["speedup"] for r in payload["ratios"]}
    assert speedups == {
        ("softmax", "N=1024", "torch"): 1.5,
        ("softmax", "N=4096", "torch"): 1.5,
        ("flash_attention D=128", "T=4096", "sdpa-flash"): 0.9,
        ("flash_attention D=128", "T=4096", "sdpa-math"): 4.5,
    }
    assert png_path.stat().st_size > 10_000 and png_path.read_bytes()[:4] == b"\x89PNG"
    table = bench.format_timings(timings)
    assert "0.90x" in table and "4.50x" in table
