"""The speedrun harness (llm_tutorial.speedrun) and the speedrun preset.

Timing-free: the time-to-target logic on synthetic curves, the harness on a tiny run (its clock,
its curve, its final full-validation loss against an independent evaluation), the race's order,
the summary's statistics, the sequence-length warm-up, and bad inputs.
"""

from __future__ import annotations

import statistics

import pytest
import torch

from llm_tutorial.speedrun import SpeedrunRecord, race, resolve, run_recipe, summarise, time_to_target
from llm_tutorial.train.launch import ContextWarmup, prepare_run
from llm_tutorial.train.run_config import PRESETS, load_run_config

TINY = ["model.n_layer=1", "model.n_head=2", "model.d_model=16", "model.context_length=16", "train.batch_size=4",
        "train.max_steps=6", "train.warmup_steps=1", "train.log_interval=1"]


def test_time_to_target_is_the_first_point_at_or_below():
    seconds = [0.0, 1.0, 2.5, 4.0, 6.0]
    losses = [4.0, 2.5, 1.9, 1.8, 1.85]
    assert time_to_target(seconds, losses, 1.9) == 2.5  # equal counts
    assert time_to_target(seconds, losses, 1.85) == 4.0  # the first crossing, not a later one
    assert time_to_target(seconds, losses, 1.7) is None
    assert time_to_target(seconds, losses, 5.0) == 0.0


@pytest.mark.parametrize("seconds, losses, target, match", [
    ([0.0, 1.0], [3.0], 2.0, "equally long"),
    ([0.0, 2.0, 1.0], [3.0, 2.5, 2.0], 2.0, "decrease"),
    ([0.0], [3.0], -1.0, "target"),
    ([0.0], [3.0], float("nan"), "target"),
])
def test_time_to_target_rejects_bad_curves(seconds, losses, target, match):
    with pytest.raises(ValueError, match=match):
        time_to_target(seconds, losses, target)


def test_summarise_takes_medians_and_ranges_over_seeds():
    def record(label, seed, reach, final):
        return SpeedrunRecord(label, seed, 10, 100, 9.0 + seed, final, [0.0, reach], [0, 10], [4.0, 1.0 if reach < 50 else 3.0])

    records = [record("a", 0, 3.0, 1.9), record("a", 1, 5.0, 1.8), record("a", 2, 4.0, 2.0),
               record("b", 0, 99.0, 2.5)]
    table = summarise(records, target=1.5)
    assert table["a"]["time_to_target"] == 4.0 and table["a"]["time_range"] == (3.0, 5.0)
    assert table["a"]["final_val"] == statistics.median([1.9, 1.8, 2.0]) and table["a"]["reached"] == 3
    assert table["a"]["seconds_range"] == (9.0, 11.0)
    assert table["b"]["time_to_target"] is None and table["b"]["reached"] == 0


def test_a_tiny_run_records_a_curve_and_the_full_validation_loss():
    from llm_tutorial.models.gpt import GPT
    from llm_tutorial.train.evaluate import evaluate_stream

    run = resolve("shakespeare-char", TINY)
    record = run_recipe(run, seed=3, label="tiny", eval_every=4, eval_tokens=200)
    assert record.steps == 6 and record.curve_steps == [0, 4, 6]
    assert record.tokens == 6 * 4 * 16  # steps × batch × window
    assert record.curve_seconds[0] == 0.0 and record.curve_seconds == sorted(record.curve_seconds)
    assert record.train_seconds == record.curve_seconds[-1] > 0
    assert record.curve_loss[0] == pytest.approx(torch.log(torch.tensor(65.0)).item(), abs=0.3)  # untrained
    assert not record.stopped_early
    # the same seed trains the same model: its full-validation loss, evaluated independently
    again = run_recipe(run, seed=3, eval_every=6, eval_tokens=200)
    assert again.final_val == pytest.approx(record.final_val, abs=1e-6)
    prepared = prepare_run(run)
    untrained = evaluate_stream(GPT(prepared.model_config), prepared.val_ids, 16)
    assert record.final_val < untrained


def test_stop_at_ends_the_run_at_the_target():
    record = run_recipe(resolve("shakespeare-char", TINY), seed=0, eval_every=2, eval_tokens=200, stop_at=100.0)
    assert record.steps == 2 and record.stopped_early  # the first evaluation after training stops it
    assert record.time_to(100.0) == 0.0  # the untrained model is already below so loose a target


