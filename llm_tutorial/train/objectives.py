"""Ready-made ``loss_fn(model, batch)`` for the trainer, one per pre-training objective.

Each one unpacks its batch, runs the model, and hands the outputs to the loss of its objective in
:mod:`llm_tutorial.losses`; no loss is defined here. The batch layouts:

- :func:`causal_lm_loss`  ``(x, y)``: inputs and next-token targets, each (B, T)
  (``llm_tutorial.data.get_batch``); the model maps (B, T) ids to (B, T, V) logits.
- :func:`seq2seq_lm_loss` ``(src, tgt_in, tgt_out)`` or ``(src, tgt_in, tgt_out, src_mask)``:
  the encoder–decoder's teacher forcing, ``model(src, tgt_in[, src_mask])`` → (B, T, V).
- :func:`masked_lm_loss`, :func:`next_sentence_loss`, :func:`bert_pretraining_loss`: a dict with
  ``input_ids`` (B, T), optional ``token_type_ids`` and ``attention_mask`` (B, T), ``labels``
  (B, T) for MLM (``llm_tutorial.data.pretraining_examples.mask_tokens``) and ``is_next`` (B,) for NSP
  (``nsp_batch``); the model returns ``mlm_logits`` and ``nsp_logits`` (:class:`~llm_tutorial.models.bert.Bert`).
- :func:`replaced_token_detection_loss`: a dict with ``input_ids`` and optional
  ``token_type_ids``/``attention_mask``; ELECTRA masks, samples and scores inside its forward
  pass (:class:`~llm_tutorial.models.electra.Electra`), drawing from the global random state,
  which checkpoints restore.
- :func:`span_qa_loss`: a dict with ``input_ids``, optional ``token_type_ids``/``attention_mask``
  and ``start_positions``/``end_positions`` (B,); the model returns ``start_logits`` and
  ``end_logits`` (:class:`~llm_tutorial.models.qa.BertForSpanQA`), scored by
  :func:`~llm_tutorial.models.qa.span_loss`.
- :func:`prefix_attribute_loss` ``(ids, labels)``: ids (B, T) and the example's attribute repeated at
  every real position, ``IGNORE_INDEX`` at padding (B, T); the model maps ids to (B, T, A) logits
  (:class:`~llm_tutorial.models.prefix_classifier.PrefixClassifier`, for guided decoding).

The causal and seq2seq losses check the targets' range only when the model checks its input ids
(``model.check_token_range``, default True). A run whose data was checked where it entered turns
that flag off, and then no step reads anything back from the device (see
:func:`llm_tutorial.losses.cross_entropy`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from ..losses import clm_loss, cross_entropy, mlm_loss, nsp_loss, seq2seq_loss
from ..models.qa import span_loss
from .batch import encoder_outputs
from .checkpoint import unwrap


def causal_lm_loss(model: nn.Module, batch: Sequence[torch.Tensor]) -> torch.Tensor:
    """Next-token cross-entropy of a decoder-only model: ``clm_loss(model(x), y)``."""
    x, y = _unpack(batch, 2, "(x, y)")
    return clm_loss(model(x), y, check_range=_checks_range(model))  # logits (B, T, V)


def seq2seq_lm_loss(model: nn.Module, batch: Sequence[torch.Tensor]) -> torch.Tensor:
    """Target-side cross-entropy of an encoder–decoder under teacher forcing."""
    src, tgt_in, tgt_out, *src_mask = _unpack(batch, (3, 4), "(src, tgt_in, tgt_out[, src_mask])")
    return seq2seq_loss(model(src, tgt_in, *src_mask), tgt_out, check_range=_checks_range(model))  # (B, T, V)


def masked_lm_loss(model: nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Cross-entropy at the masked positions: ``mlm_loss(out.mlm_logits, labels)``."""
    return mlm_loss(encoder_outputs(model, batch, "labels").mlm_logits, batch["labels"])


def next_sentence_loss(model: nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Two-way cross-entropy of "is segment B the next one?": ``nsp_loss(out.nsp_logits, is_next)``."""
    return nsp_loss(encoder_outputs(model, batch, "is_next").nsp_logits, batch["is_next"])


def bert_pretraining_loss(model: nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """BERT's pre-training loss, the sum of both objectives: ``L = L_MLM + L_NSP`` (one forward pass)."""
    out = encoder_outputs(model, batch, "labels", "is_next")
    return mlm_loss(out.mlm_logits, batch["labels"]) + nsp_loss(out.nsp_logits, batch["is_next"])


def replaced_token_detection_loss(model: nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """ELECTRA's pre-training loss ``L = L_MLM(generator) + λ · L_RTD(discriminator)``, as the
    model's forward pass computes it with ``mlm_loss`` and ``rtd_loss``."""
    return encoder_outputs(model, batch).loss


def span_qa_loss(model: nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Extractive QA: ``span_loss(out.start_logits, out.end_logits, start_positions, end_positions)``."""
    out = encoder_outputs(model, batch, "start_positions", "end_positions")
    return span_loss(out.start_logits, out.end_logits, batch["start_positions"], batch["end_positions"])


def prefix_attribute_loss(model: nn.Module, batch: Sequence[torch.Tensor]) -> torch.Tensor:
    """Cross-entropy of the attribute after every prefix: ``cross_entropy(model(ids), labels)``."""
    ids, labels = _unpack(batch, 2, "(ids, labels)")
    return cross_entropy(model(ids), labels)  # logits (B, T, A); padding carries IGNORE_INDEX


def _checks_range(model: nn.Module) -> bool:
    """The model's own ``check_token_range`` switch (inside DDP / ``torch.compile`` wrappers), else True."""
    return bool(getattr(unwrap(model), "check_token_range", True))


def _unpack(batch: object, sizes: int | tuple[int, ...], layout: str) -> tuple[torch.Tensor, ...]:
    sizes = (sizes,) if isinstance(sizes, int) else sizes
    if not isinstance(batch, (tuple, list)) or len(batch) not in sizes:
        got = f"a {type(batch).__name__} of {len(batch)}" if isinstance(batch, (tuple, list)) else type(batch).__name__
        raise ValueError(f"this objective expects a batch {layout}, got {got}")
    return tuple(batch)
