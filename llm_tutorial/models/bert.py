"""BERT (Devlin et al., 2019): an encoder-only Transformer pre-trained by MLM and NSP.

Unlike GPT, every position sees the whole sequence, left and right: the model reads a text to
*understand* it (classify it, tag it, find an answer span in it) rather than to continue it. A
bidirectional model cannot be trained by next-token prediction (it would see the answer), hence
the masked-LM objective; next-sentence prediction teaches it to relate two segments.

    x = LayerNorm(E_tok[ids] + E_pos[0..T-1] + E_type[token_type_ids])     (B, T, d_model)
    h = n_layer post-norm blocks (self-attention with a padding mask, GELU MLP)
    MLM logits = LayerNorm(GELU(h W_t + b_t)) E_tokᵀ + b                   (B, T, V)
    NSP logits = tanh(h[:, 0] W_p + b_p) W_nsp + b_nsp                     (B, 2)

The [CLS] position (index 0) summarises the pair for NSP through the *pooler*; the MLM decoder
reuses the token embedding matrix (weight tying) with its own output bias.

``embedding_size`` (ELECTRA's and ALBERT's trick) lets the embeddings be narrower than the
blocks: they are projected up to ``d_model`` after the LayerNorm, and the MLM transform projects
back down to ``embedding_size`` before the tied decoder. ``llm_tutorial.models.electra`` builds
its generator and discriminator from :class:`BertEncoder` and :class:`MaskedLMHead`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import (
    check_choice,
    check_divides,
    check_dtype,
    check_last_dim,
    check_positive_int,
    check_positive_number,
    check_probability,
    check_rank,
    check_token_id,
    check_token_ids,
)
from ..nn import ATTENTION_IMPLS, LayerNorm, LearnedPositionalEmbedding, TransformerBlock, padding_mask


@dataclass
class BertConfig:
    """Sizes of a BERT encoder; the defaults are BERT-base (110M parameters)."""

    vocab_size: int = 30522
    d_model: int = 768
    n_head: int = 12
    n_layer: int = 12
    d_ff: int = 3072
    max_len: int = 512  # learned positions 0 .. max_len - 1
    type_vocab_size: int = 2  # segment A = 0, segment B = 1
    dropout: float = 0.1
    norm_eps: float = 1e-12
    pad_id: int = 0
    embedding_size: int | None = None  # None: d_model (BERT); smaller: projected up (ELECTRA)
    attention_impl: str = "sdpa"

    def __post_init__(self) -> None:
        if self.embedding_size is None:
            self.embedding_size = self.d_model
        for name in ("vocab_size", "d_model", "n_head", "n_layer", "d_ff", "max_len", "type_vocab_size",
                     "embedding_size"):
            check_positive_int(getattr(self, name), name)
        check_divides(self.n_head, self.d_model, "n_head", "d_model")
        check_probability(self.dropout, "dropout", inclusive_high=False)
        check_positive_number(self.norm_eps, "norm_eps")
        check_token_id(self.pad_id, "pad_id", self.vocab_size)
        check_choice(self.attention_impl, "attention_impl", ATTENTION_IMPLS)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> BertConfig:
        """The inverse of :meth:`to_dict` (e.g. from a checkpoint's JSON)."""
        return cls(**values)


def init_bert_weights(module: nn.Module) -> None:
    """BERT's initialisation: linear and embedding weights ~ N(0, 0.02²), biases 0 (norms keep
    their gain 1 and bias 0). Apply with ``model.apply(init_bert_weights)``."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)


class BertEmbeddings(nn.Module):
    """Token + learned position + token type (segment) embeddings, then LayerNorm and dropout."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.config = config
        e = config.embedding_size
        self.token = nn.Embedding(config.vocab_size, e)
        self.position = LearnedPositionalEmbedding(config.max_len, e)
        self.token_type = nn.Embedding(config.type_vocab_size, e)
        self.norm = LayerNorm(e, eps=config.norm_eps)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        """``input_ids`` and ``token_type_ids`` (B, T), already checked -> (B, T, embedding_size)."""
        x = self.token(input_ids) + self.position(input_ids.size(1)) + self.token_type(token_type_ids)  # (B, T, e)
        return self.dropout(self.norm(x))


class BertEncoder(nn.Module):
    """Embeddings and ``n_layer`` post-norm blocks: ids (B, T) -> hidden states (B, T, d_model).

    ``embeddings`` may be given to share one :class:`BertEmbeddings` between two encoders
    (ELECTRA's generator and discriminator); it must match the config's sizes.
    """

    def __init__(self, config: BertConfig, embeddings: BertEmbeddings | None = None) -> None:
        super().__init__()
        if not isinstance(config, BertConfig):
            raise TypeError(f"config must be a BertConfig, got {type(config).__name__}")
        self.config = config
        if embeddings is None:
            embeddings = BertEmbeddings(config)
        elif not isinstance(embeddings, BertEmbeddings):
            raise TypeError(f"embeddings must be a BertEmbeddings, got {type(embeddings).__name__}")
        else:
            shared = embeddings.config
            for name in ("vocab_size", "embedding_size", "max_len", "type_vocab_size"):
                if getattr(shared, name) != getattr(config, name):
                    raise ValueError(
                        f"shared embeddings have {name}={getattr(shared, name)} but this encoder's config has "
                        f"{name}={getattr(config, name)}; shared embeddings need equal {name}"
                    )
        self.embeddings = embeddings
        e, d = config.embedding_size, config.d_model
        self.project = nn.Linear(e, d) if e != d else None  # embeddings narrower than the blocks
        self.blocks = nn.ModuleList(
            TransformerBlock.build(
                d, config.n_head, d_ff=config.d_ff, mlp="gelu", norm_first=False, norm_eps=config.norm_eps,
                dropout=config.dropout, attention_impl=config.attention_impl,
            )
            for _ in range(config.n_layer)
        )

    def check_inputs(
        self,
        input_ids: torch.Tensor,
        token_type_ids: torch.Tensor | None,
        attention_mask: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Validate the inputs and fill in the defaults: all-zero token types (one segment) and
        the mask ``input_ids != pad_id``. Returns ``(token_type_ids, attention_mask)``."""
        c = self.config
        check_rank(input_ids, "input_ids", 2, "(B, T)")
        check_token_ids(input_ids, "input_ids", c.vocab_size)
        if not 0 < input_ids.size(1) <= c.max_len:
            raise ValueError(
                f"input_ids has {input_ids.size(1)} positions; this model takes 1 to max_len={c.max_len}. "
                "Truncate the text (e.g. pack_nsp_pair(..., max_length=...)) or build a model with a larger max_len"
            )
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        check_token_ids(token_type_ids, "token_type_ids", c.type_vocab_size)
        if token_type_ids.shape != input_ids.shape:
            raise ValueError(
                f"token_type_ids must have the shape of input_ids {tuple(input_ids.shape)}, "
                f"got {tuple(token_type_ids.shape)}"
            )
        if attention_mask is None:
            attention_mask = input_ids != c.pad_id
        check_dtype(attention_mask, "attention_mask (True at real tokens; convert a 0/1 mask with .bool())", torch.bool)
        if attention_mask.shape != input_ids.shape:
            raise ValueError(
                f"attention_mask must have the shape of input_ids {tuple(input_ids.shape)}, "
                f"got {tuple(attention_mask.shape)}"
            )
        return token_type_ids, attention_mask

    def forward(
        self,
        input_ids: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``input_ids`` (B, T); ``token_type_ids`` (B, T), default all 0; ``attention_mask``
        (B, T, bool), True at real tokens, default ``input_ids != pad_id`` -> (B, T, d_model).

        Padded keys are masked out of every attention; the outputs at padded positions are
        computed but meaningless (the losses ignore them)."""
        token_type_ids, attention_mask = self.check_inputs(input_ids, token_type_ids, attention_mask)
        keys = padding_mask(attention_mask)  # (B, 1, 1, T)
        x = self.embeddings(input_ids, token_type_ids)  # (B, T, embedding_size)
        if self.project is not None:
            x = self.project(x)  # (B, T, d_model)
        for block in self.blocks:
            x = block(x, mask=keys)
        return x


class MaskedLMHead(nn.Module):
    """Hidden states (B, T, d_model) -> vocabulary logits (B, T, V), decoder tied to ``embedding``.

        logits = LayerNorm(GELU(h W_t + b_t)) Eᵀ + b

    The transform (dense, GELU, LayerNorm) maps to the embedding width; the decoder is the token
    embedding matrix E itself, with a separate bias b per vocabulary entry.
    """

    def __init__(self, d_model: int, embedding: nn.Embedding, *, norm_eps: float) -> None:
        super().__init__()
        if not isinstance(embedding, nn.Embedding):
            raise TypeError(f"embedding must be the nn.Embedding to tie the decoder to, got {type(embedding).__name__}")
        self.d_model = check_positive_int(d_model, "d_model")
        vocab_size, e = embedding.weight.shape
        self.dense = nn.Linear(d_model, e)
        self.norm = LayerNorm(e, eps=norm_eps)
        self.decoder = nn.Linear(e, vocab_size)
        self.decoder.weight = embedding.weight  # weight tying

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        check_last_dim(hidden, "hidden", self.d_model)
        transformed = self.norm(F.gelu(self.dense(hidden)))  # (B, T, embedding_size)
        return self.decoder(transformed)  # (B, T, V)


class BertPooler(nn.Module):
    """The [CLS] summary for sentence-level tasks: tanh(h[:, 0] W_p + b_p), (B, d_model)."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.dense = nn.Linear(d_model, d_model)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(hidden[:, 0]))  # (B, T, d) -> (B, d)


class BertOutput(NamedTuple):
    mlm_logits: torch.Tensor  # (B, T, V)
    nsp_logits: torch.Tensor  # (B, 2): index 1 = "segment B is the next one"
    hidden: torch.Tensor  # (B, T, d_model), the encoder's output (for fine-tuning heads)


class Bert(nn.Module):
    """BERT for pre-training: encoder, MLM head and NSP head (``BertForPreTraining`` in HF terms).

    Train with ``mlm_loss(out.mlm_logits, labels) + nsp_loss(out.nsp_logits, is_next)`` from
    ``llm_tutorial.losses``, on examples from ``llm_tutorial.data.pretraining_examples``.
    """

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = BertEncoder(config)
        self.pooler = BertPooler(config.d_model)
        self.mlm_head = MaskedLMHead(config.d_model, self.encoder.embeddings.token, norm_eps=config.norm_eps)
        self.nsp_head = nn.Linear(config.d_model, 2)
        self.apply(init_bert_weights)

    def forward(
        self,
        input_ids: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> BertOutput:
        """``input_ids`` (B, T), ``token_type_ids`` (B, T) and ``attention_mask`` (B, T, bool) as
        in :meth:`BertEncoder.forward` -> :class:`BertOutput`."""
        hidden = self.encoder(input_ids, token_type_ids, attention_mask)  # (B, T, d_model)
        return BertOutput(self.mlm_head(hidden), self.nsp_head(self.pooler(hidden)), hidden)

    def num_parameters(self, non_embedding: bool = False) -> int:
        """Number of parameters (the tied decoder counts once). ``non_embedding=True`` leaves out
        the token, position and token-type tables."""
        total = sum(p.numel() for p in self.parameters())
        if non_embedding:
            total -= sum(p.numel() for p in self.encoder.embeddings.parameters() if p.dim() == 2)
        return total