def test_race_interleaves_seed_by_seed():
    recipes = {"a": resolve("shakespeare-char", TINY), "b": resolve("shakespeare-char", [*TINY, "train.optimizer=muon"])}
    records = race(recipes, [0, 1], eval_every=6, eval_tokens=100)
    assert [(r.label, r.seed) for r in records] == [("a", 0), ("b", 0), ("a", 1), ("b", 1)]
    with pytest.raises(ValueError, match="recipe"):
        race({}, [0])
    with pytest.raises(ValueError, match="seed"):
        race(recipes, [])


def test_max_seconds_ends_the_run_at_a_budget():
    record = run_recipe(resolve("shakespeare-char", TINY), seed=0, eval_every=2, eval_tokens=200, max_seconds=1e-9)
    assert record.steps == 2 and record.stopped_early


@pytest.mark.parametrize("option, value, match", [("eval_every", 0, "eval_every"), ("max_seconds", 0.0, "max_seconds"), ("eval_tokens", 1, "eval_tokens"),
                                                  ("stop_at", -1.0, "stop_at"), ("threads", 0, "threads")])
def test_run_recipe_rejects_bad_options(option, value, match):
    with pytest.raises(ValueError, match=match):
        run_recipe(resolve("shakespeare-char", TINY), 0, **{option: value})


def test_the_speedrun_preset_loads_and_keeps_the_task():
    assert "shakespeare-char-speedrun" in PRESETS
    speedrun, baseline = load_run_config("shakespeare-char-speedrun"), load_run_config("shakespeare-char")
    assert speedrun.data.corpus == baseline.data.corpus and speedrun.data.tokenizer == baseline.data.tokenizer
    assert speedrun.data.val_fraction == baseline.data.val_fraction  # the same validation text
    prepared, reference = prepare_run(speedrun), prepare_run(baseline)
    assert torch.equal(prepared.val_ids, reference.val_ids)


def test_context_warmup_grows_the_window_and_resumes():
    ids = torch.arange(500) % 7
    source = ContextWarmup(ids, context=64, start=16, steps=10, calls_per_step=2)
    assert [source.window(s) for s in (0, 5, 9, 10, 50)] == [16, 40, 56, 64, 64]
    g = torch.Generator().manual_seed(0)
    shapes = [source(3, g)[0].shape[1] for _ in range(4)]  # two calls per step
    assert shapes == [16, 16, 16, 16] and source.calls == 4
    source.start_at(10)
    x, y = source(3, g)
    assert x.shape == (3, 64) and torch.equal(x[:, 1:], y[:, :-1])
    with pytest.raises(ValueError, match="context_warmup_start"):
        ContextWarmup(ids, context=8, start=16, steps=10)
    with pytest.raises(ValueError, match="context_warmup_steps"):
        load_run_config("shakespeare-char", ["data.context_warmup_steps=-1"])


def test_validation_windows_are_fixed_spread_and_shifted():
    from llm_tutorial.speedrun import validation_windows

    ids = torch.arange(1000)
    x, y = validation_windows(ids, context=10, count=5)
    assert x.shape == y.shape == (5, 10) and torch.equal(y, x + 1)
    assert x[0, 0] == 0 and y[-1, -1] == 999  # from the first token to the last
    assert torch.equal(validation_windows(ids, 10, 5)[0], x)  # the same windows every time
    with pytest.raises(ValueError, match="fewer than one window"):
        validation_windows(torch.arange(5), context=10, count=1)
    with pytest.raises(ValueError, match="count"):
        validation_windows(ids, context=10, count=0)


def test_window_loss_is_the_mean_token_loss_over_all_windows_whatever_the_chunking():
    """Brute force: −log softmax at every target, averaged over every token of every window; the
    chunk size (here one that leaves a short last chunk) must not change the mean; the model's
    training mode is restored."""
    from llm_tutorial.models.gpt import GPT, GPTConfig
    from llm_tutorial.speedrun import window_loss

    torch.manual_seed(3)
    model = GPT(GPTConfig(vocab_size=11, context_length=8, n_layer=1, n_head=2, d_model=16, dropout=0.0))
    x, y = torch.randint(11, (7, 8)), torch.randint(11, (7, 8))
    model.eval()
    with torch.no_grad():
        expected = -model(x).log_softmax(-1).gather(-1, y[..., None]).mean().item()
    model.train()
    for batch_size in (1, 3, 64):
        assert window_loss(model, x, y, batch_size=batch_size) == pytest.approx(expected, rel=1e-5)
    assert model.training
