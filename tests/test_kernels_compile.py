"""Every kernel compiles for a Hopper GPU (sm_90), checked on a machine without one.

The interpreter runs the kernels' Python; the GPU path goes through Triton's compiler (typed IR,
layouts, shared memory, ptxas), which rejects things the interpreter accepts. Triton can compile
ahead of time for a named target, so this runs the real compiler, in a subprocess where
``TRITON_INTERPRET`` is unset, down to a cubin.
"""

import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("triton")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = textwrap.dedent(
    """
    import triton, triton.language as tl
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from llm_tutorial.kernels import triton_cross_entropy as ce, triton_flash_attention as fa
    from llm_tutorial.kernels import triton_norms as norms, triton_softmax as sm

    STATS = {"Mean", "Rstd", "LSE", "LSE2", "Delta", "Loss", "RowGrad", "DW_partial", "DB_partial"}

    def argument_type(name):
        # Pointers are capitalised: data in bf16, statistics in fp32, targets int64; scalars by name.
        if name[0].isupper():
            return "*i64" if name == "Targets" else "*fp32" if name in STATS else "*bf16"
        return "fp32" if name in ("eps", "scale", "qk_scale") else "i32"

    def compile_for_hopper(kernel, constexprs, config=None):
        fn = kernel.fn if config is not None else kernel
        constexprs = {**constexprs, **(config.kwargs if config is not None else {})}
        signature = {n: "constexpr" if n in constexprs else argument_type(n) for n in fn.arg_names}
        source = ASTSource(fn, signature, {(fn.arg_names.index(n),): v for n, v in constexprs.items()})
        options = {"num_warps": config.num_warps, "num_stages": config.num_stages} if config else {"num_warps": 4}
        compiled = triton.compile(source, target=GPUTarget("cuda", 90, 32), options=options)
        assert compiled.asm["cubin"], fn.__name__
        print(fn.__name__, compiled.metadata.shared)

    rows = {"BLOCK_ROWS": 2, "BLOCK_COLS": 1024, "ACC": tl.float32}
    compile_for_hopper(sm._softmax_forward_kernel, rows)
    compile_for_hopper(sm._softmax_backward_kernel, rows)
    compile_for_hopper(norms._norm_forward_kernel, {**rows, "CENTER": True, "HAS_BIAS": True})
    compile_for_hopper(norms._norm_backward_kernel, {**rows, "CENTER": True, "HAS_BIAS": True})
    compile_for_hopper(ce._cross_entropy_forward_kernel, {"BLOCK_V": 4096, "ACC": tl.float32})
    compile_for_hopper(ce._cross_entropy_backward_kernel, {"BLOCK_V": 4096, "ACC": tl.float32})
    attention = {"HEAD_DIM": 128, "CAUSAL": True, "ACC": tl.float32, "DOT_PRECISION": "tf32"}
    for kernel in (fa._flash_attention_forward_kernel, fa._flash_attention_backward_dk_dv_kernel,
                   fa._flash_attention_backward_dq_kernel):
        compile_for_hopper(kernel, attention, kernel.configs[0])
    compile_for_hopper(fa._backward_delta_kernel, {"HEAD_DIM": 128, "BLOCK_M": 64, "ACC": tl.float32})
    print("compiled")
    """
)


def test_every_kernel_compiles_for_sm90_in_bf16(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_CACHE_DIR"] = str(tmp_path)  # a fresh cache: really compile
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, cwd=REPO, env=env,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.split("\n")
    assert lines[-2] == "compiled"
    shared_memory = {line.split()[0]: int(line.split()[1]) for line in lines[:-2]}
    assert len(shared_memory) == 10
    assert max(shared_memory.values()) <= 227 * 1024  # an H100's shared memory per block
