"""What the trainer accepts as a batch: a tensor, or a tuple/list/dict of them, nested freely.

``(x, y)`` for a causal LM, a named tuple of ids, types, mask and labels for BERT, a dict for
anything else: the trainer only ever needs to move a batch to a device, split it between
processes, and count its tokens, so it treats every form through the two helpers below. The
encoder objectives (BERT, ELECTRA, span QA) take a dict batch and call their model through
:func:`encoder_outputs`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

Batch = Any


def map_tensors(batch: Batch, fn: Callable[[torch.Tensor], torch.Tensor]) -> Batch:
    """``batch`` with ``fn`` applied to every tensor inside it, structure kept."""
    if isinstance(batch, torch.Tensor):
        return fn(batch)
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        return type(batch)(*(map_tensors(item, fn) for item in batch))
    if isinstance(batch, (tuple, list)):
        return type(batch)(map_tensors(item, fn) for item in batch)
    if isinstance(batch, dict):
        return {key: map_tensors(value, fn) for key, value in batch.items()}
    raise TypeError(f"a batch must be a tensor or a tuple/list/dict of tensors, got {type(batch).__name__}")


def leading_tensor(batch: Batch) -> torch.Tensor:
    """The inputs of a batch, whose element count is the batch's token count: ``input_ids`` of a
    dict that has them, else the first tensor."""
    if isinstance(batch, torch.Tensor):
        return batch
    if isinstance(batch, (tuple, list)) and batch:
        return leading_tensor(batch[0])
    if isinstance(batch, dict) and batch:
        return leading_tensor(batch["input_ids"] if "input_ids" in batch else next(iter(batch.values())))
    raise TypeError(f"a batch must be a tensor or a non-empty tuple/list/dict of tensors, got {type(batch).__name__}")


def encoder_outputs(model: nn.Module, batch: Mapping[str, torch.Tensor], *needed: str) -> Any:
    """``model(input_ids, token_type_ids, attention_mask)`` on a dict batch, after checking that
    it holds ``input_ids`` and every key in ``needed`` (the labels the caller's loss reads)."""
    if not isinstance(batch, Mapping):
        raise ValueError(f"this objective expects a dict batch with input_ids and {', '.join(needed)}, "
                         f"got {type(batch).__name__}")
    missing = [key for key in ("input_ids", *needed) if key not in batch]
    if missing:
        raise ValueError(f"the batch lacks {missing}; it has {sorted(batch)}")
    return model(batch["input_ids"], batch.get("token_type_ids"), batch.get("attention_mask"))
