"""A fair race between training recipes: wall time to a validation loss, seed by seed.

A *speedrun* (Keller Jordan's modded-nanogpt made the word stick for language models) asks how
fast a recipe reaches a fixed validation loss on fixed data. The rules this harness enforces, the
ones such a record needs to be believed:

* **Same task.** Every recipe reads the same corpus through the same tokenizer, and is judged on
  the same held-out text (the run config's last ``val_fraction``). Model, context, batch,
  optimizer and schedule are free: they are what is being raced.
* **Only training is timed.** The clock runs while the trainer trains (its :meth:`Trainer.fit`,
  which includes ``torch.compile``'s warm-up when a recipe asks for it) and pauses while the
  harness measures the validation loss, as modded-nanogpt's timer does. Data loading and model
  construction happen before the clock starts.
* **The curve comes from a fixed subset.** Every ``eval_every`` steps the loss on a fixed set of
  windows of the validation text (``eval_tokens // T`` windows of the model's context ``T``, spread
  evenly from its start to its end, the same windows every time: :func:`validation_windows`) gives
  one point of loss against training seconds. The *time to a target* is the training time of the first point at or below
  it: resolution one evaluation interval, never optimistic.
* **The end is judged on everything.** After the last step the whole validation text is scored.
* **Interleaved seeds.** :func:`race` runs recipe A seed 0, recipe B seed 0, A seed 1, … in one
  process, so a slow minute of a shared machine hits both; report medians and the seeds' range.

``python -m llm_tutorial.speedrun --presets shakespeare-char shakespeare-char-speedrun --seeds 3``
prints the table.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import statistics
import time
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from ._checks import check_int, check_number
from .train.run_config import RunConfig, load_run_config


@dataclass
class SpeedrunRecord:
    """One training run of one recipe with one seed.

    ``curve_seconds[i]``, ``curve_steps[i]``, ``curve_loss[i]``: training seconds, optimizer
    steps and validation-subset loss (nats/token) at evaluation ``i`` (the first at step 0).
    ``final_val``: the loss on the whole validation text after the last step. ``tokens``:
    training tokens seen. ``stopped_early``: the run stopped at ``stop_at`` before its last step."""

    label: str
    seed: int
    steps: int
    tokens: int
    train_seconds: float
    final_val: float
    curve_seconds: list[float] = field(default_factory=list)
    curve_steps: list[int] = field(default_factory=list)
    curve_loss: list[float] = field(default_factory=list)
    stopped_early: bool = False

    def time_to(self, target: float) -> float | None:
        """Training seconds to the first validation point at or below ``target`` (None: never)."""
        return time_to_target(self.curve_seconds, self.curve_loss, target)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def time_to_target(seconds: Sequence[float], losses: Sequence[float], target: float) -> float | None:
    """The first ``seconds[i]`` with ``losses[i] ≤ target``; ``None`` if the curve never gets there.

    Points between evaluations are not interpolated: a run is credited with the time of the
    evaluation that saw it under the target, never with an earlier guess."""
    if len(seconds) != len(losses):
        raise ValueError(f"seconds and losses must be equally long (one per evaluation), got "
                         f"{len(seconds)} and {len(losses)}")
    check_number(target, "target", 0, above=True, hint=" (a loss in nats)")
    previous = -math.inf
    for second, loss in zip(seconds, losses):
        if second < previous:
            raise ValueError(f"seconds must not decrease along the curve, got {second} after {previous}")
        previous = second
        if loss <= target:
            return float(second)
    return None


def validation_windows(ids: torch.Tensor, context: int, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` windows of ``context`` tokens spread evenly over the stream ``ids``, with their
    next-token targets: ``(x, y)``, each ``(count, context)``. Evenly spread, not the first
    ``count · context`` tokens, so the subset samples every part of the text (a play's first scene
    is not its average); fixed, so every point of every curve scores the same characters."""
    check_int(context, "context", low=1)
    check_int(count, "count", low=1)
    last = len(ids) - context - 1  # the last start whose target window fits
    if last < 0:
        raise ValueError(f"the validation text has {len(ids)} tokens, fewer than one window of {context} + 1")
    starts = torch.linspace(0, last, count).round().long()  # (count,)
    index = starts[:, None] + torch.arange(context)  # (count, T)
    return ids[index], ids[index + 1]


