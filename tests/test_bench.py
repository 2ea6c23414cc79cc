"""The speed benchmark and what it relies on: FLOP counts against a hand count and PyTorch's own
counter, the fused AdamW against the textbook for-loop, the trainer against a loop written out by
hand, cached generation against uncached. No timing is asserted: speeds are the benchmark's output,
not a test's."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from llm_tutorial.bench import (OPERATOR_GROUPS, HostSyncCounter, OperatorTimer, main, matmul_flops_per_s,
                                matmul_parameters, operator_group, profile_step, run_bench, step_breakdown,
                                training_flops_per_token)
from llm_tutorial.generate import generate
from llm_tutorial.models.gpt import GPT, GPTConfig
from llm_tutorial.train import Trainer, TrainConfig
from llm_tutorial.train.objectives import causal_lm_loss
from llm_tutorial.train.optimizer import build_adamw, parameter_groups

TINY = ["model.n_layer=1", "model.n_head=2", "model.d_model=16", "model.context_length=12", "train.batch_size=4"]


# ------------------------------------------------------------------------------------ FLOPs
def test_flops_per_token_match_a_hand_count():
    # 2 layers, d_model 16, 2 heads of 8, d_ff 64, V 11, T 8: per block the four 16×16 attention
    # projections (1,024 weights) and the 16×64, 64×16 MLP (2,048); the 16×11 output layer (176).
    config = GPTConfig.preset("gpt2", n_layer=2, n_head=2, d_model=16, vocab_size=11, context_length=8)
    assert matmul_parameters(config) == 2 * (4 * 16 * 16 + 2 * 16 * 64) + 16 * 11 == 6320
    flops = training_flops_per_token(config)
    assert flops == {"matmul": 6 * 6320, "attention": 12 * 2 * 8 * 16, "total": 37920 + 3072}
    assert training_flops_per_token(config, 4)["attention"] == 12 * 2 * 4 * 16  # attention grows with T
    # grouped-query attention and SwiGLU change the count the way their shapes say
    llama = GPTConfig.preset("llama", n_layer=3, n_head=4, n_kv_head=2, d_model=32, vocab_size=7, context_length=5)
    per_block = 32 * 32 * 2 + 2 * 32 * 16 + 3 * 32 * llama.d_ff  # q, out: 32×32; k, v: 32×16; three MLP matrices
    assert matmul_parameters(llama) == 3 * per_block + 32 * 7


@pytest.mark.parametrize("n_layer, n_head, d_model, T, vocab", [(2, 2, 16, 8, 11), (3, 3, 24, 7, 13)])
def test_flops_per_token_match_pytorchs_flop_counter(n_layer, n_head, d_model, T, vocab):
    """``FlopCounterMode`` counts every matrix product of one forward and backward pass. With the
    explicit attention (``Q Kᵀ`` and ``A V`` as ordinary products over the full T × T, as our formula
    counts them) the two agree exactly, tolerance 0: neither counts GELU, softmax, norms or the loss,
    which do no matrix arithmetic. The counter has no rule for the CPU's fused attention kernel, so
    with ``attention_impl="sdpa"`` it sees the 6N of the projections only."""
    torch.manual_seed(0)
    tokens = 3 * T
    for impl, expected in (("explicit", "total"), ("sdpa", "matmul")):
        config = GPTConfig.preset("gpt2", n_layer=n_layer, n_head=n_head, d_model=d_model, vocab_size=vocab,
                                  context_length=T, attention_impl=impl)
        model = GPT(config)
        x, y = torch.randint(0, vocab, (3, T)), torch.randint(0, vocab, (3, T))
        with FlopCounterMode(display=False) as counter:
            F.cross_entropy(model(x).view(-1, vocab), y.view(-1)).backward()
        assert counter.get_total_flops() == tokens * training_flops_per_token(config)[expected], impl


def test_bad_flop_arguments():
    config = GPTConfig.preset("gpt2", n_layer=1, n_head=2, d_model=8, vocab_size=5, context_length=4)
    with pytest.raises(TypeError, match="config must be a GPTConfig, got dict"):
        matmul_parameters({"n_layer": 1})
    with pytest.raises(ValueError, match="context_length 5 exceeds the model's 4"):
        training_flops_per_token(config, 5)
    with pytest.raises(ValueError, match="context_length must be a positive integer"):
        training_flops_per_token(config, 0)
    with pytest.raises(ValueError, match="m must be a positive integer"):
        matmul_flops_per_s(0, 4, 4)
    assert matmul_flops_per_s(8, 8, 8, repeats=1, min_seconds=0.0) > 0


# ---------------------------------------------------------------------------- the optimizer
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_fused_adamw_equals_the_for_loop_adamw(weight_decay):
    """The trainer's AdamW (fused on the CPU) and torch's textbook single-tensor loop take the same
    steps from the same random parameters and gradients, within float32 rounding."""
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(7, 13), torch.nn.LayerNorm(13), torch.nn.Linear(13, 3))
    twin = copy.deepcopy(model)
    fused = build_adamw(model, 3e-3, weight_decay, (0.9, 0.99))
    assert fused.defaults["fused"]  # the fast path really is taken on a CPU
    loop = torch.optim.AdamW(parameter_groups(twin, weight_decay), lr=3e-3, betas=(0.9, 0.99), foreach=False)
    for step in range(6):
        for p, q in zip(model.parameters(), twin.parameters()):
            p.grad = torch.randn_like(p) * 10 ** (step % 3 - 1)  # gradients of changing scale
            q.grad = p.grad.clone()
        fused.step()
        loop.step()
    for p, q in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(fused.state[p]["exp_avg_sq"], loop.state[q]["exp_avg_sq"], rtol=1e-5, atol=1e-9)


# ---------------------------------------------------------------------- the loop's numerics
def test_the_trainer_takes_the_steps_of_a_loop_written_out_by_hand():
    """The trainer (fused AdamW, foreach clipping, no per-step sync) against a loop written from the
    equations: the learning rate from the warm-up + cosine formula, the gradient's global norm
    clipped by hand, torch's for-loop AdamW. Same model, same batches: same losses and weights."""
    torch.manual_seed(2)
    config = GPTConfig.preset("gpt2", n_layer=2, n_head=2, d_model=16, vocab_size=13, context_length=9)
    model = GPT(config)
    reference = copy.deepcopy(model)
    data = torch.randint(0, 13, (500,))

    def batches(n, generator):
        starts = torch.randint(0, len(data) - 9, (n,), generator=generator)
        index = starts[:, None] + torch.arange(9)
        return data[index], data[index + 1]

    steps, lr, min_lr, warmup, clip = 7, 3e-3, 3e-4, 3, 0.5
    train = TrainConfig(batch_size=5, max_steps=steps, lr=lr, min_lr=min_lr, warmup_steps=warmup, grad_clip=clip,
                        log_interval=3, progress=False, seed=11)
    history = Trainer(model, causal_lm_loss, batches, train).fit()

    optimizer = torch.optim.AdamW(parameter_groups(reference, train.weight_decay), lr=lr, betas=train.betas,
                                  foreach=False)
    generator = torch.Generator().manual_seed(11)
    losses = []
    for s in range(steps):
        rate = lr * (s + 1) / warmup if s < warmup else \
            min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * (s - warmup) / (steps - warmup)))
        for group in optimizer.param_groups:
            group["lr"] = rate
        x, y = batches(5, generator)
        loss = F.cross_entropy(reference(x).view(-1, 13), y.view(-1))
        loss.backward()
        grads = [p.grad for p in reference.parameters()]
        norm = torch.sqrt(sum((g.double() ** 2).sum() for g in grads)).item()
        for g in grads:
            g.mul_(min(1.0, clip / (norm + 1e-6)))
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert history.train_loss == pytest.approx(losses, rel=1e-5)
    # Adam divides by √v: where a gradient is ~0, float rounding in it moves a weight by a visible
    # fraction of one step (lr = 3e-3), so the absolute tolerance is 1e-5, 0.3% of a step.
    for p, q in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)


