"""One training run from a :class:`RunConfig`: the entry point of ``python -m llm_tutorial train``.

It reads the corpus, builds the tokenizer, splits the ids into training and validation text,
checks that the run is possible, builds the GPT, and hands everything to the :class:`Trainer`.
The same function runs alone or as one of the processes ``torchrun`` starts: it joins the process
group when there is one, and the trainer shares every batch among the processes.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import torch

from ..data import CORPORA, encode_corpus, get_batch, load_text, train_val_split
from ..runtime import seed_everything
from . import lock
from .checkpoint import latest_checkpoint
from .distributed import end_process_group, start_process_group
from .history import History
from .objectives import causal_lm_loss
from .run_config import RunConfig, check_device
from .trainer import Trainer


def read_corpus(corpus: str) -> str:
    """A named corpus of :mod:`llm_tutorial.data`, or the text of a UTF-8 file."""
    if corpus in CORPORA:
        return load_text(corpus)
    path = Path(corpus)
    if path.is_file():
        try:
            return path.read_text(encoding="utf-8")
        except UnicodeDecodeError as error:
            raise ValueError(f"data.corpus {path} is not UTF-8 text (byte {error.start} cannot be decoded): is it a "
                             "binary file? Give a plain-text file") from error
    raise ValueError(f"data.corpus {corpus!r} is neither a named corpus ({', '.join(CORPORA)}) nor a text file")


def build_tokenizer(kind: str, text: str) -> Any:
    """``"char"``: the characters of ``text``; ``"gpt2"``: GPT-2's byte-level BPE."""
    from ..tokenizers import ByteLevelBPE, CharTokenizer

    if kind == "char":
        return CharTokenizer.from_text(text)
    if kind == "gpt2":
        from ..data import data_path

        return ByteLevelBPE.from_gpt2_files(data_path("gpt2-vocab"), data_path("gpt2-merges"))
    raise ValueError(f"unknown tokenizer {kind!r}; choose 'char' or 'gpt2'")


def tokenizer_state(tokenizer: Any) -> dict[str, Any]:
    """What a checkpoint stores to rebuild the tokenizer (a char alphabet, or just "gpt2")."""
    from ..tokenizers import CharTokenizer

    if isinstance(tokenizer, CharTokenizer):
        return {"kind": "char", "chars": tokenizer.chars, "special_tokens": list(tokenizer.special_tokens)}
    return {"kind": "gpt2"}


def tokenizer_from_state(state: dict[str, Any]) -> Any:
    """The inverse of :func:`tokenizer_state`."""
    from ..tokenizers import CharTokenizer

    if state.get("kind") == "char":
        return CharTokenizer(state["chars"], state["special_tokens"])
    return build_tokenizer(state.get("kind", "?"), "")


def check_windows(ids: torch.Tensor, context_length: int, batch_size: int, split: str) -> None:
    """A split of ``N`` tokens holds ``N - T`` distinct windows of ``T + 1`` tokens (inputs plus
    the shifted target); a batch needs at least as many."""
    windows = len(ids) - context_length
    if windows < batch_size:
        raise ValueError(
            f"the batch is larger than the data: the {split} split has {len(ids)} tokens, i.e. {max(windows, 0)} "
            f"windows of {context_length + 1} tokens, fewer than batch_size={batch_size}. Use a smaller batch_size "
            "or context_length, more text, or (for validation) a larger val_fraction."
        )


