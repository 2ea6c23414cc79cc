"""evaluate_stream / token_losses against a brute-force reference: every token once, right context."""

import math

import pytest
import torch
import torch.nn.functional as F

from llm_tutorial.models import GPT, GPTConfig
from llm_tutorial.train.evaluate import evaluate_stream, token_losses


def _model(context=8, vocab=11, seed=0):
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=vocab, context_length=context, n_layer=1, n_head=2, d_model=8)).eval()


def _brute_force(model, ids, context, stride):
    """Target t (= ids[t + 1]) is predicted from the window the definition names, one at a time."""
    n = len(ids) - 1
    out = torch.empty(n)
    for t in range(n):
        if t < context:
            start = 0  # the first window scores all its positions
        else:
            # the window that scores t is the first whose last `stride` positions include t
            k = math.ceil((t + 1 - context) / stride)
            start = k * stride
        x = ids[start : min(start + context, n)]
        logits = model(x[None])[0]
        out[t] = F.cross_entropy(logits[t - start][None], ids[t + 1][None])
    return out


@pytest.mark.parametrize("n, context, stride", [(2, 8, None), (9, 8, None), (37, 8, None), (37, 8, 3),
                                                (37, 8, 8), (37, 8, 1), (16, 8, 4), (17, 8, 5), (5, 8, 2)])
def test_every_token_scored_once_with_the_right_context(n, context, stride):
    model = _model(context)
    ids = torch.randint(0, 11, (n,), generator=torch.Generator().manual_seed(n))
    got = token_losses(model, ids, context, stride, batch_size=3)
    want = _brute_force(model, ids, context, stride or context)
    assert got.shape == (n - 1,)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert evaluate_stream(model, ids, context, stride) == pytest.approx(want.mean().item(), abs=1e-5)


def test_whole_window_equals_one_cross_entropy():
    model = _model(16)
    ids = torch.randint(0, 11, (17,))
    want = F.cross_entropy(model(ids[None, :-1])[0], ids[1:]).item()
    assert evaluate_stream(model, ids, 16) == pytest.approx(want, abs=1e-6)


def test_mode_is_restored():
    model = _model().train()
    evaluate_stream(model, torch.randint(0, 11, (20,)), 8)
    assert model.training


@pytest.mark.parametrize("ids, context, stride, error", [
    (torch.zeros(1, dtype=torch.long), 8, None, ValueError),
    (torch.zeros(10), 8, None, ValueError),
    (torch.zeros(2, 5, dtype=torch.long), 8, None, ValueError),
    (torch.zeros(10, dtype=torch.long), 0, None, ValueError),
    (torch.zeros(10, dtype=torch.long), 8, 9, ValueError),
    (torch.zeros(10, dtype=torch.long), 8, 0, ValueError),
    ([1, 2, 3], 8, None, TypeError),
])
def test_bad_input(ids, context, stride, error):
    with pytest.raises(error):
        token_losses(_model(), ids, context, stride)