def test_host_sync_counter_counts_reads_to_the_host():
    t = torch.arange(3.0)
    with HostSyncCounter() as syncs:
        t.sum().item()
        t.tolist()
        float(t[0])
        t.cpu()
        (t * 2).exp()  # device work: not counted
    assert syncs.counts == {"item": 1, "tolist": 1, "__float__": 1, "cpu": 1}


# ---------------------------------------------------------------------------- generation
@pytest.mark.parametrize("preset, batch, prompt, new", [("gpt2", 1, 1, 10), ("gpt2", 3, 4, 7), ("llama", 2, 3, 9)])
def test_cached_greedy_generation_equals_uncached(preset, batch, prompt, new, one_thread):
    torch.manual_seed(3)
    overrides = {"n_kv_head": 1} if preset == "llama" else {}
    model = GPT(GPTConfig.preset(preset, n_layer=2, n_head=2, d_model=16, vocab_size=17, context_length=16,
                                 **overrides))
    ids = torch.randint(0, 17, (batch, prompt))
    cached = generate(model, ids, new, temperature=0)
    assert torch.equal(cached, generate(model, ids, new, temperature=0, use_cache=False))
    assert cached.shape == (batch, prompt + new)


# ----------------------------------------------------------------- where a step's time goes
def test_operator_timer_sees_the_backward_kernels_too():
    """One product forward, two backward (the gradients of both factors): the timer sits below
    autograd, so it must count three ``mm`` calls, and the GELU's forward and backward kernels."""
    x = torch.randn(5, 7, requires_grad=True)
    w = torch.randn(7, 3, requires_grad=True)
    with OperatorTimer() as timer:
        F.gelu(x @ w, approximate="tanh").sum().backward()
    assert timer.calls["mm"] == 3
    assert timer.calls["gelu"] == 1 and timer.calls["gelu_backward"] == 1
    grouped = timer.grouped()
    assert list(grouped) == [*OPERATOR_GROUPS, "other operators"]
    assert grouped["matrix products"] == pytest.approx(timer.seconds["mm"]) and grouped["matrix products"] > 0
    assert grouped["GELU"] == pytest.approx(timer.seconds["gelu"] + timer.seconds["gelu_backward"])
    assert sum(grouped.values()) == pytest.approx(sum(timer.seconds.values()))
    with OperatorTimer() as idle:
        pass
    assert not idle.seconds and set(idle.grouped().values()) == {0.0}


