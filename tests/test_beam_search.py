"""Beam search on the encoder–decoder: exhaustive search over every short output of a tiny
vocabulary, greedy decoding, batching with padding, the length penalty, and bad input."""

from __future__ import annotations

import itertools

import pytest
import torch

from llm_tutorial.generate import BeamSearchResult, beam_search, length_penalty
from llm_tutorial.models.gpt import GPT, GPTConfig
from llm_tutorial.models.transformer import Transformer, TransformerConfig

PAD, BOS, EOS = 0, 1, 2
TGT_VOCAB = 5  # PAD, BOS, EOS and two words: few enough to enumerate every output


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _model(tgt_vocab: int = TGT_VOCAB, max_len: int = 12) -> Transformer:
    """A tiny translation model with enlarged random weights, so that its next-token
    distributions differ clearly from step to step (and greedy often misses the best sequence)."""
    config = TransformerConfig(src_vocab_size=11, tgt_vocab_size=tgt_vocab, d_model=16, n_head=2, n_encoder_layer=1,
                               n_decoder_layer=2, d_ff=24, dropout=0.0, max_len=max_len, pad_id=PAD)
    model = Transformer(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1.5)
    return model


def _log_prob(model: Transformer, src: torch.Tensor, outputs: list[list[int]]) -> torch.Tensor:
    """log p(y | src) of equal-length outputs ``y`` by teacher forcing: one forward pass over
    [BOS] + y[:-1] for all of them."""
    tgt_in = torch.tensor([[BOS, *y[:-1]] for y in outputs])
    with torch.no_grad():
        log_p = model(src.expand(len(outputs), -1), tgt_in).log_softmax(-1)  # (N, T, V)
    return log_p.gather(-1, torch.tensor(outputs).unsqueeze(-1)).squeeze(-1).sum(-1)  # (N,)


def _exhaustive(model: Transformer, src: torch.Tensor, max_new: int, alpha: float) -> list[tuple[float, list[int]]]:
    """Every complete output of at most ``max_new`` tokens (words then EOS, or ``max_new`` words),
    scored log p / lp, best first. Words are any token but EOS, as beam search allows."""
    words = [t for t in range(TGT_VOCAB) if t != EOS]
    scored = []
    for n in range(1, max_new + 1):
        outputs = [[*w, EOS] for w in itertools.product(words, repeat=n - 1)]
        if n == max_new:
            outputs += [list(w) for w in itertools.product(words, repeat=n)]
        log_p = _log_prob(model, src, outputs)
        scored += [(lp / length_penalty(n, alpha), y) for lp, y in zip(log_p.tolist(), outputs)]
    return sorted(scored, key=lambda item: -item[0])


SOURCES = [[3, 7, 5, 9, 4], [10, 3, 3], [6, 8, 4, 5, 7, 9, 10], [4, 4]]


@pytest.mark.parametrize("alpha", [0.0, 0.6, 2.0])
def test_a_wide_beam_finds_the_exhaustive_best(alpha):
    model = _model()
    k = 4**3  # at least every prefix and every candidate: nothing is ever pruned
    for source in SOURCES[:2]:
        src = torch.tensor([source])
        ranked = _exhaustive(model, src, max_new=3, alpha=alpha)
        result = beam_search(model, src, bos_id=BOS, eos_id=EOS, beam_size=k, max_new_tokens=3, alpha=alpha)
        found = [result.tokens[0, i, : result.lengths[0, i]].tolist() for i in range(k)]
        assert found[0] == ranked[0][1]
        assert found == [y for _, y in ranked[:k]]  # the whole ranking, not only the winner
        expected_scores = torch.tensor([s for s, _ in ranked[:k]])
        torch.testing.assert_close(result.scores[0], expected_scores, rtol=1e-5, atol=1e-5)
        for i in range(3):
            log_p = _log_prob(model, src, [found[i]]).item()
            assert result.log_probs[0, i].item() == pytest.approx(log_p, rel=1e-5)
            assert result.scores[0, i].item() == pytest.approx(log_p / length_penalty(len(found[i]), alpha), rel=1e-5)


def test_greedy_misses_the_exhaustive_best_that_a_beam_finds():
    """Shows the search above is not trivial: for some of these sources the most likely output
    is not the one greedy decoding builds token by token."""
    model = _model()
    misses = 0
    for source in SOURCES:
        src = torch.tensor([source])
        best = _exhaustive(model, src, max_new=3, alpha=0.0)[0][1]
        misses += _greedy(model, src[0], 3) != best
        wide = beam_search(model, src, bos_id=BOS, eos_id=EOS, beam_size=16, max_new_tokens=3, alpha=0.0)
        assert wide.tokens[0, 0, : wide.lengths[0, 0]].tolist() == best
    assert misses > 0


