"""The benchmark command: a tiny run returns every figure, positive, and saves them as JSON."""

from __future__ import annotations

import json

import pytest
import torch

from llm_tutorial.throughput import benchmark, main

TINY = ["model.n_layer=1", "model.n_head=2", "model.d_model=16", "model.context_length=12", "train.batch_size=4"]


def test_a_tiny_benchmark_reports_every_figure(tmp_path, capsys):
    pytest.importorskip("transformers")
    out = tmp_path / "bench.json"
    result = main(["--config", "shakespeare-char", "--steps", "2", "--warmup-steps", "1", "--new-tokens", "5",
                   "--repeats", "1", "--out", str(out)]
                  + [arg for override in TINY for arg in ("--set", override)])
    assert json.loads(out.read_text()) == result
    assert result["model"]["n_layer"] == 1 and result["model"]["context_length"] == 12
    train = result["train"]
    assert train["steps"] == 2 and train["batch_size"] == 4
    for key in ("tokens_per_s", "tokens_per_cpu_s", "ms_per_step", "seconds", "peak_memory_bytes"):
        assert train[key] > 0, key
    assert train["tokens_per_s"] == pytest.approx(2 * 4 * 12 / train["seconds"])
    generation = result["generation"]
    assert set(generation["tokens_per_s"]) == {"ours_cache", "ours_no_cache", "hf_cache", "hf_no_cache"}
    for figures in (generation["tokens_per_s"], generation["tokens_per_cpu_s"]):
        assert set(figures) == {"ours_cache", "ours_no_cache", "hf_cache", "hf_no_cache"}
        assert all(value > 0 for value in figures.values())
    assert all(generation["same_tokens"].values())  # the four decoders agree on the greedy tokens
    assert generation["new_tokens"] == 5 and result["threads"] == torch.get_num_threads()
    printed = capsys.readouterr().out
    assert "tokens/s" in printed and "hf_no_cache" in printed and str(out) in printed


def test_bad_benchmark_arguments(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--config", "no-such-config"])
    assert stop.value.code == 2
    assert "'no-such-config' is neither a YAML file nor a preset" in capsys.readouterr().err
    with pytest.raises(ValueError, match="steps must be a positive integer, got 0"):
        benchmark("shakespeare-char", steps=0)
    with pytest.raises(ValueError, match="unknown section 'modle'"):
        benchmark("shakespeare-char", overrides=["modle.n_layer=2"])


def test_training_throughput_times_the_trainer_of_a_config():
    from llm_tutorial.models.gpt import GPT, GPTConfig
    from llm_tutorial.throughput import training_throughput

    result = training_throughput("shakespeare-char", overrides=TINY, steps=3, warmup_steps=1)
    assert result["steps"] == 3 and result["warmup_steps"] == 1 and result["batch_size"] == 4
    assert result["context_length"] == 12
    assert result["tokens_per_s"] == pytest.approx(3 * 4 * 12 / result["seconds"])
    assert result["seconds"] > 0 and result["final_train_loss"] > 0
    # the parameter count is the configured model's, built independently here
    reference = GPT(GPTConfig.preset("gpt2", vocab_size=65, n_layer=1, n_head=2, d_model=16, context_length=12))
    assert result["parameters"] == reference.num_parameters()
    with pytest.raises(ValueError, match="steps"):
        training_throughput("shakespeare-char", overrides=TINY, steps=0)
    with pytest.raises(ValueError, match="warmup_steps"):
        training_throughput("shakespeare-char", overrides=TINY, warmup_steps=-1)
