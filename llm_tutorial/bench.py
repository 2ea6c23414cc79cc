"""The speed benchmark: our training step and generation against Hugging Face, and against the machine.

Usage::

    python -m llm_tutorial.bench [--config shakespeare-char] [--rounds 5] [--threads 1] [--out bench.json]

Four questions, answered in one run on one machine (absolute speeds on a shared machine are
noise; ratios measured side by side are not):

1. **Step speed.** The package's :class:`~llm_tutorial.train.Trainer` on the run ``config``
   against the loop a Hugging Face user writes: ``transformers.GPT2LMHeadModel`` with the same
   architecture and the same initial weights (:func:`llm_tutorial.interop.to_hf_gpt2`),
   ``torch.optim.AdamW`` in its default implementation with the same hyper-parameters and the same
   two parameter groups, the same warm-up + cosine schedule through ``LambdaLR``, gradient clipping
   by ``clip_grad_norm_``, ``F.cross_entropy`` on the logits, and the same batches (a generator
   seeded alike). The two loops take turns, ``rounds`` times ``steps`` steps each (after untimed
   warm-up steps), so that a change in the machine's load hits both; the median of the rounds
   counts. ``tokens/s = steps · batch_size · grad_accum_steps · context / seconds``.
2. **Generation.** Greedy decoding of one sequence (batch 1) from a one-token prompt to the end of
   the context with :func:`llm_tutorial.generate.generate` (KV cache) and with Hugging Face
   ``generate`` (``use_cache=True``) on the same weights, in turns, median of ``rounds``; the
   tokens must be identical.
3. **The physical limit.** How many floating-point operations our step does
   (:func:`training_flops_per_token`) times tokens/s is the achieved FLOP/s, set against the FLOP/s
   of a large ``torch.mm`` (``matmul_size``², float32) timed in the same run, the most this
   machine's matrix unit delivers, and against the FLOP/s of the model's own largest matrix
   product, ``(B·T × d_model) @ (d_model × d_ff)``. The largest products of a small model can
   run near the peak, its smaller ones (``d_model × d_model``, the output layer) run below it, and
   everything between the products (norms, GELU, attention's softmax, the optimizer) moves memory
   without much arithmetic: that is why a tiny model's step runs far below the machine's peak
   however tight the loop is.
4. **Where the time goes.** After the timed rounds each loop takes ``steps`` more steps under an
   :class:`OperatorTimer`, which times every ATen operator, forward and backward, and sums them by
   kind (:data:`OPERATOR_GROUPS`): matrix products, the attention kernel, GELU, layer norm, the
   optimizer and clipping, everything else. The 6N FLOPs over the matrix products' own time is
   the rate the products reach inside the step, set against the peak.

:func:`run_bench` returns every figure as a JSON-ready dictionary (a notebook can glue them),
:func:`profile_step` the ``torch.profiler`` table of our step (self CPU time per operator) with
its host synchronisations counted. Threads: ``threads`` sets ``torch.set_num_threads`` for both
loops alike; on a machine shared with other jobs one thread avoids threads that wait on each other
for a busy core. (Training throughput of a config alone, with peak memory, is
``python -m llm_tutorial.throughput``.)
"""

from __future__ import annotations

import argparse
import collections
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
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from llm_tutorial._checks import check_int, check_positive_int
from llm_tutorial.generate import generate
from llm_tutorial.models.gpt import GPT, GPTConfig
from llm_tutorial.throughput import _build_run
from llm_tutorial.train import Trainer
from llm_tutorial.train.objectives import causal_lm_loss
from llm_tutorial.train.optimizer import parameter_groups

# Tensor methods that copy a value from the device to the host: on a GPU each one makes the CPU
# wait until the GPU has finished all the work queued before it.
HOST_SYNCS = ("item", "tolist", "cpu", "numpy", "__float__", "__int__", "__bool__", "__index__")


