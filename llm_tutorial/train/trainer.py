"""The training loop: one class that turns a model, a batch source and a loss into a trained model.

The trainer knows nothing about any particular model or objective. It asks for three things:

- ``model``: any ``nn.Module``;
- ``train_batches(batch_size, generator)``: draws a batch (a tensor, or a tuple/dict of them)
  using the given ``torch.Generator``, so the trainer owns — and checkpoints — the randomness of
  batch sampling;
- ``loss_fn(model, batch)``: the scalar loss of a batch (ready-made ones for each objective are in
  :mod:`.objectives`).

One optimizer step (repeated ``max_steps`` times):

1. set the learning rate from the schedule;
2. for each of ``grad_accum_steps`` micro-batches: forward, loss ``/ grad_accum_steps``, backward
   (gradients add up, so ``k`` micro-batches of ``b`` equal one batch of ``k·b``);
3. clip the gradient's global norm to ``grad_clip``;
4. AdamW update; gradients set to ``None`` (cheaper than filling them with zeros).

Speed: the loop never waits for the device inside a step. Losses stay on the device and are
copied to the host once per ``log_interval`` steps (each copy forces the CPU to wait for the GPU);
that is also when a non-finite loss is detected, and it always happens before a checkpoint is
written. The trade-off: a loss that turns NaN at step s stops training at the next log point, up to
``log_interval − 1`` steps later (the error still names step s); checking every step would cost one
wait per step. The other per-step costs are kept to the work itself: AdamW is the fused
implementation (one kernel for all tensors, :func:`.optimizer.build_adamw`), the gradient norm and
clipping are ``foreach`` operations over all gradients at once, gradients are set to ``None``
rather than zero-filled, and nothing is rebuilt per step. ``python -m llm_tutorial.bench`` profiles
the step and times it against the loop a Hugging Face user writes.

A loss can stay finite while the update it drove makes the weights NaN (a huge learning
rate), so every checkpoint also checks that all weights and optimizer moments are finite (one host
read, at checkpoint time only): a poisoned model is never saved, and the error names the newest
checkpoint that really is good.

One run per folder: while :meth:`Trainer.fit` runs (and from :meth:`Trainer.resume` on), the
trainer holds the exclusive lock of ``checkpoint_dir`` (:mod:`.lock`); a second run into the same
folder refuses at once, naming the holder. The folder is checked to be writable before step 1.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from . import lock
from .batch import Batch, leading_tensor, map_tensors
from .checkpoint import (Checkpoint, NonFiniteStateError, list_checkpoints, load_checkpoint, non_finite_state,
                         save_checkpoint)
from .trainer_config import TrainConfig
from .distributed import all_reduce_mean, barrier, current_process, shard
from .history import History
from .optimizer import build_optimizer
from .precision import autocast, autocast_dtype
from .rng import RandomState
from ..runtime import progress_bars

BatchSource = Callable[[int, torch.Generator], Batch]
LossFn = Callable[[nn.Module, Batch], torch.Tensor]

EVAL_SEED_OFFSET = 1_000_003  # validation batches come from their own generator, seeded apart


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; training stopped at the step named."""

    def __init__(self, step: int, value: float, message: str) -> None:
        super().__init__(message)
        self.step = step
        self.value = value


