"""Where and how code runs: the device, the random seed, the book's quick mode, and a report of it all.

The chapters run on a laptop CPU, on Colab's GPU, or in CI. These helpers keep that choice in one
place so a notebook never hard-codes ``"cuda"`` or a step count, and :func:`environment_report`
says in one table what a reader's machine has, which is the first thing to compare when numbers
differ from the book's.
"""

from __future__ import annotations

import os
import platform
import random
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

from ._checks import check_int

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
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def _mps_available() -> bool:
    """Apple's Metal backend, present in this build of PyTorch and usable on this machine."""
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and PyTorch (CPU and CUDA), and return a ``torch.Generator`` so seeded.

    Same seed, same numbers: the book's outputs are reproducible on the same machine and library
    versions. The returned generator lets a caller draw random numbers that no other code touches.
    """
    check_int(seed, "seed")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def quick_mode() -> bool:
    """True when ``LLM_TUTORIAL_QUICK=1``: CI executes every cell, with shorter loops."""
    return os.environ.get(QUICK_ENV, "0").strip().lower() in {"1", "true", "yes", "on"}


def progress_bars(requested: bool = True) -> bool:
    """Whether to draw a progress bar: when asked for, unless ``TQDM_DISABLE=1`` says no one is watching.

    ``tasks.py`` sets ``TQDM_DISABLE=1`` when it executes notebooks for the record or for CI, so
    that bar updates are never saved as stderr on the published pages. tqdm reads the variable
    only when ``disable`` is not passed; the package passes it, so it asks here.
    """
    return bool(requested) and os.environ.get("TQDM_DISABLE", "").strip().lower() not in {"1", "true", "yes", "on"}


def scaled(full: int, quick: int) -> int:
    """``full`` normally, ``quick`` in quick mode. Use for step counts and sample sizes only."""
    return quick if quick_mode() else full


@dataclass(frozen=True)
class EnvironmentReport:
    """What the book's code runs with: versions, the device, and where the data comes from.

    ``str(report)`` is an aligned two-column table, meant to be printed in a notebook or pasted into
    a question, so it shows folders relative to the home directory (``~/...``) and otherwise only
    their last part (``.../data``): a page should not publish the layout of the machine that built
    it. :meth:`as_dict` gives the raw values, full paths included.
    """

    python: str
    platform: str
    torch: str
    triton: str | None
    transformers: str | None
    device: str
    cuda_available: bool
    cuda_device: str | None
    mps_available: bool
    cpu_threads: int
    triton_interpret: bool
    data_folder: str | None
    cache_folder: str
    corpora_on_disk: tuple[str, ...]
    quick_mode: bool

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    def __str__(self) -> str:
        def shown(value: object) -> str:
            if value is None:
                return "—"
            if isinstance(value, tuple):
                return ", ".join(value) or "none"
            return str(value)

        def shown_folder(folder: str | None) -> str:
            if folder is None:
                return "—"
            path, home = Path(folder), Path.home()
            if path == home or home in path.parents:
                return str(Path("~") / path.relative_to(home))
            return f".../{path.name}" if path.name else str(path)

        rows = self.as_dict()
        rows["data_folder"], rows["cache_folder"] = shown_folder(self.data_folder), shown_folder(self.cache_folder)
        width = max(map(len, rows))
        return "\n".join(f"{name:<{width}}  {shown(value)}" for name, value in rows.items())


def environment_report() -> EnvironmentReport:
    """Versions of Python, PyTorch, Triton and transformers, the device, CUDA/MPS, threads,
    ``TRITON_INTERPRET``, the data folders and quick mode — the facts that decide what runs where.

    Triton and transformers are *not* imported (their versions come from the installed package
    metadata; ``None`` means not installed): importing Triton would fix its interpreter-or-GPU
    choice before a notebook had the chance to set ``TRITON_INTERPRET``.
    """
    from .data.corpora import CORPORA, DATA_ENV, cache_dir
    from .kernels.backends import interpreter_requested

    data_folder = os.environ.get(DATA_ENV) or None
    folders = [Path(data_folder)] if data_folder else []
    folders.append(cache_dir())
    on_disk = tuple(
        name for name, corpus in CORPORA.items() if any((folder / corpus.filename).is_file() for folder in folders)
    )
    cuda = torch.cuda.is_available()
    return EnvironmentReport(
        python=platform.python_version(),
        platform=f"{platform.system()} {platform.machine()}",
        torch=torch.__version__,
        triton=_installed_version("triton"),
        transformers=_installed_version("transformers"),
        device=str(get_device()),
        cuda_available=cuda,
        cuda_device=torch.cuda.get_device_name(0) if cuda else None,
        mps_available=_mps_available(),
        cpu_threads=torch.get_num_threads(),
        triton_interpret=interpreter_requested(),
        data_folder=data_folder,
        cache_folder=str(cache_dir()),
        corpora_on_disk=on_disk,
        quick_mode=quick_mode(),
    )


def _installed_version(distribution: str) -> str | None:
    """The installed version of a distribution, read from its metadata without importing it."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None
