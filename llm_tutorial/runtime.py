"""Where and how code runs: the device, the random seed, and the book's quick mode.

The chapters run on a laptop CPU, on Colab's GPU, or in CI. These helpers keep that choice in one
place so a notebook never hard-codes ``"cuda"`` or a step count.
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch

QUICK_ENV = "LLM_TUTORIAL_QUICK"


def get_device(prefer: str | None = None) -> torch.device:
    """The best device available: CUDA, then Apple's MPS, then the CPU.

    ``prefer`` (e.g. ``"cpu"``) overrides the search, so a reader can force the CPU to compare
    numbers with the book.
    """
    if prefer is not None:
        return torch.device(prefer)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and PyTorch (CPU and CUDA), and return a ``torch.Generator`` so seeded.

    Same seed, same numbers: the book's outputs are reproducible on the same machine and library
    versions. The returned generator lets a caller draw random numbers that no other code touches.
    """
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def quick_mode() -> bool:
    """True when ``LLM_TUTORIAL_QUICK=1``: CI executes every cell, with shorter loops."""
    return os.environ.get(QUICK_ENV, "0").strip().lower() in {"1", "true", "yes", "on"}


def scaled(full: int, quick: int) -> int:
    """``full`` normally, ``quick`` in quick mode. Use for step counts and sample sizes only."""
    return quick if quick_mode() else full
