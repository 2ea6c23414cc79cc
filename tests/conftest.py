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


def pytest_sessionstart(session: pytest.Session) -> None:
    """Many tests read the book's data: check it once, before any test runs, and stop with one message
    (not dozens of download errors) when it is neither on disk nor downloadable."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return  # the controller process has checked already
    from llm_tutorial.data.corpora import CORPORA, ChecksumError, DataUnavailableError, data_path

    problems = []
    for name in CORPORA:
        try:
            data_path(name)
        except DataUnavailableError as error:
            reason = str(error.__cause__ or "downloads are off")
            problems.append(f"{CORPORA[name].filename}: not on disk, and downloading it failed ({reason})")
        except ChecksumError:
            problems.append(f"{CORPORA[name].filename}: on disk, but not the book's file (wrong checksum)")
    if problems:
        raise pytest.UsageError(
            "the tests need the book's data files, and these are missing or wrong:\n  " + "\n  ".join(problems)
            + "\nWhat to do: connect to the internet (they are downloaded once, checked, and cached), or download "
            "them by hand and run `python -m llm_tutorial data prepare FOLDER` (book/setup.md lists the "
            "addresses), or point LLM_TUTORIAL_DATA at a folder that holds them."
        )


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Tiny matrices gain nothing from threads, and a shared CPU makes threads slow: use one."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