# ------------------------------------------------------------------------------------ FLOPs
def matmul_parameters(config: GPTConfig) -> int:
    """``N``: the weights that multiply an activation, one multiply-add per weight per token.

    Per block: the query, key, value and output projections, ``d_model·(2·n_head + 2·n_kv_head)·d_head``,
    and the MLP, ``2·d_model·d_ff`` (three matrices for SwiGLU); then the output layer,
    ``d_model·V`` (a matrix product even when it shares its weights with the token embedding).
    Embedding look-ups, biases and norm gains do no matrix arithmetic and are left out."""
    if not isinstance(config, GPTConfig):
        raise TypeError(f"config must be a GPTConfig, got {type(config).__name__}")
    d, hd = config.d_model, config.head_dim
    attention = d * (2 * config.n_head + 2 * config.n_kv_head) * hd
    mlp = (3 if config.mlp == "swiglu" else 2) * d * config.d_ff
    return config.n_layer * (attention + mlp) + d * config.vocab_size


def training_flops_per_token(config: GPTConfig, context_length: int | None = None) -> dict[str, int]:
    """Floating-point operations of one training step per token, forward and backward:

        C = 6 N + 12 · n_layer · T · d_model

    (Kaplan et al., 2020, section 2.1; Chowdhery et al., 2022, PaLM, appendix B). A weight used in
    a matrix product costs one multiply-add (2 FLOPs) per token in the forward pass and two in the
    backward pass (the gradient of the input and of the weight): ``6N``. Attention's two products
    ``Q Kᵀ`` and ``A V`` are ``2·T·d_model`` FLOPs each per token and layer forward, twice that
    backward: ``12 · n_layer · T · d_model``, counting the full ``T × T`` score matrix as both papers
    do (a causal kernel may skip the masked half). Softmax, norms, GELU, the loss and the optimizer
    are left out: ``O(d_model)`` per token against ``O(d_model²)``, but on a tiny model not free.

    ``context_length`` is ``T`` (default: the model's). Returns ``matmul`` (6N), ``attention``
    and ``total`` per token."""
    T = config.context_length if context_length is None else check_positive_int(context_length, "context_length")
    if T > config.context_length:
        raise ValueError(f"context_length {T} exceeds the model's {config.context_length}")
    matmul = 6 * matmul_parameters(config)
    attention = 12 * config.n_layer * T * config.d_model
    return {"matmul": matmul, "attention": attention, "total": matmul + attention}


def matmul_flops_per_s(m: int, k: int, n: int, *, repeats: int = 5, min_seconds: float = 0.2) -> float:
    """FLOP/s of ``(m × k) @ (k × n)`` in float32 on the CPU: ``2·m·k·n`` FLOPs per product, the best
    of ``repeats`` timings of a loop lasting at least ``min_seconds`` (the peak is what the
    hardware can do, so the fastest repeat is the estimate; slower ones met other jobs)."""
    for value, name in ((m, "m"), (k, "k"), (n, "n"), (repeats, "repeats")):
        check_positive_int(value, name)
    a, b = torch.randn(m, k), torch.randn(k, n)
    out = torch.empty(m, n)
    torch.mm(a, b, out=out)  # warm-up: the first call allocates and picks a kernel
    start = time.perf_counter()
    torch.mm(a, b, out=out)
    per_call = max(time.perf_counter() - start, 1e-9)
    calls = max(1, int(min_seconds / per_call))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            torch.mm(a, b, out=out)
        best = min(best, (time.perf_counter() - start) / calls)
    return 2 * m * k * n / best


# ------------------------------------------------------------------------------ host syncs
class HostSyncCounter(TorchFunctionMode):
    """Counts the tensor methods that copy values to the host (``.item()``, ``.tolist()``,
    ``float(t)``, ``.cpu()``, ...) while it is active::

        with HostSyncCounter() as syncs:
            trainer.fit(until=50)
        syncs.counts  # Counter({'tolist': 5, ...})
    """

    def __init__(self) -> None:
        super().__init__()
        self.counts: collections.Counter[str] = collections.Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in HOST_SYNCS:
            self.counts[name] += 1
        return func(*args, **(kwargs or {}))