class ContextWarmup:
    """A training batch source whose window grows with the step: a sequence-length warm-up.

    At step ``s`` the windows hold ``T_s = start + (T − start) · s / S`` tokens (rounded down to
    a multiple of 8, at least ``start``; the full ``T`` from step ``S = steps`` on). Early steps
    are cheap and still teach what short contexts already can (spelling, common words); the
    long-range part of the task comes once the model is ready for it. The trainer draws
    ``calls_per_step`` batches per optimizer step (its gradient accumulation) and knows nothing
    of this schedule, so the source counts its own calls; :meth:`start_at` sets the count when a
    run resumes.
    """

    def __init__(self, ids: torch.Tensor, context: int, start: int, steps: int, calls_per_step: int = 1) -> None:
        if not 1 <= start <= context:
            raise ValueError(f"context_warmup_start must be between 1 and the window ({context}), got {start}")
        self.ids, self.context, self.start, self.steps = ids, context, start, steps
        self.calls_per_step = calls_per_step
        self.calls = 0

    def window(self, step: int) -> int:
        """Tokens per window at optimizer step ``step``."""
        if step >= self.steps:
            return self.context
        grown = self.start + (self.context - self.start) * step // self.steps
        return max(self.start, grown // 8 * 8)

    def start_at(self, step: int) -> None:
        """Continue the schedule from optimizer step ``step`` (after a resume)."""
        self.calls = step * self.calls_per_step

    def __call__(self, batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        window = self.window(self.calls // self.calls_per_step)
        self.calls += 1
        return get_batch(self.ids, batch_size, window, generator)  # (B, T_s) each


@dataclasses.dataclass
class PreparedRun:
    """What a run needs before a model exists: the tokenizer, the split ids and the GPT's config."""

    tokenizer: Any
    train_ids: torch.Tensor  # (N_train,)
    val_ids: torch.Tensor  # (N_val,)
    model_config: Any  # GPTConfig
    context: int  # tokens per training window
    context_warmup_steps: int = 0
    context_warmup_start: int = 16
    calls_per_step: int = 1  # the trainer's grad_accum_steps

    def batches(self, split: str):
        """A batch source ``(batch_size, generator) -> (x, y)`` over the training or validation ids;
        the training source follows the sequence-length warm-up, if the run has one."""
        ids = self.train_ids if split == "train" else self.val_ids
        if split == "train" and self.context_warmup_steps:
            return ContextWarmup(ids, self.context, min(self.context_warmup_start, self.context),
                                 self.context_warmup_steps, self.calls_per_step)
        return lambda n, g: get_batch(ids, n, self.context, g)


def prepare_run(run: RunConfig) -> PreparedRun:
    """Corpus → tokenizer → ids → train/validation split → model config, with every check that
    needs no model: a context longer than the model's, or a batch larger than the data, fails here."""
    from ..models.gpt import GPTConfig

    text = read_corpus(run.data.corpus)
    tokenizer = build_tokenizer(run.data.tokenizer, text)
    ids = encode_corpus(tokenizer.encode(text), tokenizer.vocab_size)  # the data boundary: ids checked once
    train_ids, val_ids = train_val_split(ids, run.data.val_fraction)
    fields = {k: v for k, v in run.model.items() if k != "preset"}
    model_config = GPTConfig.preset(run.model["preset"], vocab_size=tokenizer.vocab_size, **fields)
    context = run.data.context_length or model_config.context_length
    if context > model_config.context_length:
        raise ValueError(f"data.context_length={context} is longer than the model's context_length="
                         f"{model_config.context_length}: the model has no positions beyond it")
    check_windows(train_ids, context, run.train.batch_size, "training")
    check_windows(val_ids, context, run.train.batch_size, "validation")
    return PreparedRun(tokenizer, train_ids, val_ids, model_config, context, run.data.context_warmup_steps,
                       run.data.context_warmup_start, run.train.grad_accum_steps)


def train_from_config(run: RunConfig, out_dir: str | Path, resume: str | Path | None = None) -> History:
    """Train the run's GPT, writing checkpoints to ``out_dir``; continue from ``resume`` if given.

    Every check (a device this machine lacks, an ``out_dir`` that cannot be written, a folder
    another live run holds, a context longer than the model's, a batch larger than the data, a
    directory holding another run) fails before the first training step. Returns the history."""
    from ..models.gpt import GPT

    if resume is not None and latest_checkpoint(resume) is None:
        raise FileNotFoundError(f"--resume {resume}: no complete checkpoint there")
    check_device(run.device)
    lock.check_writable(out_dir, "--out")
    main_process = int(os.environ.get("RANK", "0")) == 0
    held = None
    if Path(out_dir).is_dir() and main_process:
        held = lock.acquire(out_dir)  # an existing folder: refuse at once if another run holds it
    process = start_process_group(run.device)
    try:
        prepared = prepare_run(run)
        if held is None and main_process:
            held = lock.acquire(out_dir)  # a new folder: made only now that the run is known to be possible
        seed_everything(run.train.seed)
        model = GPT(prepared.model_config).to(process.device)
        model.check_token_range = False  # ids checked once in prepare_run: no step reads back from the device
        train_config = dataclasses.replace(run.train, checkpoint_dir=str(out_dir))
        train_batches = prepared.batches("train")
        trainer = Trainer(
            model, causal_lm_loss, train_batches, train_config,
            val_batches=prepared.batches("validation"),
            metadata={"run": run.to_dict(), "tokenizer": tokenizer_state(prepared.tokenizer)},
        )
        trainer.adopt_lock(held)
        if resume is not None:
            trainer.resume(resume)
            if isinstance(train_batches, ContextWarmup):
                train_batches.start_at(trainer.step)
        if process.is_main:
            print(f"{model.num_parameters():,} parameters · {len(prepared.train_ids):,} training tokens · device "
                  f"{process.device} × {process.world_size} process(es) · from step {trainer.step}", flush=True)
        history = trainer.fit()
        if process.is_main:
            print(summary(history), flush=True)
        return history
    finally:
        if held is not None:
            lock.release(held)
        end_process_group()


def summary(history: History) -> str:
    """One line: final losses, steps, wall time, training speed."""
    parts = [f"step {history.step[-1] + 1 if history.step else 0}"]
    if history.train_loss:
        parts.append(f"train loss {history.train_loss[-1]:.4f}")
    if history.val_loss:
        parts.append(f"val loss {history.val_loss[-1]:.4f}")
    if history.wall_time:
        parts.append(f"wall time {history.wall_time[-1]:.1f} s")
    if history.tokens_per_s:
        median = sorted(history.tokens_per_s)[len(history.tokens_per_s) // 2]
        parts.append(f"median {median:,.0f} tokens/s")
    return " · ".join(parts)
