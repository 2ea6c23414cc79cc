"""The warm-up + cosine schedule against its closed form and against PyTorch's own schedulers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from llm_tutorial.train import TrainConfig, WarmupCosineSchedule


def closed_form(step: np.ndarray, lr: float, min_lr: float, warmup: int, max_steps: int) -> np.ndarray:
    warm = lr * (step + 1) / max(warmup, 1)
    progress = np.clip((step - warmup) / max(1, max_steps - warmup), 0.0, 1.0)
    cosine = min_lr + 0.5 * (lr - min_lr) * (1 + np.cos(np.pi * progress))
    return np.where(step < warmup, warm, cosine)


@pytest.mark.parametrize("lr, min_lr, warmup, max_steps", [
    (1e-3, 1e-4, 100, 2000), (6e-4, 0.0, 7, 53), (3e-4, 3e-5, 0, 11), (1.0, 0.5, 13, 13), (2e-3, 2e-3, 5, 9),
])
def test_matches_closed_form(lr, min_lr, warmup, max_steps):
    schedule = WarmupCosineSchedule(lr, min_lr, warmup, max_steps)
    steps = np.arange(max_steps + 20)
    got = np.array([schedule(int(s)) for s in steps])
    np.testing.assert_allclose(got, closed_form(steps, lr, min_lr, warmup, max_steps), rtol=1e-12, atol=0)


def test_landmarks():
    schedule = WarmupCosineSchedule(lr=1e-3, min_lr=1e-4, warmup_steps=10, max_steps=110)
    assert schedule(0) == pytest.approx(1e-4)          # (0 + 1) / 10 of the peak: the first step moves
    assert schedule(9) == pytest.approx(1e-3)          # the peak at the last warm-up step
    assert schedule(10) == pytest.approx(1e-3)         # cosine starts at the peak
    assert schedule(60) == pytest.approx(5.5e-4)       # half-way: the mean of peak and floor
    assert schedule(110) == pytest.approx(1e-4)        # the floor at max_steps
    assert schedule(500) == pytest.approx(1e-4)        # and after it
    rates = [schedule(s) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(rates, rates[1:])), "the cosine phase must never rise"


def test_matches_pytorch_schedulers():
    """LinearLR (warm-up) then CosineAnnealingLR, chained by SequentialLR, give the same curve."""
    lr, min_lr, warmup, max_steps = 1e-3, 1e-4, 17, 101
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=lr)
    torch_schedule = torch.optim.lr_scheduler.SequentialLR(optimizer, [
        torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1 / warmup, end_factor=1.0, total_iters=warmup - 1),
        torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max_steps - warmup, eta_min=min_lr),
    ], milestones=[warmup])
    ours = WarmupCosineSchedule(lr, min_lr, warmup, max_steps)
    for step in range(max_steps + 1):
        assert optimizer.param_groups[0]["lr"] == pytest.approx(ours(step), rel=1e-9), step
        optimizer.step()
        torch_schedule.step()


def test_train_config_builds_the_same_schedule():
    config = TrainConfig(lr=3e-4, min_lr=3e-5, warmup_steps=5, max_steps=50)
    assert config.schedule == WarmupCosineSchedule(3e-4, 3e-5, 5, 50)
    assert config.schedule(25) == pytest.approx(3e-5 + 0.5 * 2.7e-4 * (1 + math.cos(math.pi * 20 / 45)))


@pytest.mark.parametrize("kwargs, match", [
    (dict(lr=1e-3, min_lr=1e-4, warmup_steps=101, max_steps=100), "warmup_steps must be an integer in"),
    (dict(lr=1e-3, min_lr=1e-4, warmup_steps=-1, max_steps=100), "warmup_steps"),
    (dict(lr=1e-3, min_lr=2e-3, warmup_steps=1, max_steps=100), r"min_lr must be a number in \[0, "),
    (dict(lr=0.0, min_lr=0.0, warmup_steps=1, max_steps=100), "lr must be a positive number"),
    (dict(lr="1e-3", min_lr=0.0, warmup_steps=1, max_steps=100), "lr must be a positive number"),
    (dict(lr=1e-3, min_lr=0.0, warmup_steps=1, max_steps=0), "max_steps must be a positive integer"),
])
def test_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        WarmupCosineSchedule(**kwargs)


def test_bad_step():
    schedule = WarmupCosineSchedule(1e-3, 1e-4, 10, 100)
    with pytest.raises(ValueError, match="step must be a non-negative integer"):
        schedule(-1)
    with pytest.raises(ValueError, match="step must be a non-negative integer"):
        schedule(2.5)
