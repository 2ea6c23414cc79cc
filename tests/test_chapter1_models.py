"""The chapter-1 language models: n-gram counts and smoothing, and the feed-forward neural LM."""

from __future__ import annotations

import math
import random

import pytest
import torch
import torch.nn.functional as F

from llm_tutorial.models.neural_lm import FeedForwardLM, FeedForwardLMConfig
from llm_tutorial.models.ngram import NGramLM


def random_ids(n, vocab, seed):
    rng = random.Random(seed)
    # A skewed distribution, so that some n-grams are frequent and many are unseen.
    return [min(int(rng.expovariate(0.6)), vocab - 1) for _ in range(n)]


def occurrences(ids, gram):
    """Brute-force count of a (possibly overlapping) n-gram: independent of the model's Counters."""
    n = len(gram)
    return sum(1 for i in range(len(ids) - n + 1) if tuple(ids[i : i + n]) == tuple(gram))


@pytest.mark.parametrize("smoothing", NGramLM.SMOOTHINGS)
@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_distributions_sum_to_one(smoothing, order):
    vocab = 7
    ids = random_ids(600, vocab, seed=order)
    model = NGramLM(order, vocab, smoothing).fit(ids)
    rng = random.Random(0)
    contexts = [ids[i : i + order - 1] for i in range(0, 500, 37)]  # seen contexts
    contexts += [[rng.randrange(vocab) for _ in range(order - 1)] for _ in range(10)]  # often unseen
    contexts += [[], ids[:1]]  # shorter than the order: the start of a text
    for context in contexts:
        probs = model.distribution(context)
        assert probs.min() > 0, "smoothing must leave no token with probability zero"
        assert math.isclose(float(probs.sum()), 1.0, rel_tol=0, abs_tol=1e-12)


def test_add_k_matches_its_formula():
    vocab, k = 5, 0.5
    ids = random_ids(300, vocab, seed=1)
    model = NGramLM(3, vocab, "add-k", k=k).fit(ids)
    for h in [(0, 0), (1, 0), (4, 4), (2, 3)]:
        c_h = sum(occurrences(ids, h + (w,)) for w in range(vocab))
        for w in range(vocab):
            expected = (occurrences(ids, h + (w,)) + k) / (c_h + k * vocab)
            assert math.isclose(model.prob(h, w), expected, rel_tol=1e-12)


def test_bigram_kneser_ney_matches_hand_formula():
    vocab, D = 4, 0.75
    ids = random_ids(200, vocab, seed=2)
    model = NGramLM(2, vocab, "kneser-ney", discount=D).fit(ids)
    # Continuation unigram: N1+(• w) / N1+(• •), interpolated with the uniform distribution.
    left_types = {w: len({ids[i] for i in range(len(ids) - 1) if ids[i + 1] == w}) for w in range(vocab)}
    bigram_types = sum(left_types.values())
    seen_types = sum(1 for w in range(vocab) if left_types[w] > 0)
    p_cont = {w: max(left_types[w] - D, 0) / bigram_types + D * seen_types / bigram_types / vocab for w in range(vocab)}
    for h in range(vocab):
        c_h = sum(occurrences(ids, (h, w)) for w in range(vocab))
        followers = sum(1 for w in range(vocab) if occurrences(ids, (h, w)) > 0)
        for w in range(vocab):
            expected = max(occurrences(ids, (h, w)) - D, 0) / c_h + D * followers / c_h * p_cont[w]
            assert math.isclose(model.prob([h], w), expected, rel_tol=1e-12)


def test_uniform_ngram_has_perplexity_equal_to_vocab_size():
    vocab = 11
    model = NGramLM(1, vocab, "add-k", k=1e12).fit(random_ids(50, vocab, seed=3))
    assert math.isclose(math.exp(model.nll(random_ids(40, vocab, seed=4))), vocab, rel_tol=1e-9)


def test_higher_order_fits_training_text_better():
    text = "the cat sat on the mat. the cat ate the rat. " * 20
    ids = [ord(c) - 32 for c in text]
    nll = [NGramLM(n, 96).fit(ids).nll(ids) for n in (1, 2, 3, 4)]
    assert nll == sorted(nll, reverse=True)


