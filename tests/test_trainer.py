"""The training loop against a hand-written reference loop, accumulation, guards, evaluation,
history and progress bar."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from llm_tutorial.data import get_batch
from llm_tutorial.train import History, NonFiniteLossError, TrainConfig, Trainer, list_checkpoints, parameter_groups
from llm_tutorial.train.trainer import EVAL_SEED_OFFSET

VOCAB, CONTEXT = 17, 6


class TinyLM(nn.Module):
    """Token + position embeddings, one residual MLP, a head: enough to have matrices, biases and
    norms (both weight-decay groups) and, on request, dropout."""

    def __init__(self, width: int = 8, dropout: float = 0.0) -> None:
        super().__init__()
        self.tokens = nn.Embedding(VOCAB, width)
        self.positions = nn.Embedding(CONTEXT, width)
        self.norm = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, width), nn.Dropout(dropout))
        self.head = nn.Linear(width, VOCAB)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        h = self.tokens(idx) + self.positions(torch.arange(idx.shape[1]))  # (B, T, C)
        h = h + self.mlp(self.norm(h))
        return self.head(h)  # (B, T, V)


def next_token_loss(model: nn.Module, batch) -> torch.Tensor:
    x, y = batch
    return F.cross_entropy(model(x).flatten(0, 1), y.flatten())


DATA = torch.randint(0, VOCAB, (500,), generator=torch.Generator().manual_seed(0))


def text_batches(batch_size: int, generator: torch.Generator):
    return get_batch(DATA, batch_size, CONTEXT, generator)


def config(**overrides) -> TrainConfig:
    settings = dict(batch_size=4, max_steps=12, lr=1e-2, min_lr=1e-3, warmup_steps=3, eval_interval=5,
                    eval_batches=2, log_interval=4, progress=False, seed=3)
    return TrainConfig(**{**settings, **overrides})


def test_matches_a_hand_written_training_loop():
    """Same init, same batches: the trainer equals plain AdamW (no fusing), the closed-form
    schedule and clip_grad_norm_, step for step."""
    torch.manual_seed(0)
    model = TinyLM()
    reference = copy.deepcopy(model)
    cfg = config(grad_clip=0.05, weight_decay=0.3, betas=(0.8, 0.9))
    history = Trainer(model, next_token_loss, text_batches, cfg).fit()

    decay = [p for p in reference.parameters() if p.ndim >= 2]
    no_decay = [p for p in reference.parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.3}, {"params": no_decay, "weight_decay": 0.0}],
                                  betas=(0.8, 0.9), foreach=False, fused=False)
    generator = torch.Generator().manual_seed(cfg.seed)
    losses, norms = [], []
    for step in range(cfg.max_steps):
        lr = 1e-2 * (step + 1) / 3 if step < 3 else 1e-3 + 0.5 * 9e-3 * (1 + math.cos(math.pi * (step - 3) / 9))
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss = next_token_loss(reference, get_batch(DATA, 4, CONTEXT, generator))
        loss.backward()
        norms.append(float(torch.nn.utils.clip_grad_norm_(reference.parameters(), 0.05)))
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())

    assert history.step == list(range(cfg.max_steps))
    assert history.train_loss == pytest.approx(losses, rel=1e-5)
    assert history.grad_norm == pytest.approx(norms, rel=1e-4)
    assert all(n > 0.05 for n in norms), "the test must actually clip"
    for (name, ours), theirs in zip(model.named_parameters(), reference.parameters()):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6, msg=name)


def test_gradient_accumulation_equals_one_larger_batch():
    """k micro-batches of b examples give the update of one batch of k·b (no dropout)."""
    k, b = 3, 5
    batches = [get_batch(DATA, k * b, CONTEXT, torch.Generator().manual_seed(step)) for step in range(4)]

    def whole(batch_size, generator):
        return batches.pop(0)

    chunks = [tuple(t[i * b:(i + 1) * b] for t in batch) for batch in list(batches) for i in range(k)]

    def micro(batch_size, generator):
        assert batch_size == b
        return chunks.pop(0)

    torch.manual_seed(0)
    one = TinyLM()
    accumulated = copy.deepcopy(one)
    h1 = Trainer(one, next_token_loss, whole, config(batch_size=k * b, max_steps=4, log_interval=1)).fit()
    h2 = Trainer(accumulated, next_token_loss, micro, config(batch_size=b, grad_accum_steps=k, max_steps=4,
                                                              log_interval=1)).fit()
    assert h2.train_loss == pytest.approx(h1.train_loss, rel=1e-6)
    for p1, p2 in zip(one.parameters(), accumulated.parameters()):
        torch.testing.assert_close(p2, p1, rtol=1e-5, atol=1e-6)
    assert h1.tokens_per_s and h2.tokens_per_s


def test_weight_decay_on_matrices_only():
    model = TinyLM()
    decayed, plain = parameter_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    assert {names[id(p)] for p in decayed["params"]} == {
        "tokens.weight", "positions.weight", "mlp.0.weight", "mlp.2.weight", "head.weight"}
    assert {names[id(p)] for p in plain["params"]} == {"norm.weight", "norm.bias", "mlp.0.bias", "mlp.2.bias", "head.bias"}
    assert decayed["weight_decay"] == 0.1 and plain["weight_decay"] == 0.0
    trainer = Trainer(model, next_token_loss, text_batches, config())
    assert [g["weight_decay"] for g in trainer.optimizer.param_groups] == [0.1, 0.0]


def test_non_finite_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    def poisoned_at_step_7(model, batch):
        loss = next_token_loss(model, batch)
        return loss * float("nan") if trainer.step == 7 else loss

    trainer = Trainer(TinyLM(), poisoned_at_step_7, text_batches,
                      config(checkpoint_dir=str(tmp_path), checkpoint_interval=5, log_interval=10))
    with pytest.raises(NonFiniteLossError, match=r"training loss became nan at step 7 .*step_00000005, is kept") as error:
        trainer.fit()
    assert error.value.step == 7
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_00000005"]
    assert trainer.history.step[-1] == 6, "every finite step before the failure is recorded"


def test_non_finite_loss_without_checkpoints_says_so():
    trainer = Trainer(TinyLM(), lambda m, b: next_token_loss(m, b) * float("inf"), text_batches, config())
    with pytest.raises(NonFiniteLossError, match="at step 0 .*No checkpoint had been written"):
        trainer.fit()


@pytest.mark.parametrize("overrides, match", [
    (dict(grad_accum_steps=0), "grad_accum_steps must be a positive integer"),
    (dict(warmup_steps=20, max_steps=10), "warmup_steps must be an integer in"),
    (dict(min_lr=1.0), "min_lr must lie in"),
    (dict(batch_size=0), "batch_size must be a positive integer"),
    (dict(eval_batches=0), "eval_batches must be a positive integer"),
    (dict(precision="fp8"), "unknown precision 'fp8'"),
    (dict(betas=(0.9, 1.0)), "each of betas must be a probability"),
    (dict(betas=(0.9,)), "betas must be two numbers"),
    (dict(grad_clip=-1.0), "grad_clip must be ≥ 0"),
    (dict(weight_decay=-0.1), "weight_decay must be ≥ 0"),
    (dict(seed=1.5), "seed must be an integer"),
    (dict(keep_checkpoints=0), "keep_checkpoints must be a positive integer"),
])
def test_impossible_configurations_fail_when_built(overrides, match):
    with pytest.raises(ValueError, match=match):
        config(**overrides)


def test_bad_trainer_arguments():
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        Trainer("gpt", next_token_loss, text_batches, config())
    with pytest.raises(TypeError, match="loss_fn must be callable"):
        Trainer(TinyLM(), "clm", text_batches, config())
    with pytest.raises(TypeError, match="config must be a TrainConfig"):
        Trainer(TinyLM(), next_token_loss, text_batches, {"lr": 1e-3})
    with pytest.raises(TypeError, match="metadata must be JSON-serialisable"):
        Trainer(TinyLM(), next_token_loss, text_batches, config(), metadata={"tokenizer": object()})
    with pytest.raises(ValueError, match="precision 'fp16' needs a CUDA GPU"):
        Trainer(TinyLM(), next_token_loss, text_batches, config(precision="fp16"))
    with pytest.raises(ValueError, match="until must be an integer step in"):
        Trainer(TinyLM(), next_token_loss, text_batches, config()).fit(until=13)
    with pytest.raises(ValueError, match="evaluate\\(\\) needs val_batches"):
        Trainer(TinyLM(), next_token_loss, text_batches, config()).evaluate()


def test_bad_loss_functions_are_caught_at_the_first_step():
    with pytest.raises(ValueError, match=r"loss_fn must return a scalar tensor .* got \(4, 6, 17\)"):
        Trainer(TinyLM(), lambda m, b: m(b[0]), text_batches, config()).fit()
    with pytest.raises(ValueError, match="does not require grad"):
        Trainer(TinyLM(), lambda m, b: next_token_loss(m, b).detach(), text_batches, config()).fit()


def test_a_fresh_run_refuses_a_directory_holding_another_run(tmp_path):
    Trainer(TinyLM(), next_token_loss, text_batches, config(checkpoint_dir=str(tmp_path), max_steps=5, warmup_steps=1)).fit()
    with pytest.raises(FileExistsError, match="already holds checkpoints of a run"):
        Trainer(TinyLM(), next_token_loss, text_batches, config(checkpoint_dir=str(tmp_path))).fit()


def test_evaluation_scores_fixed_batches_and_leaves_training_randomness_alone():
    torch.manual_seed(0)
    model = TinyLM()
    cfg = config(eval_batches=3)
    trainer = Trainer(model, next_token_loss, text_batches, cfg, val_batches=text_batches)
    state = trainer.generator.get_state()
    torch_state = torch.get_rng_state()
    first, second = trainer.evaluate(), trainer.evaluate()
    assert first == second
    assert torch.equal(trainer.generator.get_state(), state) and torch.equal(torch.get_rng_state(), torch_state)
    generator = torch.Generator().manual_seed(cfg.seed + EVAL_SEED_OFFSET)
    with torch.no_grad():
        expected = sum(next_token_loss(model, text_batches(4, generator)).item() for _ in range(3)) / 3
    assert first == pytest.approx(expected, rel=1e-6)

    history = trainer.fit()
    assert history.eval_step == [0, 0, 5, 10, 12], "no second evaluation at step 0 when one exists"
    assert len(history.val_loss) == 5 and history.val_loss[-1] < history.val_loss[0]


def test_the_step_makes_no_host_sync_between_log_points(monkeypatch):
    """Losses stay on the device; they are read (one .tolist()) only at log points."""
    reads = []
    for name in ("item", "tolist", "__float__", "__int__", "__bool__"):
        original = getattr(torch.Tensor, name)
        monkeypatch.setattr(torch.Tensor, name, lambda self, *a, _o=original, _n=name, **k: reads.append(_n) or _o(self, *a, **k))
    trainer = Trainer(TinyLM(), next_token_loss, text_batches, config(max_steps=20, log_interval=10, warmup_steps=2))
    trainer.fit()
    monkeypatch.undo()
    assert reads == ["tolist", "tolist"], reads
    assert trainer.history.log_step == [9, 19]


def test_history_records_schedule_speed_and_round_trips(tmp_path):
    cfg = config()
    history = Trainer(TinyLM(), next_token_loss, text_batches, cfg, val_batches=text_batches).fit()
    assert history.lr == [cfg.schedule(s) for s in range(cfg.max_steps)]
    assert history.log_step == [3, 4, 7, 9, 11], "every log_interval=4 steps, before each evaluation, at the end"
    assert all(t > 0 for t in history.tokens_per_s)
    assert history.wall_time == sorted(history.wall_time)
    history.save(tmp_path / "history.json")
    assert History.load(tmp_path / "history.json") == history
    with pytest.raises(ValueError, match="unknown history fields"):
        History.from_dict({"stepz": []})


def test_history_plot_is_labelled():
    import matplotlib

    matplotlib.use("Agg")
    history = History(step=[0, 1, 2], train_loss=[3.0, 2.5, 2.0], eval_step=[0, 2], val_loss=[3.1, 2.2])
    ax = history.plot()
    assert ax.get_xlabel() == "optimizer step"
    assert "loss" in ax.get_ylabel() and ax.get_title()
    assert [line.get_label() for line in ax.get_lines()] == ["train (per step)", "validation"]


def test_progress_bar_shows_loss_and_tokens_per_second(capsys):
    Trainer(TinyLM(), next_token_loss, text_batches, config(progress=True), val_batches=text_batches).fit()
    err = capsys.readouterr().err
    assert "12/12" in err and "loss=" in err and "val=" in err and "tok/s=" in err


def test_bf16_autocast_on_cpu_trains_close_to_fp32():
    torch.manual_seed(0)
    model = TinyLM()
    twin = copy.deepcopy(model)
    fp32 = Trainer(model, next_token_loss, text_batches, config(precision="fp32")).fit()
    bf16 = Trainer(twin, next_token_loss, text_batches, config(precision="bf16")).fit()
    assert bf16.train_loss == pytest.approx(fp32.train_loss, rel=2e-2)
    assert bf16.train_loss != fp32.train_loss, "bf16 autocast must really have run"
    assert all(p.dtype == torch.float32 for p in twin.parameters()), "weights stay fp32 under autocast"
