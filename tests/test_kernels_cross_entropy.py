"""The streaming cross-entropy kernel through Triton's interpreter, against F.cross_entropy."""

import os

os.environ["TRITON_INTERPRET"] = "1"  # Triton reads it when the kernel modules are imported: before that

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("triton")

from llm_tutorial.kernels import backend_for, cross_entropy  # noqa: E402


def _loss_and_grad(fn, logits, targets, **kwargs):
    leaf = logits.detach().clone().requires_grad_()
    loss = fn(leaf, targets, **kwargs)
    (grad,) = torch.autograd.grad(loss, leaf)
    return loss, grad


def _targets(n_rows: int, n_classes: int, ignore_every: int = 0) -> torch.Tensor:
    targets = torch.randint(0, n_classes, (n_rows,))
    if ignore_every:
        targets[::ignore_every] = -100
    return targets


def test_cpu_tensors_take_the_interpreter():
    assert backend_for(torch.zeros(2, 3)) == "interpreter"


@pytest.mark.parametrize("n_classes", [1, 5, 128, 300, 1000])
def test_fp64_loss_and_gradient_match_torch_with_ignored_targets(n_classes):
    # The interpreter streams 128 classes per step: 300 and 1000 end with a partial block.
    logits = torch.randn(37, n_classes, dtype=torch.float64) * 3
    targets = _targets(37, n_classes, ignore_every=4)
    loss, grad = _loss_and_grad(cross_entropy, logits, targets)
    loss_ref, grad_ref = _loss_and_grad(F.cross_entropy, logits, targets)
    assert abs(loss.item() - loss_ref.item()) < 1e-12
    assert (grad - grad_ref).abs().max() < 1e-12
    assert grad[::4].abs().max() == 0  # ignored rows get no gradient


def test_batch_by_time_logits_and_a_custom_ignore_index():
    logits = torch.randn(3, 11, 200, dtype=torch.float64)  # (B, T, V), as a language model returns them
    targets = torch.randint(0, 200, (3, 11))
    targets[:, -2:] = 7  # padding marked with the ignore index 7
    loss, grad = _loss_and_grad(cross_entropy, logits, targets, ignore_index=7)
    loss_ref, grad_ref = _loss_and_grad(
        lambda z, t, ignore_index: F.cross_entropy(z.reshape(-1, 200), t.reshape(-1), ignore_index=ignore_index),
        logits, targets, ignore_index=7,
    )
    assert grad.shape == logits.shape
    assert abs(loss.item() - loss_ref.item()) < 1e-12
    assert (grad - grad_ref).abs().max() < 1e-12


def test_huge_logits_and_strided_rows():
    logits = (torch.randn(600, 20, dtype=torch.float64) * 1e3).t()  # (20, 600), columns strided
    targets = _targets(20, 600)
    loss, grad = _loss_and_grad(cross_entropy, logits, targets.to(torch.int32))
    loss_ref, grad_ref = _loss_and_grad(F.cross_entropy, logits, targets)
    assert torch.isfinite(loss)
    assert abs(loss.item() - loss_ref.item()) < 1e-9 * abs(loss_ref.item())
    assert (grad - grad_ref).abs().max() < 1e-12


def test_all_targets_ignored_gives_nan_like_torch():
    logits = torch.randn(4, 10)
    targets = torch.full((4,), -100)
    assert torch.isnan(cross_entropy(logits, targets))
    assert torch.isnan(F.cross_entropy(logits, targets))


@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, 1e-5), (torch.float16, 2e-3), (torch.bfloat16, 2e-2)])
def test_low_precision_matches_an_fp32_reference(dtype, tolerance):
    logits = torch.randn(24, 333, dtype=dtype) * 4
    targets = _targets(24, 333, ignore_every=5)
    loss, grad = _loss_and_grad(cross_entropy, logits, targets)
    loss_ref, grad_ref = _loss_and_grad(F.cross_entropy, logits.float(), targets)
    assert loss.dtype == grad.dtype == dtype
    assert abs(loss.item() - loss_ref.item()) < tolerance * abs(loss_ref.item())
    assert (grad.float() - grad_ref).abs().max() < tolerance * grad_ref.abs().max()


def test_rejects_bad_input():
    logits = torch.randn(4, 10)
    with pytest.raises(TypeError, match="targets must hold integer class ids"):
        cross_entropy(logits, torch.zeros(4))
    with pytest.raises(TypeError, match="logits must have dtype .* got int64"):
        cross_entropy(logits.long(), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"targets must have shape \(4,\)"):
        cross_entropy(logits, torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 10\) or equal ignore_index=-100, found 10"):
        cross_entropy(logits, torch.tensor([0, 1, 10, 2]))
    with pytest.raises(ValueError, match="found -3"):
        cross_entropy(logits, torch.tensor([0, -3, 1, 2]))
    with pytest.raises(ValueError, match="same device, got logits on cpu, targets on meta"):
        cross_entropy(logits, torch.zeros(4, dtype=torch.long, device="meta"))
