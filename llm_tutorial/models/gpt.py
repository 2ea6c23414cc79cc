"""GPT: a decoder-only Transformer language model, in the GPT-2 and the Llama style.

A GPT reads token ids ``(B, T)`` and returns, at every position t, logits over the vocabulary for
token t + 1 (Radford et al., 2018, 2019). Causal self-attention lets position t see positions ≤ t
only, so one forward pass trains all T next-token predictions at once:

    x_0 = E[idx] (+ P[positions])          token (and learned/sinusoidal position) embeddings
    x_l = Block_l(x_{l−1}),  l = 1..L       pre-norm blocks: x + Attn(Norm(x)), x + MLP(Norm(x))
    logits = Norm(x_L) Wᵀ                   W = E when the embeddings are tied

Two presets fix the architectural choices; sizes can be overridden:

- ``"gpt2"`` (Radford et al., 2019): learned positions, LayerNorm, GELU (tanh approximation),
  biases everywhere, output layer tied to the token embedding.
- ``"llama"`` (Touvron et al., 2023): rotary positions (RoPE), RMSNorm, SwiGLU, no biases,
  grouped-query attention (fewer key/value heads than query heads), untied output layer.

The model returns logits only; the losses live in :mod:`llm_tutorial.losses`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from llm_tutorial._checks import (
    check_bool,
    check_choice,
    check_divides,
    check_number,
    check_positive_int,
    check_positive_number,
    check_probability,
    check_rank,
    check_token_ids,
)
from llm_tutorial.nn import (
    ATTENTION_IMPLS,
    MLPS,
    NORMS,
    KVCache,
    LearnedPositionalEmbedding,
    RotaryEmbedding,
    SinusoidalPositionalEncoding,
    TransformerBlock,
    build_norm,
    default_d_ff,
)

POSITIONS = ("learned", "rope", "sinusoidal")

GPT_PRESETS: dict[str, dict[str, Any]] = {
    "gpt2": dict(
        vocab_size=50257, context_length=1024, n_layer=12, n_head=12, n_kv_head=None, d_model=768,
        norm="layernorm", norm_eps=1e-5, mlp="gelu_tanh", position="learned", bias=True, tie_embeddings=True,
    ),
    "llama": dict(
        vocab_size=32000, context_length=2048, n_layer=12, n_head=12, n_kv_head=4, d_model=768,
        norm="rmsnorm", norm_eps=1e-5, mlp="swiglu", position="rope", rope_base=10000.0, bias=False,
        tie_embeddings=False,
    ),
}


@dataclass
class GPTConfig:
    """Everything that defines a GPT's architecture; plain JSON-serialisable values only.

    The defaults are GPT-2 small (124M parameters). ``n_kv_head`` (default ``n_head``) sets
    grouped-query attention; ``d_ff`` defaults to 4·d_model, or ⅔ of that for SwiGLU. ``norm`` in
    ``("layernorm", "rmsnorm")``, ``mlp`` in ``("gelu", "gelu_tanh", "relu", "swiglu")``,
    ``position`` in ``("learned", "rope", "sinusoidal")``, ``attention_impl`` in
    ``("explicit", "sdpa", "triton")``.
    """

    vocab_size: int = 50257
    context_length: int = 1024
    n_layer: int = 12
    n_head: int = 12
    n_kv_head: int | None = None
    d_model: int = 768
    d_ff: int | None = None
    dropout: float = 0.0
    bias: bool = True
    norm: str = "layernorm"
    norm_eps: float = 1e-5
    mlp: str = "gelu_tanh"
    position: str = "learned"
    rope_base: float = 10000.0
    tie_embeddings: bool = True
    attention_impl: str = "sdpa"

    def __post_init__(self) -> None:
        for name in ("vocab_size", "context_length", "n_layer", "n_head", "d_model"):
            check_positive_int(getattr(self, name), name)
        if self.n_kv_head is None:
            self.n_kv_head = self.n_head
        check_positive_int(self.n_kv_head, "n_kv_head")
        check_divides(self.n_head, self.d_model, "n_head", "d_model")
        check_divides(self.n_kv_head, self.n_head, "n_kv_head", "n_head")
        check_choice(self.norm, "norm", NORMS)
        check_choice(self.mlp, "mlp", MLPS)
        check_choice(self.position, "position", POSITIONS)
        check_choice(self.attention_impl, "attention_impl", ATTENTION_IMPLS)
        if self.d_ff is None:
            self.d_ff = default_d_ff(self.mlp, self.d_model)
        check_positive_int(self.d_ff, "d_ff")
        check_probability(self.dropout, "dropout", inclusive_high=False)
        check_bool(self.bias, "bias")
        check_bool(self.tie_embeddings, "tie_embeddings")
        check_positive_number(self.norm_eps, "norm_eps")  # NaN or ∞ would make every logit NaN
        check_number(self.rope_base, "rope_base", 1, above=True, hint=" (10000 in the papers)")
        if self.position == "rope" and self.head_dim % 2:
            raise ValueError(
                f"RoPE rotates pairs of coordinates, so head_dim = d_model / n_head must be even, got {self.head_dim}"
            )
        if self.position == "sinusoidal" and self.d_model % 2:
            raise ValueError(f"sinusoidal positions need an even d_model, got {self.d_model}")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> GPTConfig:
        """The ``"gpt2"`` or ``"llama"`` architecture, with any field overridden, e.g.
        ``GPTConfig.preset("llama", n_layer=4, n_head=4, n_kv_head=2, d_model=128)``."""
        check_choice(name, "preset", tuple(GPT_PRESETS))
        _check_field_names(overrides, f"GPTConfig.preset({name!r}, ...)")
        return cls(**{**GPT_PRESETS[name], **overrides})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> GPTConfig:
        """The inverse of :meth:`to_dict` (e.g. from a checkpoint's JSON)."""
        if not isinstance(values, Mapping):
            raise TypeError(f"GPTConfig.from_dict takes a dict of GPTConfig fields (as to_dict gives), "
                            f"got {type(values).__name__}")
        _check_field_names(values, "GPTConfig.from_dict")
        return cls(**values)


def _check_field_names(values: dict[str, Any], where: str) -> None:
    known = {field.name for field in dataclasses.fields(GPTConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{where} got unknown GPTConfig field(s) {unknown}; the fields are {sorted(known)}")


class GPT(nn.Module):
    """A decoder-only Transformer: token ids ``(B, T)`` -> next-token logits ``(B, T, vocab_size)``.

    Initialisation (GPT-2's): every linear and embedding weight ~ N(0, 0.02²), biases 0, norm
    gains 1; the two projections that write into the residual stream in each block
    (``attn.out_proj`` and ``mlp.down``) get std 0.02/√(2·n_layer), so that the sum of 2·n_layer
    residual contributions keeps roughly unit scale at any depth.

    ``check_token_range`` (default True) checks that every id is below ``vocab_size``. That check
    reads the tensor's min and max back to the host, a synchronisation that stalls a GPU; a
    training loop whose data is known to be in range can set it to False (the package's causal
    and seq2seq losses then skip their label check too). With the check off, an out-of-range id
    is a ``ValueError`` naming this switch on a CPU, and a device-side assert on a GPU.
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise TypeError(f"config must be a GPTConfig, got {type(config).__name__}")
        self.config = config
        self.check_token_range = True
        self.token_embedding = nn.Embedding(config.vocab_size, config.d_model)
        self.position = _make_position_embedding(config)
        self.rotary = (
            RotaryEmbedding(config.head_dim, config.context_length, base=config.rope_base)
            if config.position == "rope" else None
        )
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(
            TransformerBlock.build(
                config.d_model, config.n_head, d_ff=config.d_ff, n_kv_head=config.n_kv_head, norm=config.norm,
                mlp=config.mlp, norm_first=True, bias=config.bias, norm_eps=config.norm_eps,
                dropout=config.dropout, attention_impl=config.attention_impl,
            )
            for _ in range(config.n_layer)
        )
        self.final_norm = build_norm(config.norm, config.d_model, eps=config.norm_eps, bias=config.bias)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        if config.tie_embeddings:
            # Weight tying (Press & Wolf, 2017): reading a token in and writing it out share one matrix.
            self.lm_head.weight = self.token_embedding.weight
        self.apply(self._init_weights)
        residual_std = 0.02 / math.sqrt(2 * config.n_layer)
        for name, param in self.named_parameters():
            if name.endswith(("attn.out_proj.weight", "mlp.down.weight")):
                nn.init.normal_(param, mean=0.0, std=residual_std)

    def forward(self, idx: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """Logits ``(B, T, vocab_size)`` for token ids ``idx`` ``(B, T)``.

        With a ``cache`` (from :meth:`new_cache`), ``idx`` holds only the *new* tokens, at
        positions ``cache.length, …``; their keys and values are added to the cache. Feeding a
        sequence in pieces this way gives the same logits as one full pass.
        """
        x = self.hidden_states(idx, cache)  # (B, T, d_model)
        return self.lm_head(x)  # (B, T, vocab_size)

    def hidden_states(
        self, idx: torch.Tensor, cache: KVCache | None = None, *, all_layers: bool = False
    ) -> torch.Tensor | list[torch.Tensor]:
        """Embed, run the blocks, normalise: the final hidden states ``(B, T, d_model)``, what
        ``lm_head`` reads. With ``all_layers=True``, a list of ``n_layer + 1`` tensors: the
        embeddings, the output of each block, the last one normalised (Hugging Face's layout)."""
        offset = self._check_input(idx, cache)  # the position of idx's first token
        T = idx.size(1)
        try:
            x = self.token_embedding(idx)  # (B, T, d_model)
        except IndexError as error:  # only reachable with check_token_range=False (on a GPU: a device assert)
            raise ValueError(f"idx holds a token id outside [0, {self.config.vocab_size}); check_token_range is False, "
                             "so it was not checked: set model.check_token_range = True to see which") from error
        if self.position is not None:
            x = x + self.position(T, offset)  # (T, d_model) broadcast over the batch
        x = self.drop(x)
        rope = self.rotary(T, offset) if self.rotary is not None else None  # (T, head_dim/2) each
        layers = [x]
        for i, block in enumerate(self.blocks):
            x = block(x, is_causal=True, cache=None if cache is None else cache[i], rope=rope)  # (B, T, d_model)
            layers.append(x)
        x = self.final_norm(x)
        layers[-1] = x
        return layers if all_layers else x

    def attention_maps(self, idx: torch.Tensor) -> list[torch.Tensor]:
        """Each layer's attention weights ``(B, n_head, T, T)`` (computed by the explicit path)."""
        attentions = [block.attn for block in self.blocks]
        for attn in attentions:
            attn.keep_weights = True
        try:
            self.hidden_states(idx)
            return [attn.weights for attn in attentions]
        finally:
            for attn in attentions:
                attn.keep_weights, attn.weights = False, None

    def _check_input(self, idx: torch.Tensor, cache: KVCache | None) -> int:
        """Validate ``idx`` and ``cache``; return the position of ``idx``'s first token."""
        check_rank(idx, "idx", 2, "(B, T) token ids")
        if idx.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"idx must hold integer token ids (torch.long), got {str(idx.dtype).replace('torch.', '')}")
        if self.check_token_range:
            check_token_ids(idx, "idx", self.config.vocab_size)
        B, T = idx.shape
        if T == 0:
            raise ValueError("idx has no tokens (T = 0); give at least one token per sequence")
        offset = 0
        if cache is not None:
            if not isinstance(cache, KVCache):
                raise TypeError(f"cache must be a KVCache from model.new_cache(batch_size), got {type(cache).__name__}")
            if len(cache) != self.config.n_layer:
                raise ValueError(f"cache has {len(cache)} layers but the model has {self.config.n_layer}")
            if cache.batch_size != B:
                raise ValueError(f"the cache was made for batch size {cache.batch_size}, got idx with batch size {B}")
            offset = cache.length
        if offset + T > self.config.context_length:
            raise ValueError(
                f"sequence of {offset + T} tokens ({offset} cached + {T} new) is longer than the context length "
                f"{self.config.context_length}; crop it to the last {self.config.context_length} tokens"
            )
        if cache is not None and offset + T > cache.max_len:
            raise ValueError(
                f"the KV cache is full: it holds {offset} of {cache.max_len} positions and cannot take {T} more"
            )
        return offset

    def new_cache(
        self, batch_size: int, max_len: int | None = None, *, dtype: torch.dtype | None = None
    ) -> KVCache:
        """An empty KV cache for ``batch_size`` sequences of up to ``max_len`` (default: the
        context length) tokens, on the model's device and in its dtype (or ``dtype``)."""
        max_len = self.config.context_length if max_len is None else check_positive_int(max_len, "max_len")
        if max_len > self.config.context_length:
            raise ValueError(f"max_len {max_len} exceeds the model's context length {self.config.context_length}")
        weight = self.lm_head.weight
        return KVCache(
            self.config.n_layer, check_positive_int(batch_size, "batch_size"), self.config.n_kv_head, max_len,
            self.config.head_dim, device=weight.device, dtype=weight.dtype if dtype is None else dtype,
        )

    def num_parameters(self, non_embedding: bool = False) -> int:
        """Number of parameters (a tied matrix counts once). ``non_embedding=True`` leaves out the
        token and position embedding tables, the ``N`` of the scaling laws (Kaplan et al., 2020);
        an untied output layer is counted, as it is a matrix multiply, not a lookup."""
        total = sum(p.numel() for p in self.parameters())
        if non_embedding:
            total -= self.token_embedding.weight.numel()
            if isinstance(self.position, LearnedPositionalEmbedding):
                total -= self.position.embedding.weight.numel()
        return total

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)


def _make_position_embedding(config: GPTConfig) -> nn.Module | None:
    """The additive position embedding of ``config.position`` (None for RoPE, which rotates q and k)."""
    if config.position == "learned":
        return LearnedPositionalEmbedding(config.context_length, config.d_model)
    if config.position == "sinusoidal":
        return SinusoidalPositionalEncoding(config.d_model, config.context_length)
    return None
