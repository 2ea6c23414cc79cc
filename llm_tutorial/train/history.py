"""What happened during training, step by step: losses, learning rate, speed.

The history is saved inside every checkpoint, so a resumed run carries on the same curves, and it
plots itself: the training loss of every optimizer step beside the validation loss measured every
``eval_interval`` steps. A widening gap between the two is over-fitting made visible.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any


@dataclass
class History:
    """Parallel lists, one entry per event.

    - per optimizer step: ``step``, ``train_loss`` (mean over the step's micro-batches and
      processes), ``lr``, ``grad_norm`` (before clipping);
    - per evaluation: ``eval_step``, ``val_loss``;
    - per log line: ``log_step``, ``tokens_per_s`` (training throughput since the previous log,
      evaluation and checkpointing excluded), ``wall_time`` (seconds since training began,
      summed over resumed sessions).
    """

    step: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    grad_norm: list[float] = field(default_factory=list)
    eval_step: list[int] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    log_step: list[int] = field(default_factory=list)
    tokens_per_s: list[float] = field(default_factory=list)
    wall_time: list[float] = field(default_factory=list)

    @property
    def last_val_loss(self) -> float | None:
        """The most recent validation loss, or ``None`` before the first evaluation."""
        return self.val_loss[-1] if self.val_loss else None

    def to_dict(self) -> dict[str, list]:
        """A JSON-ready dictionary (non-finite numbers become ``None``, which JSON can hold)."""
        return {name: [_finite_or_none(v) for v in values] for name, values in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> History:
        """The inverse of :meth:`to_dict`; unknown keys are an error, so a typo cannot pass."""
        if not isinstance(data, dict):
            raise TypeError(f"a history must be a dict of lists, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown history fields {unknown}; expected some of {sorted(known)}")
        return cls(**{k: [math.nan if v is None else v for v in values] for k, values in data.items()})

    def save(self, path: str | Path) -> None:
        """Write the history as JSON."""
        Path(path).write_text(json.dumps(self.to_dict()))

    @classmethod
    def load(cls, path: str | Path) -> History:
        """Read a history written by :meth:`save`."""
        return cls.from_dict(json.loads(Path(path).read_text()))

    def plot(self, ax: Any = None, title: str = "Training and validation loss") -> Any:
        """Train loss per step (thin line) and validation loss per evaluation (dots), on ``ax``
        (a new figure when ``None``). Returns the matplotlib ``Axes``."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(7, 4))
        if self.step:
            ax.plot(self.step, self.train_loss, lw=0.8, alpha=0.7, label="train (per step)")
        if self.eval_step:
            ax.plot(self.eval_step, self.val_loss, "o-", ms=4, label="validation")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("cross-entropy loss (nats per token)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        if self.step or self.eval_step:
            ax.legend()
        return ax


def _finite_or_none(value: float | int) -> float | int | None:
    return value if math.isfinite(value) else None