def _greedy(model: Transformer, src: torch.Tensor, max_new: int) -> list[int]:
    """Textbook greedy decoding: run the decoder on the growing prefix, append the argmax."""
    prefix = [BOS]
    with torch.no_grad():
        while len(prefix) <= max_new and prefix[-1] != EOS:
            prefix.append(model(src[None], torch.tensor([prefix]))[0, -1].argmax().item())
    return prefix[1:]


@pytest.mark.parametrize("alpha", [0.0, 0.6])
def test_beam_size_one_is_greedy_decoding(alpha):
    model = _model(tgt_vocab=9)
    for _ in range(6):
        src = torch.randint(3, 11, (1, 6))
        result = beam_search(model, src, bos_id=BOS, eos_id=EOS, beam_size=1, max_new_tokens=10, alpha=alpha)
        greedy = _greedy(model, src[0], 10)
        assert result.tokens[0, 0, : result.lengths[0, 0]].tolist() == greedy
        assert result.best() == [greedy[:-1] if greedy[-1] == EOS else greedy]


def test_a_batch_with_padding_equals_one_source_at_a_time():
    model = _model(tgt_vocab=9)
    sources = [[3, 4, 5, 6, 7, 8], [9, 3, 10], [5, 5, 6, 4]]
    batch = torch.tensor([s + [PAD] * (6 - len(s)) for s in sources])
    together = beam_search(model, batch, bos_id=BOS, eos_id=EOS, beam_size=3, max_new_tokens=8)
    assert together.tokens.shape == (3, 3, 8) and together.scores.shape == (3, 3)
    for b, source in enumerate(sources):
        alone = beam_search(model, torch.tensor([source]), bos_id=BOS, eos_id=EOS, beam_size=3, max_new_tokens=8)
        width = int(alone.lengths.max())
        assert torch.equal(together.lengths[b], alone.lengths[0])
        assert torch.equal(together.tokens[b, :, :width], alone.tokens[0, :, :width])
        torch.testing.assert_close(together.scores[b], alone.scores[0], rtol=1e-5, atol=1e-5)
    assert (together.scores[:, :-1] >= together.scores[:, 1:]).all()  # best first


def test_hypotheses_end_with_eos_then_padding():
    model = _model(tgt_vocab=9)
    result = beam_search(model, torch.randint(3, 11, (2, 5)), bos_id=BOS, eos_id=EOS, beam_size=4, max_new_tokens=9)
    for tokens, lengths in zip(result.tokens.tolist(), result.lengths.tolist()):
        for row, n in zip(tokens, lengths):
            assert all(t == PAD for t in row[n:])
            assert EOS not in row[: n - 1] and (row[n - 1] == EOS or n == 9)


def test_length_penalty_is_gnmts():
    assert length_penalty(1, 0.0) == 1.0
    assert length_penalty(1, 0.6) == 1.0  # (5 + 1) / 6 = 1
    assert length_penalty(7, 1.0) == pytest.approx(2.0)
    assert length_penalty(torch.tensor(13), 0.5).item() == pytest.approx(3**0.5)


def test_training_mode_is_restored():
    model = _model().train()
    beam_search(model, torch.tensor([[3, 4]]), bos_id=BOS, eos_id=EOS, beam_size=2, max_new_tokens=3)
    assert model.training


def test_bad_beam_search_arguments():
    model = _model()
    src = torch.tensor([[3, 4, 5]])
    good = dict(bos_id=BOS, eos_id=EOS, beam_size=2, max_new_tokens=3)
    cases = [
        (dict(beam_size=0), ValueError, "beam_size must be a positive integer"),
        (dict(eos_id=TGT_VOCAB), ValueError, r"eos_id must be a target token id in \[0, 5\)"),
        (dict(bos_id=-1), ValueError, r"bos_id must be a target token id in \[0, 5\)"),
        (dict(alpha=-0.5), ValueError, "alpha .* must be a number ≥ 0"),
        (dict(max_new_tokens=13), ValueError, "max_new_tokens=13 exceeds the model's max_len=12"),
        (dict(src_mask=torch.ones(1, 3)), TypeError, "src_mask must have dtype bool"),
    ]
    for kwargs, error, match in cases:
        with pytest.raises(error, match=match):
            beam_search(model, src, **{**good, **kwargs})
    with pytest.raises(ValueError, match=r"src must have 2 dimensions \(B, S\)"):
        beam_search(model, src[0], **good)
    with pytest.raises(ValueError, match=r"src has token ids outside \[0, 11\)"):
        beam_search(model, torch.tensor([[3, 11]]), **good)
    gpt = GPT(GPTConfig.preset("gpt2", vocab_size=5, context_length=8, n_layer=1, n_head=2, d_model=8))
    with pytest.raises(TypeError, match="beam_search needs an encoder–decoder"):
        beam_search(gpt, src, **good)
    assert isinstance(beam_search(model, src, **good), BeamSearchResult)
