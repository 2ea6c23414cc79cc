"""The encoder–decoder Transformer of "Attention Is All You Need" (Vaswani et al., 2017).

The encoder reads the whole source sentence at once, every position attending to every other;
the decoder writes the target one token at a time, each position attending to the earlier target
tokens (causal self-attention) and to the encoder's output (cross-attention):

    memory  = Encoder(E_src[x] · √d_model + PE)                    (B, S, d_model)
    h       = Decoder(E_tgt[y_<t] · √d_model + PE, memory)         (B, T, d_model)
    p(y_t | y_<t, x) = softmax(h W_outᵀ)                           (B, T, V_tgt)

As in the paper: post-norm blocks (``x ← LayerNorm(x + Dropout(F(x)))``), ReLU feed-forward
networks, fixed sinusoidal positions, embeddings multiplied by √d_model, and the pre-softmax
projection tied to the target embedding. ``share_embeddings`` also ties the source embedding to
the target one (the paper's setting, which needs one vocabulary for both languages).

For decoding, :meth:`Transformer.encode` runs the encoder once and :meth:`Transformer.decode`
runs the decoder on a target prefix: call it on the growing prefix (recomputation), or feed one
token at a time with a cache from :meth:`Transformer.new_cache` (the decoder's self-attention
keys and values are kept; cross-attention recomputes its keys from ``memory``).
"""

from __future__ import annotations

import math
import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
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
from ..nn import ACTIVATIONS, ATTENTION_IMPLS, KVCache, SinusoidalPositionalEncoding, TransformerBlock, padding_mask