@torch.no_grad()
def window_loss(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 64) -> float:
    """Mean next-token loss (nats) of the windows ``x`` → ``y`` (each ``(N, T)``), in eval mode."""
    from .losses import clm_loss

    was_training = model.training
    model.eval()
    try:
        total = 0.0
        for i in range(0, len(x), batch_size):
            targets = y[i : i + batch_size]  # (b, T)
            total += clm_loss(model(x[i : i + batch_size]), targets).item() * targets.numel()  # a chunk's mean × its size
    finally:
        model.train(was_training)
    return total / y.numel()


@contextmanager
def torch_threads(threads: int | None):
    """Run the block with ``threads`` intra-op threads (None: leave the setting alone)."""
    if threads is None:
        yield
        return
    check_int(threads, "threads", low=1)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def resolve(run: RunConfig | str, overrides: Sequence[str] = ()) -> RunConfig:
    """A :class:`RunConfig` from a preset name or YAML file (with ``section.key=value`` overrides),
    or the config itself."""
    if isinstance(run, RunConfig):
        if overrides:
            raise ValueError("overrides apply to a preset name or file; change a RunConfig with dataclasses.replace")
        return run
    return load_run_config(run, list(overrides))


def run_recipe(run: RunConfig | str, seed: int, *, label: str | None = None, eval_every: int = 100,
               eval_tokens: int = 16_384, stop_at: float | None = None, max_seconds: float | None = None,
               threads: int | None = None, device: str | None = "cpu") -> SpeedrunRecord:
    """Train ``run`` (a :class:`RunConfig`, preset name or YAML path) with ``seed``; time it as the
    module's docstring says.

    ``stop_at``: stop at the first evaluation at or below this loss (an ablation that only needs
    the time to a target; the learning-rate schedule is still the full run's). ``max_seconds``: stop
    at the first evaluation after this much training time (a recipe slower than a budget need not
    finish to show it). ``threads``: torch's intra-op threads for this run."""
    from .models.gpt import GPT
    from .runtime import seed_everything
    from .train.evaluate import evaluate_stream
    from .train.launch import prepare_run
    from .train.objectives import causal_lm_loss
    from .train.trainer import Trainer

    name = label or (run if isinstance(run, str) else "run")
    run = resolve(run)
    check_int(seed, "seed")
    check_int(eval_every, "eval_every", low=1)
    check_int(eval_tokens, "eval_tokens", low=2)
    if stop_at is not None:
        check_number(stop_at, "stop_at", 0, above=True, hint=" (a loss in nats)")
    if max_seconds is not None:
        check_number(max_seconds, "max_seconds", 0, above=True)
    prepared = prepare_run(run)
    window = prepared.model_config.context_length
    subset = validation_windows(prepared.val_ids, window, max(1, eval_tokens // window))  # (x, y)
    config = dataclasses.replace(run.train, seed=seed, checkpoint_dir=None, progress=False)
    with torch_threads(threads):
        seed_everything(seed)
        model = GPT(prepared.model_config).to(device)
        model.check_token_range = False  # ids checked once in prepare_run
        source, seen = prepared.batches("train"), [0]

        def counted(batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
            x, y = source(batch_size, generator)  # (B, T) each
            seen[0] += x.numel()
            return x, y

        trainer = Trainer(model, causal_lm_loss, counted, config)
        subset = tuple(t.to(device) for t in subset)

        def evaluate() -> float:
            return window_loss(model, *subset)

        seconds, record = 0.0, SpeedrunRecord(name, seed, 0, 0, 0.0, math.nan)
        record.curve_seconds.append(0.0)
        record.curve_steps.append(0)
        record.curve_loss.append(evaluate())
        while trainer.step < config.max_steps:
            until = min(config.max_steps, trainer.step + eval_every)
            start = time.perf_counter()
            trainer.fit(until=until)  # the clock runs only here
            seconds += time.perf_counter() - start
            loss = evaluate()
            record.curve_seconds.append(seconds)
            record.curve_steps.append(trainer.step)
            record.curve_loss.append(loss)
            if not math.isfinite(loss):
                raise FloatingPointError(f"{name} seed {seed}: validation loss {loss} at step {trainer.step}")
            if (stop_at is not None and loss <= stop_at) or (max_seconds is not None and seconds >= max_seconds):
                record.stopped_early = trainer.step < config.max_steps
                break
        record.steps, record.tokens, record.train_seconds = trainer.step, seen[0], seconds
        record.final_val = evaluate_stream(model, prepared.val_ids, window)
    return record


def race(recipes: dict[str, RunConfig | str], seeds: Sequence[int], **options: Any) -> list[SpeedrunRecord]:
    """Every recipe with every seed, interleaved seed by seed (A0 B0 A1 B1 …) in this process;
    ``options`` go to :func:`run_recipe`. Returns the records in the order they ran."""
    if not recipes:
        raise ValueError("race needs at least one recipe, e.g. {'baseline': 'shakespeare-char'}")
    if not seeds:
        raise ValueError("race needs at least one seed")
    records = []
    for seed in seeds:
        for label, run in recipes.items():
            records.append(run_recipe(run, seed, label=label, **options))
    return records


def summarise(records: Sequence[SpeedrunRecord], target: float) -> dict[str, dict[str, Any]]:
    """Per label: median and (min, max) over seeds of the time to ``target``, the final
    validation loss and the training seconds; ``reached``: how many seeds got to the target
    (the time statistics cover only those)."""
    table: dict[str, dict[str, Any]] = {}
    for label in dict.fromkeys(r.label for r in records):
        mine = [r for r in records if r.label == label]
        times = [t for t in (r.time_to(target) for r in mine) if t is not None]
        finals = [r.final_val for r in mine]
        walls = [r.train_seconds for r in mine]
        table[label] = {
            "seeds": len(mine), "reached": len(times),
            "time_to_target": statistics.median(times) if times else None,
            "time_range": (min(times), max(times)) if times else None,
            "final_val": statistics.median(finals), "final_range": (min(finals), max(finals)),
            "train_seconds": statistics.median(walls), "seconds_range": (min(walls), max(walls)),
        }
    return table


def format_table(table: dict[str, dict[str, Any]], target: float) -> str:
    """The summary as aligned text, one line per recipe."""
    lines = [f"{'recipe':<28} {'time to ' + format(target, '.3f'):>22} {'final val':>22} {'train s':>8}"]
    for label, row in table.items():
        if row["time_to_target"] is None:
            reach = f"not reached (0/{row['seeds']})"
        else:
            low, high = row["time_range"]
            reach = f"{row['time_to_target']:6.1f} s [{low:.1f}–{high:.1f}]"
        low, high = row["final_range"]
        lines.append(f"{label:<28} {reach:>22} {row['final_val']:.3f} [{low:.3f}–{high:.3f}] "
                     f"{row['train_seconds']:8.1f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m llm_tutorial.speedrun``: race presets, print each run and the summary."""
    parser = argparse.ArgumentParser(prog="python -m llm_tutorial.speedrun", description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=["shakespeare-char", "shakespeare-char-speedrun"],
                        help="presets or YAML files to race (the first is the baseline)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per recipe (default 3)")
    parser.add_argument("--target", type=float, default=None,
                        help="validation loss to time (default: the baseline's median final loss)")
    parser.add_argument("--eval-every", type=int, default=100, help="steps between validation points")
    parser.add_argument("--eval-tokens", type=int, default=16_384, help="validation tokens per point")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a setting in every preset, e.g. --set train.max_steps=200")
    args = parser.parse_args(argv)
    recipes = {name: resolve(name, args.overrides) for name in args.presets}
    records = race(recipes, range(args.seeds), eval_every=args.eval_every, eval_tokens=args.eval_tokens,
                   threads=args.threads)
    for r in records:
        print(f"{r.label} seed {r.seed}: {r.steps} steps, {r.tokens:,} tokens, {r.train_seconds:.1f} s, "
              f"final val {r.final_val:.4f}", flush=True)
    baseline = [r.final_val for r in records if r.label == args.presets[0]]
    target = args.target if args.target is not None else statistics.median(baseline)
    print(format_table(summarise(records, target), target))


if __name__ == "__main__":
    main()
