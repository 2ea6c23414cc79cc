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


@dataclasses.dataclass
class PreparedRun:
    """What a run needs before a model exists: the tokenizer, the split ids and the GPT's config."""

    tokenizer: Any
    train_ids: torch.Tensor  # (N_train,)
    val_ids: torch.Tensor  # (N_val,)
    model_config: Any  # GPTConfig
    context: int  # tokens per training window

    def batches(self, split: str):
        """A batch source ``(batch_size, generator) -> (x, y)`` over the training or validation ids."""
        ids = self.train_ids if split == "train" else self.val_ids
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
    return PreparedRun(tokenizer, train_ids, val_ids, model_config, context)


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
        trainer = Trainer(
            model, causal_lm_loss, prepared.batches("train"), train_config,
            val_batches=prepared.batches("validation"),
            metadata={"run": run.to_dict(), "tokenizer": tokenizer_state(prepared.tokenizer)},
        )
        trainer.adopt_lock(held)
        if resume is not None:
            trainer.resume(resume)
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