# ------------------------------------------------------------ where a step's time goes
# ATen operators by what they compute. Autograd reaches the same operators, so a group holds the
# forward and the backward kernels alike (``gelu`` and ``gelu_backward``); ``_foreach_*`` is the
# gradient clipping and any multi-tensor optimizer. Whatever no group names is "other operators".
OPERATOR_GROUPS: dict[str, tuple[str, ...]] = {
    "matrix products": ("mm", "addmm", "bmm", "baddbmm"),
    "attention kernel": ("_scaled_dot_product_flash_attention_for_cpu",
                         "_scaled_dot_product_flash_attention_for_cpu_backward",
                         "_scaled_dot_product_flash_attention", "_scaled_dot_product_flash_attention_backward",
                         "_scaled_dot_product_efficient_attention",
                         "_scaled_dot_product_efficient_attention_backward"),
    "GELU": ("gelu", "gelu_backward"),
    "layer norm": ("native_layer_norm", "native_layer_norm_backward"),
    "optimizer and clipping": ("_fused_adamw_", "_fused_adam_"),
}
OTHER_OPERATORS = "other operators"


def operator_group(name: str) -> str:
    """The group of the ATen operator ``name`` (``"mm"``, ``"gelu_backward"``, ...): a key of
    :data:`OPERATOR_GROUPS`, or ``"other operators"``."""
    if not isinstance(name, str):
        raise TypeError(f"name must be an operator name (str), got {type(name).__name__}")
    if name.startswith("_foreach_"):
        return "optimizer and clipping"
    for group, names in OPERATOR_GROUPS.items():
        if name in names:
            return group
    return OTHER_OPERATORS


