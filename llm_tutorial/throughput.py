"""Benchmark a named run: training tokens/s and peak memory, generation tokens/s with and without
the KV cache, beside Hugging Face ``generate`` on the same weights. (Single kernels are timed by
``python -m llm_tutorial.kernels.bench``; our step against the Hugging Face training loop, and the
step's FLOP/s against the machine's, by ``python -m llm_tutorial.bench``.)

Usage::

    python -m llm_tutorial.throughput --config shakespeare-char [--steps 100] [--out bench.json]

What is measured, and how:

- **Training**: the run's model, data and :class:`~llm_tutorial.train.Trainer` (AdamW, clipping,
  schedule, logging: the real loop, no evaluation or checkpoints). A few warm-up steps are run
  first and not timed; then ``tokens/s = steps · batch_size · grad_accum_steps · context / seconds``.
- **Peak memory**: on CUDA, ``torch.cuda.max_memory_allocated`` over the timed steps (tensors
  only). On a CPU, the peak resident set size of the whole process from
  ``resource.getrusage(RUSAGE_SELF).ru_maxrss``: Python, libraries, the corpus and the model are
  included, so read it as an upper bound (the figure is ``None`` where ``resource`` is missing,
  on Windows).
- **Generation**: greedy decoding of one sequence (batch 1) from a one-token prompt up to the
  model's context, with :func:`llm_tutorial.generate.generate` (``use_cache`` True and False) and
  with ``transformers``' ``GPT2LMHeadModel.generate`` on the same weights (exported with
  :func:`llm_tutorial.interop.to_hf_gpt2`; ``use_cache`` True and False). Each is run once to warm
  up, then ``repeats`` times; the median time counts. ``tokens/s = new_tokens / seconds``.

Speed on a shared machine depends on its load: the result records the load average and the
number of threads, and ``--threads 1`` avoids the slowdown of threads that wait for busy cores.
Beside each tokens/s (wall clock) it gives tokens per CPU-second of the process: with one
thread that estimates the speed of one idle core, however busy the machine is; with several
threads it counts their waiting too, so it understates.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from llm_tutorial._checks import check_int
from llm_tutorial.generate import generate
from llm_tutorial.models.gpt import GPT
from llm_tutorial.runtime import get_device, seed_everything
from llm_tutorial.train import Trainer
from llm_tutorial.train.objectives import causal_lm_loss
from llm_tutorial.train.launch import prepare_run
from llm_tutorial.train.run_config import load_run_config


def benchmark(
    config: str = "shakespeare-char",
    *,
    overrides: list[str] | tuple[str, ...] = (),
    steps: int = 100,
    warmup_steps: int = 5,
    new_tokens: int | None = None,
    repeats: int = 3,
    device: str | None = None,
    compare_hf: bool = True,
) -> dict[str, Any]:
    """Measure the run ``config`` (a preset name or YAML file, with ``section.key=value``
    ``overrides``) and return the figures as a JSON-ready dictionary.

    ``steps`` training steps are timed after ``warmup_steps``; generation makes ``new_tokens``
    tokens (default: fill the context after a one-token prompt), timed ``repeats`` times.
    ``compare_hf=False`` skips Hugging Face (needed only for that column)."""
    for value, name in ((steps, "steps"), (warmup_steps, "warmup_steps"), (repeats, "repeats")):
        check_int(value, name, 0 if name == "warmup_steps" else 1)
    load_before = _load_average()
    run, prepared, model, device = _build_run(config, overrides, device)
    model_config = prepared.model_config
    train = _time_training(model, run.train, prepared.batches("train"), prepared.context, steps,
                           warmup_steps)
    prompt = prepared.train_ids[:1].view(1, 1).to(device)
    generation = _time_generation(model, prompt, new_tokens or model_config.context_length - 1, repeats, compare_hf)
    return {
        "config": str(config), "overrides": list(overrides), "device": str(device), "threads": torch.get_num_threads(),
        "torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine(),
        "load_average": {"before": load_before, "after": _load_average()},
        "model": {"preset": run.model["preset"], "parameters": model.num_parameters(), "n_layer": model_config.n_layer,
                  "n_head": model_config.n_head, "d_model": model_config.d_model, "context_length": prepared.context,
                  "vocab_size": model_config.vocab_size},
        "train": train, "generation": generation,
    }


def training_throughput(
    config: str = "shakespeare-char",
    *,
    overrides: list[str] | tuple[str, ...] = (),
    steps: int = 20,
    warmup_steps: int = 3,
    device: str | None = None,
) -> dict[str, Any]:
    """Training tokens/s of the run ``config`` (with ``section.key=value`` ``overrides``) alone:
    the training half of :func:`benchmark`, for choosing a configuration by its speed.

    Builds the run's GPT from its seed, runs the real :class:`~llm_tutorial.train.Trainer` for
    ``warmup_steps`` untimed and ``steps`` timed steps, and returns the training figures of
    :func:`benchmark` (``tokens_per_s = steps · batch_size · grad_accum_steps · context / seconds``)
    with the model's ``parameters`` added."""
    check_int(steps, "steps", 1)
    check_int(warmup_steps, "warmup_steps", 0)
    run, prepared, model, _ = _build_run(config, overrides, device)
    figures = _time_training(model, run.train, prepared.batches("train"), prepared.context, steps, warmup_steps)
    return {"parameters": model.num_parameters(), **figures}


