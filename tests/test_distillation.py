"""Distillation loss, checked against PyTorch's KL divergence and cross-entropy and Hinton's
high-temperature limit."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from llm_tutorial.losses import IGNORE_INDEX, distillation_loss


def logits(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 3


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0, 7.3])
@pytest.mark.parametrize("shape", [(5, 11), (2, 7, 13)])
def test_soft_term_equals_torch_kl_div_times_t_squared(temperature: float, shape: tuple[int, ...]) -> None:
    student, teacher = logits(*shape, seed=1), logits(*shape, seed=2)
    positions = student.numel() // shape[-1]
    reference = F.kl_div(
        F.log_softmax(student / temperature, -1), F.log_softmax(teacher / temperature, -1),
        log_target=True, reduction="sum",
    ) / positions * temperature**2
    got = distillation_loss(student, teacher, temperature=temperature, alpha=1.0)
    torch.testing.assert_close(got, reference)


def test_mixed_loss_with_ignored_positions_equals_a_hand_computation() -> None:
    student, teacher = logits(3, 6, 17, seed=3), logits(3, 6, 17, seed=4)
    targets = torch.randint(0, 17, (3, 6), generator=torch.Generator().manual_seed(5))
    targets[0, :2] = IGNORE_INDEX
    targets[2, 5] = IGNORE_INDEX
    keep = targets != IGNORE_INDEX
    T, alpha = 3.0, 0.3
    kl = F.kl_div(F.log_softmax(student[keep] / T, -1), F.log_softmax(teacher[keep] / T, -1),
                  log_target=True, reduction="batchmean") * T**2
    ce = F.cross_entropy(student.reshape(-1, 17), targets.reshape(-1), ignore_index=IGNORE_INDEX)
    got = distillation_loss(student, teacher, targets, temperature=T, alpha=alpha)
    torch.testing.assert_close(got, alpha * kl + (1 - alpha) * ce)
    torch.testing.assert_close(distillation_loss(student, teacher, targets, alpha=0.0), ce)


def test_zero_when_the_student_copies_the_teacher_and_no_gradient_reaches_the_teacher() -> None:
    teacher = logits(4, 9, seed=6).requires_grad_()
    student = teacher.detach().clone().requires_grad_()
    loss = distillation_loss(student, teacher, temperature=4.0, alpha=1.0)
    torch.testing.assert_close(loss, torch.zeros((), dtype=torch.float64))
    (loss + (student**2).sum()).backward()
    assert teacher.grad is None and student.grad is not None


def test_high_temperature_gradient_matches_logit_matching() -> None:
    """Hinton et al. (2015, §2.1): for zero-mean logits and τ ≫ |z|, the gradient of
    τ²·KL with respect to a student logit tends to (z_i − v_i) / V per position."""
    V, positions = 10, 4
    student = logits(positions, V, seed=7)
    teacher = logits(positions, V, seed=8)
    student = (student - student.mean(-1, keepdim=True)).requires_grad_()
    teacher = teacher - teacher.mean(-1, keepdim=True)
    distillation_loss(student, teacher, temperature=1e4, alpha=1.0).backward()
    torch.testing.assert_close(student.grad, (student.detach() - teacher) / V / positions, rtol=1e-2, atol=1e-6)


def test_float16_logits_are_computed_in_float32() -> None:
    student, teacher = logits(3, 8, seed=9), logits(3, 8, seed=10)
    half = distillation_loss(student.half(), teacher.half(), temperature=2.0, alpha=1.0)
    assert half.dtype == torch.float32
    torch.testing.assert_close(half.double(), distillation_loss(student, teacher, temperature=2.0, alpha=1.0),
                               rtol=2e-2, atol=2e-3)


def test_bad_inputs_are_named() -> None:
    student, teacher = logits(2, 5, seed=11), logits(2, 5, seed=12)
    targets = torch.tensor([1, 2])
    with pytest.raises(ValueError, match="teacher_logits must have the shape"):
        distillation_loss(student, teacher[:, :4], targets)
    with pytest.raises(ValueError, match="temperature must be a positive number"):
        distillation_loss(student, teacher, targets, temperature=0)
    with pytest.raises(ValueError, match=r"alpha must be a probability in \[0, 1\]"):
        distillation_loss(student, teacher, targets, alpha=1.5)
    with pytest.raises(ValueError, match="pass alpha=1"):
        distillation_loss(student, teacher)
    with pytest.raises(ValueError, match=r"targets must have shape \(2,\)"):
        distillation_loss(student, teacher, targets[None])
    with pytest.raises(TypeError, match="floating-point"):
        distillation_loss(student, torch.ones(2, 5, dtype=torch.long), targets)
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        distillation_loss(student[0], teacher[0], alpha=1.0)
