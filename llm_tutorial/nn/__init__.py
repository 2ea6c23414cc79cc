"""Neural-network layers of the Transformer, one concept per module.

- :mod:`~llm_tutorial.nn.attention`   scaled dot-product attention, masks, multi-head / grouped-query attention
- :mod:`~llm_tutorial.nn.kv_cache`    the preallocated key/value cache for incremental decoding
- :mod:`~llm_tutorial.nn.positional`  sinusoidal, learned and rotary (RoPE) position encodings
- :mod:`~llm_tutorial.nn.norms`       LayerNorm and RMSNorm
- :mod:`~llm_tutorial.nn.mlp`         the feed-forward network: MLP (ReLU/GELU) and SwiGLU
- :mod:`~llm_tutorial.nn.blocks`      the pre-norm / post-norm Transformer block
- :mod:`~llm_tutorial.nn.permutation` XLNet's factorisation-order masks and two-stream attention

Conventions: tensors are batch-first, ``(B, T, d_model)``; attention heads ``(B, H, T, D)``;
boolean masks with True = may attend.
"""

from llm_tutorial.nn.attention import (
    ATTENTION_IMPLS,
    MultiHeadAttention,
    causal_mask,
    combine_masks,
    padding_mask,
    repeat_kv_heads,
    scaled_dot_product_attention,
)
from llm_tutorial.nn.blocks import TransformerBlock
from llm_tutorial.nn.kv_cache import KVCache, LayerKVCache
from llm_tutorial.nn.mlp import ACTIVATIONS, MLP, MLPS, SwiGLU, build_mlp, default_d_ff
from llm_tutorial.nn.norms import NORMS, LayerNorm, RMSNorm, build_norm
from llm_tutorial.nn.permutation import TwoStreamBlock, check_permutation, num_predicted, order_ranks, permutation_masks
from llm_tutorial.nn.positional import (
    LearnedPositionalEmbedding,
    RotaryEmbedding,
    SinusoidalPositionalEncoding,
    apply_rope,
    apply_rotary,
    rope_cos_sin,
    sinusoidal_encoding,
)

__all__ = [
    "ACTIVATIONS",
    "ATTENTION_IMPLS",
    "KVCache",
    "LayerKVCache",
    "LayerNorm",
    "LearnedPositionalEmbedding",
    "MLP",
    "MLPS",
    "MultiHeadAttention",
    "NORMS",
    "RMSNorm",
    "RotaryEmbedding",
    "SinusoidalPositionalEncoding",
    "SwiGLU",
    "TransformerBlock",
    "TwoStreamBlock",
    "apply_rope",
    "apply_rotary",
    "build_mlp",
    "build_norm",
    "causal_mask",
    "check_permutation",
    "combine_masks",
    "default_d_ff",
    "num_predicted",
    "order_ranks",
    "padding_mask",
    "permutation_masks",
    "repeat_kv_heads",
    "rope_cos_sin",
    "scaled_dot_product_attention",
    "sinusoidal_encoding",
]