def _build_run(config: str, overrides, device: str | None) -> tuple[Any, Any, GPT, torch.device]:
    """The run ``config`` with ``overrides``, its prepared data, and its GPT built from the run's seed."""
    run = load_run_config(config, overrides)
    device = get_device(device or run.device)
    prepared = prepare_run(run)
    seed_everything(run.train.seed)
    model = GPT(prepared.model_config).to(device)
    model.check_token_range = False  # ids come from the tokenizer, as in training
    return run, prepared, model, device


def _time_training(
    model: GPT, train_config: Any, batches: Callable[[int, torch.Generator], Any], context: int, steps: int,
    warmup_steps: int,
) -> dict[str, Any]:
    """Run the trainer for ``warmup_steps`` untimed, then ``steps`` timed steps."""
    total = warmup_steps + steps
    config = dataclasses.replace(train_config, max_steps=total, warmup_steps=min(train_config.warmup_steps, total - 1),
                                 checkpoint_dir=None, progress=False)
    trainer = Trainer(model, causal_lm_loss, batches, config)
    device = next(model.parameters()).device
    if warmup_steps:
        trainer.fit(until=warmup_steps)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    seconds, cpu_seconds = _timed(lambda: trainer.fit(until=total))  # fit ends by copying losses to the host
    tokens = steps * config.batch_size * config.grad_accum_steps * context
    memory, how = _peak_memory(device)
    return {"steps": steps, "warmup_steps": warmup_steps, "batch_size": config.batch_size,
            "grad_accum_steps": config.grad_accum_steps, "context_length": context, "precision": config.precision,
            "compile": config.compile, "seconds": seconds, "ms_per_step": 1000 * seconds / steps,
            "tokens_per_s": tokens / seconds, "tokens_per_cpu_s": tokens / cpu_seconds,
            "final_train_loss": trainer.history.train_loss[-1],
            "peak_memory_bytes": memory, "peak_memory_measure": how}


def _peak_memory(device: torch.device) -> tuple[int | None, str]:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device), "torch.cuda.max_memory_allocated over the timed steps"
    try:
        import resource
    except ImportError:
        return None, "unavailable (no resource module on this platform)"
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    scale = 1 if sys.platform == "darwin" else 1024  # macOS reports bytes, Linux KiB
    return peak * scale, "peak RSS of the whole process (resource.getrusage ru_maxrss), an upper bound"


