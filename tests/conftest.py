"""Shared test set-up: read data from the shared folder, never from the network, and run Triton
kernels on CPU tensors through Triton's interpreter.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

# Triton decides between compiled and interpreted mode when it is first imported: set this before
# any test module can import it.
os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest
import torch

# pytest-xdist runs one worker per core; two torch threads per worker would oversubscribe the
# cores, which makes small training steps many times slower, not faster.
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

if "LLM_TUTORIAL_DATA" not in os.environ and SHARED_DATA.is_dir():
    os.environ["LLM_TUTORIAL_DATA"] = str(SHARED_DATA)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Tiny matrices gain nothing from threads, and a shared CPU makes threads slow: use one."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