class OperatorTimer(TorchDispatchMode):
    """Wall-clock seconds spent inside each ATen operator while it is active::

        with OperatorTimer() as timer:
            loss.backward()
        timer.seconds  # Counter({'mm': 0.0031, ...}); timer.calls counts the calls

    It sits below autograd, so the kernels of the backward pass are timed as well as the forward
    ones. On a CPU a kernel has finished when it returns, so the clock around the call measures the
    kernel (on a GPU it would measure only the launch). The clock and this Python method add a few
    microseconds per call: that inflates operators that do almost nothing (views, transposes), which
    land in "other operators", and barely touches the large kernels. Use
    :func:`torch.profiler` for a trace; this answers one question, the share of each kind of work."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds: collections.Counter[str] = collections.Counter()
        self.calls: collections.Counter[str] = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        start = time.perf_counter()
        out = func(*args, **(kwargs or {}))
        name = func.overloadpacket.__name__
        self.seconds[name] += time.perf_counter() - start
        self.calls[name] += 1
        return out

    def grouped(self) -> dict[str, float]:
        """Seconds per group of :data:`OPERATOR_GROUPS`, then "other operators", in that order."""
        totals = dict.fromkeys([*OPERATOR_GROUPS, OTHER_OPERATORS], 0.0)
        for name, seconds in self.seconds.items():
            totals[operator_group(name)] += seconds
        return totals


def step_breakdown(run: Callable[[], Any], steps: int) -> dict[str, Any]:
    """Time ``run()``, which takes ``steps`` training steps, under an :class:`OperatorTimer`.

    Returns milliseconds per step: ``groups_ms`` (inside the operators of each group),
    ``operators_ms`` (their sum), ``wall_ms`` (the whole step with the timer on, so above the
    untimed step: the difference is mostly the timer's own cost), and ``calls_per_step``. Shares
    are best read against ``operators_ms``; the time between the kernels (Python, the autograd
    engine, the dispatcher) is what the benchmark's fixed cost per step measures."""
    check_positive_int(steps, "steps")
    with OperatorTimer() as timer:
        wall, _, _ = _timed(run)
    groups = {group: 1000 * seconds / steps for group, seconds in timer.grouped().items()}
    return {"steps": steps, "wall_ms": 1000 * wall / steps, "groups_ms": groups,
            "operators_ms": sum(groups.values()), "calls_per_step": sum(timer.calls.values()) / steps}


# --------------------------------------------------------------------------------- the loops
@dataclasses.dataclass
class _Loops:
    """Our trainer and the Hugging Face loop on one run, ready to step in turns."""

    trainer: Trainer
    hf_step: Callable[[], torch.Tensor]
    model: GPT
    hf: Any
    config: Any  # the TrainConfig both follow
    context: int
    prepared: Any


def _build_loops(config: str, overrides, total_steps: int, compile: bool = False) -> _Loops:
    """Our :class:`Trainer` and the reference Hugging Face loop, same weights, batches and settings."""
    from llm_tutorial.interop import to_hf_gpt2

    run, prepared, model, device = _build_run(config, overrides, "cpu")
    if run.model.get("preset") != "gpt2" or prepared.model_config.dropout:
        raise ValueError("the Hugging Face comparison needs a GPT-2 architecture without dropout "
                         f"(model.preset gpt2, dropout 0); {config!r} has preset {run.model.get('preset')!r}")
    train_config = dataclasses.replace(
        run.train, max_steps=total_steps, warmup_steps=min(run.train.warmup_steps, total_steps - 1),
        checkpoint_dir=None, progress=False, compile=compile or run.train.compile)
    if train_config.grad_accum_steps != 1:
        raise ValueError("the Hugging Face loop here takes one batch per step: set train.grad_accum_steps=1")
    hf = to_hf_gpt2(model).train()  # the same initial weights
    groups = parameter_groups(hf, train_config.weight_decay)  # the same decayed / not-decayed split
    optimizer = torch.optim.AdamW(groups, lr=train_config.lr, betas=train_config.betas)  # the default implementation
    schedule = train_config.schedule
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: schedule(step) / train_config.lr)
    batches = prepared.batches("train")
    generator = torch.Generator().manual_seed(train_config.seed)  # the trainer's batches, in its order

    def hf_step() -> torch.Tensor:
        x, y = batches(train_config.batch_size, generator)  # (B, T) each
        logits = hf(input_ids=x).logits  # (B, T, V)
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(hf.parameters(), train_config.grad_clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    trainer = Trainer(model, causal_lm_loss, batches, train_config)
    return _Loops(trainer, hf_step, model, hf, train_config, prepared.context, prepared)


def _timed(run: Callable[[], Any]) -> tuple[float, float, Any]:
    """Wall-clock and CPU seconds (this process, all threads) of one call, and its result."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = run()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def _load_average() -> list[float] | None:
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def run_bench(
    config: str = "shakespeare-char",
    *,
    overrides: list[str] | tuple[str, ...] = (),
    steps: int = 40,
    rounds: int = 5,
    warmup_steps: int = 5,
    new_tokens: int | None = None,
    compile: bool = False,
    matmul_size: int = 2048,
    threads: int | None = None,
) -> dict[str, Any]:
    """Measure the step speed, the generation speed and the FLOP/s of the run ``config`` (a preset
    name or YAML file, with ``section.key=value`` ``overrides``), ours against Hugging Face's, in
    one run; see the module docstring for the protocol.

    ``rounds`` turns of ``steps`` timed training steps per loop, after ``warmup_steps`` untimed;
    generation makes ``new_tokens`` (default: fill the context after a one-token prompt), ``rounds``
    times per decoder. ``compile=True`` trains ours under ``torch.compile``; its compilation
    happens in the warm-up steps, whose time is reported (``warmup_seconds``) so that one can see
    when it pays back. Returns a JSON-ready dictionary; ratios are ours / Hugging Face's."""
    for value, name, low in ((steps, "steps", 1), (rounds, "rounds", 1), (warmup_steps, "warmup_steps", 1),
                             (matmul_size, "matmul_size", 1)):
        check_int(value, name, low)
    if threads is not None:
        torch.set_num_threads(check_positive_int(threads, "threads"))
    load_before = _load_average()
    total = warmup_steps + (rounds + 1) * steps  # the last `steps` for the breakdown
    loops = _build_loops(config, overrides, total, compile)
    trainer, cfg, model_config = loops.trainer, loops.config, loops.model.config
    tokens_per_step = cfg.batch_size * cfg.grad_accum_steps * loops.context

    warmup = {"ours": _timed(lambda: trainer.fit(until=warmup_steps))[0],
              "hf": _timed(lambda: [loops.hf_step() for _ in range(warmup_steps)])[0]}
    ours, hf, ours_cpu, hf_cpu = [], [], [], []
    for _ in range(rounds):  # in turns, so that the machine's load falls on both
        wall, cpu, _ = _timed(lambda: trainer.fit(until=trainer.step + steps))
        ours.append(steps * tokens_per_step / wall)
        ours_cpu.append(steps * tokens_per_step / cpu)
        wall, cpu, hf_losses = _timed(lambda: [loops.hf_step() for _ in range(steps)])
        hf.append(steps * tokens_per_step / wall)
        hf_cpu.append(steps * tokens_per_step / cpu)
    train = {
        "steps_per_round": steps, "rounds": rounds, "warmup_steps": warmup_steps, "tokens_per_step": tokens_per_step,
        "batch_size": cfg.batch_size, "context_length": loops.context, "compile": cfg.compile,
        "ours_tokens_per_s": statistics.median(ours), "hf_tokens_per_s": statistics.median(hf),
        "ratio": statistics.median(o / h for o, h in zip(ours, hf)),
        "ours_tokens_per_cpu_s": statistics.median(ours_cpu), "hf_tokens_per_cpu_s": statistics.median(hf_cpu),
        "ours_rounds": ours, "hf_rounds": hf,
        "warmup_seconds": warmup,
        # same weights, batches and settings: the two loops' losses must agree (float rounding apart)
        "ours_final_loss": trainer.history.train_loss[-1], "hf_final_loss": float(hf_losses[-1]),
    }
    # Where the time goes, after the timed rounds (the timer slows a step a little). A compiled
    # model runs its own generated kernels, not ATen operators one by one: no breakdown then.
    breakdown = None if cfg.compile else {
        "ours": step_breakdown(lambda: trainer.fit(until=trainer.step + steps), steps),
        "hf": step_breakdown(lambda: [loops.hf_step() for _ in range(steps)], steps),
    }
    generation = _bench_generation(loops, new_tokens, rounds)
    overhead = _bench_overhead(config, overrides, model_config.n_head, steps, rounds)

    peak = matmul_flops_per_s(matmul_size, matmul_size, matmul_size)
    rows, d_ff = tokens_per_step // cfg.grad_accum_steps, model_config.d_ff
    model_matmul = matmul_flops_per_s(rows, model_config.d_model, d_ff)
    flops = training_flops_per_token(model_config, loops.context)
    achieved = flops["total"] * train["ours_tokens_per_s"]
    physical = {
        "flops_per_token": flops, "flops_per_step": flops["total"] * tokens_per_step,
        "achieved_flops_per_s": achieved, "hf_achieved_flops_per_s": flops["total"] * train["hf_tokens_per_s"],
        "matmul_size": matmul_size, "peak_matmul_flops_per_s": peak,
        "model_matmul_shape": [rows, model_config.d_model, d_ff], "model_matmul_flops_per_s": model_matmul,
        "fraction_of_peak": achieved / peak, "model_matmul_fraction_of_peak": model_matmul / peak,
    }
    if breakdown is not None:  # the 6N FLOPs all happen in the matrix products' time
        matmul_seconds = breakdown["ours"]["groups_ms"]["matrix products"] / 1000
        physical["matmul_achieved_flops_per_s"] = flops["matmul"] * tokens_per_step / matmul_seconds
        physical["matmul_fraction_of_peak"] = physical["matmul_achieved_flops_per_s"] / peak
    return {
        "config": str(config), "overrides": list(overrides), "threads": torch.get_num_threads(),
        "torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine(),
        "load_average": {"before": load_before, "after": _load_average()},
        "model": {"parameters": loops.model.num_parameters(), "matmul_parameters": matmul_parameters(model_config),
                  "n_layer": model_config.n_layer, "n_head": model_config.n_head, "d_model": model_config.d_model,
                  "context_length": loops.context, "vocab_size": model_config.vocab_size},
        "train": train, "breakdown": breakdown, "generation": generation, "physical": physical,
        "overhead": overhead,
    }


def _bench_overhead(config: str, overrides, n_head: int, steps: int, rounds: int) -> dict[str, Any]:
    """The fixed cost of one step of each loop: the same layers and heads, 4 dimensions per head,
    context 8 and batch 2, where the arithmetic is negligible and what remains is Python, the
    autograd engine, the dispatcher and each kernel's start-up, paid once per operation."""
    tiny = [*overrides, f"model.d_model={4 * n_head}", "model.context_length=8", "train.batch_size=2"]
    loops = _build_loops(config, tiny, 2 + rounds * steps)
    trainer = loops.trainer
    trainer.fit(until=2)
    loops.hf_step(), loops.hf_step()
    ours, hf = [], []
    for _ in range(rounds):
        ours.append(_timed(lambda: trainer.fit(until=trainer.step + steps))[0] / steps)
        hf.append(_timed(lambda: [loops.hf_step() for _ in range(steps)])[0] / steps)
    return {"overrides": tiny[len(overrides):], "ours_ms_per_step": 1000 * statistics.median(ours),
            "hf_ms_per_step": 1000 * statistics.median(hf)}


def _bench_generation(loops: _Loops, new_tokens: int | None, rounds: int) -> dict[str, Any]:
    """Greedy tokens/s of our generate (KV cache) and Hugging Face's, in turns; median of ``rounds``."""
    from llm_tutorial.interop import to_hf_gpt2

    model = loops.model
    context = model.config.context_length
    new_tokens = context - 1 if new_tokens is None else check_positive_int(new_tokens, "new_tokens")
    prompt = loops.prepared.train_ids[:1].view(1, 1)  # (1, 1): the corpus's first token
    hf = to_hf_gpt2(model)  # the trained weights, in evaluation mode
    runs = {
        "ours": lambda: generate(model, prompt, new_tokens, temperature=0),
        "hf": lambda: hf.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False,
                                  max_new_tokens=new_tokens, use_cache=True,
                                  pad_token_id=0),
    }
    outputs = {name: run() for name, run in runs.items()}  # warm-up
    speeds: dict[str, list[float]] = {name: [] for name in runs}
    cpu_speeds: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            wall, cpu, _ = _timed(run)
            speeds[name].append(new_tokens / wall)
            cpu_speeds[name].append(new_tokens / cpu)
    return {"prompt_tokens": prompt.size(1), "new_tokens": new_tokens, "batch_size": 1, "rounds": rounds,
            "ours_tokens_per_s": statistics.median(speeds["ours"]), "hf_tokens_per_s": statistics.median(speeds["hf"]),
            "ratio": statistics.median(o / h for o, h in zip(speeds["ours"], speeds["hf"])),
            "ours_tokens_per_cpu_s": statistics.median(cpu_speeds["ours"]),
            "hf_tokens_per_cpu_s": statistics.median(cpu_speeds["hf"]),
            "same_tokens": bool(torch.equal(outputs["ours"], outputs["hf"]))}