def _time_generation(model: GPT, prompt: torch.Tensor, new_tokens: int, repeats: int, compare_hf: bool
                     ) -> dict[str, Any]:
    """Greedy tokens/s of ours and (optionally) Hugging Face's, with and without the cache."""
    model.eval()
    runs: dict[str, Callable[[], torch.Tensor]] = {
        "ours_cache": lambda: generate(model, prompt, new_tokens, temperature=0),
        "ours_no_cache": lambda: generate(model, prompt, new_tokens, temperature=0, use_cache=False),
    }
    if compare_hf:
        from llm_tutorial.interop import to_hf_gpt2

        hf = to_hf_gpt2(model)
        for name, use_cache in (("hf_cache", True), ("hf_no_cache", False)):
            runs[name] = lambda use_cache=use_cache: hf.generate(
                prompt, attention_mask=torch.ones_like(prompt), do_sample=False, max_new_tokens=new_tokens,
                use_cache=use_cache, pad_token_id=0)
    tokens_per_s, tokens_per_cpu_s, outputs = {}, {}, {}
    for name, run in runs.items():
        outputs[name] = run()  # warm-up
        times = [_timed(run) for _ in range(repeats)]
        tokens_per_s[name] = new_tokens / statistics.median(wall for wall, _ in times)
        tokens_per_cpu_s[name] = new_tokens / statistics.median(cpu for _, cpu in times)
    reference = outputs["ours_cache"]
    return {"prompt_tokens": prompt.size(1), "new_tokens": new_tokens, "batch_size": prompt.size(0),
            "repeats": repeats, "tokens_per_s": tokens_per_s, "tokens_per_cpu_s": tokens_per_cpu_s,
            "same_tokens": {name: bool(torch.equal(out, reference)) for name, out in outputs.items()}}


def _timed(run: Callable[[], Any]) -> tuple[float, float]:
    """Wall-clock and CPU seconds (this process, all threads) of one call of ``run``."""
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    return time.perf_counter() - wall, time.process_time() - cpu


def _load_average() -> list[float] | None:
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def format_report(result: dict[str, Any]) -> str:
    """The figures as a few readable lines."""
    train, generation, model = result["train"], result["generation"], result["model"]
    memory = train["peak_memory_bytes"]
    lines = [
        f"{result['config']}: {model['parameters']:,} parameters ({model['preset']}, {model['n_layer']} layers, "
        f"{model['n_head']} heads, width {model['d_model']}, context {model['context_length']}) on {result['device']}, "
        f"{result['threads']} thread(s), load average {result['load_average']['before']}",
        f"training: {train['tokens_per_s']:,.0f} tokens/s ({train['ms_per_step']:.1f} ms/step, batch "
        f"{train['batch_size']}, {train['steps']} steps; {train['tokens_per_cpu_s']:,.0f} per CPU-second); peak memory "
        + (f"{memory / 2**20:,.1f} MiB" if memory is not None else "n/a") + f" [{train['peak_memory_measure']}]",
        f"generation (greedy, batch {generation['batch_size']}, {generation['new_tokens']} new tokens): "
        "tokens/s, tokens per CPU-second",
    ]
    for name, value in generation["tokens_per_s"].items():
        same = "" if name == "ours_cache" else f"  (same tokens as ours_cache: {generation['same_tokens'][name]})"
        lines.append(f"  {name:<14}{value:>10,.0f}{generation['tokens_per_cpu_s'][name]:>10,.0f}{same}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """``python -m llm_tutorial.throughput``: measure, print, and save as JSON with ``--out``."""
    from llm_tutorial.train.run_config import PRESETS

    parser = argparse.ArgumentParser(prog="python -m llm_tutorial.throughput", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="shakespeare-char", metavar="FILE|PRESET",
                        help=f"a YAML run config or a preset: {', '.join(PRESETS)} (default shakespeare-char)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override one setting of the config, e.g. --set model.n_layer=2 (repeatable)")
    parser.add_argument("--steps", type=int, default=100, help="timed training steps (default 100)")
    parser.add_argument("--warmup-steps", type=int, default=5, help="untimed training steps first (default 5)")
    parser.add_argument("--new-tokens", type=int, default=None,
                        help="tokens to generate (default: fill the context after a one-token prompt)")
    parser.add_argument("--repeats", type=int, default=3, help="timed generation runs; the median counts (default 3)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--device", default=None, help="cpu, cuda, mps (default: the run's, else the best available)")
    parser.add_argument("--no-hf", action="store_true", help="skip the Hugging Face generate comparison")
    parser.add_argument("--out", metavar="FILE.json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.threads is not None:
        if args.threads < 1:
            parser.error("--threads must be at least 1")
        torch.set_num_threads(args.threads)
    try:
        result = benchmark(args.config, overrides=args.overrides, steps=args.steps, warmup_steps=args.warmup_steps,
                           new_tokens=args.new_tokens, repeats=args.repeats, device=args.device,
                           compare_hf=not args.no_hf)
    except (ValueError, FileNotFoundError) as error:
        parser.exit(2, f"bench: error: {error}\n")
    print(format_report(result))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(f"saved {args.out}")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
