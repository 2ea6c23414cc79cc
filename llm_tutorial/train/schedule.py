"""The learning-rate schedule: a linear warm-up, then a cosine decay to a floor.

Early in training Adam's second-moment estimates are poor and the loss surface is steep, so a full
learning rate makes the first updates overshoot; ramping it up over ``warmup_steps`` avoids that.
Afterwards a cosine curve lowers the rate smoothly, so the last steps take small, careful moves.

The schedule is a pure function of the step. It holds no state of its own, which is why a resumed
run needs only the step number to land on exactly the same learning rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .._checks import check_int, check_number, check_positive_int, check_positive_number


@dataclass(frozen=True)
class WarmupCosineSchedule:
    r"""Learning rate at optimizer step ``s`` (counting from 0):

    .. math::
        \eta_s = \begin{cases}
            \eta_{\max}\,\frac{s + 1}{W} & s < W \\
            \eta_{\min} + \tfrac12(\eta_{\max} - \eta_{\min})\bigl(1 + \cos(\pi p)\bigr),
                \quad p = \frac{s - W}{S - W} & W \le s \le S \\
            \eta_{\min} & s > S
        \end{cases}

    with ``W = warmup_steps`` and ``S = max_steps``. The first step already moves (``(0+1)/W``),
    step ``W - 1`` reaches the peak, and step ``S`` reaches the floor.
    """

    lr: float
    min_lr: float
    warmup_steps: int
    max_steps: int

    def __post_init__(self) -> None:
        check_positive_number(self.lr, "lr")
        check_number(self.min_lr, "min_lr", 0, self.lr, hint=" (the floor lies between 0 and lr)")
        check_positive_int(self.max_steps, "max_steps")
        check_int(self.warmup_steps, "warmup_steps", 0, self.max_steps,
                  hint=" (0 to max_steps: a warm-up longer than the run never reaches the peak learning rate)")

    def __call__(self, step: int) -> float:
        if not isinstance(step, int) or step < 0:
            raise ValueError(f"step must be a non-negative integer, got {step!r}")
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        if step > self.max_steps:
            return self.min_lr
        progress = (step - self.warmup_steps) / max(1, self.max_steps - self.warmup_steps)
        return self.min_lr + 0.5 * (self.lr - self.min_lr) * (1.0 + math.cos(math.pi * progress))
