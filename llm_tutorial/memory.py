"""Memory: the peak bytes of the tensors a piece of code creates, on any device.

Why measure it: memory, not arithmetic, is what usually limits a Transformer. Explicit attention
holds a ``T×T`` score matrix per head, so doubling the context quadruples it; FlashAttention
exists to avoid exactly that. On a GPU PyTorch counts allocations itself
(``torch.cuda.max_memory_allocated``); on a CPU nothing does. :class:`PeakMemory` counts on both.

How: a ``TorchDispatchMode`` sees every ATen operation run inside its ``with`` block. An output
whose storage is new adds its bytes to the running total; a weak reference to that storage
subtracts them again when the storage is freed. Outputs that share an input's storage (views such
as ``transpose`` or ``view``, in-place operations) allocate nothing and count nothing:

    current = Σ bytes of live storages created in the block,   peak = max over time of current

What it does not see: tensors that existed before the block (the inputs), memory a fused kernel
allocates and frees internally without returning it as a tensor (its workspace), and the caching
allocator's rounding on a GPU. It measures what the *algorithm* keeps alive, which is the quantity
the O(N²) argument is about.
"""

from __future__ import annotations

import weakref
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


class PeakMemory(TorchDispatchMode):
    """Count the bytes of tensor storage allocated inside a ``with`` block.

    ``device``: count only storages on this device (e.g. ``"cuda"``); ``None`` counts every device.
    After (or during) the block, ``peak_bytes`` is the largest total alive at any moment and
    ``current_bytes`` what is still alive (tensors created in the block and kept).

    Example::

        with PeakMemory() as meter:
            out = scaled_dot_product_attention(q, k, v)
        meter.peak_bytes   # scores and weights, (B, H, T, T) each, plus the output
    """

    def __init__(self, device: torch.device | str | None = None) -> None:
        super().__init__()
        if device is not None and not isinstance(device, (str, torch.device)):
            raise TypeError(f"device must be None, a str such as 'cpu' or 'cuda', or a torch.device; got {type(device).__name__}")
        self.device_type = None if device is None else torch.device(device).type
        self.current_bytes = 0
        self.peak_bytes = 0
        self._live: dict[tuple[str, int], weakref.ref] = {}  # (device type, data pointer) -> storage

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        out = func(*args, **(kwargs or {}))
        inputs = {_key(t) for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
        for tensor in tree_leaves(out):
            if isinstance(tensor, torch.Tensor):
                self._count(tensor, inputs)
        return out

    def _count(self, tensor: torch.Tensor, inputs: set[tuple[str, int]]) -> None:
        """Add a new storage's bytes and arrange for them to be subtracted when it is freed."""
        storage = tensor.untyped_storage()
        key = _key(tensor)
        nbytes = storage.nbytes()
        if nbytes == 0 or key in inputs or key in self._live:
            return
        if self.device_type is not None and tensor.device.type != self.device_type:
            return
        self.current_bytes += nbytes
        self.peak_bytes = max(self.peak_bytes, self.current_bytes)
        self._live[key] = weakref.ref(storage, lambda _, key=key, nbytes=nbytes: self._release(key, nbytes))

    def _release(self, key: tuple[str, int], nbytes: int) -> None:
        self.current_bytes -= nbytes
        self._live.pop(key, None)


def _key(tensor: torch.Tensor) -> tuple[str, int]:
    return tensor.device.type, tensor.untyped_storage().data_ptr()
