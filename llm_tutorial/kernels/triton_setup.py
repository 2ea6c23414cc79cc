"""What every Triton kernel launch in this package needs to know: GPU or interpreter, tile sizes, types.

Triton compiles a ``@triton.jit`` function for the GPU, unless ``TRITON_INTERPRET=1`` is set: then
every program of the grid runs one after another in NumPy on the CPU. Triton reads that variable
when each decorator runs — its own library functions (``tl.max``, ``tl.sum``, …) included — so the
choice is fixed when ``triton`` is first imported (``llm_tutorial.kernels.dispatch`` imports it
only when a kernel is first needed).

Two things differ between the two worlds, and this module is where they are decided:

- **Tile sizes.** On a GPU the best tile depends on the chip, so ``@triton.autotune`` times a few
  candidate configurations on first use. The interpreter cannot time anything meaningful (and the
  autotuner fails there), so it gets one fixed, small configuration.
- **How many programs.** A GPU wants a few programs per streaming multiprocessor; the interpreter
  runs programs one at a time, so fewer, larger programs are faster.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from triton.runtime.interpreter import InterpretedFunction

from llm_tutorial.kernels.backends import interpreter_requested

INTERPRETER: bool = isinstance(tl.standard.max, InterpretedFunction)
"""True when Triton (and so these kernels) was imported for the interpreter (``TRITON_INTERPRET=1``)."""

if INTERPRETER != interpreter_requested():
    raise RuntimeError(
        f"TRITON_INTERPRET is {'on' if interpreter_requested() else 'off'} now but was "
        f"{'on' if INTERPRETER else 'off'} when `import triton` ran; Triton fixes that choice at import. "
        "Set TRITON_INTERPRET before anything imports triton (e.g. in the first cell) and restart Python."
    )

MAX_ROW_BLOCK = 65536
"""The longest row the one-row-in-registers kernels (softmax, norms) accept: 2^16 elements."""


def autotune_configs(gpu: list[triton.Config], interpreter: triton.Config) -> list[triton.Config]:
    """The GPU's candidates for ``@triton.autotune``, or the single interpreter configuration.

    With one configuration the autotuner skips its benchmark, which is what the interpreter needs.
    """
    return [interpreter] if INTERPRETER else gpu


def accumulator_dtype(dtype: torch.dtype) -> tl.dtype:
    """Sums, maxima and dot products run in fp32 for 16- and 32-bit inputs, in fp64 for fp64 inputs.

    fp16/bf16 keep about 3 significant digits: a softmax denominator summed over thousands of
    terms in fp16 would lose most of them, so the arithmetic happens in fp32 and only the loads and
    stores use the narrow type.
    """
    return tl.float64 if dtype == torch.float64 else tl.float32


def dot_precision(dtype: torch.dtype) -> str:
    """``input_precision`` for ``tl.dot``: exact IEEE products for fp32 and fp64 inputs.

    On NVIDIA GPUs Triton's default for fp32 is TF32 (10-bit mantissa), which would make fp32
    attention disagree with PyTorch's fp32 matmul at the 1e-3 level. fp16/bf16 ignore the setting.
    """
    return "ieee" if dtype in (torch.float32, torch.float64) else "tf32"


def row_tiling(n_cols: int) -> tuple[int, int, int]:
    """``(BLOCK_ROWS, BLOCK_COLS, num_warps)`` for kernels that hold whole rows in registers.

    ``BLOCK_COLS`` is the row length rounded up to a power of two (``tl.arange`` needs one); a
    program takes several short rows at once so that each program moves a few thousand elements,
    enough to keep a GPU's memory system busy (and fewer programs for the interpreter to run).
    """
    if n_cols > MAX_ROW_BLOCK:
        raise ValueError(
            f"rows of {n_cols} elements are longer than the {MAX_ROW_BLOCK} this kernel holds in "
            "registers; use the PyTorch reference (llm_tutorial.kernels.reference) for such rows"
        )
    block_cols = triton.next_power_of_2(n_cols)
    block_rows = max(1, min(64, 4096 // block_cols))
    num_warps = min(16, max(4, block_rows * block_cols // 1024))
    return block_rows, block_cols, num_warps


def parallel_programs(device: torch.device, n_blocks: int) -> int:
    """How many programs a persistent kernel launches to cover ``n_blocks`` blocks of rows.

    A GPU gets four programs per streaming multiprocessor (each loops over several blocks); the
    interpreter gets at most four, since it runs them one after another anyway.
    """
    if INTERPRETER or device.type != "cuda":
        return max(1, min(n_blocks, 4))
    return max(1, min(n_blocks, 4 * torch.cuda.get_device_properties(device).multi_processor_count))
