"""Which implementation a tensor gets: compiled Triton, Triton's interpreter, or the PyTorch reference.

=============  =============================================  ==========================================
backend        when                                           what runs
=============  =============================================  ==========================================
``triton``     a CUDA tensor, Triton installed                the kernels compiled for the GPU
``interpreter`` ``TRITON_INTERPRET=1``, Triton installed,      the same kernels, each program run in NumPy
               a CPU or CUDA tensor                           (slow, exact: how the tests check them)
``reference``  anything else (CPU without the variable,       plain PyTorch (``kernels.reference``)
               Apple MPS, Triton not installed)
=============  =============================================  ==========================================

This module never imports Triton at import time, so ``import llm_tutorial.kernels`` works on any
machine; Triton is imported the first time a tensor needs it.
"""

from __future__ import annotations

import functools
import importlib
import os
from types import ModuleType

import torch

BACKENDS = ("triton", "interpreter", "reference")
_TRUE = {"1", "true", "yes", "on"}


def interpreter_requested() -> bool:
    """True when the environment asks Triton to interpret kernels (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in _TRUE


@functools.cache
def triton_available() -> bool:
    """True when ``import triton`` succeeds (it is an optional dependency: ``pip install '.[kernels]'``)."""
    try:
        importlib.import_module("triton")
    except ImportError:
        return False
    return True


def available_backends() -> list[str]:
    """The backends this machine could run, in order of speed.

    ``interpreter`` is listed whenever Triton is installed: it is used once ``TRITON_INTERPRET=1``
    is set before the first kernel call.
    """
    backends = []
    if triton_available() and torch.cuda.is_available():
        backends.append("triton")
    if triton_available():
        backends.append("interpreter")
    backends.append("reference")
    return backends


def backend_for(tensor: torch.Tensor) -> str:
    """The backend that the kernels in ``llm_tutorial.kernels`` use for ``tensor``, now.

    >>> backend_for(torch.zeros(2))  # on a CPU, without TRITON_INTERPRET=1  # doctest: +SKIP
    'reference'
    """
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"backend_for expects a torch.Tensor, got {type(tensor).__name__}")
    if tensor.device.type not in ("cpu", "cuda") or not triton_available():
        return "reference"
    if interpreter_requested():
        return "interpreter"
    return "triton" if tensor.device.type == "cuda" else "reference"


def kernel_module(name: str, backend: str) -> ModuleType:
    """Import ``llm_tutorial.kernels.<name>`` (a Triton module) for ``backend``.

    Triton decides between compiling and interpreting when ``triton`` is first imported, so a
    later change of ``TRITON_INTERPRET`` cannot take effect in the same Python process: that case
    gets a clear error instead of Triton's "0 active drivers".
    """
    module = importlib.import_module(f"llm_tutorial.kernels.{name}")
    setup = importlib.import_module("llm_tutorial.kernels.triton_setup")
    if setup.INTERPRETER != (backend == "interpreter"):
        was = "on" if setup.INTERPRETER else "off"
        now = "on" if backend == "interpreter" else "off"
        raise RuntimeError(
            f"TRITON_INTERPRET was {was} when triton was first imported and is {now} now; "
            "Triton fixes that choice at import. Set TRITON_INTERPRET before the first kernel call "
            "(e.g. in the first cell of the notebook) and restart Python."
        )
    return module
