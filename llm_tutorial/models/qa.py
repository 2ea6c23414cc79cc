"""Extractive question answering: the answer is a span of the context, found by pointing at it.

Reading comprehension in the style of SQuAD (Rajpurkar et al., 2016), solved as BERT does it
(Devlin et al., 2019, §4.2). The question and the context are packed into one sequence,

    [CLS] question [SEP] context [SEP]            token types  0 … 0  1 … 1

and the encoder's hidden states ``h`` (B, T, d_model) go through a single linear layer that gives
every token two scores, "the answer starts here" and "the answer ends here":

    [s_i, e_i] = h_i W + b,      W ∈ R^{d_model × 2}                    s, e: (B, T)
    p_start(i) = softmax(s)_i,   p_end(j) = softmax(e)_j

Training maximises the likelihood of the true first and last token (i*, j*), two cross-entropies
averaged (:func:`span_loss`):

    L = −½ [ log p_start(i*) + log p_end(j*) ]

The answer predicted (:func:`best_span`) is the span with the highest score

    (î, ĵ) = argmax_{i ≤ j < i + max_answer_length} s_i + e_j

over the positions allowed to hold an answer (the context's tokens), which is the most likely span
if start and end are treated as independent: log p_start(i) + log p_end(j) = s_i + e_j − const.
Nothing is generated, so the answer is always text of the context, which is the strength
(no invented answers) and the limit (no answer that is not written there) of extractive QA.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from .._checks import check_dtype, check_last_dim, check_positive_int, check_rank, check_tensor
from ..losses import cross_entropy
from .bert import Bert, BertConfig, BertEncoder, init_bert_weights


class SpanQAHead(nn.Module):
    """Hidden states (B, T, d_model) -> start and end logits, (B, T) each: ``[s, e] = h W + b``."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.d_model = check_positive_int(d_model, "d_model")
        self.score = nn.Linear(d_model, 2)  # column 0 scores starts, column 1 ends

    def forward(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        check_rank(hidden, "hidden", 3, "(B, T, d_model)")
        check_last_dim(hidden, "hidden", self.d_model)
        start_logits, end_logits = self.score(hidden).unbind(dim=-1)  # (B, T, 2) -> (B, T) each
        return start_logits, end_logits


class QAOutput(NamedTuple):
    start_logits: torch.Tensor  # (B, T): s_i, "the answer starts at token i"
    end_logits: torch.Tensor  # (B, T): e_j, "the answer ends at token j"
    hidden: torch.Tensor  # (B, T, d_model), the encoder's output


class BertForSpanQA(nn.Module):
    """A BERT encoder with a :class:`SpanQAHead` (``BertForQuestionAnswering`` in Hugging Face's
    terms). ``encoder`` may be given to fine-tune a pre-trained one (e.g. ``Bert(...).encoder``
    after masked-LM pre-training); otherwise a fresh encoder is built from ``config``."""

    def __init__(self, config: BertConfig, encoder: BertEncoder | None = None) -> None:
        super().__init__()
        if not isinstance(config, BertConfig):
            raise TypeError(f"config must be a BertConfig, got {type(config).__name__}")
        if encoder is not None and not isinstance(encoder, BertEncoder):
            raise TypeError(f"encoder must be a BertEncoder, got {type(encoder).__name__}")
        if encoder is not None and encoder.config != config:
            raise ValueError(f"encoder was built with {encoder.config}, which differs from config {config}")
        self.config = config
        self.encoder = encoder if encoder is not None else BertEncoder(config)
        self.head = SpanQAHead(config.d_model)
        if encoder is None:
            self.apply(init_bert_weights)
        else:
            self.head.apply(init_bert_weights)  # keep the pre-trained encoder's weights

    @classmethod
    def from_pretrained(cls, pretrained: Bert | BertEncoder) -> BertForSpanQA:
        """A reader that starts from a pre-trained model: a *copy* of its encoder's weights
        (embeddings and blocks) and a freshly initialised span head.

        Pre-training heads (the masked-LM decoder, the pooler and NSP) are left behind: they were
        trained for another question. The copy leaves ``pretrained`` as it was, so one
        pre-training run can be fine-tuned several times (other seeds, other tasks); passing
        ``encoder=`` to the constructor instead fine-tunes the very same modules in place."""
        if isinstance(pretrained, Bert):
            pretrained = pretrained.encoder
        if not isinstance(pretrained, BertEncoder):
            raise TypeError(f"pretrained must be a Bert or a BertEncoder, got {type(pretrained).__name__}")
        reader = cls(pretrained.config)
        reader.encoder.load_state_dict(pretrained.state_dict())
        return reader.to(next(pretrained.parameters()).device)

    def forward(
        self,
        input_ids: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> QAOutput:
        """``input_ids`` (B, T), ``token_type_ids`` (B, T) and ``attention_mask`` (B, T, bool)
        as in :meth:`BertEncoder.forward` -> :class:`QAOutput`."""
        hidden = self.encoder(input_ids, token_type_ids, attention_mask)  # (B, T, d_model)
        start_logits, end_logits = self.head(hidden)  # (B, T) each
        return QAOutput(start_logits, end_logits, hidden)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def span_loss(
    start_logits: torch.Tensor,
    end_logits: torch.Tensor,
    start_positions: torch.Tensor,
    end_positions: torch.Tensor,
) -> torch.Tensor:
    """``L = −½ [log softmax(s)_{i*} + log softmax(e)_{j*}]``, averaged over the batch.

    ``start_logits`` and ``end_logits`` are (B, T); ``start_positions`` and ``end_positions``
    (B,) hold each answer's first and last token index (inclusive)."""
    _check_span_logits(start_logits, end_logits)
    for name, positions in (("start_positions", start_positions), ("end_positions", end_positions)):
        check_rank(positions, name, 1, "(B,) token indices")
        if positions.size(0) != start_logits.size(0):
            raise ValueError(f"{name} must have one index per sequence ({start_logits.size(0)}), "
                             f"got {positions.size(0)}")
    if bool((start_positions > end_positions).any()):
        raise ValueError("every answer must end at or after its start: some start_positions exceed end_positions")
    return 0.5 * (cross_entropy(start_logits, start_positions) + cross_entropy(end_logits, end_positions))


def best_span(
    start_logits: torch.Tensor,
    end_logits: torch.Tensor,
    allowed: torch.Tensor,
    max_answer_length: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The span ``(î, ĵ)`` of each sequence maximising ``s_i + e_j`` with ``i ≤ j < i + max_answer_length``
    and both ``allowed`` (B, T, bool; True at the context's tokens). Returns two (B,) tensors of
    token indices, the answer's first and last token (inclusive)."""
    _check_span_logits(start_logits, end_logits)
    check_tensor(allowed, "allowed")
    check_dtype(allowed, "allowed (True where an answer may start or end)", torch.bool)
    if allowed.shape != start_logits.shape:
        raise ValueError(f"allowed must have the shape of the logits {tuple(start_logits.shape)}, "
                         f"got {tuple(allowed.shape)}")
    if not bool(allowed.any(dim=1).all()):
        raise ValueError("every sequence needs at least one allowed position (a context token) to answer from")
    check_positive_int(max_answer_length, "max_answer_length")
    B, T = start_logits.shape
    scores = start_logits.unsqueeze(2) + end_logits.unsqueeze(1)  # (B, T, T): s_i + e_j at [b, i, j]
    offset = torch.arange(T, device=scores.device)
    width = offset.unsqueeze(0) - offset.unsqueeze(1)  # (T, T): j − i
    valid = (width >= 0) & (width < max_answer_length)  # (T, T)
    valid = valid & allowed.unsqueeze(2) & allowed.unsqueeze(1)  # (B, T, T)
    flat = scores.masked_fill(~valid, float("-inf")).view(B, T * T).argmax(dim=-1)  # (B,)
    return flat // T, flat % T


def _check_span_logits(start_logits: torch.Tensor, end_logits: torch.Tensor) -> None:
    """Start and end logits must be two (B, T) tensors of one shape."""
    check_rank(start_logits, "start_logits", 2, "(B, T)")
    if end_logits.shape != start_logits.shape:
        raise ValueError(f"end_logits must have the shape of start_logits {tuple(start_logits.shape)}, "
                         f"got {tuple(end_logits.shape)}")
