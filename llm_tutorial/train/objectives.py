"""Ready-made ``loss_fn(model, batch)`` for the trainer, one per pre-training objective.

Each one unpacks its batch, runs the model, and hands the outputs to the loss of its objective in
:mod:`llm_tutorial.losses`; no loss is defined here. The batch layouts:

- :func:`causal_lm_loss`  ``(x, y)``: inputs and next-token targets, each (B, T)
  (``llm_tutorial.data.get_batch``); the model maps (B, T) ids to (B, T, V) logits.
- :func:`seq2seq_lm_loss` ``(src, tgt_in, tgt_out)`` or ``(src, tgt_in, tgt_out, src_mask)``:
  the encoder–decoder's teacher forcing, ``model(src, tgt_in[, src_mask])`` → (B, T, V).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..losses import clm_loss, seq2seq_loss


def causal_lm_loss(model: nn.Module, batch: Sequence[torch.Tensor]) -> torch.Tensor:
    """Next-token cross-entropy of a decoder-only model: ``clm_loss(model(x), y)``."""
    x, y = _unpack(batch, 2, "(x, y)")
    return clm_loss(model(x), y)  # logits (B, T, V)


def seq2seq_lm_loss(model: nn.Module, batch: Sequence[torch.Tensor]) -> torch.Tensor:
    """Target-side cross-entropy of an encoder–decoder under teacher forcing."""
    src, tgt_in, tgt_out, *src_mask = _unpack(batch, (3, 4), "(src, tgt_in, tgt_out[, src_mask])")
    return seq2seq_loss(model(src, tgt_in, *src_mask), tgt_out)  # logits (B, T, V)


def _unpack(batch: object, sizes: int | tuple[int, ...], layout: str) -> tuple[torch.Tensor, ...]:
    sizes = (sizes,) if isinstance(sizes, int) else sizes
    if not isinstance(batch, (tuple, list)) or len(batch) not in sizes:
        got = f"a {type(batch).__name__} of {len(batch)}" if isinstance(batch, (tuple, list)) else type(batch).__name__
        raise ValueError(f"this objective expects a batch {layout}, got {got}")
    return tuple(batch)
