"""Losses against PyTorch's own cross-entropy and binary cross-entropy, and against closed forms."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from llm_tutorial.losses import (
    IGNORE_INDEX,
    clm_loss,
    cross_entropy,
    mlm_loss,
    nsp_loss,
    perplexity,
    rtd_loss,
    seq2seq_loss,
)


def random_targets(shape: tuple[int, ...], vocab_size: int, ignore_share: float, gen: torch.Generator) -> torch.Tensor:
    targets = torch.randint(vocab_size, shape, generator=gen)
    ignored = torch.rand(shape, generator=gen) < ignore_share
    targets[ignored] = IGNORE_INDEX
    targets.view(-1)[0] = 0  # at least one scored position
    return targets


@pytest.mark.parametrize("vocab_size", [2, 7, 13, 257])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1, 0.37])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_matches_torch(vocab_size: int, label_smoothing: float, reduction: str) -> None:
    gen = torch.Generator().manual_seed(vocab_size)
    logits = 3 * torch.randn(3, 11, vocab_size, generator=gen, dtype=torch.float64)
    targets = random_targets((3, 11), vocab_size, 0.3, gen)
    ours = cross_entropy(logits, targets, label_smoothing=label_smoothing, reduction=reduction)
    reference = F.cross_entropy(
        logits.reshape(-1, vocab_size),
        targets.reshape(-1),
        ignore_index=IGNORE_INDEX,
        label_smoothing=label_smoothing,
        reduction=reduction,
    )
    torch.testing.assert_close(ours.reshape(-1), reference.reshape(-1), rtol=1e-12, atol=1e-12)


def test_cross_entropy_gradient_matches_torch_fp64() -> None:
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(5, 9, 31, generator=gen, dtype=torch.float64, requires_grad=True)
    targets = random_targets((5, 9), 31, 0.25, gen)
    (grad,) = torch.autograd.grad(cross_entropy(logits, targets, label_smoothing=0.1), logits)
    reference = F.cross_entropy(logits.reshape(-1, 31), targets.reshape(-1), label_smoothing=0.1)
    (expected,) = torch.autograd.grad(reference, logits)
    torch.testing.assert_close(grad, expected, rtol=1e-12, atol=1e-14)


def test_custom_ignore_index_and_float32() -> None:
    gen = torch.Generator().manual_seed(2)
    logits = torch.randn(40, 6, generator=gen)
    targets = torch.randint(6, (40,), generator=gen)  # class 0 plays "padding"
    ours = cross_entropy(logits, targets, ignore_index=0)
    torch.testing.assert_close(ours, F.cross_entropy(logits, targets, ignore_index=0))


def test_half_precision_logits_are_scored_in_float32() -> None:
    logits = (20 * torch.randn(4, 8, 50, generator=torch.Generator().manual_seed(3))).half()
    targets = torch.randint(50, (4, 8))
    ours = cross_entropy(logits, targets)
    assert ours.dtype == torch.float32
    torch.testing.assert_close(ours, F.cross_entropy(logits.float().reshape(-1, 50), targets.reshape(-1)))


def test_smoothed_loss_is_minimised_by_the_smoothed_target() -> None:
    """With p = q the gradient p - q vanishes and the loss is the entropy of q (closed form)."""
    vocab_size, eps, target = 11, 0.2, 4
    q = torch.full((vocab_size,), eps / vocab_size, dtype=torch.float64)
    q[target] += 1 - eps
    logits = q.log().clone().requires_grad_(True)
    loss = cross_entropy(logits[None], torch.tensor([target]), label_smoothing=eps)
    (grad,) = torch.autograd.grad(loss, logits)
    entropy = -(q * q.log()).sum()
    torch.testing.assert_close(loss, entropy, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, torch.zeros_like(grad), rtol=0, atol=1e-12)


def test_nothing_to_score_gives_zero_not_nan() -> None:
    logits = torch.randn(2, 3, 5, requires_grad=True)
    targets = torch.full((2, 3), IGNORE_INDEX)
    loss = mlm_loss(logits, targets)
    loss.backward()
    assert loss.item() == 0.0
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_objective_losses_are_cross_entropy_on_their_positions() -> None:
    gen = torch.Generator().manual_seed(4)
    logits = torch.randn(3, 7, 19, generator=gen, dtype=torch.float64)
    targets = random_targets((3, 7), 19, 0.5, gen)
    flat = F.cross_entropy(logits.reshape(-1, 19), targets.reshape(-1), label_smoothing=0.1)
    torch.testing.assert_close(clm_loss(logits, targets, label_smoothing=0.1), flat)
    torch.testing.assert_close(mlm_loss(logits, targets, label_smoothing=0.1), flat)
    assert seq2seq_loss is clm_loss

    nsp_logits = torch.randn(10, 2, generator=gen)
    is_next = torch.randint(2, (10,), generator=gen)
    torch.testing.assert_close(nsp_loss(nsp_logits, is_next), F.cross_entropy(nsp_logits, is_next))
    torch.testing.assert_close(nsp_loss(nsp_logits, is_next.bool()), F.cross_entropy(nsp_logits, is_next))


@pytest.mark.parametrize("label_dtype", [torch.long, torch.bool, torch.float32])
def test_rtd_loss_matches_torch_bce(label_dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(5)
    z = 4 * torch.randn(4, 13, generator=gen, dtype=torch.float64)
    y = torch.randint(2, (4, 13), generator=gen)
    mask = torch.ones(4, 13, dtype=torch.bool)
    mask[1, 9:] = False
    mask[3, 5:] = False
    reference = F.binary_cross_entropy_with_logits(z[mask], y[mask].double())
    torch.testing.assert_close(rtd_loss(z, y.to(label_dtype), mask), reference, rtol=1e-12, atol=1e-12)
    no_mask = F.binary_cross_entropy_with_logits(z, y.double())
    torch.testing.assert_close(rtd_loss(z, y.to(label_dtype)), no_mask, rtol=1e-12, atol=1e-12)


def test_rtd_loss_is_finite_for_extreme_logits() -> None:
    z = torch.tensor([[200.0, -200.0, 200.0]])
    y = torch.tensor([[0, 1, 1]])
    loss = rtd_loss(z, y)
    torch.testing.assert_close(loss, F.binary_cross_entropy_with_logits(z, y.float()))
    assert math.isclose(loss.item(), 400.0 / 3, rel_tol=1e-6)


@pytest.mark.parametrize("vocab_size", [2, 50, 50257])
def test_perplexity_of_a_uniform_model_is_the_vocabulary_size(vocab_size: int) -> None:
    logits = torch.zeros(2, 3, vocab_size, dtype=torch.float64)  # softmax = 1/V everywhere
    targets = torch.randint(vocab_size, (2, 3))
    mean_nll = clm_loss(logits, targets)
    torch.testing.assert_close(mean_nll, torch.tensor(math.log(vocab_size), dtype=torch.float64))
    assert math.isclose(perplexity(mean_nll.item()), vocab_size, rel_tol=1e-12)
    torch.testing.assert_close(perplexity(mean_nll), torch.tensor(float(vocab_size), dtype=torch.float64))
    assert perplexity(0.0) == 1.0


BAD_INPUTS = [
    (lambda: cross_entropy(torch.randn(2, 3, 5), torch.zeros(2, 4, dtype=torch.long)), ValueError, "shape of logits"),
    (lambda: cross_entropy(torch.randn(2, 5), torch.zeros(2)), TypeError, "integer class ids"),
    (lambda: cross_entropy(torch.randn(2, 5), torch.tensor([1, 5])), ValueError, r"ids in \[0, 5\)"),
    (lambda: cross_entropy(torch.randn(2, 5), torch.tensor([1, -3])), ValueError, "min -3"),
    (lambda: cross_entropy(torch.randint(5, (2, 5)), torch.tensor([1, 2])), TypeError, "floating-point"),
    (lambda: cross_entropy(torch.randn(2, 5), torch.tensor([1, 2]), label_smoothing=1.5), ValueError, "smoothing"),
    (lambda: cross_entropy(torch.randn(2, 5), torch.tensor([1, 2]), reduction="avg"), ValueError, "unknown reduction"),
    (lambda: cross_entropy([[0.1, 0.9]], torch.tensor([1])), TypeError, "torch.Tensor"),
    (lambda: clm_loss(torch.randn(6, 5), torch.zeros(6, dtype=torch.long)), ValueError, r"3 dimensions \(B, T, V\)"),
    (lambda: mlm_loss(torch.randn(2, 3, 5), torch.zeros(6, dtype=torch.long)), ValueError, "labels must have 2 dim"),
    (lambda: nsp_loss(torch.randn(4, 3), torch.zeros(4, dtype=torch.long)), ValueError, "2 classes"),
    (lambda: rtd_loss(torch.randn(2, 3), torch.full((2, 3), 2)), ValueError, "only 0"),
    (lambda: rtd_loss(torch.randn(2, 3), torch.zeros(2, 4)), ValueError, "shape of disc_logits"),
    (lambda: rtd_loss(torch.randn(2, 3), torch.zeros(2, 3), torch.ones(2, 3)), TypeError, "must have dtype bool"),
    (lambda: rtd_loss(torch.randn(2, 3), torch.zeros(2, 3), torch.ones(3, 2).bool()), ValueError, "mask must have"),
    (lambda: rtd_loss(torch.randn(2, 3, 1), torch.zeros(2, 3, 1)), ValueError, r"disc_logits must have 2 dimensions"),
    (lambda: perplexity(-0.5), ValueError, "negative log-likelihood"),
    (lambda: perplexity("2.3"), TypeError, "float or a torch.Tensor"),
    (lambda: perplexity(torch.tensor([1.0, -1.0])), ValueError, "cannot be negative"),
]


@pytest.mark.parametrize("call, error, match", BAD_INPUTS)
def test_bad_inputs_raise_clear_errors(call, error, match) -> None:
    with pytest.raises(error, match=match):
        call()
