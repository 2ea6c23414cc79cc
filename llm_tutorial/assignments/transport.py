"""Values across the process boundary as data: one safetensors file, never pickle.

The grader writes the inputs of each call to a file; the student's kernel writes the results
back the same way. A file holds tensors (safetensors, which only ever parses numbers) and a JSON
document in its metadata that describes the other values. Only these kinds of value travel:

    None, bool, int, float, str                   as JSON
    bytes                                         {"$": "bytes", "hex": "…"}
    tuple, list                                   {"$": "tuple" | "list", "items": […]}
    dict, Counter (any hashable keys)             {"$": "dict", "items": [[key, value], …], "counter": bool}
    torch.Tensor (subclasses become plain)        {"$": "tensor", "key": "t0"} (+ "narrow" for views)

Anything else arrives as {"$": "unsupported", "type": …}, so the grader can say what came. The
reader (:func:`load`) trusts nothing: it checks the size first and rejects any other shape.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open  # imported before any student code runs in the kernel, which
from safetensors.torch import save_file  # may break later imports (by patching builtins.exec)

MAX_BYTES = 64 * 2**20  # results larger than this are refused
MAX_ITEMS = 1_000_000  # values (not tensor elements) in one document
MAX_DEPTH = 32


class TransportError(ValueError):
    """A file that is not what the grader expects."""


class View:
    """A view of a tensor (``narrow`` along dimensions), sent as its base and cut in the kernel,
    so that the student's code receives a tensor that is not contiguous in memory."""

    def __init__(self, base, narrow: list[tuple[int, int, int]]):
        self.base, self.narrow = base, [list(n) for n in narrow]

    @property
    def value(self):
        tensor = self.base
        for dim, start, length in self.narrow:
            tensor = tensor.narrow(dim, start, length)
        return tensor


def encode(value: Any, tensors: dict, budget: list[int] | None = None, depth: int = 0) -> Any:
    """``value`` as JSON, its tensors added to ``tensors`` (budget: bytes left, items left)."""
    budget = budget if budget is not None else [MAX_BYTES, MAX_ITEMS]
    budget[1] -= 1
    if budget[1] < 0 or depth > MAX_DEPTH:
        raise TransportError("the value is too large or too deeply nested")
    if value is None or type(value) in (bool, int, float, str):
        return value
    if isinstance(value, View):
        return {**encode(value.base, tensors, budget, depth), "narrow": value.narrow}
    if isinstance(value, torch.Tensor):
        plain = torch.Tensor.as_subclass(value, torch.Tensor).detach()
        size = plain.numel() * plain.element_size()
        if size > budget[0]:
            return {"$": "too_large", "shape": list(plain.shape), "dtype": str(plain.dtype), "bytes": size}
        budget[0] -= size
        key = f"t{len(tensors)}"
        tensors[key] = plain.to("cpu").contiguous().clone()
        return {"$": "tensor", "key": key}
    if isinstance(value, (bytes, bytearray)):
        return {"$": "bytes", "hex": bytes(value).hex()}
    if isinstance(value, (tuple, list)):
        kind = "tuple" if isinstance(value, tuple) else "list"
        return {"$": kind, "items": [encode(v, tensors, budget, depth + 1) for v in value]}
    if isinstance(value, dict):
        items = [[encode(k, tensors, budget, depth + 1), encode(v, tensors, budget, depth + 1)] for k, v in value.items()]
        return {"$": "dict", "items": items, "counter": isinstance(value, Counter)}
    kind = type(value)
    return {"$": "unsupported", "type": f"{kind.__module__}.{kind.__qualname__}"}


def decode(data: Any, tensors: dict, depth: int = 0) -> Any:
    """The value that ``data`` (from :func:`encode`) describes; anything unexpected is an error."""
    if depth > MAX_DEPTH:
        raise TransportError("nested too deeply")
    if data is None or type(data) in (bool, int, float, str):
        return data
    if not isinstance(data, dict) or not isinstance(data.get("$"), str):
        raise TransportError(f"unexpected value {str(data)[:80]!r}")
    kind = data["$"]
    if kind == "tensor":
        if data.get("key") not in tensors:
            raise TransportError(f"no tensor {data.get('key')!r}")
        tensor = tensors[data["key"]]
        for dim, start, length in data.get("narrow", []):
            tensor = tensor.narrow(int(dim), int(start), int(length))
        return tensor
    if kind == "bytes":
        return bytes.fromhex(str(data.get("hex", "")))
    if kind in ("tuple", "list"):
        items = [decode(v, tensors, depth + 1) for v in _list(data.get("items"))]
        return tuple(items) if kind == "tuple" else items
    if kind == "dict":
        pairs = [(decode(k, tensors, depth + 1), decode(v, tensors, depth + 1))
                 for k, v in (_pair(p) for p in _list(data.get("items")))]
        try:
            return Counter(dict(pairs)) if data.get("counter") is True else dict(pairs)
        except TypeError as error:  # an unhashable key
            raise TransportError(str(error)) from None
    if kind in ("unsupported", "too_large"):
        return Unreadable(kind, {k: v for k, v in data.items() if k != "$"})
    raise TransportError(f"unknown kind {kind!r}")


class Unreadable:
    """A result that could not travel: of an unsupported type, or too large."""

    def __init__(self, kind: str, details: dict):
        self.kind, self.details = kind, details

    def describe(self) -> str:
        if self.kind == "too_large":
            return (f"a tensor of shape {tuple(self.details.get('shape', ()))} "
                    f"({int(self.details.get('bytes', 0)) / 2**20:.0f} MB, more than the {MAX_BYTES // 2**20} MB allowed)")
        return f"an object of type {self.details.get('type', '?')}"


def _list(value: Any) -> list:
    if not isinstance(value, list):
        raise TransportError("expected a list")
    return value


def _pair(value: Any) -> tuple:
    if not isinstance(value, list) or len(value) != 2:
        raise TransportError("expected a [key, value] pair")
    return value[0], value[1]


def save(path: str | Path, document: Any, tensors: dict) -> None:
    """Write ``document`` (JSON) and ``tensors`` to one safetensors file, atomically."""
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    save_file(tensors, str(partial), metadata={"document": json.dumps(document)})
    os.replace(partial, path)


def load(path: str | Path, max_bytes: int = MAX_BYTES + 2**20) -> tuple[Any, dict]:
    """(document, tensors) from a file written by :func:`save`; untrusted, so checked first."""
    path = Path(path)
    if not path.is_file():
        raise TransportError("no results were written")
    size = path.stat().st_size
    if size > max_bytes:
        raise TransportError(f"the results take {size / 2**20:.0f} MB, more than the {max_bytes / 2**20:.0f} MB allowed")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
        return json.loads(metadata["document"]), tensors
    except Exception as error:  # a malformed file: safetensors and json say why
        raise TransportError(f"unreadable results ({type(error).__name__}: {str(error)[:120]})") from None
