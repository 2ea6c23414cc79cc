"""Attention, masks and the KV cache against independent references:
``F.scaled_dot_product_attention``, ``torch.nn.MultiheadAttention`` (weights copied over), ``torch.tril``,
and explicit repetition of key/value heads for grouped-query attention."""

from __future__ import annotations

import sys
import types

import pytest
import torch
import torch.nn.functional as F

from llm_tutorial.nn import (
    KVCache,
    MultiHeadAttention,
    causal_mask,
    combine_masks,
    padding_mask,
    scaled_dot_product_attention,
)
from llm_tutorial.nn.kv_cache import LayerKVCache


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _random_keep(shape: tuple[int, ...], generator_seed: int = 1) -> torch.Tensor:
    """A random boolean key mask with at least one key kept per row."""
    g = torch.Generator().manual_seed(generator_seed)
    keep = torch.rand(shape, generator=g) > 0.4
    keep[..., 0] = True
    return keep


# ---------------------------------------------------------------- the explicit function


@pytest.mark.parametrize("leading", [(), (3,), (2, 3)])
@pytest.mark.parametrize("mask_kind", ["none", "causal", "padding", "both"])
def test_explicit_attention_matches_torch_sdpa(leading, mask_kind):
    T, D, Dv = 7, 24, 10
    q = torch.randn(*leading, T, D, dtype=torch.float64)
    k = torch.randn(*leading, T, D, dtype=torch.float64)
    v = torch.randn(*leading, T, Dv, dtype=torch.float64)
    causal = causal_mask(T) if mask_kind in ("causal", "both") else None
    # a key mask per sequence (first leading dim), shared by the other leading dims and all queries
    key_mask_shape = {(): (1, T), (3,): (3, 1, T), (2, 3): (2, 1, 1, T)}[leading]
    padding = _random_keep(key_mask_shape) if mask_kind in ("padding", "both") else None
    mask = combine_masks(causal, padding)
    ours = scaled_dot_product_attention(q, k, v, mask)
    # torch's kernel wants a batch dimension: add one, compare, drop it.
    ref = F.scaled_dot_product_attention(q[None], k[None], v[None], attn_mask=None if mask is None else mask[None])[0]
    assert ours.shape == (*leading, T, Dv)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-12)


def test_explicit_attention_cross_lengths_and_custom_scale_fp32():
    q, k, v = torch.randn(2, 5, 7, 24), torch.randn(2, 5, 9, 24), torch.randn(2, 5, 9, 24)
    mask = padding_mask(torch.tensor([9, 4]), 9)  # (B, 1, 1, T_k) against (B, H, T_q, T_k) scores
    ours = scaled_dot_product_attention(q, k, v, mask, scale=0.3)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=0.3)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)
    # head-less (B, T_q, T_k) scores take the padding mask without its head dimension
    head_less = scaled_dot_product_attention(q[:, 0], k[:, 0], v[:, 0], mask.squeeze(1), scale=0.3)
    torch.testing.assert_close(head_less, ref[:, 0], rtol=1e-5, atol=1e-6)


def test_returned_weights_are_distributions_that_respect_the_mask():
    q, k, v = torch.randn(2, 3, 7, 8), torch.randn(2, 3, 7, 8), torch.randn(2, 3, 7, 5)
    mask = combine_masks(causal_mask(7), padding_mask(torch.tensor([7, 5]), 7))
    out, weights = scaled_dot_product_attention(q, k, v, mask, return_weights=True)
    assert weights.shape == (2, 3, 7, 7)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3, 7))
    assert (weights.masked_select(~mask.expand_as(weights)) == 0).all()
    assert (weights.masked_select(mask.expand_as(weights)) > 0).all()
    torch.testing.assert_close(out, weights @ v)


def test_fully_masked_row_gives_zeros_not_nan_and_finite_gradients():
    q = torch.randn(2, 4, 6, requires_grad=True)
    k = torch.randn(2, 5, 6, requires_grad=True)
    v = torch.randn(2, 5, 3, requires_grad=True)
    mask = torch.ones(2, 4, 5, dtype=torch.bool)
    mask[0, 2] = False  # query 2 of batch 0 may attend to nothing
    out, weights = scaled_dot_product_attention(q, k, v, mask, return_weights=True)
    assert torch.equal(out[0, 2], torch.zeros(3))
    assert torch.equal(weights[0, 2], torch.zeros(5))
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask))
    out.sum().backward()
    assert all(torch.isfinite(t.grad).all() for t in (q, k, v))