def test_operator_timer_survives_a_failing_operator():
    """An operator that raises is not counted, the error reaches the caller unchanged, and the
    timer is gone afterwards (nothing later is timed by a mode left behind)."""
    timer = OperatorTimer()
    with pytest.raises(RuntimeError, match="cannot be multiplied"):
        with timer:
            torch.ones(2, 2) + 1
            torch.mm(torch.ones(2, 3), torch.ones(2, 3))
    assert timer.calls["add"] == 1 and "mm" not in timer.calls
    torch.mm(torch.ones(2, 3), torch.ones(3, 2))
    assert "mm" not in timer.calls


def test_operator_groups_by_name():
    assert operator_group("mm") == operator_group("addmm") == "matrix products"
    assert operator_group("_scaled_dot_product_flash_attention_for_cpu_backward") == "attention kernel"
    assert operator_group("native_layer_norm_backward") == "layer norm"
    assert operator_group("_fused_adamw_") == operator_group("_foreach_norm") == "optimizer and clipping"
    assert operator_group("add") == operator_group("tanh") == "other operators"
    names = [name for names in OPERATOR_GROUPS.values() for name in names]
    assert len(names) == len(set(names)), "an operator in two groups"
    with pytest.raises(TypeError, match="name must be an operator name"):
        operator_group(torch.ops.aten.mm)


def test_step_breakdown_counts_per_step(one_thread):
    """Two steps of a known loop: per-step calls are the loop's calls halved, and the time inside
    the operators cannot exceed the wall time around them."""
    w = torch.randn(9, 9, requires_grad=True)

    def two_steps():
        for _ in range(2):
            (torch.randn(4, 9) @ w).relu().sum().backward()

    result = step_breakdown(two_steps, steps=2)
    assert result["steps"] == 2 and 0 < result["operators_ms"] <= result["wall_ms"]
    assert result["groups_ms"]["matrix products"] > 0 and result["groups_ms"]["GELU"] == 0
    assert result["operators_ms"] == pytest.approx(sum(result["groups_ms"].values()))
    with OperatorTimer() as timer:
        two_steps()
    assert result["calls_per_step"] == sum(timer.calls.values()) / 2
    with pytest.raises(ValueError, match="steps must be a positive integer, got 0"):
        step_breakdown(two_steps, steps=0)


