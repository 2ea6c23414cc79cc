"""Every random number generator a training run draws from, captured and restored together.

Dropout draws from PyTorch's global generator (one per device), batch sampling from its own
``torch.Generator``, and user code may draw from Python's ``random`` or NumPy. A resumed run
reproduces the uninterrupted one bit for bit only if all of them restart where they stopped.

Each state is saved as what it is, a byte string, as a ``uint8`` tensor (safetensors), plus a few
plain numbers (JSON): nothing is ever pickled.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch


@dataclass
class RandomState:
    """The states of Python's ``random``, NumPy's global generator, PyTorch's CPU and CUDA
    generators, and any named ``torch.Generator`` (e.g. ``"batches"``)."""

    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    numbers: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def capture(cls, generators: dict[str, torch.Generator] | None = None) -> RandomState:
        """Snapshot every generator now."""
        version, mt_words, gauss_next = random.getstate()
        kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
        tensors = {
            "torch.cpu": torch.get_rng_state(),
            "numpy.keys": torch.frombuffer(bytearray(np.ascontiguousarray(np_keys, dtype=np.uint32).tobytes()),
                                           dtype=torch.uint8),
        }
        if torch.cuda.is_available():
            for index, state in enumerate(torch.cuda.get_rng_state_all()):
                tensors[f"torch.cuda.{index}"] = state
        for name, generator in (generators or {}).items():
            tensors[f"generator.{name}"] = generator.get_state()
        numbers = {
            "python": [version, list(mt_words), gauss_next],
            "numpy": [kind, int(np_pos), int(np_has_gauss), float(np_gauss)],
        }
        return cls(tensors=tensors, numbers=numbers)

    def restore(self, generators: dict[str, torch.Generator] | None = None) -> None:
        """Put every generator back where :meth:`capture` found it.

        CUDA states are restored for the GPUs present (none on a CPU-only machine: a run moved
        from a GPU to a CPU cannot be bit-identical anyway)."""
        version, mt_words, gauss_next = self.numbers["python"]
        random.setstate((version, tuple(mt_words), gauss_next))
        kind, np_pos, np_has_gauss, np_gauss = self.numbers["numpy"]
        np_keys = np.frombuffer(self.tensors["numpy.keys"].numpy().tobytes(), dtype=np.uint32)
        np.random.set_state((kind, np_keys, np_pos, np_has_gauss, np_gauss))
        torch.set_rng_state(self.tensors["torch.cpu"])
        if torch.cuda.is_available():
            for index in range(torch.cuda.device_count()):
                state = self.tensors.get(f"torch.cuda.{index}")
                if state is not None:
                    torch.cuda.set_rng_state(state, index)
        for name, generator in (generators or {}).items():
            key = f"generator.{name}"
            if key not in self.tensors:
                raise KeyError(f"the saved random state has no generator named {name!r}; "
                               f"it has {sorted(k[len('generator.'):] for k in self.tensors if k.startswith('generator.'))}")
            generator.set_state(self.tensors[key])
