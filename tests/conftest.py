"""Shared test set-up: read data from the shared folder, never from the network."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

if "LLM_TUTORIAL_DATA" not in os.environ and SHARED_DATA.is_dir():
    os.environ["LLM_TUTORIAL_DATA"] = str(SHARED_DATA)