def test_fully_masked_row_has_zero_gradient_and_the_others_match_sdpa():
    generator = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(2, 4, 5, 6, generator=generator, dtype=torch.float64) for _ in range(3))
    mask = torch.rand(2, 1, 5, 5, generator=generator) > 0.4
    mask[1, 0, 3] = False  # a query that sees no key
    grad_out = torch.randn(2, 4, 5, 6, generator=generator, dtype=torch.float64)
    grads = []
    for attention in (scaled_dot_product_attention, lambda *t: F.scaled_dot_product_attention(*t[:3], attn_mask=t[3])):
        leaves = [t.clone().requires_grad_() for t in (q, k, v)]
        grads.append(torch.autograd.grad(attention(*leaves, mask), leaves, grad_out))
    for ours, reference in zip(*grads):
        torch.testing.assert_close(ours, reference)
    leaves = [t.clone().requires_grad_() for t in (q, k, v)]
    out = scaled_dot_product_attention(*leaves, mask)
    (d_q,) = torch.autograd.grad(out[1, :, 3].sum(), leaves[0])
    assert torch.equal(d_q, torch.zeros_like(d_q))


@pytest.mark.parametrize("mask_kind", ["none", "causal", "padding with an empty row"])
def test_explicit_attention_saves_one_score_sized_tensor_for_backward(mask_kind):
    """The A·V product saves the softmax output itself: no second (T_q, T_k) copy (Korthikanti's 2as²b)."""
    B, H, T, D = 2, 3, 16, 4
    q, k, v = (torch.randn(B, H, T, D, requires_grad=True) for _ in range(3))
    mask = {"none": None, "causal": causal_mask(T), "padding with an empty row": torch.rand(B, 1, T, T) > 0.5}[mask_kind]
    if mask is not None and mask.ndim == 4:
        mask[0, 0, 5] = False
    saved = {}

    def pack(tensor):
        if tensor.dtype.is_floating_point and tensor.shape[-2:] == (T, T) and tensor.numel() >= B * H * T * T:
            saved[tensor.untyped_storage().data_ptr()] = tensor.shape
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        scaled_dot_product_attention(q, k, v, mask)
    assert len(saved) == 1, f"expected one saved (B, H, T, T) tensor, got {list(saved.values())}"


# ---------------------------------------------------------------- masks


@pytest.mark.parametrize("T_q,T_k", [(1, 1), (7, 7), (3, 8), (1, 6)])
def test_causal_mask_is_the_bottom_right_of_a_lower_triangle(T_q, T_k):
    full = torch.tril(torch.ones(T_k, T_k)).bool()
    assert torch.equal(causal_mask(T_q, T_k), full[T_k - T_q :])


def test_padding_mask_from_lengths_equals_from_boolean_and_broadcasts_over_heads():
    lengths = torch.tensor([3, 7, 1])
    keep = torch.tensor([[j < n for j in range(7)] for n in lengths.tolist()])
    from_lengths, from_keep = padding_mask(lengths, 7), padding_mask(keep)
    assert from_lengths.shape == (3, 1, 1, 7)
    assert torch.equal(from_lengths, from_keep)
    both = combine_masks(causal_mask(7), from_lengths, None)
    assert both.shape == (3, 1, 7, 7)
    assert torch.equal(both[1, 0], causal_mask(7))
    assert combine_masks(None, None) is None


# ---------------------------------------------------------------- multi-head attention


def _copy_from_torch_mha(ours: MultiHeadAttention, ref: torch.nn.MultiheadAttention) -> None:
    q_w, k_w, v_w = ref.in_proj_weight.detach().chunk(3)
    with torch.no_grad():
        ours.q_proj.weight.copy_(q_w)
        ours.k_proj.weight.copy_(k_w)
        ours.v_proj.weight.copy_(v_w)
        ours.out_proj.weight.copy_(ref.out_proj.weight)
        if ref.in_proj_bias is not None:
            q_b, k_b, v_b = ref.in_proj_bias.detach().chunk(3)
            ours.q_proj.bias.copy_(q_b)
            ours.k_proj.bias.copy_(k_b)
            ours.v_proj.bias.copy_(v_b)
            ours.out_proj.bias.copy_(ref.out_proj.bias)


def _torch_mha(d_model: int, n_head: int, bias: bool) -> torch.nn.MultiheadAttention:
    ref = torch.nn.MultiheadAttention(d_model, n_head, bias=bias, batch_first=True).eval()
    if bias:  # torch zero-initialises biases; make them count
        with torch.no_grad():
            ref.in_proj_bias.normal_()
            ref.out_proj.bias.normal_()
    return ref