# --------------------------------------------------------------------------- the benchmark
def test_a_tiny_benchmark_returns_every_figure(tmp_path, capsys, one_thread):
    pytest.importorskip("transformers")
    out = tmp_path / "bench.json"
    result = main(["--steps", "2", "--rounds", "2", "--warmup-steps", "1", "--new-tokens", "4",
                   "--matmul-size", "64", "--out", str(out)] + [a for o in TINY for a in ("--set", o)])
    assert json.loads(out.read_text()) == result
    train, generation, physical = result["train"], result["generation"], result["physical"]
    for key in ("ours_tokens_per_s", "hf_tokens_per_s", "ratio", "ours_tokens_per_cpu_s", "hf_tokens_per_cpu_s"):
        assert train[key] > 0, key
    assert train["tokens_per_step"] == 4 * 12 and len(train["ours_rounds"]) == len(train["hf_rounds"]) == 2
    # same weights, same batches, same settings: the two loops end at the same loss
    assert train["ours_final_loss"] == pytest.approx(train["hf_final_loss"], rel=1e-4)
    assert generation["same_tokens"] and generation["new_tokens"] == 4
    assert generation["ours_tokens_per_s"] > 0 and generation["hf_tokens_per_s"] > 0 and generation["ratio"] > 0
    assert physical["flops_per_step"] == 48 * physical["flops_per_token"]["total"]
    assert physical["achieved_flops_per_s"] == pytest.approx(physical["flops_per_token"]["total"]
                                                             * train["ours_tokens_per_s"])
    assert physical["fraction_of_peak"] == pytest.approx(physical["achieved_flops_per_s"]
                                                         / physical["peak_matmul_flops_per_s"])
    assert physical["model_matmul_shape"] == [48, 16, 64]
    assert result["overhead"]["ours_ms_per_step"] > 0 and result["overhead"]["hf_ms_per_step"] > 0
    # the breakdown: both loops do matrix products; only ours calls the fused GELU kernel
    ours, hf = result["breakdown"]["ours"], result["breakdown"]["hf"]
    assert ours["steps"] == hf["steps"] == 2
    for loop in (ours, hf):
        assert 0 < loop["operators_ms"] <= loop["wall_ms"] and loop["groups_ms"]["matrix products"] > 0
    assert ours["groups_ms"]["GELU"] > 0 and hf["groups_ms"]["GELU"] == 0
    matmul_seconds = ours["groups_ms"]["matrix products"] / 1000
    assert physical["matmul_achieved_flops_per_s"] == pytest.approx(physical["flops_per_token"]["matmul"] * 48
                                                                    / matmul_seconds)
    assert physical["matmul_fraction_of_peak"] == pytest.approx(physical["matmul_achieved_flops_per_s"]
                                                                / physical["peak_matmul_flops_per_s"])
    printed = capsys.readouterr().out
    assert "where a step's time goes" in printed and "its matrix products" in printed
    assert "ratio ours / HF" in printed and "GFLOP/s" in printed and str(out) in printed


def test_profile_step_lists_operators_and_host_syncs(one_thread):
    table = profile_step(overrides=TINY, steps=4, warmup_steps=1, row_limit=5)
    assert "aten::" in table and "Self CPU" in table
    # one copy to the host per log point (log_interval 10) and at the end of fit: none per step
    assert "host synchronisations per step: tolist 0.25" in table


def test_bad_benchmark_arguments(capsys):
    with pytest.raises(ValueError, match="steps must be a positive integer, got 0"):
        run_bench(steps=0)
    with pytest.raises(ValueError, match="threads must be a positive integer, got 0"):
        run_bench(overrides=TINY, threads=0)
    with pytest.raises(ValueError, match="needs a GPT-2 architecture"):
        run_bench("shakespeare-char-llama", steps=1, rounds=1, warmup_steps=1)
    with pytest.raises(SystemExit) as stop:
        main(["--config", "no-such-config"])
    assert stop.value.code == 2 and "neither a YAML file nor a preset" in capsys.readouterr().err


def test_the_kv_cache_still_names_every_broken_rule():
    """``append`` tests its whole contract in one expression per call (it runs per layer per token);
    each way of breaking it still gets its own message."""
    from llm_tutorial.nn.kv_cache import LayerKVCache

    cache = LayerKVCache(torch.zeros(2, 3, 5, 4), torch.zeros(2, 3, 5, 4))
    k = torch.randn(2, 3, 2, 4)
    keys, _ = cache.append(k, k + 1)
    assert torch.equal(keys, k) and torch.equal(cache.values[:, :, :2], k + 1) and cache.length == 2
    cases = [((k.numpy(), k), TypeError, "k must be a torch.Tensor"),
             ((k, k[0]), ValueError, r"v must have 4 dimensions \(B, H_kv, T, D\)"),
             ((k, torch.randn(2, 3, 1, 4)), ValueError, "k and v must have equal shapes"),
             ((k[:1], k[:1]), ValueError, "made for batch size 2"),
             ((k[:, :2], k[:, :2]), ValueError, r"= \(B, 3, T, 4\)"),
             ((k.double(), k.double()), TypeError, "holds torch.float32"),
             ((torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)), ValueError, "the KV cache is full")]
    for args, error, message in cases:
        with pytest.raises(error, match=message):
            cache.append(*args)
    assert cache.length == 2  # a refused append writes nothing
