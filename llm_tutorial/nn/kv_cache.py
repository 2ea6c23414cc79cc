"""The key/value cache: what a decoder remembers between generation steps.

When a causal model generates token t+1 it needs the keys and values of tokens 1..t, which do not
change once computed (each depends only on earlier tokens). Keeping them turns each step from
re-running the whole prefix, O(t) tokens through every layer, into running one new token.

The buffers are allocated once, at ``(B, H_kv, max_len, D)`` per layer, and each step writes the
new keys and values in place and returns *views* of the filled part: no tensor grows or is
reallocated per token. The cost is memory, ``2 · n_layer · B · H_kv · max_len · D`` numbers,
which is why grouped-query attention (fewer key/value heads ``H_kv``) matters for long contexts.

Use a cache for inference, under ``torch.no_grad()``: the buffers are written in place.
"""

from __future__ import annotations

import torch

from llm_tutorial._checks import check_positive_int, check_rank, check_tensor


class LayerKVCache:
    """One attention layer's preallocated keys and values, ``(B, H_kv, max_len, D)`` each."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        check_rank(keys, "keys", 4, "(B, H_kv, max_len, D)")
        check_rank(values, "values", 4, "(B, H_kv, max_len, D)")
        if values.shape != keys.shape:
            raise ValueError(
                f"keys and values buffers must have equal shapes, got {tuple(keys.shape)} and {tuple(values.shape)}"
            )
        self.keys, self.values = keys, values
        self.length = 0

    @property
    def batch_size(self) -> int:
        return self.keys.size(0)

    @property
    def max_len(self) -> int:
        return self.keys.size(2)

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write ``T`` new positions ``(B, H_kv, T, D)`` after the cached ones and return views of
        all keys and values so far, ``(B, H_kv, length + T, D)``.

        This runs once per layer per generated token, so its checks are one fast test of the whole
        contract; only when that fails does :meth:`_explain` work out which rule was broken."""
        keys = self.keys
        if not (isinstance(k, torch.Tensor) and isinstance(v, torch.Tensor) and k.shape == v.shape and k.ndim == 4
                and k.dtype == v.dtype == keys.dtype and k.device == keys.device and v.device == keys.device
                and k.shape[0] == keys.shape[0] and k.shape[1] == keys.shape[1] and k.shape[3] == keys.shape[3]):
            self._explain(k, v)
        T = k.size(2)
        start, end = self.length, self.length + T
        if end > keys.size(2):
            raise ValueError(
                f"the KV cache is full: it holds {start} of {self.max_len} positions and cannot take {T} more; "
                "create a larger one (model.new_cache(batch_size, max_len=...)) or reset() it"
            )
        keys.narrow(2, start, T).copy_(k)  # in place: no buffer grows or is reallocated
        self.values.narrow(2, start, T).copy_(v)
        self.length = end
        return keys.narrow(2, 0, end), self.values.narrow(2, 0, end)  # (B, H_kv, end, D) views, no copy

    def _explain(self, k: object, v: object) -> None:
        """Raise the error that says which part of :meth:`append`'s contract ``k`` and ``v`` break."""
        for name, new in (("k", k), ("v", v)):
            check_tensor(new, name)
            check_rank(new, name, 4, "(B, H_kv, T, D)")
            if new.size(0) != self.batch_size:
                raise ValueError(
                    f"the KV cache was made for batch size {self.batch_size}, "
                    f"got {name} with batch size {new.size(0)}; "
                    "make a new cache for this batch (model.new_cache(batch_size))"
                )
            if new.shape[1] != self.keys.shape[1] or new.shape[3] != self.keys.shape[3]:
                raise ValueError(
                    f"{name} must have shape (B, H_kv, T, D) = (B, {self.keys.size(1)}, T, {self.keys.size(3)}) "
                    f"to fit this cache, got {tuple(new.shape)}"
                )
            if new.dtype != self.keys.dtype or new.device != self.keys.device:
                raise TypeError(
                    f"the KV cache holds {self.keys.dtype} on {self.keys.device}, got {name} as {new.dtype} on "
                    f"{new.device}; create the cache with the model's dtype and device"
                )
        raise ValueError(f"k and v must have equal shapes, got {tuple(k.shape)} and {tuple(v.shape)}")


class KVCache:
    """The caches of all layers of a model, which advance together.

    ``length`` is the number of positions already processed: the next tokens fed to the model sit
    at positions ``length, length + 1, …``. Models create one with ``model.new_cache(batch_size)``.
    """

    def __init__(
        self,
        n_layer: int,
        batch_size: int,
        n_kv_head: int,
        max_len: int,
        head_dim: int,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        for value, name in ((n_layer, "n_layer"), (batch_size, "batch_size"), (n_kv_head, "n_kv_head"),
                            (max_len, "max_len"), (head_dim, "head_dim")):
            check_positive_int(value, name)
        shape = (batch_size, n_kv_head, max_len, head_dim)
        self.layers = [
            LayerKVCache(torch.zeros(shape, device=device, dtype=dtype), torch.zeros(shape, device=device, dtype=dtype))
            for _ in range(n_layer)
        ]

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, layer: int) -> LayerKVCache:
        return self.layers[layer]

    @property
    def length(self) -> int:
        """Positions cached so far (read it before a forward pass: layers advance one by one)."""
        return self.layers[0].length

    @property
    def batch_size(self) -> int:
        return self.layers[0].batch_size

    @property
    def max_len(self) -> int:
        return self.layers[0].max_len

    @property
    def nbytes(self) -> int:
        """Memory held by all key and value buffers, in bytes."""
        return sum(layer.keys.nbytes + layer.values.nbytes for layer in self.layers)

    def reset(self) -> None:
        """Forget everything cached (the buffers are kept and overwritten)."""
        for layer in self.layers:
            layer.length = 0

    def select_batch(self, indices: torch.Tensor) -> None:
        """Keep the batch rows ``indices`` ``(B',)`` in this order, e.g. the surviving beams of a
        beam search; ``B'`` may differ from the current batch size."""
        check_rank(indices, "indices", 1, "(B',)")
        if indices.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"indices must be integer batch rows, got {str(indices.dtype).replace('torch.', '')}")
        if indices.numel() == 0:
            raise ValueError("indices must select at least one batch row")
        if int(indices.min()) < 0 or int(indices.max()) >= self.batch_size:
            raise ValueError(f"indices must lie in [0, {self.batch_size}), got {indices.tolist()}")
        indices = indices.to(self.layers[0].keys.device)
        for layer in self.layers:
            layer.keys = layer.keys.index_select(0, indices)
            layer.values = layer.values.index_select(0, indices)