class Trainer:
    """Train ``model`` on batches from ``train_batches`` by minimising ``loss_fn``.

    ``metadata`` is any JSON-ready dictionary stored in every checkpoint (e.g. the run's
    configuration and the tokenizer's vocabulary, so a checkpoint alone can generate text).

    Under ``torchrun`` (a process group started, see :mod:`.distributed`) the model is wrapped in
    ``DistributedDataParallel`` and each process trains on its share of every batch.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        train_batches: BatchSource,
        config: TrainConfig,
        *,
        val_batches: BatchSource | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
        for name, value in (("loss_fn", loss_fn), ("train_batches", train_batches)):
            if not callable(value):
                raise TypeError(f"{name} must be callable, got {type(value).__name__}")
        if val_batches is not None and not callable(val_batches):
            raise TypeError(f"val_batches must be callable or None, got {type(val_batches).__name__}")
        try:
            json.dumps(metadata or {})
        except TypeError as error:
            raise TypeError(f"metadata must be JSON-serialisable (it is stored in checkpoints): {error}") from error
        first_parameter = next(model.parameters(), None)
        if first_parameter is None:
            raise ValueError(f"the model ({type(model).__name__}) has no parameters to train")
        self.model = model
        self.loss_fn = loss_fn
        self.train_batches = train_batches
        self.val_batches = val_batches
        self.config = config
        self.metadata = dict(metadata or {})
        self.device = first_parameter.device
        self.process = current_process(self.device)
        if config.batch_size % self.process.world_size:
            raise ValueError(
                f"batch_size={config.batch_size} must be divisible by the number of processes "
                f"({self.process.world_size}), so that each takes an equal share"
            )
        self.autocast_dtype = autocast_dtype(config.precision, self.device)
        self.scaler = torch.amp.GradScaler("cuda") if self.autocast_dtype == torch.float16 else None
        self.optimizer = build_optimizer(model, config)
        self.schedule = config.schedule
        self.generator = torch.Generator().manual_seed(config.seed)
        self.history = History()
        self.step = 0
        self.resumed_from: Path | None = None
        self._train_model = self._wrap(model)
        self._params = [p for p in model.parameters() if p.requires_grad]
        self._pending: list[tuple[int, float, torch.Tensor, torch.Tensor]] = []
        self._wall_time_before = 0.0
        self._fitting_since: float | None = None
        self._interval_start = time.perf_counter()
        self._interval_tokens = 0
        self._lock: Path | None = None

    def _hold_lock(self) -> None:
        """Take the lock of ``checkpoint_dir`` (rank 0 only), checking first that it is writable."""
        if self.config.checkpoint_dir is not None and self._lock is None and self.process.is_main:
            self._lock = lock.acquire(self.config.checkpoint_dir)

    def adopt_lock(self, key: Path | None) -> None:
        """Take over a lock of ``checkpoint_dir`` already acquired (by the command line, before it read
        the data): the trainer releases it when :meth:`fit` ends."""
        self._lock = key

    def _release_lock(self) -> None:
        if self._lock is not None:
            lock.release(self._lock)
            self._lock = None

    def _wrap(self, model: nn.Module) -> nn.Module:
        if self.process.world_size > 1:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            model = nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
        if self.config.compile:
            model = torch.compile(model)
        return model

    # ------------------------------------------------------------------ training
    def fit(self, until: int | None = None) -> History:
        """Train until step ``until`` (default ``max_steps``), evaluating, logging and
        checkpointing on the way. Stopping early and calling ``fit`` again (or resuming from a
        checkpoint) continues exactly where training stopped: the schedule still runs to
        ``max_steps``.

        Returns the history (also kept as ``self.history``). Raises :class:`NonFiniteLossError`
        if the loss stops being a finite number."""
        config = self.config
        until = config.max_steps if until is None else until
        if not isinstance(until, int) or not self.step <= until <= config.max_steps:
            raise ValueError(f"until must be an integer step in [{self.step}, max_steps={config.max_steps}], got {until!r}")
        self._hold_lock()
        try:
            self._refuse_to_mix_runs()
        except BaseException:
            self._release_lock()
            raise
        self._fitting_since = self._interval_start = time.perf_counter()
        if self.val_batches is not None and self.step == 0 and not self.history.eval_step:
            self.evaluate()
        bar = tqdm(total=config.max_steps, initial=self.step, desc="training", unit="step",
                   disable=not (progress_bars(config.progress) and self.process.is_main), dynamic_ncols=True)
        try:
            while self.step < until:
                self._train_step()
                self.step += 1
                bar.update(1)
                finished = self.step == config.max_steps
                eval_due = self.val_batches is not None and (self.step % config.eval_interval == 0 or finished)
                save_due = config.checkpoint_dir is not None and (
                    self.step % config.checkpoint_interval == 0 or finished)
                if self.step % config.log_interval == 0 or eval_due or save_due or self.step == until:
                    self._flush(bar)
                if eval_due:
                    self.evaluate()
                    bar.set_postfix(self._postfix(), refresh=False)
                if save_due:
                    self.save_checkpoint()
        finally:
            bar.close()
            self._wall_time_before = self.wall_time()
            self._fitting_since = None
            self._release_lock()
        return self.history

    def _train_step(self) -> None:
        """One optimizer step over ``grad_accum_steps`` micro-batches. No host-device sync."""
        config = self.config
        lr = self.schedule(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        accum = config.grad_accum_steps
        step_loss = None
        for micro in range(accum):
            batch = self._draw(self.train_batches, self.generator, count_tokens=True)
            last = micro == accum - 1
            sync = nullcontext() if last or self.process.world_size == 1 else self._train_model.no_sync()
            with sync:
                with autocast(self.device, self.autocast_dtype):
                    loss = self.loss_fn(self._train_model, batch)
                _check_scalar_loss(loss)
                scaled = loss.float() / accum if accum > 1 else loss.float()  # ÷1 would add an op and a node
                (self.scaler.scale(scaled) if self.scaler else scaled).backward()
            step_loss = scaled.detach() if step_loss is None else step_loss + scaled.detach()
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        grad_norm = self._clip_gradients()
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self._pending.append((self.step, lr, step_loss, grad_norm))

    def _clip_gradients(self) -> torch.Tensor:
        """Global gradient norm ``‖g‖ = sqrt(Σ_p ‖g_p‖²)``; if it exceeds ``grad_clip`` every
        gradient is scaled by ``grad_clip / ‖g‖``, keeping its direction."""
        if self.config.grad_clip > 0:
            return torch.nn.utils.clip_grad_norm_(self._params, self.config.grad_clip, foreach=True)
        grads = [p.grad for p in self._params if p.grad is not None]
        return torch.nn.utils.get_total_norm(grads, foreach=True)

    def _draw(self, source: BatchSource, generator: torch.Generator, count_tokens: bool = False) -> Batch:
        """The global batch from ``source``, this process's share of it, moved to the device."""
        batch = source(self.config.batch_size, generator)
        if count_tokens:
            self._interval_tokens += leading_tensor(batch).numel()
        return map_tensors(shard(batch, self.process), lambda t: t.to(self.device, non_blocking=True))

    def _flush(self, bar: tqdm | None = None) -> None:
        """Copy the pending losses to the host (one sync), check them, record them."""
        if not self._pending:
            return
        losses = torch.stack([loss for _, _, loss, _ in self._pending])
        norms = torch.stack([norm.float() for _, _, _, norm in self._pending])
        values = all_reduce_mean(torch.stack([losses, norms]), self.process).tolist()
        elapsed = time.perf_counter() - self._interval_start
        for (step, lr, _, _), loss, norm in zip(self._pending, *values):
            if not math.isfinite(loss):
                self._pending.clear()
                raise self._non_finite(step, lr, loss)
            self.history.step.append(step)
            self.history.train_loss.append(loss)
            self.history.lr.append(lr)
            self.history.grad_norm.append(norm)
        self.history.log_step.append(self._pending[-1][0])
        self.history.tokens_per_s.append(self._interval_tokens / max(elapsed, 1e-9))
        self.history.wall_time.append(self.wall_time())
        self._pending.clear()
        self._restart_interval()
        if bar is not None:
            bar.set_postfix(self._postfix(), refresh=False)

    def _non_finite(self, step: int, lr: float, value: float) -> NonFiniteLossError:
        return NonFiniteLossError(step, value, f"training loss became {value} at step {step} "
                                               f"(lr {lr:.3g}); training stopped. {self._last_good()}")

    def _last_good(self) -> str:
        """Where to resume after a non-finite step. Checkpoints are only ever written with finite
        weights, so the newest one in ``checkpoint_dir`` is good."""
        directory = self.config.checkpoint_dir
        if directory is None:
            return "No checkpoint had been written (set checkpoint_dir to keep one)."
        saved = list_checkpoints(directory)
        if not saved:
            return (f"No checkpoint had been written to {directory} yet (every {self.config.checkpoint_interval} "
                    "steps): start again with a lower lr, a longer warm-up or grad_clip > 0.")
        return (f"The last good checkpoint, {saved[-1]}, is kept: resume from it with a lower lr, a longer "
                "warm-up or grad_clip > 0.")

    def _restart_interval(self) -> None:
        self._interval_start = time.perf_counter()
        self._interval_tokens = 0

    def _postfix(self) -> dict[str, str]:
        postfix = {}
        if self.history.train_loss:
            postfix["loss"] = f"{self.history.train_loss[-1]:.4f}"
        if self.history.val_loss:
            postfix["val"] = f"{self.history.val_loss[-1]:.4f}"
        if self.history.tokens_per_s:
            postfix["tok/s"] = f"{self.history.tokens_per_s[-1]:,.0f}"
        return postfix

    # ---------------------------------------------------------------- evaluation
    @torch.no_grad()
    def evaluate(self) -> float:
        """Mean loss over ``eval_batches`` validation batches, recorded in the history.

        The batches come from a generator seeded afresh each time, so every evaluation scores the
        same examples (points on the curve are comparable) and training's randomness is untouched
        (a resumed run evaluates identically)."""
        if self.val_batches is None:
            raise ValueError("evaluate() needs val_batches; pass them to the Trainer")
        generator = torch.Generator().manual_seed(self.config.seed + EVAL_SEED_OFFSET)
        was_training = self.model.training
        self.model.eval()
        losses = []
        for _ in range(self.config.eval_batches):
            batch = self._draw(self.val_batches, generator)
            with autocast(self.device, self.autocast_dtype):
                losses.append(self.loss_fn(self.model, batch).float())
        self.model.train(was_training)
        val_loss = all_reduce_mean(torch.stack(losses).mean(), self.process).item()
        self.history.eval_step.append(self.step)
        self.history.val_loss.append(val_loss)
        self._restart_interval()
        return val_loss

    # --------------------------------------------------------------- checkpoints
    def wall_time(self) -> float:
        """Seconds spent in :meth:`fit`, summed over every call and every session of a resumed run."""
        running = time.perf_counter() - self._fitting_since if self._fitting_since is not None else 0.0
        return self._wall_time_before + running

    def save_checkpoint(self) -> Path | None:
        """Write a checkpoint of the current step into ``checkpoint_dir`` (rank 0 only).

        Returns its path (``None`` on other ranks)."""
        if self.config.checkpoint_dir is None:
            raise ValueError("save_checkpoint() needs TrainConfig.checkpoint_dir")
        self._flush()
        self._refuse_non_finite_state()
        path = None
        if self.process.is_main:
            held = self._lock is not None
            self._hold_lock()
            try:
                path = save_checkpoint(
                    self.config.checkpoint_dir, self.step,
                    model=self.model, optimizer=self.optimizer,
                    random_state=RandomState.capture({"batches": self.generator}),
                    history=self.history, train_config=self.config.to_dict(),
                    extra={"wall_time": self.wall_time(),
                           "grad_scaler": self.scaler.state_dict() if self.scaler else None,
                           "metadata": self.metadata},
                    keep=self.config.keep_checkpoints,
                )
            finally:
                if not held:
                    self._release_lock()
        barrier(self.process)
        self._restart_interval()
        return path

    def _refuse_non_finite_state(self) -> None:
        """Stop if any weight or optimizer moment is NaN or infinite, before a checkpoint could
        save it. Every process checks (their weights are identical), so all stop together."""
        bad = non_finite_state(self.model, self.optimizer)
        if bad:
            step = self.step - 1
            raise NonFiniteLossError(
                step, math.nan,
                f"the weights or optimizer state became NaN or infinite by step {step} (lr "
                f"{self.schedule(max(step, 0)):.3g}), while the loss was still finite: the update was too large. "
                f"Training stopped and no checkpoint of step {self.step} was written. {self._last_good()} "
                f"({NonFiniteStateError(bad)})")

    def resume(self, path: str | Path) -> Checkpoint:
        """Continue from the checkpoint at ``path`` (or the newest in the run directory ``path``):
        weights, optimizer moments, step, history, and every random generator's state.

        From here until :meth:`fit` ends the trainer holds the lock of its ``checkpoint_dir``."""
        self._hold_lock()
        checkpoint = load_checkpoint(path)
        checkpoint.load_weights(self.model)
        self.optimizer.load_state_dict(checkpoint.optimizer_state())
        checkpoint.random_state().restore({"batches": self.generator})
        self.history = checkpoint.history
        self.step = checkpoint.step
        self._wall_time_before = float(checkpoint.extra.get("wall_time", 0.0))
        scaler_state = checkpoint.extra.get("grad_scaler")
        if self.scaler is not None and scaler_state:
            self.scaler.load_state_dict(scaler_state)
        self.resumed_from = checkpoint.path
        return checkpoint

    def _refuse_to_mix_runs(self) -> None:
        """A fresh run must not write into a directory holding another run's checkpoints: the
        newest checkpoint there would later be mistaken for this run's."""
        directory = self.config.checkpoint_dir
        if directory is None or self.step > 0 or self.resumed_from is not None:
            return
        existing = list_checkpoints(directory)
        if existing:
            raise FileExistsError(
                f"checkpoint_dir {directory} already holds checkpoints of a run (newest: {existing[-1].name}). "
                "Resume that run (Trainer.resume / --resume), or choose another directory."
            )


def _check_scalar_loss(loss: object) -> None:
    if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
        shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
        raise ValueError(f"loss_fn must return a scalar tensor (the batch's mean loss), got {shape}")
    if not loss.requires_grad:
        raise ValueError("loss_fn returned a loss that does not require grad: was it computed under "
                         "torch.no_grad(), or detached?")