def test_ngram_token_nll_is_each_tokens_loss_and_averages_to_nll():
    vocab = 6
    ids = random_ids(300, vocab, seed=5)
    model = NGramLM(3, vocab).fit(ids)
    losses = model.token_nll(ids[:40])
    assert losses.shape == (40,) and losses.dtype == torch.float64
    # independent reference: token t from its own context, read off the full distribution
    for t in (0, 1, 2, 17, 39):
        p = model.distribution(ids[max(0, t - 2) : t])[ids[t]].item()
        assert losses[t].item() == pytest.approx(-math.log(p), rel=1e-12)
    assert model.nll(ids[:40]) == pytest.approx(losses.mean().item(), rel=1e-12)
    with pytest.raises(ValueError, match="empty"):
        model.token_nll([])
    with pytest.raises(ValueError, match=r"\[0, 6\)"):
        model.token_nll([1, 6])


def test_ngram_samples_follow_the_counts():
    # After "ab" the training text always continues with "c": a trigram model must say so.
    ids = [0, 1, 2] * 50
    model = NGramLM(3, 3, "kneser-ney", discount=0.1).fit(ids)
    assert model.sample([0, 1], 6, generator=torch.Generator().manual_seed(0)) == [2, 0, 1, 2, 0, 1]


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: NGramLM(0, 5), "order"),
        (lambda: NGramLM(2, 5, "good-turing"), "smoothing"),
        (lambda: NGramLM(2, 5, "add-k", k=0), "k > 0"),
        (lambda: NGramLM(2, 5, discount=1.5), "discount"),
        (lambda: NGramLM(2, 5).fit([1, 2, 9]), r"\[0, 5\)"),
        (lambda: NGramLM(3, 5).fit([1]), "at least"),
        (lambda: NGramLM(2, 5).prob([1], 2), "fit"),
    ],
)
def test_ngram_bad_input(make, match):
    with pytest.raises((ValueError, RuntimeError), match=match):
        make()


def test_feedforward_lm_matches_its_equation():
    torch.manual_seed(0)
    config = FeedForwardLMConfig(vocab_size=9, window=3, d_embed=4, d_hidden=6)
    model = FeedForwardLM(config)
    idx = torch.randint(0, 9, (2, 5))
    logits = model(idx)
    assert logits.shape == (2, 5, 9)
    b, t = 1, 4
    window = idx[b, t - 2 : t + 1]
    e = model.embed.weight[window].reshape(-1)
    expected = model.output.weight @ torch.tanh(model.hidden.weight @ e + model.hidden.bias) + model.output.bias
    expected = expected + model.direct.weight @ e
    torch.testing.assert_close(logits[b, t], expected, rtol=1e-5, atol=1e-6)
    # The first position sees two "beginning" tokens and the first real token.
    begin = model.embed.weight[config.vocab_size]
    e0 = torch.cat([begin, begin, model.embed.weight[idx[0, 0]]])
    expected0 = model.output.weight @ torch.tanh(model.hidden.weight @ e0 + model.hidden.bias) + model.output.bias
    torch.testing.assert_close(logits[0, 0], expected0 + model.direct.weight @ e0, rtol=1e-5, atol=1e-6)


def test_feedforward_lm_sees_only_its_window():
    torch.manual_seed(1)
    model = FeedForwardLM(FeedForwardLMConfig(vocab_size=10, window=3))
    idx = torch.randint(0, 10, (1, 12))
    changed = idx.clone()
    changed[0, 4] = (idx[0, 4] + 1) % 10
    delta = (model(idx) - model(changed)).abs().amax(-1)[0]
    assert torch.all(delta[:4] == 0), "the past must not depend on the future"
    assert torch.all(delta[4:7] > 0), "positions 4, 5, 6 see token 4"
    assert torch.all(delta[7:] == 0), "positions 7+ have moved past it"


def test_uniform_neural_lm_has_perplexity_equal_to_vocab_size():
    model = FeedForwardLM(FeedForwardLMConfig(vocab_size=13, window=2))
    with torch.no_grad():
        for p in (model.output.weight, model.output.bias, model.direct.weight):
            p.zero_()
    idx = torch.randint(0, 13, (3, 20))
    loss = F.cross_entropy(model(idx)[:, :-1].reshape(-1, 13), idx[:, 1:].reshape(-1))
    assert math.isclose(math.exp(loss.item()), 13, rel_tol=1e-6)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda m: m(torch.zeros(5, dtype=torch.long)), "2 dimensions"),
        (lambda m: m(torch.full((1, 3), 10)), "outside"),
        (lambda m: m(torch.zeros(1, 3)), "integer"),
        (lambda m: FeedForwardLMConfig(vocab_size=10, window=0), "window"),
    ],
)
def test_feedforward_lm_bad_input(call, match):
    model = FeedForwardLM(FeedForwardLMConfig(vocab_size=10))
    with pytest.raises((ValueError, TypeError), match=match):
        call(model)