@pytest.mark.parametrize("impl", ["explicit", "sdpa"])
@pytest.mark.parametrize("bias", [True, False])
def test_self_attention_matches_torch_multihead_attention(impl, bias):
    B, T, d_model, n_head = 2, 7, 24, 4
    ref = _torch_mha(d_model, n_head, bias)
    ours = MultiHeadAttention(d_model, n_head, bias=bias, impl=impl).eval()
    _copy_from_torch_mha(ours, ref)
    x = torch.randn(B, T, d_model)
    keep = _random_keep((B, T))
    ref_out, ref_weights = ref(
        x, x, x, attn_mask=~causal_mask(T), key_padding_mask=~keep, need_weights=True, average_attn_weights=False
    )
    out = ours(x, mask=padding_mask(keep), is_causal=True)
    assert ours.weights is None, "weights are kept only when asked"
    ours.keep_weights = True
    out_w = ours(x, mask=padding_mask(keep), is_causal=True)
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out_w, ref_out, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours.weights, ref_weights, rtol=1e-5, atol=1e-6)


def test_cross_attention_matches_torch_multihead_attention():
    B, T, S, d_model, n_head = 3, 5, 9, 24, 3
    ref = _torch_mha(d_model, n_head, bias=True)
    ours = MultiHeadAttention(d_model, n_head).eval()
    _copy_from_torch_mha(ours, ref)
    x, memory = torch.randn(B, T, d_model), torch.randn(B, S, d_model)
    lengths = torch.tensor([9, 2, 6])
    ref_out, ref_weights = ref(
        x, memory, memory, key_padding_mask=~padding_mask(lengths, S)[:, 0, 0], average_attn_weights=False
    )
    ours.keep_weights = True
    out = ours(x, memory, mask=padding_mask(lengths, S))
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours.weights, ref_weights, rtol=1e-5, atol=1e-6)


