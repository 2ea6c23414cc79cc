"""The kNN-LM (llm_tutorial.generate.knn_lm) against brute-force loops and its defining properties."""

from __future__ import annotations

import math

import pytest
import torch

from llm_tutorial.generate import (Datastore, build_datastore, encode_stream, interpolate, knn_distribution,
                                   knn_lm_losses, knn_search)
from llm_tutorial.models import GPT, GPTConfig
from llm_tutorial.train.evaluate import token_losses


def tiny_gpt(vocab: int = 11, context: int = 8, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=vocab, context_length=context, n_layer=1, n_head=2, d_model=16)).eval()


def brute_force_knn(query, keys, values, k, temperature, vocab):
    """p_kNN by loops: every distance, the k smallest, exp(−d/τ) summed per token, normalised."""
    distances = [sum((float(q) - float(c)) ** 2 for q, c in zip(query, key)) for key in keys]
    nearest = sorted(range(len(keys)), key=lambda i: distances[i])[:k]
    p = [0.0] * vocab
    for i in nearest:
        p[int(values[i])] += math.exp(-distances[i] / temperature)
    total = sum(p)
    return [x / total for x in p]


@pytest.mark.parametrize("n_keys,d,k,temperature", [(7, 3, 3, 1.0), (23, 5, 23, 0.3), (40, 2, 1, 5.0)])
def test_knn_distribution_matches_brute_force_and_sums_to_one(n_keys, d, k, temperature):
    g = torch.Generator().manual_seed(n_keys)
    keys, queries = torch.randn(n_keys, d, generator=g, dtype=torch.float64), torch.randn(4, d, generator=g,
                                                                                        dtype=torch.float64)
    values = torch.randint(0, 6, (n_keys,), generator=g)
    distances, index = knn_search(queries, keys, k)
    p = knn_distribution(distances, values[index], 6, temperature)
    for row, query in zip(p, queries):
        assert row.tolist() == pytest.approx(brute_force_knn(query, keys, values, k, temperature, 6), abs=1e-6)
    torch.testing.assert_close(p.sum(1), torch.ones(4, dtype=p.dtype))


@pytest.mark.parametrize("query_chunk,key_chunk", [(1, 1), (3, 5), (1000, 7), (2, 1000)])
def test_chunked_search_equals_unchunked_and_cdist(query_chunk, key_chunk):
    g = torch.Generator().manual_seed(1)
    keys, queries = torch.randn(37, 6, generator=g), torch.randn(9, 6, generator=g)
    d_full, i_full = knn_search(queries, keys, 5, query_chunk=10_000, key_chunk=10_000)
    d_chunk, i_chunk = knn_search(queries, keys, 5, query_chunk=query_chunk, key_chunk=key_chunk)
    torch.testing.assert_close(d_chunk, d_full)
    assert torch.equal(i_chunk, i_full)
    reference = torch.cdist(queries.double(), keys.double()) ** 2  # (Q, N)
    d_ref, i_ref = reference.topk(5, dim=1, largest=False)
    torch.testing.assert_close(d_full.double(), d_ref, atol=1e-4, rtol=1e-4)
    assert torch.equal(i_full, i_ref)


def test_lambda_zero_is_the_lm_exactly():
    model = tiny_gpt()
    g = torch.Generator().manual_seed(2)
    train, held_out = torch.randint(0, 11, (60,), generator=g), torch.randint(0, 11, (21,), generator=g)
    store = build_datastore(model, train, context=8)
    assert len(store) == 59 and store.keys.shape == (59, 16)
    losses = knn_lm_losses(model, store, held_out, context=8, k=5, lam=0.0)
    torch.testing.assert_close(losses, token_losses(model, held_out, context=8), rtol=0, atol=1e-5)


def test_datastore_holding_the_text_itself_predicts_it_almost_surely():
    """Sanity, not a result: a query finds its own key at distance 0, whose value is the answer."""
    model = tiny_gpt(seed=3)
    text = torch.randint(0, 11, (41,), generator=torch.Generator().manual_seed(3))
    store = build_datastore(model, text, context=8)
    losses = knn_lm_losses(model, store, text, context=8, k=4, temperature=1e-3, lam=0.999)
    assert losses.max() < 0.01  # −log(0.999) ≈ 0.001: the kNN part puts (almost) all its mass on the truth
    assert token_losses(model, text, context=8).mean() > 1.0  # the untrained LM alone is far from it


def test_encode_stream_reads_non_overlapping_windows_with_a_short_last_one():
    model = tiny_gpt()
    ids = torch.randint(0, 11, (20,), generator=torch.Generator().manual_seed(4))  # 19 targets: 8 + 8 + 3
    hidden, log_probs, targets = encode_stream(model, ids, context=8)
    assert hidden.shape == (19, 16) and log_probs.shape == (19, 11) and torch.equal(targets, ids[1:])
    with torch.no_grad():
        last = model.hidden_states(ids[16:19][None])[0]  # the third window: 3 tokens
    torch.testing.assert_close(hidden[16:], last)


def test_interpolate_is_the_mixture():
    g = torch.Generator().manual_seed(5)
    lm = torch.log_softmax(torch.randn(3, 7, generator=g), 1)
    knn = torch.softmax(torch.randn(3, 7, generator=g), 1)
    knn[0, 2] = 0.0
    mixed = interpolate(lm, knn, 0.3)
    torch.testing.assert_close(mixed.exp(), 0.3 * knn + 0.7 * lm.exp())
    torch.testing.assert_close(interpolate(lm, knn, 1.0).exp(), knn)


def test_bad_inputs_get_clear_errors():
    keys = torch.randn(5, 3)
    with pytest.raises(ValueError, match="same width"):
        knn_search(torch.randn(2, 4), keys, 2)
    with pytest.raises(ValueError, match="k"):
        knn_search(torch.randn(2, 3), keys, 6)
    with pytest.raises(ValueError, match="shape"):
        knn_distribution(torch.rand(2, 3), torch.zeros(2, 4, dtype=torch.long), 5)
    with pytest.raises(ValueError, match=r"token ids in \[0, 5\)"):
        knn_distribution(torch.rand(2, 3), torch.full((2, 3), 5), 5)
    with pytest.raises(ValueError, match="temperature"):
        knn_distribution(torch.rand(2, 3), torch.zeros(2, 3, dtype=torch.long), 5, temperature=0.0)
    with pytest.raises(ValueError, match="lam"):
        interpolate(torch.zeros(2, 3), torch.zeros(2, 3), 1.5)
    with pytest.raises(ValueError, match="one value per key"):
        Datastore(keys, torch.zeros(4, dtype=torch.long))
    with pytest.raises(TypeError, match="floating"):
        Datastore(torch.zeros(5, 3, dtype=torch.long), torch.zeros(5, dtype=torch.long))
    with pytest.raises(TypeError, match="Datastore"):
        knn_lm_losses(tiny_gpt(), (keys, torch.zeros(5)), torch.zeros(9, dtype=torch.long), 8)
    with pytest.raises(ValueError, match="at least 2 tokens"):
        encode_stream(tiny_gpt(), torch.zeros(1, dtype=torch.long), 8)
