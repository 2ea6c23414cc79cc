"""The trainer's settings, in one dataclass checked when it is built.

Every impossible combination (a warm-up longer than the run, zero accumulation steps, an unknown
precision) fails here, with a message naming the field, before a model is built or a batch drawn.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .._checks import check_choice, check_int, check_number, check_positive_int, check_probability
from .schedule import WarmupCosineSchedule

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
OPTIMIZERS = ("adamw", "muon")


@dataclass
class TrainConfig:
    """How to train: optimiser, schedule, batching, evaluation, checkpoints.

    The defaults are the settings of chapter 5's benchmark run (the presets ``shakespeare-char``
    and ``shakespeare-char-llama``, whose YAML files leave ``train`` to them).

    ``batch_size`` is the number of examples in one micro-batch summed over all processes; one
    optimizer step sees ``batch_size * grad_accum_steps`` examples. Under ``torchrun`` each of the
    ``W`` processes takes ``batch_size / W`` of every micro-batch, so the result does not depend on
    how many processes share the work.

    ``precision``: ``"auto"`` is bf16 autocast on a CUDA GPU that supports it, fp16 with loss
    scaling on an older GPU (e.g. Colab's T4), and fp32 on a CPU; ``"bf16"`` asks for bf16 autocast
    on any device; ``"fp16"`` needs CUDA.

    ``optimizer``: ``"adamw"`` for every parameter, or ``"muon"`` (:mod:`.muon`): Muon for the
    hidden weight matrices at ``lr · muon_lr_scale``, AdamW for embeddings, head and vectors;
    ``muon_ns_steps`` Newton–Schulz iterations orthogonalise each update (fewer are cheaper and
    leave the singular values further from 1).
    """

    batch_size: int = 12
    max_steps: int = 2000
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_steps: int = 100
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.99)
    grad_clip: float = 1.0
    grad_accum_steps: int = 1
    eval_interval: int = 250
    eval_batches: int = 20
    log_interval: int = 10
    precision: str = "auto"
    checkpoint_dir: str | None = None
    checkpoint_interval: int = 500
    keep_checkpoints: int = 2
    seed: int = 1337
    compile: bool = False
    progress: bool = True
    optimizer: str = "adamw"
    muon_lr_scale: float = 20.0
    muon_ns_steps: int = 5

    def __post_init__(self) -> None:
        self.betas = tuple(self.betas)
        for name in ("batch_size", "max_steps", "grad_accum_steps", "eval_interval", "eval_batches",
                     "log_interval", "checkpoint_interval", "keep_checkpoints"):
            check_positive_int(getattr(self, name), name)
        self.schedule  # the schedule checks lr, min_lr, warmup_steps and max_steps
        check_number(self.weight_decay, "weight_decay", 0)
        if len(self.betas) != 2:
            raise ValueError(f"betas must be two numbers (beta1, beta2), got {self.betas!r}")
        for beta in self.betas:
            check_probability(beta, "each of betas", inclusive_high=False)
        check_number(self.grad_clip, "grad_clip", 0, hint=" (0 turns clipping off)")
        check_choice(self.precision, "precision", PRECISIONS)
        check_choice(self.optimizer, "optimizer", OPTIMIZERS)
        check_number(self.muon_lr_scale, "muon_lr_scale", 0, above=True)
        check_positive_int(self.muon_ns_steps, "muon_ns_steps")
        check_int(self.seed, "seed")

    @property
    def schedule(self) -> WarmupCosineSchedule:
        """The learning rate at each step: linear warm-up, then cosine decay to ``min_lr``."""
        return WarmupCosineSchedule(self.lr, self.min_lr, self.warmup_steps, self.max_steps)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy (tuples become lists)."""
        data = asdict(self)
        data["betas"] = list(self.betas)
        return data