def test_grouped_query_attention_equals_attention_with_repeated_kv_heads():
    B, T, d_model, n_head, n_kv_head = 2, 7, 24, 6, 2
    gqa = MultiHeadAttention(d_model, n_head, n_kv_head=n_kv_head, bias=True).eval()
    full = MultiHeadAttention(d_model, n_head, bias=True).eval()
    head_dim, group = d_model // n_head, n_head // n_kv_head
    with torch.no_grad():
        for name in ("k_proj", "v_proj"):
            small = getattr(gqa, name)
            rows = small.weight.view(n_kv_head, head_dim, d_model)
            getattr(full, name).weight.copy_(rows.repeat_interleave(group, dim=0).reshape(d_model, d_model))
            getattr(full, name).bias.copy_(small.bias.view(n_kv_head, head_dim).repeat_interleave(group, 0).flatten())
        for name in ("q_proj", "out_proj"):
            getattr(full, name).load_state_dict(getattr(gqa, name).state_dict())
    assert gqa.k_proj.weight.shape == (n_kv_head * head_dim, d_model)
    x = torch.randn(B, T, d_model)
    torch.testing.assert_close(gqa(x, is_causal=True), full(x, is_causal=True), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("n_kv_head", [4, 2, 1])
def test_explicit_and_sdpa_paths_agree(n_kv_head):
    sdpa = MultiHeadAttention(32, 4, n_kv_head=n_kv_head, impl="sdpa").eval()
    explicit = MultiHeadAttention(32, 4, n_kv_head=n_kv_head, impl="explicit").eval()
    explicit.load_state_dict(sdpa.state_dict())
    x = torch.randn(3, 7, 32)
    mask = padding_mask(torch.tensor([7, 3, 5]), 7)
    for kwargs in ({}, {"is_causal": True}, {"mask": mask}, {"mask": mask, "is_causal": True}):
        torch.testing.assert_close(sdpa(x, **kwargs), explicit(x, **kwargs), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("impl", ["explicit", "sdpa"])
def test_attention_dropout_acts_in_training_only(impl):
    attn = MultiHeadAttention(24, 4, dropout=0.5, impl=impl)
    x = torch.randn(2, 7, 24)
    attn.eval()
    evaluated = attn(x, is_causal=True)
    torch.testing.assert_close(attn(x, is_causal=True), evaluated, rtol=0, atol=0)
    attn.train()
    assert not torch.allclose(attn(x, is_causal=True), evaluated)


@pytest.mark.parametrize("impl", ["explicit", "sdpa"])
def test_incremental_attention_with_a_cache_equals_full_causal_attention(impl):
    B, T, d_model, n_head, n_kv_head = 2, 7, 24, 4, 2
    attn = MultiHeadAttention(d_model, n_head, n_kv_head=n_kv_head, impl=impl).eval()
    x = torch.randn(B, T, d_model)
    full = attn(x, is_causal=True)
    cache = KVCache(1, B, n_kv_head, max_len=T, head_dim=d_model // n_head)
    with torch.no_grad():
        chunks = [attn(x[:, a:b], is_causal=True, cache=cache[0]) for a, b in ((0, 3), (3, 4), (4, 7))]
    torch.testing.assert_close(torch.cat(chunks, dim=1), full, rtol=1e-5, atol=1e-6)
    assert cache.length == T


def test_triton_impl_calls_the_kernel_with_full_heads(monkeypatch):
    calls = []

    def fake_flash_attention(q, k, v, *, causal, scale):
        calls.append((q.shape, k.shape, causal, scale))
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=scale)

    fake_kernels = types.SimpleNamespace(flash_attention=fake_flash_attention)
    monkeypatch.setitem(sys.modules, "llm_tutorial.kernels", fake_kernels)
    triton = MultiHeadAttention(24, 6, n_kv_head=3, impl="triton").eval()
    reference = MultiHeadAttention(24, 6, n_kv_head=3, impl="explicit").eval()
    reference.load_state_dict(triton.state_dict())
    x = torch.randn(2, 7, 24)
    torch.testing.assert_close(triton(x, is_causal=True), reference(x, is_causal=True), rtol=1e-5, atol=1e-6)
    assert calls == [(torch.Size([2, 6, 7, 4]), torch.Size([2, 6, 7, 4]), True, 0.5)]


def test_select_batch_reorders_the_cache_rows():
    cache = KVCache(2, 3, 1, max_len=4, head_dim=2)
    k = torch.arange(3.0).view(3, 1, 1, 1).expand(3, 1, 2, 2).contiguous()
    for layer in cache.layers:
        layer.append(k, k)
    cache.select_batch(torch.tensor([2, 2, 0, 1]))
    assert cache.batch_size == 4 and cache.length == 2
    assert cache[1].keys[:, 0, 0, 0].tolist() == [2.0, 2.0, 0.0, 1.0]
    assert cache.nbytes == 2 * 2 * 4 * 1 * 4 * 2 * 4


# ---------------------------------------------------------------- bad input


def test_float_mask_is_refused_with_a_hint():
    q = torch.randn(4, 8)
    with pytest.raises(TypeError, match="must be a boolean tensor"):
        scaled_dot_product_attention(q, q, q, torch.zeros(4, 4))


def test_mask_of_the_wrong_shape():
    q = torch.randn(2, 4, 8)
    with pytest.raises(ValueError, match="does not broadcast"):
        scaled_dot_product_attention(q, q, q, torch.ones(3, 4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="does not broadcast"):  # would silently enlarge the batch
        scaled_dot_product_attention(q, q, q, torch.ones(2, 1, 4, 4, dtype=torch.bool))


@pytest.mark.parametrize(
    "shapes,match",
    [
        (((8,), (4, 8), (4, 8)), "at least 2 dimensions"),
        (((4, 8), (4, 6), (4, 6)), "last dimension 8"),
        (((4, 8), (5, 8), (4, 8)), "same number of keys"),
        (((2, 4, 8), (3, 4, 8), (3, 4, 8)), "share their leading dimensions"),
    ],
)
def test_attention_inputs_of_the_wrong_shape(shapes, match):
    q, k, v = (torch.randn(s) for s in shapes)
    with pytest.raises(ValueError, match=match):
        scaled_dot_product_attention(q, k, v)


def test_integer_inputs_and_bad_scale():
    q = torch.randn(4, 8)
    with pytest.raises(TypeError, match="floating-point"):
        scaled_dot_product_attention(q.long(), q, q)
    with pytest.raises(ValueError, match="scale must be a positive number"):
        scaled_dot_product_attention(q, q, q, scale=-1.0)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(d_model=24, n_head=5), "n_head=5 must divide d_model=24"),
        (dict(d_model=24, n_head=6, n_kv_head=4), "n_kv_head=4 must divide n_head=6"),
        (dict(d_model=24, n_head=6, impl="flash"), "unknown attention impl 'flash'"),
        (dict(d_model=24, n_head=6, dropout=1.0), "dropout must be a probability"),
    ],
)
def test_bad_multi_head_attention_configuration(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MultiHeadAttention(**kwargs)


def test_q_k_v_of_mixed_dtypes_or_devices_are_refused():
    """fp16 q with fp32 k/v crashed deep in torch; a meta q beside CPU k/v returned CPU values."""
    q = torch.randn(2, 4, 8)
    with pytest.raises(TypeError, match=r"q, k and v must share one dtype, got torch.float16, torch.float32"):
        scaled_dot_product_attention(q.half(), q, q)
    with pytest.raises(TypeError, match="must share one dtype"):
        scaled_dot_product_attention(q, q, q.double())
    with pytest.raises(ValueError, match="q on meta, k on cpu, v on cpu"):
        scaled_dot_product_attention(q.to("meta"), q, q)


def test_multi_head_attention_refuses_a_mask_that_would_broadcast_wrongly():
    attn = MultiHeadAttention(24, 4)
    x = torch.randn(7, 7, 24)
    keep = torch.ones(2, 1, 1, 7, dtype=torch.bool)  # a padding mask for a batch of 2, given a batch of 1
    with pytest.raises(ValueError, match=r"mask of shape \(2, 1, 1, 7\) does not broadcast .* \(1, 4, 7, 7\)"):
        attn(x[:1], mask=keep)
    with pytest.raises(ValueError, match="does not broadcast"):
        attn(torch.randn(2, 5, 24), mask=torch.ones(2, 5, dtype=torch.bool))  # (B, T), not (B, 1, 1, T)
    with pytest.raises(TypeError, match="must be a boolean tensor"):
        attn(x, mask=torch.ones(7, 7))
    cache = KVCache(1, 7, 4, 16, 6)[0]
    attn(x, mask=causal_mask(7, 7), cache=cache)  # T_k counts the cached keys: 0 + 7
    with pytest.raises(ValueError, match=r"\(7, 4, 7, 14\)"):
        attn(x, mask=causal_mask(7, 7), cache=cache)  # now 7 cached + 7 new keys


def test_multi_head_attention_trusts_its_caller_and_torch_names_the_mismatch():
    """The layer checks its construction; its inputs are checked by the models that call it. Called
    directly with float64 input on float32 weights, the first projection fails with PyTorch's own
    message naming both dtypes (the fix, attn.double(), is the same as for any nn.Linear)."""
    attn = MultiHeadAttention(24, 4)
    with pytest.raises(RuntimeError, match="Double and Float"):
        attn(torch.randn(2, 7, 24, dtype=torch.float64))
    out = attn.double()(torch.randn(2, 7, 24, dtype=torch.float64))
    assert out.dtype == torch.float64 and out.shape == (2, 7, 24)


def test_triton_impl_refuses_padding_masks():
    attn = MultiHeadAttention(24, 4, impl="triton")
    x = torch.randn(2, 7, 24)
    with pytest.raises(ValueError, match="impl='triton' supports only unmasked or causal"):
        attn(x, mask=padding_mask(torch.tensor([7, 3]), 7))


def test_bad_masks_builders():
    with pytest.raises(ValueError, match="needs T_k >= T_q"):
        causal_mask(5, 3)
    with pytest.raises(ValueError, match="T_q must be a positive integer"):
        causal_mask(0)
    with pytest.raises(ValueError, match="needs max_len"):
        padding_mask(torch.tensor([3, 2]))
    with pytest.raises(ValueError, match=r"lengths must lie in \[0, 4\]"):
        padding_mask(torch.tensor([5, 2]), 4)
    with pytest.raises(TypeError, match="boolean .* or integer lengths"):
        padding_mask(torch.tensor([[1.0, 0.0]]))
    with pytest.raises(TypeError, match="must be a boolean tensor"):
        combine_masks(causal_mask(3), torch.ones(3, 3))


def test_cache_full_batch_mismatch_and_dtype_mismatch():
    cache = LayerKVCache(torch.zeros(2, 1, 4, 8), torch.zeros(2, 1, 4, 8))
    cache.append(torch.randn(2, 1, 3, 8), torch.randn(2, 1, 3, 8))
    with pytest.raises(ValueError, match="KV cache is full: it holds 3 of 4 positions and cannot take 2 more"):
        cache.append(torch.randn(2, 1, 2, 8), torch.randn(2, 1, 2, 8))
    with pytest.raises(ValueError, match="made for batch size 2, got k with batch size 5"):
        cache.append(torch.randn(5, 1, 1, 8), torch.randn(5, 1, 1, 8))
    with pytest.raises(TypeError, match="holds torch.float32"):
        cache.append(torch.randn(2, 1, 1, 8, dtype=torch.float64), torch.randn(2, 1, 1, 8, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"must have shape \(B, H_kv, T, D\) = \(B, 1, T, 8\)"):
        cache.append(torch.randn(2, 2, 1, 8), torch.randn(2, 2, 1, 8))
