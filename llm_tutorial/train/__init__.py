"""Training: the loop, its schedule and optimizer, checkpoints with exact resume, and ``torchrun``.

- :class:`TrainConfig`  every setting of the trainer, checked when built (:mod:`.trainer_config`)
- :class:`Trainer`      the model-agnostic loop (``fit``, ``evaluate``, ``save_checkpoint``, ``resume``)
- :class:`History`      losses, learning rate and speed per step; plots itself
- :mod:`.checkpoint`    atomic, pickle-free checkpoints (safetensors + JSON)
- :mod:`.objectives`    ready-made ``loss_fn(model, batch)`` for each pre-training objective
- :mod:`.run_config`    a whole run in one YAML file or preset: model, data and ``TrainConfig``
- :mod:`.launch`        builds what a run config names and trains it (``python -m llm_tutorial train``)
"""

from __future__ import annotations

from .checkpoint import Checkpoint, latest_checkpoint, list_checkpoints, load_checkpoint, save_checkpoint
from .trainer_config import TrainConfig
from .history import History
from .optimizer import build_adamw, parameter_groups
from .schedule import WarmupCosineSchedule
from .trainer import NonFiniteLossError, Trainer

__all__ = [
    "Checkpoint",
    "History",
    "NonFiniteLossError",
    "TrainConfig",
    "Trainer",
    "WarmupCosineSchedule",
    "build_adamw",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "parameter_groups",
    "save_checkpoint",
]