# ------------------------------------------------------------------------------- the profile
def profile_step(
    config: str = "shakespeare-char",
    *,
    overrides: list[str] | tuple[str, ...] = (),
    steps: int = 50,
    warmup_steps: int = 5,
    row_limit: int = 15,
    threads: int | None = None,
) -> str:
    """``torch.profiler`` over ``steps`` steps of our :class:`Trainer` on the run ``config``: the
    operators ranked by self CPU time, then the host synchronisations per step (counted by
    :class:`HostSyncCounter` over the same steps, profiler off) and the time per step spent outside
    the operators (Python, the autograd engine's bookkeeping, the dispatcher). The profiler's own
    work inflates some kernels' self time (on two CPU cores, GELU's about threefold against a clock
    around the call); for the share of each kind of work, read :func:`step_breakdown`."""
    from torch.profiler import ProfilerActivity, profile

    check_positive_int(steps, "steps")
    check_positive_int(row_limit, "row_limit")
    if threads is not None:
        torch.set_num_threads(check_positive_int(threads, "threads"))
    trainer = _build_loops(config, overrides, warmup_steps + 2 * steps).trainer
    trainer.fit(until=warmup_steps)
    with HostSyncCounter() as syncs:
        wall, _, _ = _timed(lambda: trainer.fit(until=warmup_steps + steps))
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        trainer.fit(until=warmup_steps + 2 * steps)
    events = prof.key_averages()
    table = events.table(sort_by="self_cpu_time_total", row_limit=row_limit, max_name_column_width=45)
    in_ops = sum(event.self_cpu_time_total for event in events if event.key.startswith("aten::")) / 1e3 / steps
    per_step = {name: count / steps for name, count in sorted(syncs.counts.items())}
    lines = [
        table,
        f"{steps} steps, log_interval {trainer.config.log_interval}: {1000 * wall / steps:.1f} ms/step without the "
        f"profiler; {in_ops:.1f} ms/step inside ATen operators (with the profiler's own overhead)",
        "host synchronisations per step: " + (", ".join(f"{name} {n:g}" for name, n in per_step.items()) or "none"),
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------- the CLI
def format_report(result: dict[str, Any]) -> str:
    """The figures as a few readable lines."""
    train, gen, phys, model = result["train"], result["generation"], result["physical"], result["model"]
    g = 1e9
    return "\n".join([
        f"{result['config']}: {model['parameters']:,} parameters ({model['n_layer']} layers, width {model['d_model']}, "
        f"context {model['context_length']}), {result['threads']} thread(s), load average "
        f"{result['load_average']['before']} -> {result['load_average']['after']}",
        f"training step, {train['rounds']} rounds x {train['steps_per_round']} steps in turns (median):",
        f"  {'ours (Trainer, compiled)' if train['compile'] else 'ours (Trainer)':<24}{train['ours_tokens_per_s']:>10,.0f} tokens/s",
        f"  Hugging Face loop       {train['hf_tokens_per_s']:>10,.0f} tokens/s",
        f"  ratio ours / HF         {train['ratio']:>10.2f}x   (per CPU-second "
        f"{train['ours_tokens_per_cpu_s'] / train['hf_tokens_per_cpu_s']:.2f}x; final losses {train['ours_final_loss']:.4f} / "
        f"{train['hf_final_loss']:.4f}; warm-up {train['warmup_seconds']['ours']:.1f} s / "
        f"{train['warmup_seconds']['hf']:.1f} s for {train['warmup_steps']} steps)",
        *_format_breakdown(result),
        f"generation, greedy, batch 1, {gen['new_tokens']} new tokens (median of {gen['rounds']}):",
        f"  ours (KV cache)         {gen['ours_tokens_per_s']:>10,.0f} tokens/s",
        f"  Hugging Face generate   {gen['hf_tokens_per_s']:>10,.0f} tokens/s",
        f"  ratio ours / HF         {gen['ratio']:>10.2f}x   (per CPU-second "
        f"{gen['ours_tokens_per_cpu_s'] / gen['hf_tokens_per_cpu_s']:.2f}x; same tokens: {gen['same_tokens']})",
        f"fixed cost per step (the same {model['n_layer']} layers, {', '.join(result['overhead']['overrides'])}): ours "
        f"{result['overhead']['ours_ms_per_step']:.1f} ms, Hugging Face {result['overhead']['hf_ms_per_step']:.1f} ms",
        "the physical limit:",
        f"  training FLOPs/token    {phys['flops_per_token']['total']:>10,}  (6N = {phys['flops_per_token']['matmul']:,}, "
        f"attention {phys['flops_per_token']['attention']:,})",
        f"  achieved (ours)         {phys['achieved_flops_per_s'] / g:>10.1f} GFLOP/s = "
        f"{100 * phys['fraction_of_peak']:.1f}% of the peak",
        f"  torch.mm {phys['matmul_size']}^2 float32  {phys['peak_matmul_flops_per_s'] / g:>10.1f} GFLOP/s (the peak)",
        *([f"  its matrix products    {phys['matmul_achieved_flops_per_s'] / g:>10.1f} GFLOP/s = "
           f"{100 * phys['matmul_fraction_of_peak']:.1f}% of the peak  (6N FLOPs over their time in the breakdown)"]
          if "matmul_achieved_flops_per_s" in phys else []),
        f"  model's largest matmul  {phys['model_matmul_flops_per_s'] / g:>10.1f} GFLOP/s = "
        f"{100 * phys['model_matmul_fraction_of_peak']:.1f}% of the peak  ({' x '.join(map(str, phys['model_matmul_shape']))})",
    ])


def _format_breakdown(result: dict[str, Any]) -> list[str]:
    """The breakdown's lines: milliseconds per step of each group, ours beside Hugging Face's."""
    breakdown = result.get("breakdown")
    if breakdown is None:
        return ["where the time goes: not measured (a compiled step runs generated kernels, not ATen operators)"]
    ours, hf = breakdown["ours"], breakdown["hf"]
    lines = [f"where a step's time goes, ms per step inside each kind of operator ({ours['steps']} steps, timed one "
             "by one):", f"  {'':<24}{'ours':>14}{'HF':>14}"]
    for group in [*ours["groups_ms"], None]:
        name, a, b = ("all operators", ours["operators_ms"], hf["operators_ms"]) if group is None else (
            group, ours["groups_ms"][group], hf["groups_ms"][group])
        lines.append(f"  {name:<24}{a:>7.2f} ({a / ours['operators_ms']:>4.0%}){b:>7.2f} ({b / hf['operators_ms']:>4.0%})")
    lines.append("  (Hugging Face's GELU is several operators, mul, pow, tanh, add: in its \"other operators\")")
    return lines


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    """``python -m llm_tutorial.bench``: measure, print, and save as JSON with ``--out``."""
    from llm_tutorial.train.run_config import PRESETS

    parser = argparse.ArgumentParser(prog="python -m llm_tutorial.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="shakespeare-char", metavar="FILE|PRESET",
                        help=f"a YAML run config or a preset: {', '.join(PRESETS)} (default shakespeare-char)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override one setting of the config, e.g. --set model.n_layer=2 (repeatable)")
    parser.add_argument("--steps", type=int, default=40, help="timed training steps per loop per round (default 40)")
    parser.add_argument("--rounds", type=int, default=5, help="turns of each loop and decoder (default 5)")
    parser.add_argument("--warmup-steps", type=int, default=5, help="untimed training steps first (default 5)")
    parser.add_argument("--new-tokens", type=int, default=None,
                        help="tokens to generate (default: fill the context after a one-token prompt)")
    parser.add_argument("--compile", action="store_true", help="train ours under torch.compile")
    parser.add_argument("--matmul-size", type=int, default=2048, help="side of the square torch.mm (default 2048)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads for both (default: torch's)")
    parser.add_argument("--profile", action="store_true", help="print the profile of our step instead")
    parser.add_argument("--out", metavar="FILE.json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.threads is not None and args.threads < 1:
        parser.error("--threads must be at least 1")
    try:
        if args.profile:
            print(profile_step(args.config, overrides=args.overrides, steps=args.steps,
                               warmup_steps=args.warmup_steps, threads=args.threads))
            return None
        result = run_bench(args.config, overrides=args.overrides, steps=args.steps, rounds=args.rounds,
                           warmup_steps=args.warmup_steps, new_tokens=args.new_tokens, compile=args.compile,
                           matmul_size=args.matmul_size, threads=args.threads)
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
