"""Shared test set-up: read data from the shared folder, never from the network, and run Triton
kernels on CPU tensors through Triton's interpreter.
"""

from __future__ import annotations

import os
from pathlib import Path

# Triton decides between compiled and interpreted mode when it is first imported: set this before
# any test module can import it.
os.environ.setdefault("TRITON_INTERPRET", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

if "LLM_TUTORIAL_DATA" not in os.environ and SHARED_DATA.is_dir():
    os.environ["LLM_TUTORIAL_DATA"] = str(SHARED_DATA)