@dataclass
class TransformerConfig:
    """Sizes of the encoder–decoder; the defaults are the paper's base model (65M parameters)."""

    src_vocab_size: int
    tgt_vocab_size: int
    d_model: int = 512
    n_head: int = 8
    n_encoder_layer: int = 6
    n_decoder_layer: int = 6
    d_ff: int = 2048
    dropout: float = 0.1
    max_len: int = 256  # the longest source or target sequence (positions 0 .. max_len - 1)
    pad_id: int = 0  # padding in source batches; masked out of attention
    share_embeddings: bool = False  # one table for source and target tokens (a joint vocabulary)
    tie_output: bool = True  # the pre-softmax projection reuses the target embedding
    activation: str = "relu"
    norm_eps: float = 1e-5
    attention_impl: str = "sdpa"

    def __post_init__(self) -> None:
        for name in ("src_vocab_size", "tgt_vocab_size", "d_model", "n_head", "n_encoder_layer",
                     "n_decoder_layer", "d_ff", "max_len"):
            check_positive_int(getattr(self, name), name)
        check_divides(self.n_head, self.d_model, "n_head", "d_model")
        if self.d_model % 2:
            raise ValueError(f"d_model must be even for sinusoidal positions (sine/cosine pairs), got {self.d_model}")
        check_probability(self.dropout, "dropout", inclusive_high=False)
        smaller_vocab = min(self.src_vocab_size, self.tgt_vocab_size)
        check_token_id(self.pad_id, "pad_id", smaller_vocab, hint=" (a token of both vocabularies)")
        if self.share_embeddings and self.src_vocab_size != self.tgt_vocab_size:
            raise ValueError(
                f"share_embeddings needs one vocabulary for source and target, got "
                f"src_vocab_size={self.src_vocab_size} and tgt_vocab_size={self.tgt_vocab_size}; "
                "train a joint tokenizer or set share_embeddings=False"
            )
        check_choice(self.activation, "activation", ACTIVATIONS)
        check_choice(self.attention_impl, "attention_impl", ATTENTION_IMPLS)
        for name in ("share_embeddings", "tie_output"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be True or False, got {getattr(self, name)!r}")
        check_positive_number(self.norm_eps, "norm_eps")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TransformerConfig:
        """The inverse of :meth:`to_dict` (e.g. from a checkpoint's JSON)."""
        return cls(**values)


class Transformer(nn.Module):
    """Encoder–decoder: source ids (B, S) and target prefix ids (B, T) -> target logits (B, T, V_tgt)."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        if not isinstance(config, TransformerConfig):
            raise TypeError(f"config must be a TransformerConfig, got {type(config).__name__}")
        self.config = config
        d = config.d_model
        self.src_embed = nn.Embedding(config.src_vocab_size, d)
        self.tgt_embed = self.src_embed if config.share_embeddings else nn.Embedding(config.tgt_vocab_size, d)
        self.positions = SinusoidalPositionalEncoding(d, config.max_len)
        self.embed_dropout = nn.Dropout(config.dropout)
        self.encoder = nn.ModuleList([self._block(cross_attention=False) for _ in range(config.n_encoder_layer)])
        self.decoder = nn.ModuleList([self._block(cross_attention=True) for _ in range(config.n_decoder_layer)])
        self.lm_head = nn.Linear(d, config.tgt_vocab_size, bias=False)
        self._init_weights()
        if config.tie_output:
            self.lm_head.weight = self.tgt_embed.weight  # weight tying (Press & Wolf, 2017)

    def _block(self, *, cross_attention: bool) -> TransformerBlock:
        c = self.config
        return TransformerBlock.build(
            c.d_model, c.n_head, d_ff=c.d_ff, mlp=c.activation, norm_first=False, cross_attention=cross_attention,
            norm_eps=c.norm_eps, dropout=c.dropout, attention_impl=c.attention_impl,
        )

    def _init_weights(self) -> None:
        """Xavier-uniform matrices; embeddings N(0, 1/d_model), so that after the √d_model scale
        a token vector has unit variance per coordinate, the scale of the positional encoding."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, std=self.config.d_model**-0.5)

    def num_parameters(self, non_embedding: bool = False) -> int:
        """Number of parameters, each shared tensor counted once. ``non_embedding=True`` leaves
        out the token embedding tables (the sinusoidal positions are a buffer, not parameters);
        an untied output projection is counted."""
        total = sum(p.numel() for p in self.parameters())
        if non_embedding:
            tables = {id(table.weight): table.weight for table in (self.src_embed, self.tgt_embed)}
            total -= sum(t.numel() for t in tables.values())
        return total

    def _embed(self, ids: torch.Tensor, table: nn.Embedding, offset: int = 0) -> torch.Tensor:
        """x = E[ids] · √d_model + PE[offset : offset + T], then dropout."""
        x = table(ids) * math.sqrt(self.config.d_model)  # (B, T, d_model)
        x = x + self.positions(ids.size(1), offset)  # (T, d_model) broadcasts over B
        return self.embed_dropout(x)

    def _check_ids(self, ids: torch.Tensor, name: str, vocab_size: int, offset: int = 0) -> None:
        check_rank(ids, name, 2, "(B, T) token ids")
        check_token_ids(ids, name, vocab_size)
        if ids.size(1) == 0:
            raise ValueError(f"{name} must hold at least one token per sequence, got shape {tuple(ids.shape)}")
        if offset + ids.size(1) > self.config.max_len:
            raise ValueError(
                f"{name} reaches position {offset + ids.size(1) - 1}, beyond max_len={self.config.max_len}; "
                "shorten or split the sequence, or build the model with a larger max_len"
            )

    def _source_mask(self, src: torch.Tensor, src_mask: torch.Tensor | None) -> torch.Tensor:
        """The (B, S) boolean mask of real source tokens: given, or ``src != pad_id``."""
        if src_mask is None:
            return src != self.config.pad_id
        _check_source_mask(src_mask, tuple(src.shape))
        return src_mask

    def encode(self, src: torch.Tensor, src_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Source ids (B, S) -> memory (B, S, d_model).

        ``src_mask`` (B, S, bool) marks real tokens; by default every token that is not
        ``pad_id``. Padded keys are masked out of attention, so the outputs at real positions do
        not depend on how much padding a batch has.
        """
        self._check_ids(src, "src", self.config.src_vocab_size)
        keys = padding_mask(self._source_mask(src, src_mask))  # (B, 1, 1, S)
        x = self._embed(src, self.src_embed)  # (B, S, d_model)
        for block in self.encoder:
            x = block(x, mask=keys)
        return x

    def decode(
        self,
        tgt_in: torch.Tensor,
        memory: torch.Tensor,
        src_mask: torch.Tensor | None = None,
        *,
        cache: KVCache | None = None,
    ) -> torch.Tensor:
        """Target prefix ids (B, T) and ``memory`` (B, S, d_model) -> next-token logits (B, T, V_tgt).

        ``src_mask`` (B, S, bool) is the source mask used by :meth:`encode` (give it whenever
        the source had padding, so cross-attention skips the padded keys). Target padding needs
        no mask: it comes after the real tokens, and causal attention never looks ahead.
        With ``cache`` (from :meth:`new_cache`), ``tgt_in`` holds only the new tokens, which sit
        at positions ``cache.length, cache.length + 1, …``.
        """
        check_rank(memory, "memory", 3, "(B, S, d_model)")
        check_last_dim(memory, "memory", self.config.d_model)
        if cache is not None and not isinstance(cache, KVCache):
            raise TypeError(f"cache must be a KVCache from model.new_cache(batch_size), got {type(cache).__name__}")
        offset = cache.length if cache is not None else 0
        self._check_ids(tgt_in, "tgt_in", self.config.tgt_vocab_size, offset)
        if memory.size(0) != tgt_in.size(0):
            raise ValueError(f"memory has batch size {memory.size(0)} but tgt_in has {tgt_in.size(0)}")
        keys = None
        if src_mask is not None:
            _check_source_mask(src_mask, tuple(memory.shape[:2]))
            keys = padding_mask(src_mask)  # (B, 1, 1, S)
        x = self._embed(tgt_in, self.tgt_embed, offset)  # (B, T, d_model)
        for i, block in enumerate(self.decoder):
            x = block(x, is_causal=True, cache=cache[i] if cache is not None else None, memory=memory, memory_mask=keys)
        return self.lm_head(x)  # (B, T, V_tgt)

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor, src_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Teacher forcing: source ids (B, S) and target inputs (B, T) -> logits (B, T, V_tgt).

        ``tgt_in`` is the target shifted right (``[BOS] y_1 … y_{T-1}``); train the logits
        against ``y_1 … y_T`` with ``llm_tutorial.losses.seq2seq_loss``.
        """
        self._check_ids(src, "src", self.config.src_vocab_size)
        src_mask = self._source_mask(src, src_mask)
        return self.decode(tgt_in, self.encode(src, src_mask), src_mask)

    def cross_attention_maps(
        self, src: torch.Tensor, tgt_in: torch.Tensor, src_mask: torch.Tensor | None = None
    ) -> list[torch.Tensor]:
        """Each decoder layer's cross-attention weights ``(B, n_head, T, S)`` under teacher forcing:
        row t says how much the decoder, writing target token t + 1, reads each source position.

        The weights come from the explicit attention path (the fused kernels never form them);
        padded source positions get weight 0 and each row sums to 1.
        """
        attentions = [block.cross_attn for block in self.decoder]
        for attn in attentions:
            attn.keep_weights = True
        try:
            self(src, tgt_in, src_mask)
            return [attn.weights for attn in attentions]
        finally:
            for attn in attentions:
                attn.keep_weights, attn.weights = False, None

    def new_cache(self, batch_size: int, max_len: int | None = None) -> KVCache:
        """An empty decoder self-attention cache for ``batch_size`` sequences of up to ``max_len``
        target tokens (default: the model's ``max_len``), on the model's device and dtype."""
        c = self.config
        max_len = c.max_len if max_len is None else check_positive_int(max_len, "max_len")
        if max_len > c.max_len:
            raise ValueError(f"max_len {max_len} exceeds the model's max_len {c.max_len}")
        weight = self.lm_head.weight
        return KVCache(
            c.n_decoder_layer, check_positive_int(batch_size, "batch_size"), c.n_head, max_len,
            c.d_model // c.n_head, device=weight.device, dtype=weight.dtype,
        )


def _check_source_mask(src_mask: torch.Tensor, shape: tuple[int, int]) -> None:
    """``src_mask`` must be a boolean (B, S) tensor of the source's ``shape``, True at real tokens."""
    check_rank(src_mask, "src_mask", 2, "(B, S), True at real tokens")
    check_dtype(src_mask, "src_mask", torch.bool)
    if tuple(src_mask.shape) != shape:
        raise ValueError(f"src_mask must have the shape of src, (B, S) = {shape}, got {tuple(src_mask.shape)}")
